"""The env archive on the real HDFS (and small YARN applications): concurrent first uploads, untrusted files with
the right name, private (default) and shared archives' permissions, and the visibility they allow.

ensure_env_archive runs for real against a home of its own (not the user's `.tfoy/envs` and `.tfoy/envs-shared`);
only what would take minutes is replaced: the key (a fresh one per test) and the packing (a tiny tar.gz naming who
packed it).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import tarfile
import threading
import time
import uuid
from pathlib import Path

import pytest
import skein

from hdfs_io import fs
from hdfs_io.paths import absolute_uri
from tfnode.contract import ENV_LINK
from yarn_app import env_archive, python_env
from yarn_app.application import build_application_spec
from yarn_app.shipping import prepare_shipping
from yarn_app.spec import JobSpec

pytestmark = pytest.mark.integration

SPEC = {"entry_point": "toy_train:main", "roles": {"chief": {}, "worker": {"instances": 1}},
        "python_env": {"archive": "auto"}}
SHARED_SPEC = {**SPEC, "python_env": {"archive": "auto", "shared": True}}
APP_TIMEOUT = 180


def tiny_tgz(output: Path, who: str) -> Path:
    """A real (unpackable) archive whose content says who packed it."""
    output.parent.mkdir(parents=True, exist_ok=True)
    data = f"packed by {who}\n".encode() * 50
    with tarfile.open(output, "w:gz") as tar:
        info = tarfile.TarInfo("packed_by.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return output


def packed_by(data: bytes) -> str:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        member = tar.extractfile("packed_by.txt")
        assert member is not None
        return member.read().decode().splitlines()[0].removeprefix("packed by ")


class Envs:
    """ensure_env_archive's surroundings for one test: its HDFS home, the key, the local cache and the packer."""

    def __init__(self, monkeypatch, tmp_path: Path, hdfs, hdfs_tmp: str) -> None:
        self.hdfs = hdfs
        self.home = f"{hdfs_tmp}/home"
        self.folder = f"{self.home}/.tfoy/envs"  # private archives (the default)
        self.shared_folder = f"{self.home}/.tfoy/envs-shared"
        self.key = uuid.uuid4().hex[:16]
        self.path = f"{self.folder}/{self.key}.tar.gz"
        self.shared_path = f"{self.shared_folder}/{self.key}.tar.gz"
        self.uri = absolute_uri(self.path)
        self.tmp_path = tmp_path
        self.packs: list[str] = []
        self.who = "A"
        self.monkeypatch = monkeypatch
        monkeypatch.setattr(env_archive, "hdfs_env_dir",
                            lambda shared=False: absolute_uri(self.shared_folder if shared else self.folder))
        monkeypatch.setattr(python_env, "env_key", lambda excludes=python_env.DEFAULT_EXCLUDES: self.key)
        monkeypatch.setattr(env_archive, "MARKER_WAIT_S", 1.0)
        self.use_cache("A")
        self.use_pack(self.fake_pack)
        hdfs.mkdirs(self.home, permission=0o755, create_parent=True)

    def use_cache(self, who: str) -> None:
        """Another submitter (another edge node): a local cache of its own."""
        self.who = who
        self.monkeypatch.setenv("TFOY_CACHE", str(self.tmp_path / f"cache-{who}"))

    def use_pack(self, fn) -> None:
        self.monkeypatch.setattr(python_env, "pack", fn)

    def fake_pack(self, output: Path, excludes=python_env.DEFAULT_EXCLUDES, compresslevel: int = 1) -> Path:
        self.packs.append(self.who)
        return tiny_tgz(output, self.who)

    def read(self) -> bytes:
        with self.hdfs.read(self.path) as r:
            return r.read()

    def marker(self) -> dict:
        with self.hdfs.read(self.path + ".json") as r:
            return json.loads(r.read())

    def names(self) -> list[str]:
        return sorted(s.path.rsplit("/", 1)[1] for s in self.hdfs.list_status(self.folder))

    def mode(self, path: str) -> int:
        return self.hdfs.get_file_info(path).permission & 0o7777


