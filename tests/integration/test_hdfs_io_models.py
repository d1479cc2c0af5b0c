"""SavedModel export, checkpoints and TensorBoard summaries on the real cluster, with tiny Keras models."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from hdfs_io import HdfsBackupAndRestore, complete_checkpoints, export, fs
from hdfs_io.summaries import HdfsTensorBoard

pytestmark = pytest.mark.integration

X = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
Y = (X.sum(axis=1, keepdims=True) > 0).astype("float32")


def _model(seed: int = 1):
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    return model


def _serve(uri: str, tmp_path) -> np.ndarray:
    local = fs.get(uri, str(tmp_path / "served"))
    loaded = tf.saved_model.load(local)
    out = loaded.signatures["serving_default"](tf.constant(X[:2]))
    return next(iter(out.values())).numpy()


def test_export_versions_atomically_with_success_and_retention(hdfs_tmp, tmp_path):
    model = _model()
    base = f"{hdfs_tmp}/models/mnist"
    assert export.latest_version(base) is None
    v1 = export.export_saved_model(model, base)
    assert v1.endswith("/models/mnist/1")
    names = {e.name for e in fs.ls(v1)}
    assert {"saved_model.pb", "variables", "_SUCCESS"} <= names
    assert [e.name for e in fs.ls(base)] == ["1"]  # no temporary folder left beside it
    np.testing.assert_allclose(_serve(v1, tmp_path), model.predict(X[:2], verbose=0), rtol=1e-5)

    # an incomplete version (no _SUCCESS) and a half-uploaded temp folder are never "latest"
    fs.makedirs(f"{base}/7")
    fs.makedirs(f"{base}/.tmp-9-abc")
    assert export.latest_version(base) == 1
    v8 = export.export_saved_model(model, base)  # one more than any integer folder
    assert v8.endswith("/8") and export.latest_version(base) == 8
    export.export_saved_model(model, base, version=20, keep=2)
    assert export.list_versions(base) == [8, 20]
    assert not fs.exists(f"{base}/1")
    with pytest.raises(FileExistsError, match="20"):
        export.export_saved_model(model, base, version=20)


def test_export_with_tf_saved_model_save(hdfs_tmp, tmp_path):
    class Doubler(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
        def __call__(self, x):
            return {"y": 2 * x}

    module = Doubler()
    uri = export.export_saved_model(module, hdfs_tmp, version=3, signatures=module.__call__)
    np.testing.assert_allclose(_serve(uri, tmp_path), 2 * X[:2])


def test_only_the_chief_publishes(hdfs_tmp):
    from tfnode.context import NodeContext

    worker = NodeContext(job_name="worker", task_index=1, cluster_spec={"chief": ["h:1"], "worker": ["h:2", "h:3"]})
    assert not worker.is_chief
    assert export.export_saved_model(_model(), f"{hdfs_tmp}/m", ctx=worker) is None
    assert not fs.exists(f"{hdfs_tmp}/m")  # <base> untouched
    assert export.export_saved_model(_model(), f"{hdfs_tmp}/m", is_chief=True).endswith("/m/1")


class _Crash(Exception):
    pass


class _CrashAfter:
    """A callback that 'loses the process' at the end of a given epoch (after the checkpoint callback ran)."""

    def __new__(cls, epoch: int):
        import keras

        class Crash(keras.callbacks.Callback):
            def on_epoch_end(self, e, logs=None):
                if e == epoch:
                    raise _Crash(f"lost after epoch {e}")

        return Crash()


def test_checkpoints_resume_from_latest_complete(hdfs_tmp):
    ckpt_dir = f"{hdfs_tmp}/backup"
    model = _model()
    with pytest.raises(_Crash):
        model.fit(X, Y, epochs=5, verbose=0, callbacks=[HdfsBackupAndRestore(ckpt_dir, keep=2), _CrashAfter(2)])
    assert complete_checkpoints(ckpt_dir) == [2, 3]  # last two kept
    saved = model.get_weights()

    # a half-written newer checkpoint (upload interrupted before the rename) must be ignored
    fs.makedirs(f"{ckpt_dir}/ckpt-4.tmp")
    fs.write_bytes(f"{ckpt_dir}/ckpt-4.tmp/model.weights.h5", b"garbage")
    fs.makedirs(f"{ckpt_dir}/ckpt-9")  # and so must a folder without both files

    fresh = _model(seed=99)
    assert not np.allclose(fresh.get_weights()[0], saved[0])
    restore = HdfsBackupAndRestore(ckpt_dir, keep=2)
    seen = []

    import keras

    class Epochs(keras.callbacks.Callback):
        def on_epoch_begin(self, e, logs=None):
            seen.append(e)
            if e == 3:
                for a, b in zip(self.model.get_weights(), saved, strict=True):
                    np.testing.assert_allclose(a, b)

    fresh.fit(X, Y, epochs=5, verbose=0, callbacks=[restore, Epochs()])
    assert restore.restored_epoch == 3 and seen == [3, 4]
    assert complete_checkpoints(ckpt_dir)[-2:] == [4, 5]


def _backed_up(ckpt_dir: str, keep: int = 1):
    model = _model()
    model.fit(X, Y, epochs=1, verbose=0)  # built, with an optimizer state
    cb = HdfsBackupAndRestore(ckpt_dir, keep=keep)
    cb.set_model(model)
    return model, cb


def test_a_second_writer_on_one_backup_dir_leaves_a_complete_checkpoint(hdfs_tmp):
    """A zombie chief (or two jobs on one backup_dir) writing the same epoch while this one is mid-save: before,
    both used `ckpt-<n>.tmp` and the second deleted the first's files; each writer now has a name of its own."""
    ckpt_dir = f"{hdfs_tmp}/backup"
    model_a, a = _backed_up(ckpt_dir)
    _, b = _backed_up(ckpt_dir)
    save = model_a.save_weights
    seen: list[list[str]] = []

    def save_while_the_other_writes(path, *args, **kwargs):
        b.on_epoch_end(0)  # the other writer publishes epoch 1 from start to end
        seen.append(sorted(f.name for f in fs.ls(ckpt_dir)))
        return save(path, *args, **kwargs)

    model_a.save_weights = save_while_the_other_writes
    a.on_epoch_end(0)
    ours = seen[0][0] if len(seen) == 1 else ""
    assert ours.startswith(".ckpt-1.") and ours.endswith(".tmp") and "ckpt-1" in seen[0]  # ours survived
    assert complete_checkpoints(ckpt_dir) == [1]
    assert [f.name for f in fs.ls(ckpt_dir)] == ["ckpt-1"]  # and nothing left behind


