"""xjax.tune: batch sizes chosen by measurement, cached per model, backend and input shape."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xjax
from xjax import tune

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _mlp(params, x):
    return jnp.tanh(x.reshape(x.shape[0], -1) @ params["w"]) @ params["v"]


PARAMS = {"w": jnp.full((12, 16), 0.1, jnp.float32), "v": jnp.full((16, 3), 0.1, jnp.float32)}
EXAMPLE = np.full((2, 2, 2, 3), 0.5, np.float32)


def test_throughput_measures_each_size_and_both_modes():
    for mode in tune.MODES:
        rates = tune.throughput(_mlp, PARAMS, EXAMPLE, batch_sizes=[4, 2, 8], mode=mode,
                                repeats=2)
        assert list(rates) == [2, 4, 8] and all(r > 0 and np.isfinite(r) for r in rates.values())


def test_out_of_memory_stops_the_search(monkeypatch):
    """From the first size that does not fit on, sizes are None (not an exception)."""
    def big(params, x):
        if x.shape[0] > 4:                    # what XLA raises when a program does not fit
            raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating")
        return _mlp(params, x)

    assert [r is None for r in tune.throughput(big, PARAMS, EXAMPLE, batch_sizes=[2, 4, 8, 16],
                                               repeats=1).values()] == [False, False, True, True]
    with pytest.raises(RuntimeError, match="not even 8 rows fit"):
        tune.batch_size(big, PARAMS, EXAMPLE, candidates=[8, 16], cache=None)

    def broken(params, x):                    # any other runtime error is the user's to see
        raise jax.errors.JaxRuntimeError("INTERNAL: something else")

    with pytest.raises(jax.errors.JaxRuntimeError, match="something else"):
        tune.throughput(broken, PARAMS, EXAMPLE, batch_sizes=[2])


def test_the_choice_is_the_smallest_size_within_tolerance_of_the_best(monkeypatch):
    rates = {8: 100.0, 16: 190.0, 32: 200.0, 64: 150.0, 128: None}
    monkeypatch.setattr(tune, "throughput", lambda *a, **k: dict(rates))
    pick = lambda tol: tune.batch_size(_mlp, PARAMS, EXAMPLE, candidates=list(rates),
                                       tolerance=tol, cache=None)
    assert pick(0.0) == 32                    # the fastest
    assert pick(0.05) == 16                   # 190 >= 0.95 * 200: the smaller one
    assert pick(0.5) == 8                     # 100 >= 0.5 * 200


def test_cache_per_model_mode_and_shape(tmp_path, monkeypatch):
    path = str(tmp_path / "sizes.json")
    calls = []
    real = tune.throughput

    def counted(*a, **k):
        calls.append(k["mode"])
        return real(*a, **k)

    monkeypatch.setattr(tune, "throughput", counted)
    kw = dict(candidates=[2, 4], repeats=1, cache=path)
    first = tune.choose(_mlp, PARAMS, EXAMPLE, **kw)
    assert not first.cached and first.batch_size in (2, 4) and calls == ["forward"]
    again = tune.choose(_mlp, PARAMS, EXAMPLE, **kw)          # same model: read, not measured
    assert again.cached and again.batch_size == first.batch_size and len(calls) == 1
    assert again.images_per_second == pytest.approx(first.images_per_second)
    # a new entry for another mode, another input shape and another computation
    tune.batch_size(_mlp, PARAMS, EXAMPLE, mode="gradient", **kw)
    tune.batch_size(_mlp, {**PARAMS, "w": jnp.zeros((6, 16), jnp.float32)},
                    EXAMPLE[:, :1], **kw)
    tune.batch_size(lambda p, x: _mlp(p, x) ** 2, PARAMS, EXAMPLE, **kw)
    assert len(calls) == 4
    with open(path) as f:
        data = json.load(f)
    assert len(data["entries"]) == 4
    entry = next(e for e in data["entries"].values() if e["mode"] == "gradient")
    assert entry["backend"] == jax.default_backend() and entry["input"] == [[2, 2, 3], "float32"]
    assert set(entry["images_per_second"]) == {"2", "4"}
    # the same computation with other weight values shares the entry
    tune.batch_size(_mlp, jax.tree.map(lambda a: a + 1, PARAMS), EXAMPLE, **kw)
    assert len(calls) == 4


@pytest.mark.parametrize("content", [b"\x80\x04not json", b'{"version": 1, "entries": []}',
                                     b'{"version": 1, "entries": {"k": {"batch_size": true}}}',
                                     b'[1, 2]'])
def test_a_malformed_cache_warns_and_is_replaced(tmp_path, content):
    path = tmp_path / "sizes.json"
    path.write_bytes(content)
    with pytest.warns(UserWarning, match="batch-size cache"):
        b = tune.batch_size(_mlp, PARAMS, EXAMPLE, candidates=[2], repeats=1, cache=str(path))
    assert b == 2
    with open(path) as f:
        assert json.load(f)["version"] == 1
    assert tune.choose(_mlp, PARAMS, EXAMPLE, candidates=[2], cache=str(path)).cached


def test_cache_location_and_off(tmp_path, monkeypatch):
    monkeypatch.setenv("XJAX_TUNE_CACHE", str(tmp_path / "env.json"))
    assert tune._cache_path(True) == str(tmp_path / "env.json")
    monkeypatch.setenv("XJAX_TUNE_CACHE", "off")
    assert tune._cache_path(True) is None and tune._cache_path(None) is None
    monkeypatch.delenv("XJAX_TUNE_CACHE")
    assert tune._cache_path(True) == tune.DEFAULT_CACHE
    assert tune.DEFAULT_CACHE.endswith(os.path.join(".cache", "xjax", "batch_sizes.json"))


@pytest.mark.parametrize("kw, error, match", [
    (dict(mode="backward"), ValueError, "mode must be one of forward, gradient"),
    (dict(candidates=[]), ValueError, "candidates must be a non-empty"),
    (dict(candidates=[0, 8]), ValueError, "candidates must be a non-empty"),
    (dict(candidates=[8.0]), ValueError, "candidates must be a non-empty"),
    (dict(tolerance=1.0), ValueError, r"tolerance must be in \[0, 1\)"),
    (dict(example=np.zeros((0, 2, 2, 3), np.float32)), ValueError, "non-empty batch"),
    (dict(example=np.zeros((4,), np.float32)), ValueError, "non-empty batch"),
    (dict(example=np.zeros((1, 2, 2, 3), np.uint8)), TypeError, "floating point"),
    (dict(example=[[0.5]]), TypeError, "example must be an array"),
])
def test_bad_arguments_are_named(kw, error, match):
    kw = {"example": EXAMPLE, **kw}
    with pytest.raises(error, match=match):
        tune.batch_size(_mlp, PARAMS, kw.pop("example"), cache=None, **kw)


def test_cli_auto_batch_size_measures_once_then_reads_the_cache(tmp_path):
    """``xjax explain`` with no --batch-size: the measured size, said on stderr and recorded
    in the saved settings; a second run reads the cache."""
    from PIL import Image

    images = tmp_path / "im"
    images.mkdir()
    Image.fromarray(np.full((28, 28), 128, np.uint8)).save(images / "a.png")
    cache = tmp_path / "sizes.json"
    env = {k: v for k, v in os.environ.items() if k != "XJAX_BATCH_SIZE"}
    env.update(XJAX_TUNE_CACHE=str(cache), XJAX_COMPILE_CACHE="off")
    cmd = [sys.executable, "-m", "xjax.cli", "explain", "--model", "small_cnn", "--method",
           "saliency,sobol", "--param", "nb_design=4", "--param", "grid_size=3", "--images",
           str(images), "--out", str(tmp_path / "out"), "--save-maps",
           str(tmp_path / "maps.npz"), "--overwrite"]
    first = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    line = next(t for t in first.stderr.splitlines() if "--batch-size auto" in t)
    assert "forward images/s at 8:" in line and "measured" in line
    with open(cache) as f:
        (entry,) = json.load(f)["entries"].values()
    assert entry["mode"] == "forward"                  # sobol's calls; saliency is one call
    saved = xjax.runs.load_maps_file(str(tmp_path / "maps.npz"))
    assert saved.settings["hyperparameters"]["sobol"]["batch_size"] == entry["batch_size"]
    assert saved.settings["hyperparameters"]["saliency"]["batch_size"] == 4   # images per step
    second = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    assert "cached in" in second.stderr
    bad = subprocess.run(cmd + ["--batch-size", "0"], env=env, cwd=ROOT, capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "expected a positive integer or 'auto'" in bad.stderr


def test_an_unwritable_cache_warns_and_still_returns_the_measurement(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")                         # a file where the cache's folder should be
    with pytest.warns(UserWarning, match="could not write the batch-size cache"):
        choice = tune.choose(_mlp, PARAMS, EXAMPLE, candidates=[2], repeats=1,
                             cache=str(blocker / "sizes.json"))
    assert choice.batch_size == 2 and choice.cache is None and not choice.cached
