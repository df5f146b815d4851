"""Hostile checkpoint files, built opcode by opcode, for every place the reader unpickles.

The writer below emits pickle opcodes directly (it needs neither torch nor the reader's own
classes), so the files it builds are independent of the code under test. Every hostile file must
raise the reader's named error (:class:`UnreadableCheckpointError`, of which
:class:`UnsafeCheckpointError` is a kind) without running code and without crashing the process;
every valid tensor must come back equal to an index computation done here in NumPy.
"""

import math
import os
import struct
import tempfile
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xjax.models import UnreadableCheckpointError, load_torch_checkpoint

MAGIC = 0x1950A86A20F9469CFC6C
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Ops:
    """A pickle protocol-2 (or 4, for STACK_GLOBAL) opcode writer."""

    def __init__(self, proto=2):
        self.b = bytearray(b"\x80" + bytes([proto]))

    def raw(self, code: bytes):
        self.b += code
        return self

    def int(self, n):
        if 0 <= n < 256:
            return self.raw(b"K" + bytes([n]))
        size = (n.bit_length() + 8) // 8 if n else 1
        return self.raw(b"\x8a" + bytes([size]) + n.to_bytes(size, "little", signed=True))

    def str(self, s):
        data = s.encode("utf-8", "surrogatepass")
        return self.raw(b"X" + struct.pack("<I", len(data)) + data)

    def glob(self, module, name):
        return self.raw(b"c" + f"{module}\n{name}\n".encode("utf-8", "surrogatepass"))

    def ints(self, values):
        self.raw(b"(")
        for v in values:
            self.int(v) if not isinstance(v, bool) else self.raw(b"\x88" if v else b"\x89")
        return self.raw(b"t")

    def stop(self):
        return bytes(self.b + b".")


def plain(value):
    """A header pickle: an int, or a dict of str -> bool."""
    ops = Ops()
    if isinstance(value, dict):
        ops.raw(b"}(")
        for k, v in value.items():
            ops.str(k).raw(b"\x88" if v else b"\x89")
        ops.raw(b"u")
    elif isinstance(value, list):
        ops.raw(b"(")
        for v in value:
            ops.str(v)
        ops.raw(b"l")
    else:
        ops.int(value)
    return ops.stop()


def tensor(ops, *, key="0", numel, offset, size, stride, storage="FloatStorage", legacy=False):
    """Push ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())``."""
    ops.glob("torch._utils", "_rebuild_tensor_v2").raw(b"((")
    ops.str("storage").glob("torch", storage).str(key).str("cpu").int(numel)
    if legacy:
        ops.raw(b"N")
    ops.raw(b"tQ")  # persistent id tuple, BINPERSID
    ops.int(offset).ints(size).ints(stride)
    ops.raw(b"\x89").glob("collections", "OrderedDict").raw(b")R")
    return ops.raw(b"tR")


def state_dict(entries, *, legacy=False):
    """A main pickle: OrderedDict of name -> tensor(**kwargs)."""
    ops = Ops().glob("collections", "OrderedDict").raw(b")R(")
    for name, kwargs in entries.items():
        tensor(ops.str(name), legacy=legacy, **kwargs)
    return ops.raw(b"u").stop()


def legacy_file(path, pickles, storages):
    """pickles: [magic, protocol, sys_info, main, keys]; storages: [(count, raw bytes)]."""
    with open(path, "wb") as f:
        for p in pickles:
            f.write(p)
        for count, raw in storages:
            f.write(struct.pack("<q", count) + raw)


def zip_file(path, data_pkl, storages):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", data_pkl)
        z.writestr("archive/byteorder", "little")
        for key, raw in storages.items():
            z.writestr(f"archive/data/{key}", raw)


def good_legacy_pickles(main=None):
    main = main if main is not None else state_dict(
        {"w": dict(numel=4, offset=0, size=(4,), stride=(1,))}, legacy=True)
    return [plain(MAGIC), plain(1001), plain({"little_endian": True}), main, plain(["0"])]


STORAGE4 = np.arange(4, dtype="<f4").tobytes()


def test_writer_builds_files_the_reader_accepts(tmp_path):
    """The opcode writer is right: its valid files read back as the values they encode."""
    legacy_file(tmp_path / "l.pth", good_legacy_pickles(), [(4, STORAGE4)])
    zip_file(tmp_path / "z.pth", state_dict({"w": dict(numel=4, offset=1, size=(3,), stride=(1,))}),
             {"0": STORAGE4})
    np.testing.assert_array_equal(load_torch_checkpoint(tmp_path / "l.pth")["w"], [0, 1, 2, 3])
    np.testing.assert_array_equal(load_torch_checkpoint(tmp_path / "z.pth")["w"], [1, 2, 3])


# --- code execution ------------------------------------------------------------------------------

