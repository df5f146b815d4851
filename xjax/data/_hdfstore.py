"""A pandas-free, validating reader for the tables of a pandas ``HDFStore`` file.

pandas writes a ``DataFrame`` into HDF5 through PyTables in one of two layouts:

* *fixed* (``pandas_type = "frame"``): a group with the column index ``axis0``, the row index
  ``axis1`` (or, for a ``MultiIndex``, ``axis1_level<i>`` values and ``axis1_label<i>`` codes),
  and per block of same-typed columns ``block<i>_items`` (their names) and ``block<i>_values``
  (rows x items; object columns as a PyTables ``VLArray`` whose single row is a *pickled* NumPy
  object array);
* *table* (``pandas_type = "frame_table"``): a compound dataset ``table`` with an ``index`` field,
  one field per block of columns (strings as fixed-width bytes) and one per data column; the block
  layout is described by attributes that PyTables stores pickled (protocol 0), and categorical
  columns keep their categories in ``meta/<field>/meta``.

``pandas.read_hdf`` (through PyTables) unpickles those attributes and object arrays with the full
``pickle`` module, so a hostile ``.h5`` file can run code. This reader opens the file with h5py
(which never unpickles), decodes both layouts itself, and passes every pickle through
:class:`~xjax._internal.safepickle.RestrictedUnpickler`: attributes may hold plain data only, and
an object array may name only NumPy's array and dtype rebuilders, which resolve to substitutes
that accept a flat list of strings, numbers or ``None``. Anything else raises
:class:`UnsafeStoreError`; a layout this reader does not know raises :class:`UnreadableStoreError`
naming the node.
"""

import dataclasses
import os
from typing import Any

import numpy as np

from xjax._internal.safepickle import Frozen, restricted_loads

__all__ = ["Frame", "UnreadableStoreError", "UnsafeStoreError", "read_frame", "store_keys"]

_INSTALL = "pip install 'xjax[frsign]' (h5py)"


class UnreadableStoreError(ValueError):
    """The file is not a pandas HDFStore table this reader understands."""


class UnsafeStoreError(UnreadableStoreError):
    """A pickle in the file names a Python global outside the allowed set."""


@dataclasses.dataclass(frozen=True)
class Frame:
    """A table read from the store: index levels and columns, each a 1-D array of ``n`` rows.

    Strings are ``numpy.str_`` arrays with ``""`` for a missing value; integers, floats and
    bools keep their stored dtype; datetimes are ``datetime64``; categoricals are decoded to
    their category strings.
    """

    index: dict[str, np.ndarray]
    columns: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(next(iter({**self.index, **self.columns}.values()), ()))

    def __getitem__(self, name: str) -> np.ndarray:
        return self.index[name] if name in self.index else self.columns[name]

    def names(self) -> list[str]:
        return [*self.index, *self.columns]


def _refuse(module: str, name: str) -> UnsafeStoreError:
    return UnsafeStoreError(
        f"a pickle in the file refers to the global {module}.{name}, which a pandas table of "
        "strings and numbers does not need; refusing to load it")


class _DType(Frozen):
    """Stands in for ``numpy.dtype`` in an object array's pickle: only ``"O8"`` is accepted."""

    __slots__ = ()

    def __init__(self, name, align=False, copy=True):
        del align, copy
        if name != "O8":
            raise UnsafeStoreError(f"an object array's pickle declares dtype {name!r}, not object")

    def __setstate__(self, state):
        if not isinstance(state, tuple):
            raise UnsafeStoreError("malformed dtype state in an object array's pickle")


class _Array(Frozen):
    """Stands in for ``numpy.ndarray`` rebuilt by ``_reconstruct``; holds a validated list."""

    __slots__ = ("value",)

    def __init__(self, *args):
        del args
        self.value: np.ndarray | None = None

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) == 5):
            raise UnsafeStoreError("malformed array state in an object array's pickle")
        _, shape, dtype, fortran, data = state
        if not (isinstance(dtype, _DType) and isinstance(data, list)
                and isinstance(shape, tuple) and all(isinstance(n, int) and n >= 0 for n in shape)
                and int(np.prod(shape)) == len(data)):
            raise UnsafeStoreError("an object array's pickle holds something other than a list "
                                   "of values of its shape")
        for v in data:
            if not (v is None or isinstance(v, (str, bytes, bool, int, float))):
                raise UnsafeStoreError(f"an object array's pickle holds a {type(v).__name__}")
        out = np.empty(len(data), dtype=object)
        out[:] = data
        self.value = out.reshape(shape, order="F" if fortran else "C")