@pytest.fixture
def envs(monkeypatch, tmp_path, hdfs, hdfs_tmp) -> Envs:
    return Envs(monkeypatch, tmp_path, hdfs, hdfs_tmp)


# ---- publishing ----------------------------------------------------------------------------------------------------


def test_the_first_upload_publishes_the_archive_with_its_marker(envs):
    archive = env_archive.ensure_env_archive()
    data = envs.read()
    assert archive.hdfs_uri == envs.uri and archive.size == len(data) and packed_by(data) == "A"
    assert envs.marker()["size"] == len(data) and envs.marker()["sha256"] == hashlib.sha256(data).hexdigest()
    assert envs.names() == [f"{envs.key}.tar.gz", f"{envs.key}.tar.gz.json"]  # no temporary file left


# ---- private (default) and shared archives ---------------------------------------------------------------------------


def test_a_private_archive_is_readable_by_its_owner_only(envs):
    """The default: the archive and its marker 0600 in a 0700 folder; `.tfoy` stays 0755 (tfoy's runs live there)."""
    archive = env_archive.ensure_env_archive()
    assert archive.hdfs_uri == envs.uri and not archive.public
    assert envs.mode(envs.path) == 0o600 and envs.mode(envs.path + ".json") == 0o600
    assert envs.mode(envs.folder) == 0o700
    assert envs.mode(f"{envs.home}/.tfoy") == 0o755


def test_a_shared_archive_is_world_readable_in_a_folder_of_its_own(envs):
    archive = env_archive.ensure_env_archive(shared=True)
    assert archive.hdfs_uri == absolute_uri(envs.shared_path) and archive.public
    assert envs.mode(envs.shared_path) == 0o644 and envs.mode(envs.shared_path + ".json") == 0o644
    assert envs.mode(envs.shared_folder) == 0o755 and envs.mode(f"{envs.home}/.tfoy") == 0o755
    with pytest.raises(FileNotFoundError):  # never in the private folder
        envs.hdfs.get_file_info(envs.path)


def test_an_old_world_readable_private_folder_is_tightened_when_used(envs, tmp_path, hdfs):
    """What an older tfoy left in `.tfoy/envs`: a 0755 folder with a 0644 archive and marker. The next submit
    reuses the archive as it is (same file, not packed again) but makes it private: 0700 folder, 0600 files."""
    env_archive.ensure_env_archive()
    envs.hdfs.set_permission(envs.folder, 0o755)
    envs.hdfs.set_permission(envs.path, 0o644)
    envs.hdfs.set_permission(envs.path + ".json", 0o644)
    mtime = envs.hdfs.get_file_info(envs.path).modification_time

    def must_not_pack(*args, **kwargs):
        raise AssertionError("packed again although a verified archive is on HDFS")

    envs.use_cache("C")
    envs.use_pack(must_not_pack)
    assert env_visibility(tmp_path, hdfs) == "APPLICATION"
    assert envs.mode(envs.folder) == 0o700
    assert envs.mode(envs.path) == 0o600 and envs.mode(envs.path + ".json") == 0o600
    assert envs.hdfs.get_file_info(envs.path).modification_time == mtime


def test_a_second_first_upload_keeps_the_archive_published_meanwhile(envs, caplog):
    """Two submits of one new environment: B found no archive and packed; meanwhile A published. B's upload must
    not replace A's: YARN fails a container whose resource's timestamp changed while it was localizing it."""
    published: list[float] = []

    def pack_b_while_a_publishes(output: Path, excludes=python_env.DEFAULT_EXCLUDES, compresslevel: int = 1) -> Path:
        envs.use_cache("A")
        envs.use_pack(envs.fake_pack)
        env_archive.ensure_env_archive()  # A, start to end, while B is packing
        published.append(envs.hdfs.get_file_info(envs.path).modification_time)
        envs.use_cache("B")
        return tiny_tgz(output, "B")

    envs.use_cache("B")
    envs.use_pack(pack_b_while_a_publishes)
    with caplog.at_level(logging.INFO, logger="yarn_app.env_archive"):
        b = env_archive.ensure_env_archive()
    data = envs.read()
    assert packed_by(data) == "A", "B's upload replaced the archive A had published"
    assert envs.hdfs.get_file_info(envs.path).modification_time == published[0]
    assert b.hdfs_uri == envs.uri and b.size == len(data) == envs.marker()["size"]
    assert envs.names() == [f"{envs.key}.tar.gz", f"{envs.key}.tar.gz.json"]  # B's upload deleted
    assert f"{envs.uri} was published meanwhile by another submitter: keeping it" in caplog.text


