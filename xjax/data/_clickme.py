"""ClickMe (Linsley et al., ICLR 2019) human feature-importance maps from local TFRecord shards,
read without TensorFlow and converted once into a tensorflow-datasets ``array_record`` dataset.

The public shards (``train-*.tfrecords``, ``val-*.tfrecords``) hold ``tf.train.Example`` records
with ``image`` (JPEG 256x256x3), ``heatmap`` (JPEG 256x256x1) and ``label`` (int64 ImageNet
index). The TFRecord framing and the protobuf wire format are parsed here directly (CRC32C of
every length is checked; of the payload on request), JPEGs are decoded with Pillow.
"""

import functools
import glob
import io
import os
import struct
from collections.abc import Iterator

import numpy as np

__all__ = ["CLICKME_URL", "clickme", "clickme_preprocess", "encode_example", "read_tfrecord",
           "parse_example", "write_tfrecord"]

CLICKME_URL = ("https://storage.googleapis.com/serrelab/prj_harmonization/dataset/click-me/"
               "{train/train-<i>,val/val-<i>}.tfrecords")
_DEFAULT_DATA_DIR = os.path.join(os.path.expanduser("~"), ".cache", "xjax", "tensorflow_datasets")


@functools.cache
def _crc_table():
    poly = 0x82F63B78                                   # CRC-32C (Castagnoli), reflected
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    return table