def _reconstruct(cls, shape, dtype_code):
    del shape, dtype_code
    if cls is not _Array:
        raise UnsafeStoreError("an object array's pickle rebuilds something other than an array")
    return _Array()


_ARRAY_GLOBALS = {
    **{(m, "_reconstruct"): _reconstruct
       for m in ("numpy._core.multiarray", "numpy.core.multiarray")},
    ("numpy", "ndarray"): _Array,
    ("numpy", "dtype"): _DType,
}


def _plain(data: bytes, what: str) -> Any:
    try:
        return restricted_loads(data, refuse=_refuse)
    except UnsafeStoreError:
        raise
    except Exception as e:  # noqa: BLE001 - any defect of a file's pickle is the file's
        raise UnreadableStoreError(f"{what}: unreadable pickled value ({type(e).__name__}: {e})") from None


def _object_array(raw, what: str) -> np.ndarray:
    try:
        obj = restricted_loads(bytes(np.asarray(raw, np.uint8)), allowed=_ARRAY_GLOBALS,
                               refuse=_refuse)
    except UnsafeStoreError:
        raise
    except Exception as e:  # noqa: BLE001
        raise UnreadableStoreError(f"{what}: unreadable object array ({type(e).__name__}: {e})") from None
    if not isinstance(obj, _Array) or obj.value is None:
        raise UnsafeStoreError(f"{what}: the pickled value is not an object array")
    return obj.value


def _text(v) -> str:
    if isinstance(v, (bytes, np.bytes_)):
        return bytes(v).decode("utf-8")
    return str(v)


def _attr(node, name: str, *, pickled: bool = False, default: Any = ...) -> Any:
    if name not in node.attrs:
        if default is ...:
            raise UnreadableStoreError(f"{node.name}: attribute {name!r} is missing")
        return default
    v = node.attrs[name]
    if isinstance(v, np.bytes_ | bytes):
        v = bytes(v)
        if pickled or v == b"N.":                     # PyTables pickles non-string attributes
            return _plain(v, f"{node.name}@{name}")
        return v.decode("utf-8")
    if isinstance(v, np.generic):
        return v.item()
    if getattr(v, "shape", None) is None:             # h5py.Empty: an empty string attribute
        return ""
    return v


def _strings(values, encoding: str, nan_rep: str | None = None) -> np.ndarray:
    out = []
    for v in np.asarray(values, dtype=object).ravel():
        if isinstance(v, (bytes, np.bytes_)):
            v = bytes(v).decode(encoding)
        elif v is None or (isinstance(v, float) and np.isnan(v)):
            v = ""
        elif not isinstance(v, str):
            v = str(v)
        out.append("" if nan_rep is not None and v == nan_rep else v)
    return np.asarray(out, dtype=str)


def _typed(values: np.ndarray, kind: str | None, what: str) -> np.ndarray:
    """Apply a stored ``datetime64[unit]`` kind to int64 values."""
    if kind and kind.startswith("datetime64"):
        unit = kind[len("datetime64"):] or "[ns]"
        try:
            return np.asarray(values, np.int64).view(f"datetime64{unit}")
        except TypeError as e:
            raise UnreadableStoreError(f"{what}: unknown datetime kind {kind!r}") from e
    return values


def _numeric(node) -> np.ndarray:
    """A dataset's values; PyTables writes NumPy bools as an HDF5 bitfield, read here as bool."""
    data = np.asarray(node[()])
    if node.id.get_type().get_class() == _h5py().h5t.BITFIELD:
        data = data.astype(bool)
    return data


def _is_vlarray(node) -> bool:
    return _attr(node, "CLASS", default="") == "VLARRAY"


# ----------------------------------------------------------------------------- fixed layout


def _fixed_index(group, key: str, encoding: str) -> tuple[list[str | None], list[np.ndarray]]:
    variety = _attr(group, f"{key}_variety")
    if variety == "regular":
        node = _node(group, key)
        return [_attr(node, "name", default=None)], [_fixed_index_values(node, encoding)]
    if variety == "multi":
        names, values = [], []
        for i in range(int(_attr(group, f"{key}_nlevels"))):
            level = _node(group, f"{key}_level{i}")
            codes = np.asarray(_node(group, f"{key}_label{i}")[()], np.int64)
            lv = _fixed_index_values(level, encoding)
            if codes.size and (codes.max() >= len(lv) or codes.min() < -1):
                raise UnreadableStoreError(f"{group.name}/{key}_label{i}: codes out of range")
            taken = lv[np.clip(codes, 0, None)] if len(lv) else np.zeros(codes.shape, lv.dtype)
            if (codes < 0).any():
                if taken.dtype.kind != "U":
                    raise UnreadableStoreError(f"{level.name}: missing values in a numeric level")
                taken = np.where(codes < 0, "", taken)
            names.append(_attr(level, "name", default=None))
            values.append(taken)
        return names, values
    raise UnreadableStoreError(f"{group.name}: unsupported index variety {variety!r}")