def test_two_first_uploads_at_the_same_time_publish_one_intact_archive(envs, monkeypatch, tmp_path, caplog):
    both_packed = threading.Barrier(2, timeout=60)

    def pack(output: Path, excludes=python_env.DEFAULT_EXCLUDES, compresslevel: int = 1) -> Path:
        both_packed.wait()  # each found no archive before either uploads
        return tiny_tgz(output, threading.current_thread().name)

    monkeypatch.setattr(python_env, "cache_dir", lambda: tmp_path / threading.current_thread().name)
    envs.use_pack(pack)
    results: dict[str, env_archive.EnvArchive | BaseException] = {}

    def submit() -> None:
        try:
            results[threading.current_thread().name] = env_archive.ensure_env_archive()
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            results[threading.current_thread().name] = exc

    threads = [threading.Thread(target=submit, name=who) for who in ("left", "right")]
    with caplog.at_level(logging.INFO, logger="yarn_app.env_archive"):
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    assert all(isinstance(r, env_archive.EnvArchive) for r in results.values()), results
    data = envs.read()
    assert packed_by(data) in ("left", "right")
    assert envs.marker()["sha256"] == hashlib.sha256(data).hexdigest()
    assert {r.size for r in results.values()} == {len(data)}  # type: ignore[union-attr]
    assert envs.names() == [f"{envs.key}.tar.gz", f"{envs.key}.tar.gz.json"]
    assert caplog.text.count("published meanwhile by another submitter") == 1


# ---- trusting a cached archive --------------------------------------------------------------------------------------


def test_a_verified_archive_is_reused_as_it_is(envs):
    first = env_archive.ensure_env_archive()
    mtime = envs.hdfs.get_file_info(envs.path).modification_time

    def must_not_pack(*args, **kwargs):
        raise AssertionError("packed again although a verified archive is on HDFS")

    envs.use_cache("C")  # another edge node: nothing in its local cache
    envs.use_pack(must_not_pack)
    again = env_archive.ensure_env_archive()
    assert again.size == first.size and envs.hdfs.get_file_info(envs.path).modification_time == mtime