DANGEROUS = [("os", "system"), ("posix", "system"), ("subprocess", "check_output"),
             ("subprocess", "Popen"), ("builtins", "eval"), ("builtins", "exec"),
             ("builtins", "__import__"), ("builtins", "getattr"), ("importlib", "import_module"),
             ("pickle", "loads"), ("runpy", "run_path")]
identifier = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}(\.[A-Za-z_][A-Za-z0-9_]{0,8})?", fullmatch=True)
targets = st.one_of(st.sampled_from(DANGEROUS), st.tuples(identifier, identifier))


def payload(form, module, name, sentinel):
    """A pickle that, through ``form``, calls ``module.name`` on a sentinel-writing argument."""
    arg = (f"open({sentinel!r}, 'w').close()" if name in ("eval", "exec")
           else f"touch {sentinel}")
    if form == "GLOBAL+REDUCE":
        return Ops().glob(module, name).raw(b"(").str(arg).raw(b"tR").stop()
    if form == "STACK_GLOBAL+REDUCE":
        return Ops(4).str(module).str(name).raw(b"\x93(").str(arg).raw(b"tR").stop()
    if form == "INST":
        return Ops().raw(b"(").str(arg).raw(b"i" + f"{module}\n{name}\n".encode()).stop()
    if form == "OBJ":
        return Ops().raw(b"(").glob(module, name).str(arg).raw(b"o").stop()
    if form == "BUILD":  # set the state of an object the file names
        return Ops().glob(module, name).raw(b"}").str("__setstate__").str(arg).raw(b"sb").stop()
    raise AssertionError(form)


FORMS = ["GLOBAL+REDUCE", "STACK_GLOBAL+REDUCE", "INST", "OBJ", "BUILD"]
LEGACY_SLOTS = ["magic", "protocol", "sys_info", "main", "storage_keys"]


def _assert_refused(path, sentinel):
    with pytest.raises(UnreadableCheckpointError):
        load_torch_checkpoint(path)
    assert not os.path.exists(sentinel), "the checkpoint ran code"


@SETTINGS
@given(target=targets, form=st.sampled_from(FORMS), slot=st.sampled_from(LEGACY_SLOTS + ["zip"]))
def test_hostile_pickles_run_no_code_in_any_slot(target, form, slot):
    with tempfile.TemporaryDirectory() as d:
        sentinel = os.path.join(d, "pwned")
        evil = payload(form, *target, sentinel)
        path = os.path.join(d, "evil.pth")
        if slot == "zip":
            zip_file(path, evil, {"0": STORAGE4})
        else:
            pickles = good_legacy_pickles()
            pickles[LEGACY_SLOTS.index(slot)] = evil
            legacy_file(path, pickles, [(4, STORAGE4)])
        _assert_refused(path, sentinel)


@pytest.mark.parametrize("fmt", ["legacy", "zip"])
def test_bare_pickle_saved_as_pth_runs_no_code(tmp_path, fmt):
    """The case measured on the old reader: a bare hostile pickle (or one in the key list) ran."""
    sentinel = str(tmp_path / "pwned")
    path = tmp_path / "evil.pth"
    evil = payload("GLOBAL+REDUCE", "os", "system", sentinel)
    if fmt == "legacy":
        path.write_bytes(evil)
        _assert_refused(path, sentinel)
        pickles = good_legacy_pickles()
        pickles[-1] = evil
        legacy_file(path, pickles, [(4, STORAGE4)])
    else:
        zip_file(path, evil, {})
    _assert_refused(path, sentinel)


@pytest.mark.parametrize("fmt", ["legacy", "zip"])
def test_allowed_objects_refuse_build(tmp_path, fmt):
    """BUILD may not rewrite the reader's own objects (a storage type's dtype, a tensor's view)."""
    ops = Ops().glob("collections", "OrderedDict").raw(b")R(").str("w")
    tensor(ops, numel=4, offset=0, size=(4,), stride=(1,), legacy=fmt == "legacy")
    ops.raw(b"}").str("stride").ints((-1,)).raw(b"sb")  # BUILD {'stride': (-1,)} on the tensor
    main = ops.raw(b"u").stop()
    path = tmp_path / "build.pth"
    if fmt == "legacy":
        legacy_file(path, good_legacy_pickles(main), [(4, STORAGE4)])
    else:
        zip_file(path, main, {"0": STORAGE4})
    with pytest.raises(UnreadableCheckpointError, match="state"):
        load_torch_checkpoint(path)


# --- tensor metadata -----------------------------------------------------------------------------

