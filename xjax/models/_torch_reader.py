"""A torch-free, restricted reader for PyTorch checkpoints (``.pth`` / ``.pt``).

Two on-disk formats exist:

* the *legacy* format (``torch.save`` before 1.6, or ``_use_new_zipfile_serialization=False``):
  a sequence of pickles (magic number, protocol version, system info, the object whose tensors
  point at storages through persistent ids, the list of storage keys), followed by every storage
  as a little-endian ``int64`` element count and its raw bytes;
* the *zip* format (the default since 1.6): an archive holding ``<name>/data.pkl`` and one raw
  file per storage under ``<name>/data/<key>``.

In both, a tensor is rebuilt from ``(storage, offset, size, stride)``. Every pickle of either
format goes through one restricted unpickler: the legacy header pickles may hold plain data only,
and the main object resolves only the handful of globals a state dict needs (tensor and parameter
rebuilders, storage types, ``OrderedDict``), so a hostile file cannot run code: any other global
raises :class:`UnsafeCheckpointError`. Tensor metadata is checked before any view is taken
(non-negative offset, sizes and strides; every element inside its storage; storage lengths equal
to their records; known storage types), and any other defect of the file raises
:class:`UnreadableCheckpointError`, never a crash or an unnamed exception.
"""

import collections
import io
import os
import struct
import zipfile
from typing import Any

import ml_dtypes
import numpy as np

from xjax._internal.safepickle import Frozen, RestrictedUnpickler

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


class _Frozen(Frozen):
    """Objects the unpickler hands to a file: a BUILD opcode may not rewrite their fields."""

    __slots__ = ()

    def __setstate__(self, state):
        raise UnreadableCheckpointError(f"the file tries to set the state of a {type(self).__name__}")


class _StorageType(_Frozen):
    __slots__ = ("name", "dtype")

    def __init__(self, name: str):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]


class _LazyStorage(_Frozen):
    """A storage known by key; its bytes are attached once they are read."""

    __slots__ = ("key", "dtype", "numel", "data")

    def __init__(self, key: str, dtype: np.dtype, numel: int):
        self.key, self.dtype, self.numel = key, dtype, numel
        self.data: np.ndarray | None = None

    def attach(self, raw: bytes) -> None:
        if len(raw) != self.numel * self.dtype.itemsize:
            raise UnreadableCheckpointError(
                f"storage {self.key!r} holds {len(raw)} bytes; its record says {self.numel} elements"
                f" of {self.dtype.itemsize} bytes")
        self.data = np.frombuffer(raw, dtype=self.dtype)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int_tuple(v, what: str) -> tuple[int, ...]:
    if not (isinstance(v, (tuple, list)) and all(_is_int(n) and n >= 0 for n in v)):
        raise UnreadableCheckpointError(f"tensor {what} must be non-negative integers, got {v!r}")
    return tuple(v)