def test_a_failure_while_publishing_keeps_the_checkpoint_there(hdfs_tmp, monkeypatch):
    """Before, a re-written epoch deleted the complete `ckpt-<n>` and then renamed: a kill between left none
    (keep=1). A complete checkpoint is now never deleted before its replacement is in place."""
    ckpt_dir = f"{hdfs_tmp}/backup"
    _, first = _backed_up(ckpt_dir)
    first.on_epoch_end(0)
    _, again = _backed_up(ckpt_dir)
    real_rename = fs.rename

    def dies_at_rename(src, dst, *args, **kwargs):
        if dst.endswith("/ckpt-1"):
            raise ConnectionError("killed")
        return real_rename(src, dst, *args, **kwargs)

    monkeypatch.setattr(fs, "rename", dies_at_rename)
    with pytest.raises(ConnectionError):
        again.on_epoch_end(0)
    monkeypatch.setattr(fs, "rename", real_rename)
    assert complete_checkpoints(ckpt_dir) == [1]
    again.on_epoch_end(1)
    assert complete_checkpoints(ckpt_dir) == [2]


def test_non_chief_checkpoints_do_not_touch_hdfs(hdfs_tmp):
    _model().fit(X, Y, epochs=1, verbose=0, callbacks=[HdfsBackupAndRestore(f"{hdfs_tmp}/b", is_chief=False)])
    assert not fs.exists(f"{hdfs_tmp}/b")


def test_tensorboard_summaries_land_on_hdfs(hdfs_tmp):
    logdir = f"{hdfs_tmp}/tb"
    seen_after_epoch = []
    import keras

    class Probe(keras.callbacks.Callback):
        def on_epoch_end(self, e, logs=None):
            seen_after_epoch.append(len(fs.ls(logdir, recursive=True)) if fs.exists(logdir) else 0)

    tb = HdfsTensorBoard(logdir)
    _model().fit(X, Y, epochs=2, verbose=0, validation_data=(X, Y), callbacks=[tb, Probe()])
    assert seen_after_epoch[0] > 0  # synced at the first epoch end already
    files = [e for e in fs.ls(logdir, recursive=True) if not e.is_dir]
    assert {"train", "validation"} <= {e.uri.split("/tb/", 1)[1].split("/")[0] for e in files}
    assert not any(e.name.endswith(".tmp") for e in files)

    # the event files on HDFS hold the scalars, with the plugin metadata TensorBoard's scalar dashboard needs
    import tempfile

    train = next(e for e in files if "/train/" in e.uri and "tfevents" in e.name)
    local = fs.get(train.uri, tempfile.mkdtemp() + "/" + train.name)
    values = {}
    for event in tf.compat.v1.train.summary_iterator(local):
        for v in event.summary.value:
            assert v.metadata.plugin_data.plugin_name == "scalars"
            values.setdefault(v.tag, []).append((event.step, float(tf.make_ndarray(v.tensor))))
    assert [step for step, _ in values["epoch_loss"]] == [0, 1]
    assert "epoch_learning_rate" in values
