"""Fashion-MNIST (Xiao et al., 2017; MIT) from local IDX files, through tensorflow-datasets.

The IDX files are read from a directory (default: where Debian's ``dataset-fashion-mnist``
package installs them), converted once by a tensorflow-datasets builder into ``array_record``
files, and read back with ``data_source`` random access. TensorFlow is never imported and nothing
is downloaded.
"""

import functools
import gzip
import os

import numpy as np
from jaxtyping import Float, Int

__all__ = ["FASHION_MNIST_DIR", "fashion_mnist", "fashion_mnist_arrays", "read_idx"]

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
_DEFAULT_DATA_DIR = os.path.join(os.path.expanduser("~"), ".cache", "xjax", "tensorflow_datasets")
_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def read_idx(path: str) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw): magic ``0 0 type ndim``, big-endian dims, data."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"path: {path!r} is not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"path: {path!r} is truncated ({data.size} bytes for dims {dims})")
    return data.reshape(dims)


def _find(source_dir: str, stem: str) -> str | None:
    for name in (stem + ".gz", stem):
        if os.path.isfile(os.path.join(source_dir, name)):
            return os.path.join(source_dir, name)
    return None


def _check_source(source_dir: str) -> dict[str, tuple[str, str]]:
    found, missing = {}, []
    for split, stems in _FILES.items():
        paths = tuple(_find(source_dir, s) for s in stems)
        missing += [s + "[.gz]" for s, p in zip(stems, paths, strict=True) if p is None]
        found[split] = paths
    if missing:
        raise FileNotFoundError(
            f"source_dir: Fashion-MNIST IDX files not found in {source_dir!r} (missing: "
            f"{', '.join(missing)}). Install them with `sudo apt-get install dataset-fashion-mnist`"
            f" (Debian/Ubuntu, puts them in {FASHION_MNIST_DIR}), or download the four files from "
            "https://github.com/zalandoresearch/fashion-mnist (data/fashion) into a directory and "
            "pass source_dir=<that directory>.")
    return found


@functools.cache
def _builder_class():
    import tensorflow_datasets as tfds

    class FashionMnistLocal(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        """Fashion-MNIST from local IDX files (no download)."""

        VERSION = tfds.core.Version("1.0.0")

        def __init__(self, *, paths, **kwargs):
            self._paths = paths
            super().__init__(**kwargs)

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                features=tfds.features.FeaturesDict({
                    "image": tfds.features.Tensor(shape=(28, 28, 1), dtype=np.uint8),
                    "label": tfds.features.ClassLabel(num_classes=10)}),
                supervised_keys=("image", "label"),
                disable_shuffling=True,
                homepage="https://github.com/zalandoresearch/fashion-mnist")

        def _split_generators(self, dl_manager):
            del dl_manager  # nothing is downloaded
            return {split: self._generate_examples(split) for split in _FILES}

        def _generate_examples(self, split):
            images, labels = (read_idx(p) for p in self._paths[split])
            for i in range(len(images)):
                yield i, {"image": images[i][..., None], "label": int(labels[i])}

    return FashionMnistLocal


def _builder(source_dir: str, data_dir: str):
    return _builder_class()(paths=_check_source(source_dir), data_dir=data_dir,
                            file_format="array_record")


def fashion_mnist(split: str = "train", *, source_dir: str = FASHION_MNIST_DIR,
                  data_dir: str | None = None):
    """Fashion-MNIST as a random-access tensorflow-datasets ``data_source``.

    The first call converts the IDX files to ``array_record`` under ``data_dir`` (a few
    seconds); later calls reuse them.

    Args:
      split: ``"train"`` (60,000 images) or ``"test"`` (10,000).
      source_dir: directory holding ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``.
      data_dir: where the prepared dataset lives (default ``~/.cache/xjax/tensorflow_datasets``).

    Returns:
      A sequence; item ``i`` is ``{"image": u8[28, 28, 1], "label": int}`` in the files' order.

    Raises:
      ValueError: unknown split.
      FileNotFoundError: the IDX files are not in ``source_dir`` (the message says how to get them).
    """
    if split not in _FILES:
        raise ValueError(f"fashion_mnist: split must be 'train' or 'test', got {split!r}")
    builder = _builder(source_dir, data_dir or _DEFAULT_DATA_DIR)
    builder.download_and_prepare()
    return builder.as_data_source(split=split)


def fashion_mnist_arrays(split: str = "train", *, source_dir: str = FASHION_MNIST_DIR,
                         data_dir: str | None = None
                         ) -> tuple[Float[np.ndarray, "N 28 28 1"], Int[np.ndarray, " N"]]:
    """The whole split as arrays: ``x: f32[N, 28, 28, 1]`` in [0, 1] and ``y: i32[N]``."""
    source = fashion_mnist(split, source_dir=source_dir, data_dir=data_dir)
    items = source.__getitems__(list(range(len(source))))
    x = np.stack([it["image"] for it in items]).astype(np.float32) / 255.0
    y = np.array([it["label"] for it in items], np.int32)
    return x, y
