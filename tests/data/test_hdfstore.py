"""The pandas-free HDFStore reader: parity with pandas on both layouts, and hostile files."""

import os
import pickle
import warnings

import numpy as np
import pytest

import xjax.data as D

pd = pytest.importorskip("pandas")
tables = pytest.importorskip("tables")
h5py = pytest.importorskip("h5py")


def _frames():
    seq = pd.DataFrame(
        {"type": ["Chassis A (3 feux verticaux)", "Chassis C", "Ch\u00e2ssis \u00e9"],
         "state": ["C", None, "VL"], "on_track": [1, 0, 1], "fps": [25.0, np.nan, 30.0],
         "when": pd.to_datetime(["2018-10-11 15:31:37", "2018-10-12 10:00:00", "2019-01-01 00:00:00"]),
         "video": [True, False, True], "cat": pd.Categorical(["x", "y", "x"])},
        index=pd.Index([3, 7, 9], name="sequence"))
    mi = pd.MultiIndex.from_tuples([(3, 10), (3, 11), (7, 2), (9, 5)], names=["sequence", "image"])
    img = pd.DataFrame({"fullpath": ["/d/R1/10_rgb.png", "/d/R1/11_rgb.png", "/d/R2/2_rgb.png",
                                     "/d/R3/5.png"],
                        "x": [1, 2, 3, 4], "y": [4, 5, 6, 7], "w": [7.5, 8, 9, 1],
                        "h": [10, 11, 12, 2]}, index=mi)
    return {"dataframe": seq, "images": img}


def _write(path, fmt, frames):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pd.HDFStore(path, "w") as store:
            for key, df in frames.items():
                if fmt == "fixed":
                    df = df.assign(**{c: df[c].astype(object) for c in df.columns
                                      if isinstance(df[c].dtype, pd.CategoricalDtype)})
                store.put(key, df, format=fmt)


def _as_expected(series):
    values = series.to_numpy()
    if values.dtype == object or isinstance(series.dtype, pd.CategoricalDtype):
        return np.array(["" if v is None or (isinstance(v, float) and np.isnan(v)) else v
                         for v in np.asarray(values, dtype=object)], dtype=str)
    return values


@pytest.mark.parametrize("fmt", ["fixed", "table"])
def test_matches_pandas_on_both_layouts(tmp_path, fmt):
    path = str(tmp_path / "s.h5")
    frames = _frames()
    _write(path, fmt, frames)
    assert D._hdfstore.store_keys(path) == ["dataframe", "images"]
    for key in frames:
        ref = pd.read_hdf(path, key).reset_index()
        got = D.read_frame(path, key)
        assert got.names() == list(ref.columns) and len(got) == len(ref)
        assert list(got.index) == [n for n in pd.read_hdf(path, key).index.names]
        for col in ref.columns:
            want = _as_expected(ref[col])
            np.testing.assert_array_equal(got[col], want, err_msg=f"{fmt} {key}.{col}")
            assert got[col].dtype.kind == want.dtype.kind


def test_unknown_key_and_non_hdf5(tmp_path):
    path = str(tmp_path / "s.h5")
    _write(path, "table", _frames())
    with pytest.raises(KeyError, match=r"found \['dataframe', 'images'\]"):
        D.read_frame(path, "nope")
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5 at all")
    with pytest.raises(D.UnreadableStoreError, match="not an HDF5 file"):
        D.read_frame(str(bad), "dataframe")
    with pytest.raises(FileNotFoundError, match="path"):
        D.read_frame(str(tmp_path / "absent.h5"), "dataframe")


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_hostile_object_array_is_refused_without_running_code(tmp_path):
    path = str(tmp_path / "evil.h5")
    _write(path, "fixed", _frames())
    marker = tmp_path / "pwned"
    # Replace the fixed layout's pickled string block by a pickle that would run a command.
    with tables.open_file(path, "a") as f:
        node = f.get_node("/images/block0_values")
        attrs = {k: node._v_attrs[k] for k in ("transposed",)}
        node._f_remove()
        arr = f.create_vlarray("/images", "block0_values", tables.ObjectAtom())
        arr.append(_Evil(str(marker)))
        for k, v in attrs.items():
            arr._v_attrs[k] = v
    with pytest.raises(D.UnsafeStoreError, match="system"):
        D.read_frame(path, "images")
    assert not marker.exists()
    # pandas itself would run it: the reason this reader exists.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            pd.read_hdf(path, "images")
        except Exception:  # noqa: BLE001 - pandas fails after running the payload
            pass
    assert marker.exists()


def test_hostile_table_attribute_is_refused(tmp_path):
    path = str(tmp_path / "evil.h5")
    _write(path, "table", _frames())
    marker = tmp_path / "pwned"
    with h5py.File(path, "a") as f:
        f["images"].attrs["non_index_axes"] = np.bytes_(pickle.dumps(_Evil(str(marker)),
                                                                     protocol=0))
    with pytest.raises(D.UnsafeStoreError, match="system"):
        D.read_frame(path, "images")
    assert not marker.exists()


def test_object_array_pickle_with_a_foreign_dtype_or_element_is_refused(tmp_path):
    from xjax.data._hdfstore import _object_array

    good = pickle.dumps(np.array(["a", None, 1.5], dtype=object))
    np.testing.assert_array_equal(_object_array(np.frombuffer(good, np.uint8), "t"),
                                  np.array(["a", None, 1.5], dtype=object))
    with pytest.raises(D.UnsafeStoreError, match="dtype"):
        _object_array(np.frombuffer(pickle.dumps(np.arange(3.0)), np.uint8), "t")
    nested = pickle.dumps(np.array([{"k": 1}, "b"], dtype=object))
    with pytest.raises(D.UnsafeStoreError, match="dict"):
        _object_array(np.frombuffer(nested, np.uint8), "t")
    import collections

    odd = pickle.dumps(np.array([collections.OrderedDict()], dtype=object))
    with pytest.raises(D.UnsafeStoreError, match="collections.OrderedDict"):
        _object_array(np.frombuffer(odd, np.uint8), "t")
    with pytest.raises(D.UnreadableStoreError, match="unreadable"):
        _object_array(np.frombuffer(good[:-5], np.uint8), "t")


def test_inconsistent_layout_names_the_node(tmp_path):
    path = str(tmp_path / "s.h5")
    _write(path, "fixed", _frames())
    with h5py.File(path, "a") as f:
        del f["images/block1_items"]
    with pytest.raises(D.UnreadableStoreError, match="block1_items"):
        D.read_frame(path, "images")
    _write(path, "fixed", _frames())
    with h5py.File(path, "a") as f:
        f["images"].attrs["pandas_type"] = np.bytes_(b"wide")
    with pytest.raises(D.UnreadableStoreError, match="unsupported pandas_type 'wide'"):
        D.read_frame(path, "images")
