"""The env archive's key follows content (not only name==version), and the visibility rules, without a cluster.

The key tests run env_key against a small fake site-packages; the real venv is only timed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from yarn_app import env_archive, python_env
from yarn_app.application import Shipping, build_application_spec
from yarn_app.spec import JobSpec

SPEC = {"entry_point": "toy_train:main", "roles": {"chief": {}, "worker": {"instances": 1}}}


def _hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def install(site: Path, name: str, version: str, files: dict[str, bytes], direct: bool = False) -> Path:
    """What pip leaves in site-packages for a wheel: the files, METADATA and a RECORD with each file's sha256."""
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nA long description.\n")
    if direct:
        (info / "direct_url.json").write_text(json.dumps({"url": f"file:///src/{name}", "dir_info": {}}))
    rows = []
    for rel, data in files.items():
        path = site / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        rows.append(f"{rel},{_hash(data)},{len(data)}")
    for meta in sorted(info.iterdir()):
        rows.append(f"{info.name}/{meta.name},{_hash(meta.read_bytes())},{meta.stat().st_size}")
    rows.append(f"{info.name}/RECORD,,")
    (info / "RECORD").write_text("\n".join(rows) + "\n")
    return info


@pytest.fixture
def site(tmp_path, monkeypatch) -> Path:
    """A fake site-packages that env_key (and pack) take as the venv's; also on sys.path, where the key looked
    for distributions before it looked at site-packages only."""
    site = tmp_path / "site-packages"
    site.mkdir()
    monkeypatch.setattr(python_env, "_site_packages", lambda prefix: site)
    monkeypatch.syspath_prepend(str(site))
    install(site, "numpy", "2.0.0", {"numpy/__init__.py": b"x = 1\n"})
    return site


def test_a_reinstall_with_other_content_but_the_same_version_changes_the_key(site):
    install(site, "fancylib", "1.0", {"fancylib/__init__.py": b"def f():\n    return 1\n"})
    before = python_env.env_key()
    assert python_env.env_key() == before  # stable
    install(site, "fancylib", "1.0", {"fancylib/__init__.py": b"def f():\n    return 2  # patched\n"})
    assert python_env.env_key() != before


def test_an_in_place_edit_of_a_direct_url_install_changes_the_key(site):
    """`pip install ./mylib` (direct_url.json), then mylib edited in site-packages: RECORD still says the old."""
    install(site, "mylib", "0.1", {"mylib/__init__.py": b"", "mylib/train.py": b"LR = 0.1\n"}, direct=True)
    before = python_env.env_key()
    train = site / "mylib" / "train.py"
    train.write_bytes(b"LR = 0.01\n")
    edited = python_env.env_key()
    assert edited != before
    os.utime(train, ns=(train.stat().st_atime_ns, train.stat().st_mtime_ns + 1_000_000_000))  # same size, touched
    assert python_env.env_key() != edited
    touched = python_env.env_key()
    (site / "mylib" / "extra.py").write_text("NEW = True\n")  # a file RECORD does not know of
    assert python_env.env_key() != touched


def test_a_distribution_without_record_is_keyed_by_its_files(site):
    egg = site / "oldlib-3.0-py3.11.egg-info"
    egg.mkdir()
    (egg / "PKG-INFO").write_text("Metadata-Version: 1.0\nName: oldlib\nVersion: 3.0\n\n")
    (site / "oldlib.py").write_text("VALUE = 1\n")
    before = python_env.env_key()
    (site / "oldlib.py").write_text("VALUE = 22\n")
    assert python_env.env_key() != before


def test_a_module_copied_into_site_packages_changes_the_key(site):
    before = python_env.env_key()
    (site / "sitecustomize.py").write_text("import os\n")
    assert python_env.env_key() != before


def test_bytecode_and_excluded_distributions_leave_the_key_alone(site):
    """What is never shipped must not cost a repack: .pyc written on import, pyspark (excluded), tfoy's own
    editable install (shipped as code) and pip (left out of the archive)."""
    install(site, "mylib", "0.1", {"mylib/__init__.py": b""}, direct=True)
    install(site, "pyspark", "4.0.0", {"pyspark/__init__.py": b""})
    install(site, "tfoy", "0.1.0", {"__editable___tfoy_0_1_0_finder.py": b"MAPPING = {}\n"}, direct=True)
    before = python_env.env_key()
    (site / "mylib" / "__pycache__").mkdir()
    (site / "mylib" / "__pycache__" / "__init__.cpython-311.pyc").write_bytes(b"\0" * 16)
    (site / "pyspark" / "__init__.py").write_text("patched = True\n")
    (site / "__editable___tfoy_0_1_0_finder.py").write_text("MAPPING = {'tfoy': '/elsewhere'}\n")
    (site / "pip").mkdir()
    (site / "pip" / "__init__.py").write_text("")
    assert python_env.env_key() == before
    assert python_env.env_key(("numpy",)) != before  # the exclusions are part of the key


def test_pack_and_key_agree_on_what_is_left_out(site):
    skip = python_env._top_level_excludes(site, python_env.DEFAULT_EXCLUDES)
    skipped = python_env._site_skipped
    assert skipped("pip/__init__.py", skip) and skipped("tensorflow/include/x.h", skip)
    assert not skipped("tensorflow/python/x.py", skip) and not skipped("numpy/x.py", skip)


def test_env_key_of_this_venv_stays_fast():
    """The key is computed on every submit: hashing the ~1.5 GB venv (seconds) would be paid each time."""
    python_env.env_key()  # imports and the OS's file cache
    started = time.perf_counter()
    key = python_env.env_key()
    elapsed = time.perf_counter() - started
    assert len(key) == 16 and elapsed < 3.0, f"env_key took {elapsed:.2f}s"


# ---- visibility --------------------------------------------------------------------------------------------------


class FakeNameNode:
    """get_file_info with permissions only: enough for hdfs_path_is_public."""

    def __init__(self, permissions: dict[str, int]) -> None:
        self.permissions = permissions

    def get_file_info(self, path: str) -> SimpleNamespace:
        return SimpleNamespace(permission=self.permissions[path])


def test_a_private_root_folder_makes_nothing_public():
    """The NodeManager checks o+x on every ancestor up to and including `/` (FSDownload.isPublic)."""
    tree = {"/": 0o755, "/data": 0o755, "/data/env.tar.gz": 0o644}
    assert env_archive.hdfs_path_is_public(FakeNameNode(tree), "/data/env.tar.gz")
    assert not env_archive.hdfs_path_is_public(FakeNameNode({**tree, "/": 0o750}), "/data/env.tar.gz")
    assert not env_archive.hdfs_path_is_public(FakeNameNode({**tree, "/data": 0o750}), "/data/env.tar.gz")
    assert not env_archive.hdfs_path_is_public(FakeNameNode({**tree, "/data/env.tar.gz": 0o640}), "/data/env.tar.gz")


def test_the_archive_is_localized_with_the_visibility_found_for_it():
    uri = "hdfs://nn:8020/user/u/.tfoy/envs/0123456789abcdef.tar.gz"
    spec = JobSpec.from_dict(SPEC)

    def visibility(**ship) -> str:
        app = build_application_spec(spec, Shipping(code_zip="/tmp/c.zip", env_archive=uri, **ship))
        return str(app.services["worker"].files["tfoy_env"].visibility)

    assert visibility(env_public=True) == "PUBLIC" and visibility(env_public=False) == "APPLICATION"
