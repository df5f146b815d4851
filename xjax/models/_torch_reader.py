"""A torch-free, restricted reader for PyTorch checkpoints (``.pth`` / ``.pt``).

Two on-disk formats exist:

* the *legacy* format (``torch.save`` before 1.6, or ``_use_new_zipfile_serialization=False``):
  a sequence of pickles (magic number, protocol version, system info, the object whose tensors
  point at storages through persistent ids, the list of storage keys), followed by every storage
  as a little-endian ``int64`` element count and its raw bytes;
* the *zip* format (the default since 1.6): an archive holding ``<name>/data.pkl`` and one raw
  file per storage under ``<name>/data/<key>``.

In both, a tensor is rebuilt from ``(storage, offset, size, stride)``. The unpickler resolves only
the handful of globals a state dict needs (tensor and parameter rebuilders, storage types,
``OrderedDict``), so a hostile file cannot run code: any other global raises
:class:`UnsafeCheckpointError`.
"""

import collections
import io
import os
import pickle
import struct
import zipfile
from typing import Any

import ml_dtypes
import numpy as np

__all__ = ["UnreadableCheckpointError", "UnsafeCheckpointError", "load_torch_checkpoint"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

_STORAGE_DTYPES = {
    "DoubleStorage": np.dtype("<f8"),
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class UnreadableCheckpointError(ValueError):
    """The file is not a PyTorch checkpoint this reader understands."""


class UnsafeCheckpointError(UnreadableCheckpointError):
    """The checkpoint asks for a Python global outside the allowed set."""


class _StorageType:
    def __init__(self, name: str):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]


class _LazyStorage:
    """A storage known by key; its bytes are attached once they are read."""

    def __init__(self, key: str, dtype: np.dtype):
        self.key = key
        self.dtype = dtype
        self.data: np.ndarray | None = None


class _TensorRef:
    def __init__(self, storage: _LazyStorage, offset: int, size: tuple, stride: tuple):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def materialize(self) -> np.ndarray:
        data = self.storage.data
        if data is None:
            raise UnreadableCheckpointError(f"storage {self.storage.key!r} was never read")
        itemsize = data.dtype.itemsize
        if not self.size:
            return data[self.offset].copy()
        needed = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride, strict=True)) + 1
        if min(self.size) > 0 and needed > data.size:
            raise UnreadableCheckpointError(
                f"tensor of size {self.size} runs past the end of storage {self.storage.key!r}")
        view = np.lib.stride_tricks.as_strided(
            data[self.offset:], shape=self.size, strides=[s * itemsize for s in self.stride])
        return np.ascontiguousarray(view)


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    del unused  # requires_grad, backward hooks, metadata
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *unused):
    del unused  # requires_grad, backward hooks
    return data


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, storages: dict[str, _LazyStorage]):
        super().__init__(file, encoding="utf-8")
        self._storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise UnsafeCheckpointError(
            f"checkpoint refers to the global {module}.{name}, which a weights file does not need;"
            " refusing to load it")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise UnreadableCheckpointError(f"unsupported persistent id {pid!r}")
        storage_type, key = pid[1], str(pid[2])
        if not isinstance(storage_type, _StorageType):
            raise UnreadableCheckpointError(f"unsupported storage type {storage_type!r}")
        if key not in self._storages:
            self._storages[key] = _LazyStorage(key, storage_type.dtype)
        return self._storages[key]


def _materialize(obj):
    if isinstance(obj, _TensorRef):
        return obj.materialize()
    if isinstance(obj, dict):
        return type(obj)((k, _materialize(v)) for k, v in obj.items()) if isinstance(
            obj, collections.OrderedDict) else {k: _materialize(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialize(v) for v in obj)
    return obj


def _load_legacy(f) -> Any:
    storages: dict[str, _LazyStorage] = {}
    magic = pickle.load(f)
    if magic != _LEGACY_MAGIC:
        raise UnreadableCheckpointError("not a PyTorch checkpoint (bad magic number)")
    protocol = pickle.load(f)
    if protocol != 1001:
        raise UnreadableCheckpointError(f"unsupported legacy protocol version {protocol}")
    sys_info = pickle.load(f)
    if not sys_info.get("little_endian", True):
        raise UnreadableCheckpointError("big-endian checkpoints are not supported")
    obj = _RestrictedUnpickler(f, storages).load()
    keys = pickle.load(f)
    for key in keys:
        storage = storages[str(key)]
        (count,) = struct.unpack("<q", f.read(8))
        raw = f.read(count * storage.dtype.itemsize)
        if len(raw) != count * storage.dtype.itemsize:
            raise UnreadableCheckpointError(f"file ends inside storage {key!r}")
        storage.data = np.frombuffer(raw, dtype=storage.dtype)
    return _materialize(obj)


def _load_zip(path) -> Any:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pkl) != 1:
            raise UnreadableCheckpointError("zip checkpoint without a single data.pkl")
        prefix = pkl[0][: -len("data.pkl")]
        byteorder = prefix + "byteorder"
        if byteorder in names and archive.read(byteorder).strip() != b"little":
            raise UnreadableCheckpointError("big-endian checkpoints are not supported")
        storages: dict[str, _LazyStorage] = {}
        obj = _RestrictedUnpickler(io.BytesIO(archive.read(pkl[0])), storages).load()
        for key, storage in storages.items():
            storage.data = np.frombuffer(archive.read(f"{prefix}data/{key}"), dtype=storage.dtype)
        return _materialize(obj)


def load_torch_checkpoint(path: str | os.PathLike) -> Any:
    """Read a PyTorch checkpoint into NumPy arrays, without importing torch.

    Args:
      path: a ``.pth``/``.pt`` file written by ``torch.save`` (legacy or zip format).

    Returns:
      The saved object (usually an ``OrderedDict`` state dict) with every tensor replaced by a
      ``numpy.ndarray`` of the same shape and dtype.

    Raises:
      FileNotFoundError: ``path`` does not exist.
      UnreadableCheckpointError: the file is not a PyTorch checkpoint, or is truncated.
      UnsafeCheckpointError: the pickle refers to a global a weights file does not need.

    Example:
      >>> state = load_torch_checkpoint(path)          # doctest: +SKIP
      >>> state["_conv_stem.weight"].shape             # doctest: +SKIP
      (32, 3, 3, 3)
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path: no checkpoint file at {path!r}")
    if zipfile.is_zipfile(path):
        try:
            return _load_zip(path)
        except (KeyError, zipfile.BadZipFile, pickle.UnpicklingError, EOFError) as e:
            raise UnreadableCheckpointError(f"path: cannot read zip checkpoint {path!r}: {e}") from e
    with open(path, "rb") as f:
        try:
            return _load_legacy(f)
        except (pickle.UnpicklingError, EOFError, KeyError, struct.error, AttributeError,
                TypeError, IndexError, ValueError) as e:
            if isinstance(e, UnreadableCheckpointError):
                raise
            raise UnreadableCheckpointError(
                f"path: {path!r} is not a readable PyTorch checkpoint ({type(e).__name__}: {e})") from e