def _fixed_index_values(node, encoding: str) -> np.ndarray:
    kind = _attr(node, "kind")
    if _is_vlarray(node):
        return _strings(_object_array(node[0], node.name).ravel(), encoding)
    data = _numeric(node)
    if kind == "string":
        return _strings(data, encoding)
    if kind in ("integer", "float", "bool", "boolean"):
        return np.asarray(data)
    if kind == "datetime64":
        return np.asarray(data, np.int64).view("datetime64[ns]")
    raise UnreadableStoreError(f"{node.name}: unsupported index kind {kind!r}")


def _read_fixed(group) -> Frame:
    encoding = _attr(group, "encoding", default="UTF-8") or "UTF-8"
    if int(_attr(group, "ndim", default=2)) != 2:
        raise UnreadableStoreError(f"{group.name}: not a two-dimensional frame")
    (_,), (colnames,) = _fixed_index(group, "axis0", encoding)
    index_names, index_values = _fixed_index(group, "axis1", encoding)
    n = len(index_values[0])
    columns: dict[str, np.ndarray] = {}
    for b in range(int(_attr(group, "nblocks"))):
        (_,), (items,) = _fixed_index(group, f"block{b}_items", encoding)
        node = _node(group, f"block{b}_values")
        if _is_vlarray(node):
            if node.shape != (1,):
                raise UnreadableStoreError(f"{node.name}: expected one pickled object array")
            values = _object_array(node[0], node.name)
            values = values.reshape(n, len(items)) if values.size == n * len(items) else values
        else:
            values = _typed(_numeric(node), _attr(node, "value_type", default=None), node.name)
        if values.ndim != 2 or values.shape != (n, len(items)):
            raise UnreadableStoreError(
                f"{node.name}: shape {values.shape}, expected ({n}, {len(items)}) rows x items")
        for j, name in enumerate(items):
            col = values[:, j]
            columns[str(name)] = _strings(col, encoding) if col.dtype == object else col
    order = [str(c) for c in colnames]
    if sorted(order) != sorted(columns):
        raise UnreadableStoreError(f"{group.name}: the blocks hold {sorted(columns)}, the column "
                                   f"index lists {sorted(order)}")
    index = {(name if name is not None else f"level_{i}" if len(index_values) > 1 else "index"): v
             for i, (name, v) in enumerate(zip(index_names, index_values, strict=True))}
    return Frame(index=index, columns={c: columns[c] for c in order})


# ----------------------------------------------------------------------------- table layout


