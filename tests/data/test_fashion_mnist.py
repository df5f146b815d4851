import gzip
import os

import numpy as np
import pytest

import xjax
from tests.conftest import FASHION_MNIST_PRESENT


def _write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def tiny_idx_dir(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "src"
    src.mkdir()
    data = {}
    for split, prefix, n in (("train", "train", 12), ("test", "t10k", 5)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        _write_idx(src / f"{prefix}-images-idx3-ubyte.gz", images)
        _write_idx(src / f"{prefix}-labels-idx1-ubyte.gz", labels)
        data[split] = (images, labels)
    return src, tmp_path / "tfds", data


def test_builder_round_trips_idx_files_in_order(tiny_idx_dir):
    src, data_dir, data = tiny_idx_dir
    for split in ("train", "test"):
        source = xjax.data.fashion_mnist(split, source_dir=str(src), data_dir=str(data_dir))
        images, labels = data[split]
        assert len(source) == len(images)
        np.testing.assert_array_equal(source[3]["image"][..., 0], images[3])
        x, y = xjax.data.fashion_mnist_arrays(split, source_dir=str(src), data_dir=str(data_dir))
        assert x.dtype == np.float32 and x.shape == (len(images), 28, 28, 1)
        np.testing.assert_allclose(x[..., 0], images / 255.0, atol=1e-7)
        np.testing.assert_array_equal(y, labels)
    # array_record files were written, and reading did not import TensorFlow
    assert any(f.endswith(".array_record-00000-of-00001") or "array_record" in f
               for _, _, files in os.walk(data_dir) for f in files)
    import sys
    assert "tensorflow" not in sys.modules


def test_missing_directory_names_the_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte.*apt-get install "
                                                "dataset-fashion-mnist"):
        xjax.data.fashion_mnist("test", source_dir=str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="split"):
        xjax.data.fashion_mnist("validation")


def test_read_idx_rejects_other_files(tmp_path):
    p = tmp_path / "bad.gz"
    with gzip.open(p, "wb") as f:
        f.write(b"\x00\x00\x0d\x01abcd")
    with pytest.raises(ValueError, match="IDX"):
        xjax.data.read_idx(str(p))


@pytest.mark.skipif(not FASHION_MNIST_PRESENT,
                    reason="Fashion-MNIST not in /usr/share/datasets/fashion-mnist "
                           "(apt-get install dataset-fashion-mnist)")
def test_real_fashion_mnist_and_shipped_model_accuracy(fmnist_cnn):
    x, y = xjax.data.fashion_mnist_arrays("test")
    assert x.shape == (10000, 28, 28, 1)
    assert np.bincount(y).tolist() == [1000] * 10
    accuracy = xjax.train.evaluate(fmnist_cnn.model_fn, fmnist_cnn.params, x, y)
    assert accuracy >= 0.90
    from xjax.models._small_cnn import pretrained_info
    assert abs(accuracy - pretrained_info()["test_accuracy"]) < 1e-3