def test_a_truncated_archive_is_replaced(envs, caplog):
    env_archive.ensure_env_archive()
    full = envs.read()
    fs.write_bytes(envs.path, full[: len(full) // 2])  # what a partial copy leaves under the right name
    with caplog.at_level(logging.WARNING, logger="yarn_app.env_archive"):
        archive = env_archive.ensure_env_archive()
    data = envs.read()
    assert data == full and archive.size == len(full)
    assert envs.marker()["size"] == len(full) and envs.marker()["sha256"] == hashlib.sha256(full).hexdigest()
    assert f"env archive {envs.uri} is not usable ({len(full) // 2} bytes where its marker" in caplog.text
    assert "replacing it" in caplog.text


def test_a_foreign_file_with_the_right_name_is_replaced(envs, caplog):
    envs.hdfs.mkdirs(envs.folder, create_parent=True)
    with envs.hdfs.create(envs.path) as w:
        w.write(b"not an archive of this environment")
    with caplog.at_level(logging.WARNING, logger="yarn_app.env_archive"):
        archive = env_archive.ensure_env_archive()
    data = envs.read()
    assert packed_by(data) == "A" and archive.size == len(data) == envs.marker()["size"]
    assert f"env archive {envs.uri} is not usable (no marker {envs.uri}.json" in caplog.text


# ---- visibility ---------------------------------------------------------------------------------------------------


def env_visibility(tmp_path: Path, hdfs, spec_dict: dict = SPEC) -> str:
    """What submit ships for `archive: auto`: prepare_shipping, then the skein spec's env archive visibility."""
    spec = JobSpec.from_dict(spec_dict)
    app = build_application_spec(spec, prepare_shipping(spec, tmp_path, hdfs))
    return str(app.services["worker"].files[ENV_LINK].visibility)


def test_a_private_archive_is_localized_per_application_even_under_a_world_readable_home(envs, tmp_path, hdfs):
    assert envs.mode(envs.home) == 0o755
    assert env_visibility(tmp_path, hdfs) == "APPLICATION"
    assert not env_archive.ensure_env_archive().public


def test_a_shared_archive_under_a_world_readable_home_is_localized_public(envs, tmp_path, hdfs):
    assert env_visibility(tmp_path, hdfs, SHARED_SPEC) == "PUBLIC"
    assert env_archive.ensure_env_archive(shared=True).public
    assert envs.mode(envs.shared_path) == 0o644


def test_a_shared_archive_under_a_private_home_is_localized_per_application(envs, tmp_path, hdfs):
    """A 0700 HDFS home: NodeManagers cannot read the archive as PUBLIC and fail the container."""
    envs.hdfs.set_permission(envs.home, 0o700)
    assert env_visibility(tmp_path, hdfs, SHARED_SPEC) == "APPLICATION"
    assert not env_archive.ensure_env_archive(shared=True).public


def test_hdfs_path_is_public_follows_the_real_permissions(hdfs, hdfs_tmp):
    path = f"{hdfs_tmp}/a/b/env.tar.gz"
    fs.write_bytes(path, b"x")
    hdfs.set_permission(path, 0o644)
    assert env_archive.hdfs_path_is_public(hdfs, path)
    hdfs.set_permission(f"{hdfs_tmp}/a", 0o751)  # o+x without o+r is enough on a folder
    assert env_archive.hdfs_path_is_public(hdfs, path)
    hdfs.set_permission(f"{hdfs_tmp}/a", 0o750)
    assert not env_archive.hdfs_path_is_public(hdfs, path)
    hdfs.set_permission(f"{hdfs_tmp}/a", 0o755)
    hdfs.set_permission(path, 0o640)
    assert not env_archive.hdfs_path_is_public(hdfs, path)


@pytest.mark.parametrize("spec_dict, home_mode", [(SHARED_SPEC, 0o700), (SPEC, 0o755)],
                         ids=["shared-in-private-home", "private-in-world-readable-home"])
def test_yarn_localizes_an_archive_it_cannot_cache_publicly(envs, tmp_path, hdfs, skein_client, spec_dict, home_mode):
    """The real failure: a PUBLIC resource in a 0700 home fails the container at localization; and a private
    (0600) archive must still be localized, per application, by the user's own NodeManager download. One small
    container gets the env archive exactly as build_application_spec describes it, and checks it was unpacked."""
    envs.hdfs.set_permission(envs.home, home_mode)
    spec = JobSpec.from_dict(spec_dict)
    app_spec = build_application_spec(spec, prepare_shipping(spec, tmp_path, hdfs))
    assert str(app_spec.services["worker"].files[ENV_LINK].visibility) == "APPLICATION"
    probe = skein.Service(
        resources=skein.Resources(memory=128, vcores=1),
        files={ENV_LINK: app_spec.services["worker"].files[ENV_LINK]},
        script=f"grep -q 'packed by A' {ENV_LINK}/packed_by.txt",
    )
    app_id = skein_client.submit(skein.ApplicationSpec(
        name=f"tfoy-test-env-visibility-{envs.key[:6]}", queue="default", services={"probe": probe},
        master=skein.Master(resources=skein.Resources(memory=512, vcores=1)), max_attempts=1))
    try:
        deadline = time.monotonic() + APP_TIMEOUT
        while str((report := skein_client.application_report(app_id)).state) not in ("FINISHED", "FAILED", "KILLED"):
            assert time.monotonic() < deadline, f"{app_id} did not finish within {APP_TIMEOUT}s"
            time.sleep(1)
    finally:
        if str(skein_client.application_report(app_id).state) not in ("FINISHED", "FAILED", "KILLED"):
            skein_client.kill_application(app_id)
    assert str(report.final_status) == "SUCCEEDED", report.diagnostics