def _read_table(group) -> Frame:
    table = _node(group, "table")
    encoding = _attr(group, "encoding", default="UTF-8") or "UTF-8"
    nan_rep = _attr(group, "nan_rep", default="nan")
    rows = table[()]
    if rows.dtype.names is None:
        raise UnreadableStoreError(f"{table.name}: not a compound table")
    non_index = _attr(group, "non_index_axes", pickled=True)
    values_cols = _attr(group, "values_cols", pickled=True)
    levels = _attr(group, "levels", pickled=True) if isinstance(
        group.attrs.get("levels"), np.bytes_ | bytes) else _attr(group, "levels", default=1)
    if not (isinstance(non_index, list) and len(non_index) == 1 and isinstance(values_cols, list)):
        raise UnreadableStoreError(f"{group.name}: unexpected table description")
    order = [str(c) for c in non_index[0][1]]
    columns: dict[str, np.ndarray] = {}
    for field in values_cols:
        if field not in rows.dtype.names:
            raise UnreadableStoreError(f"{table.name}: field {field!r} is missing")
        names = _attr(table, f"{field}_kind", pickled=True)
        meta = _attr(table, f"{field}_meta", default=None)
        dtype = _attr(table, f"{field}_dtype", default="")
        col_nan = _attr(table, f"{field}_nan_rep", default=nan_rep)
        data = rows[field]
        data = data.reshape(len(rows), -1)
        if not (isinstance(names, list) and len(names) == data.shape[1]):
            raise UnreadableStoreError(f"{table.name}: field {field!r} does not match its names")
        if meta == "category":
            cats = _read_table(_node(group, f"meta/{field}/meta"))
            categories = cats["values"] if "values" in cats.columns else None
            if categories is None or categories.dtype.kind != "U":
                raise UnreadableStoreError(f"{group.name}/meta/{field}: no string categories")
            codes = data.astype(np.int64)
            if codes.size and (codes.max() >= len(categories) or codes.min() < -1):
                raise UnreadableStoreError(f"{table.name}: category codes of {field!r} out of range")
            data = np.where(codes < 0, "", categories[np.clip(codes, 0, None)] if len(categories)
                            else "")
        elif data.dtype.kind == "S":
            data = _strings(data, encoding, col_nan).reshape(data.shape)
        else:
            data = _typed(data, dtype, f"{table.name}:{field}")
            if dtype == "bool":
                data = data.astype(bool)
        for j, name in enumerate(names):
            columns[str(name)] = data[:, j]
    index_kind = _attr(table, "index_kind", default="integer")
    index_values = rows["index"] if "index" in rows.dtype.names else None
    if isinstance(levels, list):                      # a MultiIndex: its levels are data columns
        index = {str(name): columns.pop(str(name)) for name in levels}
        order = [c for c in order if c not in index]
    else:
        if index_values is None:
            raise UnreadableStoreError(f"{table.name}: no index field")
        info = _attr(group, "info", pickled=True, default={})
        name = info.get("index", {}).get("index_name") if isinstance(info, dict) else None
        if index_kind == "string":
            index_values = _strings(index_values, encoding)
        index = {str(name) if name is not None else "index": _typed(
            index_values, "datetime64[ns]" if index_kind == "datetime64" else None, table.name)}
    if sorted(order) != sorted(columns):
        raise UnreadableStoreError(f"{group.name}: the fields hold {sorted(columns)}, the table "
                                   f"lists {sorted(order)}")
    return Frame(index=index, columns={c: columns[c] for c in order})


# ----------------------------------------------------------------------------- entry points


def _node(group, name: str):
    if name not in group:
        raise UnreadableStoreError(f"{group.name}: node {name!r} is missing")
    return group[name]


def _h5py():
    try:
        import h5py
    except ImportError as e:
        raise ImportError(f"reading a pandas HDFStore file needs h5py: {_INSTALL}") from e
    return h5py


def _open(path):
    h5py = _h5py()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path: no HDF5 file at {path!r}")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise UnreadableStoreError(f"path: {path!r} is not an HDF5 file ({e})") from None


def store_keys(path) -> list[str]:
    """The keys of the pandas tables in an HDFStore file (``["dataframe", "images"]``)."""
    with _open(path) as f:
        return sorted(k for k in f if "pandas_type" in f[k].attrs)


_LAYOUTS = {"frame": _read_fixed, "frame_table": _read_table}


def read_frame(path, key: str) -> Frame:
    """Read one ``DataFrame`` of a pandas HDFStore file, without pandas, PyTables or ``pickle``.

    Args:
      path: the ``.h5`` file.
      key: the table's key (``store.keys()`` without the leading ``/``).

    Returns:
      A :class:`Frame` (index levels and columns by name).

    Raises:
      FileNotFoundError: no file at ``path``.
      KeyError: no table ``key`` (the message lists the keys found).
      UnreadableStoreError: not an HDF5 file, or a layout this reader does not decode.
      UnsafeStoreError: a pickle in the file names a global other than NumPy's array rebuilders.
    """
    with _open(path) as f:
        if key not in f or "pandas_type" not in f[key].attrs:
            found = sorted(k for k in f if "pandas_type" in f[k].attrs)
            raise KeyError(f"key: no pandas table {key!r} in {os.fspath(path)!r}; found {found}")
        group = f[key]
        kind = _attr(group, "pandas_type")
        if kind not in _LAYOUTS:
            raise UnreadableStoreError(f"{group.name}: unsupported pandas_type {kind!r} (this "
                                       f"reader decodes {sorted(_LAYOUTS)})")
        try:
            frame = _LAYOUTS[kind](group)
        except UnreadableStoreError as e:
            raise type(e)(f"path: {os.fspath(path)!r}: {e}") from None
    lengths = {name: len(v) for name, v in {**frame.index, **frame.columns}.items()}
    if len(set(lengths.values())) > 1:
        raise UnreadableStoreError(f"path: {os.fspath(path)!r}: columns of {key!r} have different "
                                   f"lengths {lengths}")
    return frame
