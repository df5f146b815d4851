"""Dataset-scale runs: sharded over 8 fake devices equals one device; a crash resumes without
losing or duplicating rows (kill -9, concurrency, damage and settings: tests/test_rundirs.py)."""

import os

import jax
import numpy as np
import pytest

import xjax
from tests.conftest import FASHION_MNIST_PRESENT

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Different batch compositions (2 rows per device, 16 per call, 50 at once) make XLA:CPU pick
# different convolution tilings: float32 summation-order noise, about 1e-7 on maps of ~0.5.
CLOSE = {"rtol": 1e-4, "atol": 1e-6}


def _shards(out):
    return sorted(f for f in os.listdir(out) if f.startswith("maps-"))


@pytest.fixture(scope="module")
def setup(fmnist_cnn):
    m = fmnist_cnn
    x = np.asarray(jax.random.uniform(jax.random.key(0), (50, 28, 28, 1)))
    y = np.asarray(m.model_fn(m.params, x).argmax(-1))
    sal = xjax.attributions.saliency(m.model_fn)
    return m, x, y, sal


def test_sharded_equals_single_device_and_direct(setup, tmp_path):
    m, x, y, sal = setup
    assert len(jax.devices()) == 8
    many = xjax.runs.explain_dataset(sal, m.params, (x, y), str(tmp_path / "eight"),
                                     batch_size=16, progress=False)
    one = xjax.runs.explain_dataset(sal, m.params, (x, y), str(tmp_path / "one"), batch_size=16,
                                    mesh=xjax.runs.data_mesh(jax.devices()[:1]), progress=False)
    assert many == one == 4                                        # 50 rows, last batch padded
    a = xjax.runs.load_maps(str(tmp_path / "eight"), n=50)
    b = xjax.runs.load_maps(str(tmp_path / "one"), n=50)
    np.testing.assert_allclose(a, b, **CLOSE)
    np.testing.assert_allclose(a, sal(m.params, x, y), **CLOSE)


def test_crash_then_resume_loses_and_repeats_nothing(setup, tmp_path):
    m, x, y, sal = setup
    out = str(tmp_path / "run")
    xjax.runs.explain_dataset(sal, m.params, (x, y), str(tmp_path / "whole"), batch_size=8,
                              progress=False)
    whole = xjax.runs.load_maps(str(tmp_path / "whole"), n=50)   # same batches, uninterrupted

    def crash(step):
        if step == 1:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated"):
        xjax.runs.explain_dataset(sal, m.params, (x, y), out, batch_size=8, on_step=crash,
                                  progress=False)
    assert len(_shards(out)) == 2
    with pytest.raises(ValueError, match="expected 50"):
        xjax.runs.load_maps(out, n=50)
    assert xjax.runs.explain_dataset(sal, m.params, (x, y), out, batch_size=8,
                                     progress=False) == 5
    np.testing.assert_array_equal(xjax.runs.load_maps(out, n=50), whole)
    assert xjax.runs.explain_dataset(sal, m.params, (x, y), out, batch_size=8,
                                     progress=False) == 0


@pytest.mark.skipif(not FASHION_MNIST_PRESENT, reason="Fashion-MNIST not installed "
                    "(apt-get install dataset-fashion-mnist)")
def test_streams_a_tfds_data_source(setup, tmp_path):
    m, _, _, sal = setup
    source = xjax.data.fashion_mnist("test")
    decode = lambda items: (np.stack([it["image"] for it in items]).astype(np.float32) / 255.0,
                            np.array([it["label"] for it in items], np.int32))

    class First(list):                      # the first 40 rows of the source, same interface
        def __getitems__(self, idx):
            return source.__getitems__(idx)

    sub = First(range(40))
    xjax.runs.explain_dataset(sal, m.params, sub, str(tmp_path), batch_size=16, decode=decode,
                              progress=False)
    x, y = decode(source.__getitems__(list(range(40))))
    np.testing.assert_allclose(xjax.runs.load_maps(str(tmp_path), n=40), sal(m.params, x, y),
                               **CLOSE)


def test_bad_batch_size(setup, tmp_path):
    m, x, y, sal = setup
    with pytest.raises(ValueError, match="multiple of the 8 devices"):
        xjax.runs.explain_dataset(sal, m.params, (x, y), str(tmp_path), batch_size=12)


def test_shard_rows_splits_over_devices_and_matches_one_device(setup):
    m, x, y, sal = setup
    xs, ys = xjax.runs.shard_rows(x[:48], y[:48])
    assert len(xs.sharding.device_set) == 8
    assert xs.addressable_shards[0].data.shape == (6, 28, 28, 1)   # 48 rows / 8 devices
    np.testing.assert_array_equal(np.asarray(xs), x[:48])
    maps = jax.jit(sal)(m.params, xs, ys)
    assert maps.sharding.spec[0] == "data"                          # computed in parallel
    np.testing.assert_allclose(np.asarray(maps), np.asarray(jax.jit(sal)(m.params, x[:48], y[:48])),
                               **CLOSE)
    odd = xjax.runs.shard_rows(x[:5])                               # 5 rows: replicated
    assert odd.sharding.is_fully_replicated
    np.testing.assert_array_equal(np.asarray(odd), x[:5])


