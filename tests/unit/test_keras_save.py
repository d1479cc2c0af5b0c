"""hdfs_io.keras_save without a cluster: the non-seekable stream zipfile writes through, and the wrapper's routing
(the hdfs:// side is tests/integration/test_tf_hdfs_filesystem.py)."""

from __future__ import annotations

import io
import zipfile

from hdfs_io import keras_save


class _Collect:
    """What the stream needs of a GFile: write()."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> None:
        assert type(data) is bytes  # GFile.write takes bytes (or str), not memoryviews
        self.parts.append(data)


def test_zipfile_writes_a_whole_archive_through_the_stream_without_seeking():
    sink = _Collect()
    stream = keras_save._Stream(sink)
    with zipfile.ZipFile(stream, "w") as zf:
        with zf.open("model.weights.h5", "w") as f:
            f.write(memoryview(b"\x00" * 100_000))
        zf.writestr("config.json", "{}")
    data = b"".join(sink.parts)
    assert stream.tell() == len(data) and not stream.seekable()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        infos = zf.infolist()
        assert [i.filename for i in infos] == ["model.weights.h5", "config.json"]
        assert all(i.flag_bits & 0x08 for i in infos)  # sizes after the data: nothing was seeked back to
        assert zf.read("model.weights.h5") == b"\x00" * 100_000


def test_install_wraps_once_and_leaves_local_paths_to_keras(tmp_path):
    import keras
    import numpy as np
    from keras.src.saving import saving_lib

    keras_save.install(keras)
    wrapped = saving_lib.save_model
    keras_save.install(keras)
    assert saving_lib.save_model is wrapped and wrapped._tfoy_streamed
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.save(tmp_path / "m.keras")  # a Path, and a local one: Keras's own way
    x = np.ones((1, 3), "float32")
    np.testing.assert_allclose(keras.models.load_model(tmp_path / "m.keras").predict(x, verbose=0),
                               model.predict(x, verbose=0))
