import io
import os
import pickle
import zipfile

import ml_dtypes
import numpy as np
import pytest

from xjax.models import UnreadableCheckpointError, UnsafeCheckpointError, load_torch_checkpoint

DATA = os.path.join(os.path.dirname(__file__), "data")


def expected_fixture():
    """The values make_torch_fixtures.py saved, rebuilt from their closed forms."""
    base = np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 8.0 - 1.0
    shared = np.arange(10, dtype=np.float64) * 0.5
    return {
        "conv.weight": base,
        "transposed": base.transpose(2, 1, 0),
        "view_offset": shared[3:7],
        "view_full": shared,
        "half": (np.arange(6, dtype=np.float32) / 4).astype(np.float16),
        "bf16": (np.arange(6, dtype=np.float32) / 4 - 0.5).astype(ml_dtypes.bfloat16),
        "count": np.array(7, np.int64),
        "mask": np.arange(5) % 2 == 0,
        "bytes": np.arange(4, dtype=np.uint8) * 60,
        "param": np.full((2, 2), 3.0, np.float32),
    }


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_fixture_values_dtypes_and_order(fmt):
    state = load_torch_checkpoint(os.path.join(DATA, f"fixture_{fmt}.pth"))
    expected = expected_fixture()
    assert list(state) == list(expected)  # OrderedDict order kept
    for k, v in expected.items():
        assert state[k].dtype == v.dtype, k
        assert state[k].shape == v.shape, k
        np.testing.assert_array_equal(state[k], v, err_msg=k)


def test_real_efficientnet_checkpoint(lite0_state_dict):
    sd = lite0_state_dict
    assert len(sd) == 296
    assert sd["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert sd["_blocks.0._depthwise_conv.weight"].shape == (32, 1, 3, 3)
    assert sd["_fc.weight"].shape == (1000, 1280)
    assert sd["_bn0.num_batches_tracked"].dtype == np.int64
    n = sum(v.size for k, v in sd.items() if not k.endswith("num_batches_tracked")
            and "running" not in k)
    assert n == 4_652_008  # EfficientNet-Lite0: 4.65M parameters


def test_parity_with_torch_load(lite0_state_dict):
    torch = pytest.importorskip("torch")
    from xjax.models._efficientnet import _weights_path

    ref = torch.load(_weights_path(), map_location="cpu", weights_only=True)
    assert list(ref) == list(lite0_state_dict)
    for k, v in ref.items():
        np.testing.assert_array_equal(lite0_state_dict[k], v.numpy(), err_msg=k)
    for fmt in ("zip", "legacy"):
        path = os.path.join(DATA, f"fixture_{fmt}.pth")
        ours, theirs = load_torch_checkpoint(path), torch.load(path, weights_only=True)
        for k, v in theirs.items():
            t = v.detach().float().numpy() if v.dtype == torch.bfloat16 else v.detach().numpy()
            np.testing.assert_array_equal(np.asarray(ours[k], t.dtype), t, err_msg=k)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/xjax_pwned",))


def test_hostile_pickle_is_refused_without_running_code(tmp_path):
    if os.path.exists("/tmp/xjax_pwned"):
        os.remove("/tmp/xjax_pwned")
    # legacy layout with a malicious payload in the state pickle
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        for obj in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
            pickle.dump(obj, f, protocol=2)
        pickle.dump({"w": _Evil()}, f, protocol=2)
    with pytest.raises(UnsafeCheckpointError, match="posix.system|os.system"):
        load_torch_checkpoint(path)
    # zip layout, same payload
    zpath = tmp_path / "evil_zip.pth"
    with zipfile.ZipFile(zpath, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"w": _Evil()}, protocol=2))
    with pytest.raises(UnsafeCheckpointError):
        load_torch_checkpoint(zpath)
    assert not os.path.exists("/tmp/xjax_pwned")


def test_unreadable_and_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="path"):
        load_torch_checkpoint(tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all" * 10)
    with pytest.raises(UnreadableCheckpointError, match="path"):
        load_torch_checkpoint(junk)
    with open(os.path.join(DATA, "fixture_legacy.pth"), "rb") as f:
        raw = f.read()
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(raw[: len(raw) - 40])
    with pytest.raises(UnreadableCheckpointError):
        load_torch_checkpoint(truncated)
    buf = io.BytesIO()
    pickle.dump(12345, buf)
    wrong_magic = tmp_path / "magic.pth"
    wrong_magic.write_bytes(buf.getvalue())
    with pytest.raises(UnreadableCheckpointError, match="magic"):
        load_torch_checkpoint(wrong_magic)