def test_per_device_scans_only_local_rows_and_equals_one_device(setup):
    """A chunked, keyed explainer and a metric jitted on a sharded batch: under per_device the
    compiled program has no all-gather (each device computes its own rows only; without it the
    partitioner gathers the batch on every device) and the maps equal the one-device ones."""
    m, x, y, _ = setup
    rise = xjax.attributions.rise(m.model_fn, nb_samples=32, batch_size=64)
    deletion = xjax.metrics.deletion(m.model_fn, steps=4, batch_size=64)
    key = jax.random.key(3)
    xs, ys = xjax.runs.shard_rows(x[:48], y[:48])
    params = xjax.runs.replicate(m.params)
    plain = jax.jit(lambda p, a, b: rise(p, a, b, key=key))
    assert "all-gather" in plain.lower(params, xs, ys).compile().as_text()
    local = jax.jit(lambda p, a, b: xjax.runs.per_device(rise)(p, a, b, key=key))
    assert "all-gather" not in local.lower(params, xs, ys).compile().as_text()
    maps = local(params, xs, ys)
    assert maps.sharding.spec[0] == "data"
    ref = jax.jit(lambda p, a, b: rise(p, a, b, key=key))(m.params, x[:48], y[:48])
    np.testing.assert_allclose(np.asarray(maps), np.asarray(ref), **CLOSE)
    scores = jax.jit(xjax.runs.per_device(deletion))(params, xs, ys, maps)
    np.testing.assert_allclose(np.asarray(scores),
                               np.asarray(jax.jit(deletion)(m.params, x[:48], y[:48], ref)),
                               **CLOSE)
    # rows that do not divide over the devices: a plain call, same result
    np.testing.assert_allclose(
        np.asarray(xjax.runs.per_device(rise)(m.params, x[:5], y[:5], key=key)),
        np.asarray(ref[:5]), **CLOSE)


def test_maps_file_round_trip_and_hostile_files(tmp_path):
    path = str(tmp_path / "m.npz")
    maps = {"saliency": np.arange(24, dtype=np.float32).reshape(2, 3, 4),
            "sobol": np.ones((2, 3, 4), np.float32)}
    xjax.runs.save_maps_file(path, ["a", "b"], maps, {"model": "small_cnn", "seed": None})
    got = xjax.runs.load_maps_file(path)
    assert got.names == ("a", "b") and got.settings == {"model": "small_cnn", "seed": None}
    for k, v in maps.items():
        np.testing.assert_array_equal(got.maps[k], v)
    assert [f for f in os.listdir(tmp_path) if f.startswith(".")] == []   # no temporary left
    with np.load(path, allow_pickle=False) as z:                          # plain NumPy reads it
        assert set(z.files) == {"format", "names", "settings", "maps.saliency", "maps.sobol"}
    with pytest.raises(ValueError, match=r"maps\['x'\] must be f32\[N, H, W\] with N = 2"):
        xjax.runs.save_maps_file(path, ["a", "b"], {"x": np.zeros((3, 2, 2))}, {})

    def hostile(name, **arrays):
        p = str(tmp_path / name)
        np.savez(p, **arrays)
        return p

    ok = {"format": np.asarray("xjax-maps-1"), "names": np.asarray(["a"]),
          "settings": np.asarray("{}"), "maps.s": np.zeros((1, 2, 2), np.float32)}
    cases = {
        "pickled.npz": ({**ok, "names": np.array([object()], dtype=object)}, "not a readable"),
        "noformat.npz": ({k: v for k, v in ok.items() if k != "format"}, "not an xjax maps"),
        "f64.npz": ({**ok, "maps.s": np.zeros((1, 2, 2))}, r"'maps.s' must be float32\[1, H, W\]"),
        "rows.npz": ({**ok, "maps.s": np.zeros((2, 2, 2), np.float32)}, "must be float32"),
        "settings.npz": ({**ok, "settings": np.asarray("[1, 2]")}, "JSON object"),
        "empty.npz": ({k: v for k, v in ok.items() if k != "maps.s"}, "holds no maps"),
    }
    for name, (arrays, match) in cases.items():
        with pytest.raises(ValueError, match=match):
            xjax.runs.load_maps_file(hostile(name, **arrays))
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 junk")
    with pytest.raises(ValueError, match="not a readable"):
        xjax.runs.load_maps_file(str(tmp_path / "junk.npz"))
    with pytest.raises(FileNotFoundError, match="no file"):
        xjax.runs.load_maps_file(str(tmp_path / "none.npz"))