def expected_view(storage, offset, size, stride):
    """The tensor torch would build, by explicit index arithmetic; None when torch's rules (and a
    weights file's: no element outside the storage, no more elements than the storage) fail."""
    if not all(isinstance(v, int) and v >= 0 for v in (offset, *size, *stride)):
        return None
    if len(size) != len(stride):
        return None
    numel = math.prod(size)
    if numel > storage.size:
        return None
    if numel == 0:
        return np.zeros(size, storage.dtype) if offset <= storage.size else None
    index = np.full(size, offset, dtype=object)
    for axis, (n, s) in enumerate(zip(size, stride, strict=True)):
        shape = [1] * len(size)
        shape[axis] = n
        index = index + np.arange(n, dtype=object).reshape(shape) * s
    if int(np.max(index)) >= storage.size:
        return None
    return storage[index.astype(np.int64)]


big = st.integers(min_value=-(2**63), max_value=2**63)
small = st.integers(min_value=-3, max_value=12)
meta_int = st.one_of(small, small, small, big)


@SETTINGS
@given(n=st.integers(0, 24), offset=meta_int,
       size=st.lists(meta_int, min_size=0, max_size=3),
       stride=st.lists(meta_int, min_size=0, max_size=3),
       fmt=st.sampled_from(["legacy", "zip"]))
def test_tensor_metadata_is_validated_before_any_view(n, offset, size, stride, fmt):
    storage = np.arange(n, dtype="<f4") * 0.5 - 2.0
    spec = dict(numel=n, offset=offset, size=tuple(size), stride=tuple(stride))
    expected = expected_view(storage, offset, tuple(size), tuple(stride))
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "t.pth")
        if fmt == "legacy":
            legacy_file(path, good_legacy_pickles(state_dict({"w": spec}, legacy=True)),
                        [(n, storage.tobytes())])
        else:
            zip_file(path, state_dict({"w": spec}), {"0": storage.tobytes()})
        if expected is None:
            with pytest.raises(UnreadableCheckpointError):
                load_torch_checkpoint(path)
        else:
            got = load_torch_checkpoint(path)["w"]
            assert got.shape == expected.shape and got.dtype == np.float32
            np.testing.assert_array_equal(got, expected)


def test_negative_strides_measured_on_the_old_reader_are_refused(tmp_path):
    """A negative stride read outside the data; a huge negative one killed the process."""
    for i, stride in enumerate([-1, -(2**40)]):
        path = tmp_path / f"neg{i}.pth"
        zip_file(path, state_dict({"w": dict(numel=4, offset=3, size=(4,), stride=(stride,))}),
                 {"0": STORAGE4})
        with pytest.raises(UnreadableCheckpointError, match="non-negative"):
            load_torch_checkpoint(path)


@pytest.mark.parametrize("fmt", ["legacy", "zip"])
def test_unknown_dtype_and_mismatched_storage_lengths(tmp_path, fmt):
    legacy = fmt == "legacy"

    def write(spec, count, raw, name):
        path = tmp_path / name
        main = state_dict({"w": spec}, legacy=legacy)
        if legacy:
            legacy_file(path, good_legacy_pickles(main), [(count, raw)])
        else:
            zip_file(path, main, {"0": raw})
        return path

    base = dict(numel=4, offset=0, size=(4,), stride=(1,))
    with pytest.raises(UnreadableCheckpointError, match="ComplexFloatStorage"):
        load_torch_checkpoint(write({**base, "storage": "ComplexFloatStorage"}, 4, STORAGE4, "c.pth"))
    with pytest.raises(UnreadableCheckpointError):  # the data is shorter than the record says
        load_torch_checkpoint(write(base, 4, STORAGE4[:12], "short.pth"))
    with pytest.raises(UnreadableCheckpointError):  # a tensor claims a storage larger than the data
        load_torch_checkpoint(write({**base, "numel": 8, "size": (8,)}, 4, STORAGE4, "big.pth"))
    if legacy:
        with pytest.raises(UnreadableCheckpointError):  # negative element count in the file
            load_torch_checkpoint(write(base, -1, STORAGE4, "neg.pth"))


@SETTINGS
@given(data=st.data(), fmt=st.sampled_from(["legacy", "zip"]))
def test_truncated_and_corrupted_fixtures_fail_with_the_named_error(data, fmt):
    with open(os.path.join(os.path.dirname(__file__), "data", f"fixture_{fmt}.pth"), "rb") as f:
        raw = bytearray(f.read())
    if data.draw(st.booleans(), label="truncate"):
        raw = raw[: data.draw(st.integers(0, len(raw) - 1), label="length")]
        must_fail = True
    else:
        for _ in range(data.draw(st.integers(1, 8), label="flips")):
            raw[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
        must_fail = False
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "bad.pth")
        with open(path, "wb") as f:
            f.write(bytes(raw))
        try:
            state = load_torch_checkpoint(path)
        except UnreadableCheckpointError:
            return
        assert not must_fail, "a truncated checkpoint was read"
        assert isinstance(state, dict)