def _crc32c(data: bytes) -> int:
    table, c = _crc_table(), 0xFFFFFFFF
    for b in data:
        c = table[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def _masked_crc(data: bytes) -> int:
    c = _crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_tfrecord(path: str, *, verify_data: bool = False) -> Iterator[bytes]:
    """Yield the payloads of a TFRecord file: ``u64 length, u32 masked crc32c(length), payload,
    u32 masked crc32c(payload)``."""
    with open(path, "rb") as f:
        while True:
            head = f.read(12)
            if not head:
                return
            if len(head) < 12:
                raise ValueError(f"read_tfrecord: {path!r} is truncated")
            length, crc = struct.unpack("<QI", head)
            if _masked_crc(head[:8]) != crc:
                raise ValueError(f"read_tfrecord: {path!r} has a corrupt record length")
            data = f.read(length)
            (dcrc,) = struct.unpack("<I", f.read(4))
            if len(data) < length:
                raise ValueError(f"read_tfrecord: {path!r} is truncated")
            if verify_data and _masked_crc(data) != dcrc:
                raise ValueError(f"read_tfrecord: {path!r} has a corrupt record")
            yield data


def write_tfrecord(path: str, payloads) -> None:
    """Write payloads in the TFRecord framing (for tests and for exporting)."""
    with open(path, "wb") as f:
        for data in payloads:
            head = struct.pack("<Q", len(data))
            f.write(head + struct.pack("<I", _masked_crc(head)) + data
                    + struct.pack("<I", _masked_crc(data)))


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = buf[i]
        result |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            return result, i
        shift += 7


def _fields(buf: bytes):
    """(field number, wire type, value) of a protobuf message (bytes for length-delimited)."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 1:
            value, i = buf[i:i + 8], i + 8
        elif wire == 2:
            n, i = _varint(buf, i)
            value, i = buf[i:i + n], i + n
        elif wire == 5:
            value, i = buf[i:i + 4], i + 4
        else:
            raise ValueError(f"parse_example: unsupported protobuf wire type {wire}")
        yield num, wire, value


def _feature(buf: bytes):
    for num, _, value in _fields(buf):
        if num == 1:                                         # BytesList
            return [v for n, _, v in _fields(value) if n == 1]
        if num == 2:                                         # FloatList (packed or not)
            out = []
            for n, w, v in _fields(value):
                if n == 1:
                    out += list(struct.unpack(f"<{len(v) // 4}f", v)) if w == 2 else \
                        [struct.unpack("<f", v)[0]]
            return out
        if num == 3:                                         # Int64List (packed or not)
            out = []
            for n, w, v in _fields(value):
                if n == 1 and w == 2:
                    j = 0
                    while j < len(v):
                        x, j = _varint(v, j)
                        out.append(x - (1 << 64) if x >= 1 << 63 else x)
                elif n == 1:
                    out.append(v - (1 << 64) if v >= 1 << 63 else v)
            return out
    return []


def parse_example(payload: bytes) -> dict:
    """A serialized ``tf.train.Example`` as ``{name: list of bytes | float | int}``."""
    out = {}
    for num, _, features in _fields(payload):
        if num != 1:
            continue
        for n, _, entry in _fields(features):
            if n != 1:
                continue
            key, value = None, []
            for m, _, v in _fields(entry):
                if m == 1:
                    key = v.decode()
                elif m == 2:
                    value = _feature(v)
            out[key] = value
    return out


def _len_delimited(num: int, data: bytes) -> bytes:
    out, n = bytearray([(num << 3) | 2]), len(data)
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out) + data


def _varint_bytes(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def encode_example(features: dict) -> bytes:
    """Serialize ``{name: bytes | int | float | list of them}`` as a ``tf.train.Example``."""
    entries = b""
    for key, value in features.items():
        vals = value if isinstance(value, list) else [value]
        if all(isinstance(v, bytes) for v in vals):
            feat = _len_delimited(1, b"".join(_len_delimited(1, v) for v in vals))
        elif all(isinstance(v, (int, np.integer)) for v in vals):
            feat = _len_delimited(3, _len_delimited(1, b"".join(_varint_bytes(int(v))
                                                                for v in vals)))
        else:
            feat = _len_delimited(2, _len_delimited(1, struct.pack(f"<{len(vals)}f", *vals)))
        entries += _len_delimited(1, _len_delimited(1, key.encode()) + _len_delimited(2, feat))
    return _len_delimited(1, entries)


def _decode(jpeg: bytes, channels: int) -> np.ndarray:
    from PIL import Image

    img = Image.open(io.BytesIO(jpeg))
    img = img.convert("RGB" if channels == 3 else "L")
    a = np.asarray(img, np.uint8)
    return a if channels == 3 else a[..., None]


def _shards(source_dir: str, split: str) -> list[str]:
    if not os.path.isdir(source_dir):
        raise FileNotFoundError(
            f"source_dir: {source_dir!r} does not exist. Download the ClickMe TFRecord shards "
            f"({CLICKME_URL}; 318 train and 17 val shards of 256x256 images, JPEG heatmaps and "
            "ImageNet labels) and put them, named train-<i>.tfrecords and val-<i>.tfrecords, in "
            "one directory passed as source_dir.")
    found = sorted(glob.glob(os.path.join(source_dir, f"{split}-*.tfrecords")),
                   key=lambda p: int(os.path.basename(p).split("-")[1].split(".")[0]))
    if not found:
        raise FileNotFoundError(
            f"source_dir: no {split}-<i>.tfrecords shard in {source_dir!r}. Download them from "
            f"{CLICKME_URL} into that directory.")
    return found


@functools.cache
def _builder_class():
    import tensorflow_datasets as tfds

    class ClickMeLocal(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        """ClickMe maps from local TFRecord shards (no download, no TensorFlow)."""

        VERSION = tfds.core.Version("1.0.0")

        def __init__(self, *, source_dir, size, **kwargs):
            self._source_dir, self._size = source_dir, size
            super().__init__(**kwargs)

        def _info(self):
            s = self._size
            return tfds.core.DatasetInfo(
                builder=self,
                features=tfds.features.FeaturesDict({
                    "image": tfds.features.Tensor(shape=(s, s, 3), dtype=np.uint8),
                    "heatmap": tfds.features.Tensor(shape=(s, s, 1), dtype=np.uint8),
                    "label": tfds.features.Scalar(dtype=np.int64)}),
                disable_shuffling=True,
                homepage="https://serre-lab.github.io/Harmonization/")

        def _split_generators(self, dl_manager):
            del dl_manager
            return {split: self._generate_examples(split) for split in ("train", "val")
                    if glob.glob(os.path.join(self._source_dir, f"{split}-*.tfrecords"))}

        def _generate_examples(self, split):
            for path in _shards(self._source_dir, split):
                name = os.path.basename(path)
                for i, payload in enumerate(read_tfrecord(path)):
                    ex = parse_example(payload)
                    yield f"{name}:{i}", {"image": _decode(ex["image"][0], 3),
                                          "heatmap": _decode(ex["heatmap"][0], 1),
                                          "label": int(ex["label"][0])}

    return ClickMeLocal


def clickme(split: str = "val", *, source_dir: str, data_dir: str | None = None,
            image_size: int = 256):
    """ClickMe as a random-access ``data_source`` (converted once to ``array_record``).

    Args:
      split: ``"train"`` or ``"val"`` (the shards present in ``source_dir``).
      source_dir: directory holding ``train-<i>.tfrecords`` / ``val-<i>.tfrecords``.
      data_dir: where the prepared dataset lives (default ``~/.cache/xjax/tensorflow_datasets``).
      image_size: side of the stored images and maps (256 in the release).

    Returns:
      A sequence of ``{"image": u8[S, S, 3], "heatmap": u8[S, S, 1], "label": int}``; see
      :func:`clickme_preprocess` for the reference preprocessing.

    Raises:
      FileNotFoundError: the directory or its shards are missing (the message says where to get
        them).
    """
    if split not in ("train", "val"):
        raise ValueError(f"clickme: split must be 'train' or 'val', got {split!r}")
    _shards(source_dir, split)
    builder = _builder_class()(source_dir=os.path.abspath(source_dir), size=image_size,
                               data_dir=data_dir or _DEFAULT_DATA_DIR,
                               file_format="array_record")
    builder.download_and_prepare()
    return builder.as_data_source(split=split)


def clickme_preprocess(image: np.ndarray, heatmap: np.ndarray, *, size: int = 224):
    """The harmonization code's preprocessing: image bilinear-resized to ``size`` in [0, 1];
    heatmap resized to 64, blurred by a 10x10 Gaussian (sigma 10, normalized), resized to
    ``size``. Returns ``(f32[N, size, size, 3], f32[N, size, size])`` for batched inputs."""
    import jax
    import jax.numpy as jnp

    img = jnp.asarray(image, jnp.float32) / 255.0
    hm = jnp.asarray(heatmap, jnp.float32)[..., 0]
    n = img.shape[0]
    img = jax.image.resize(img, (n, size, size, 3), "bilinear")
    hm = jax.image.resize(hm, (n, 64, 64), "bilinear")
    ax = jnp.arange(10.0) - 4.5
    g = jnp.exp(-(ax ** 2) / (2 * 10.0 ** 2))
    k = jnp.outer(g, g)
    k = (k / k.sum())[:, :, None, None]
    hm = jax.lax.conv_general_dilated(hm[..., None], k, (1, 1), "SAME",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))[..., 0]
    return img, jax.image.resize(hm, (n, size, size), "bilinear")