class _TensorRef(_Frozen):
    """A tensor's metadata, validated against its storage before any view is taken."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage, offset, size, stride):
        if not isinstance(storage, _LazyStorage):
            raise UnreadableCheckpointError(f"tensor storage must be a storage record, got {storage!r}")
        if not (_is_int(offset) and offset >= 0):
            raise UnreadableCheckpointError(
                f"tensor storage offset must be a non-negative int, got {offset!r}")
        size, stride = _int_tuple(size, "sizes"), _int_tuple(stride, "strides")
        if len(size) != len(stride):
            raise UnreadableCheckpointError(f"tensor has {len(size)} sizes but {len(stride)} strides")
        numel = int(np.prod(size, dtype=object)) if size else 1
        # The last element a view touches (none for an empty tensor); every element of the view
        # must lie inside the storage, and a view never has more elements than its storage (a
        # weights file holds no broadcast views, and this bounds what a file can make us allocate).
        extent = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True)) + 1 if numel else offset
        if extent > storage.numel or numel > storage.numel:
            raise UnreadableCheckpointError(
                f"tensor of size {size}, stride {stride} at offset {offset} does not fit in storage"
                f" {storage.key!r} of {storage.numel} elements")
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def materialize(self) -> np.ndarray:
        data = self.storage.data
        if data is None:
            raise UnreadableCheckpointError(f"storage {self.storage.key!r} was never read")
        if not self.size:
            return data[self.offset].copy()
        itemsize = data.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            data[self.offset:], shape=self.size, strides=[s * itemsize for s in self.stride],
            writeable=False)
        return np.ascontiguousarray(view)


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    del unused  # requires_grad, backward hooks, metadata
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *unused):
    del unused  # requires_grad, backward hooks
    if not isinstance(data, _TensorRef):
        raise UnreadableCheckpointError(f"a parameter must wrap a tensor, got {type(data).__name__}")
    return data


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


def _refuse(module: str, name: str) -> UnsafeCheckpointError:
    return UnsafeCheckpointError(
        f"checkpoint refers to the global {module}.{name}, which a weights file does not need;"
        " refusing to load it")


class _RestrictedUnpickler(RestrictedUnpickler):
    """The only unpickler the reader uses, for every pickle of either format.

    ``storages`` is ``None`` for the legacy format's header pickles (magic number, protocol,
    system info, storage keys), which are plain data: there every global and persistent id is
    refused. For the main object, only the globals a state dict needs resolve, and persistent ids
    must be storage records.
    """

    def __init__(self, file, storages: dict[str, _LazyStorage] | None):
        allowed = {} if storages is None else {
            **_ALLOWED_GLOBALS, **{("torch", n): _StorageType(n) for n in _STORAGE_DTYPES}}
        super().__init__(file, allowed=allowed, refuse=_refuse)
        self._storages = storages

    def persistent_load(self, pid):
        if self._storages is None:
            raise UnreadableCheckpointError("a persistent id outside the main object")
        # zip: ('storage', type, key, location, numel); legacy adds view metadata, always None since
        # torch 0.4 (a storage view would need offsets this reader does not apply).
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and isinstance(pid[2], str)
                and _is_int(pid[4]) and pid[4] >= 0 and (len(pid) == 5 or pid[5] is None)):
            raise UnreadableCheckpointError(f"unsupported persistent id {pid!r}")
        _, storage_type, key, _, numel = pid[:5]
        storage = self._storages.setdefault(key, _LazyStorage(key, storage_type.dtype, numel))
        if storage.dtype != storage_type.dtype or storage.numel != numel:
            raise UnreadableCheckpointError(f"storage {key!r} is declared twice with different types")
        return storage


def _unpickle(f, storages: dict[str, _LazyStorage] | None = None) -> Any:
    return _RestrictedUnpickler(f, storages).load()


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
    if _unpickle(f) != _LEGACY_MAGIC:
        raise UnreadableCheckpointError("not a PyTorch checkpoint (bad magic number)")
    protocol = _unpickle(f)
    if protocol != 1001:
        raise UnreadableCheckpointError(f"unsupported legacy protocol version {protocol!r}")
    sys_info = _unpickle(f)
    if not isinstance(sys_info, dict):
        raise UnreadableCheckpointError("the system-info record is not a dict")
    if sys_info.get("little_endian", True) is not True:
        raise UnreadableCheckpointError("big-endian checkpoints are not supported")
    storages: dict[str, _LazyStorage] = {}
    obj = _unpickle(f, storages)
    keys = _unpickle(f)
    if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)
            and sorted(keys) == sorted(storages)):
        raise UnreadableCheckpointError("the storage-key list does not match the tensors' storages")
    for key in keys:
        storage = storages[key]
        header = f.read(8)
        if len(header) != 8:
            raise UnreadableCheckpointError(f"file ends before storage {key!r}")
        (count,) = struct.unpack("<q", header)
        if count != storage.numel:
            raise UnreadableCheckpointError(
                f"storage {key!r} records {count} elements; its tensors say {storage.numel}")
        storage.attach(f.read(count * storage.dtype.itemsize))
    return _materialize(obj)


def _read_stored(archive: zipfile.ZipFile, name: str) -> bytes:
    info = archive.getinfo(name)
    if info.compress_type != zipfile.ZIP_STORED:
        # torch.save writes every record uncompressed; a compressed one could expand without bound.
        raise UnreadableCheckpointError(f"record {name!r} is compressed, which torch.save never writes")
    return archive.read(info)


def _load_zip(path) -> Any:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pkl) != 1:
            raise UnreadableCheckpointError("zip checkpoint without a single data.pkl")
        prefix = pkl[0][: -len("data.pkl")]
        byteorder = prefix + "byteorder"
        if byteorder in names and _read_stored(archive, byteorder).strip() != b"little":
            raise UnreadableCheckpointError("big-endian checkpoints are not supported")
        storages: dict[str, _LazyStorage] = {}
        obj = _unpickle(io.BytesIO(_read_stored(archive, pkl[0])), storages)
        for key, storage in storages.items():
            record = f"{prefix}data/{key}"
            if record not in names:
                raise UnreadableCheckpointError(f"storage record {record!r} is missing")
            storage.attach(_read_stored(archive, record))
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
    try:
        if zipfile.is_zipfile(path):
            return _load_zip(path)
        with open(path, "rb") as f:
            return _load_legacy(f)
    except UnreadableCheckpointError as e:
        raise type(e)(f"path: {path!r}: {e}") from None
    except Exception as e:  # noqa: BLE001 - any failure to parse a file is the file's, and is named
        raise UnreadableCheckpointError(
            f"path: {path!r} is not a readable PyTorch checkpoint ({type(e).__name__}: {e})") from e
