"""Unit tests of what nodes do before user code: post-import hooks, the Keras choice, the job spec's `keras` key."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tfnode import keras_compat
from yarn_app.application import Shipping, build_application_spec
from yarn_app.spec import JobSpec, SpecError


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_hook_runs_after_first_import_and_at_once_when_imported():
    out = _run("""
        import sys
        from hdfs_io.import_hooks import when_imported
        calls = []
        when_imported("os", lambda m: calls.append(("os", hasattr(m, "path"))))
        assert "colorsys" not in sys.modules
        when_imported("colorsys", lambda m: calls.append(("colorsys", hasattr(m, "rgb_to_hsv"))))
        print(calls)
        import colorsys, importlib.util
        importlib.util.find_spec("colorsys")  # looking again runs nothing twice
        print(calls)
    """)
    before, after = out.splitlines()
    assert before == "[('os', True)]"  # os is imported by Python itself already
    assert after == "[('os', True), ('colorsys', True)]"


def test_a_failing_hook_never_breaks_the_import():
    out = _run("""
        from hdfs_io.import_hooks import when_imported
        when_imported("colorsys", lambda m: 1 / 0)
        import colorsys
        print(colorsys.rgb_to_hsv(1, 0, 0))
    """)
    assert out.strip() == "(0.0, 1.0, 1)"


def test_importing_hdfs_io_does_not_import_tensorflow():
    assert _run("import sys, hdfs_io; print('tensorflow' in sys.modules)").strip() == "False"


def test_keras_choice(monkeypatch):
    monkeypatch.delenv(keras_compat.LEGACY_ENV, raising=False)
    assert keras_compat.chosen_keras(None) is None
    assert keras_compat.chosen_keras(2) == 2
    assert keras_compat.chosen_keras(None, {"spark.executorEnv.TF_USE_LEGACY_KERAS": "1"}) == 2
    assert keras_compat.chosen_keras(None, {"spark.executorEnv.TF_USE_LEGACY_KERAS": "false"}) == 3
    monkeypatch.setenv(keras_compat.LEGACY_ENV, "True")
    assert keras_compat.chosen_keras(None) == 2
    assert keras_compat.chosen_keras(3) == 3
    with pytest.raises(ValueError, match="keras: 2 or 3"):
        keras_compat.chosen_keras(4)
    assert keras_compat.keras_env(2) == {"TF_USE_LEGACY_KERAS": "1"}


BASE = {"entry_point": "toy_train:main", "roles": {"chief": {}, "worker": {"instances": 2}}}


def test_spec_keras_key_sets_the_tasks_environment():
    assert JobSpec.from_dict(BASE).keras == 3
    spec = JobSpec.from_dict({**BASE, "keras": 2})
    app = build_application_spec(spec, Shipping(code_zip="/tmp/code.zip", python=sys.executable))
    assert all(s.env["TF_USE_LEGACY_KERAS"] == "1" for s in app.services.values())
    explicit = JobSpec.from_dict({**BASE, "keras": 2, "env": {"TF_USE_LEGACY_KERAS": "0"}})
    app = build_application_spec(explicit, Shipping(code_zip="/tmp/code.zip", python=sys.executable))
    assert app.services["chief"].env["TF_USE_LEGACY_KERAS"] == "0"  # the spec's own env wins
    for bad in (4, "2", True):
        with pytest.raises(SpecError, match="^keras: "):
            JobSpec.from_dict({**BASE, "keras": bad})
