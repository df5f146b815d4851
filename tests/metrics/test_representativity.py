import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import xjax

M = xjax.metrics


def test_identical_models_give_mege_one():
    rng = np.random.default_rng(0)
    maps = jnp.asarray(np.repeat(rng.random((1, 12, 4, 4)), 3, 0), jnp.float32)
    y = jnp.asarray(rng.integers(0, 2, 12), jnp.int32)
    preds = jnp.stack([y] * 3)
    out = M.mege_reco(maps, preds, y, jnp.arange(12, dtype=jnp.int32) % 3)
    np.testing.assert_allclose(out.mege, 1.0, atol=1e-6)
    assert int(out.n_diff) == 0 and float(out.reco) == 0.0


def test_reco_separates_and_mege_value():
    """Two models; on inputs both get right the maps agree up to order noise, on inputs only
    one gets right they are unrelated: ReCo = 1 exactly when the distance sets separate."""
    rng = np.random.default_rng(1)
    n = 20
    base = rng.random((n, 16))
    other = base.copy()
    y = np.zeros(n, np.int32)
    pred1 = y.copy()
    pred2 = y.copy()
    pred2[10:] = 1                                         # model 2 wrong on the last 10
    other[10:] = rng.random((10, 16))                      # unrelated maps where they disagree
    maps = jnp.asarray(np.stack([base, other]).reshape(2, n, 4, 4), jnp.float32)
    folds = jnp.asarray(np.arange(n) % 2, jnp.int32)
    out = M.mege_reco(maps, jnp.asarray(np.stack([pred1, pred2])), jnp.asarray(y), folds)
    np.testing.assert_allclose(out.mege, 1.0, atol=1e-6)   # identical maps where both agree
    assert int(out.n_same) == 10 and int(out.n_diff) == 10
    np.testing.assert_allclose(out.reco, 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        M.mege_reco(maps[:1], jnp.asarray(pred1[None]), jnp.asarray(y), folds)


def test_protocol_trains_k_models_and_explains_with_vmap():
    rng = np.random.default_rng(0)
    x = rng.random((64, 4, 4, 1)).astype(np.float32)
    y = (x[:, :2].mean((1, 2, 3)) > x[:, 2:].mean((1, 2, 3))).astype(np.int32)
    model_fn = lambda p, xs: xs.reshape(xs.shape[0], -1) @ p["w"] + p["b"][None]

    def train(xt, yt, key):
        params = {"w": jnp.zeros((16, 2)), "b": jnp.zeros((2,))}
        state = xjax.train.fit(model_fn, params, xt, yt, optimizer=optax.adam(0.1), epochs=20,
                               batch_size=8, key=key, progress=False)
        return state.params

    explainer = xjax.attributions.saliency(model_fn)
    out, info = M.mege_reco_protocol(train, model_fn, explainer, x, y, k=4, key=jax.random.key(0))
    assert 0 < float(out.mege) <= 1 and 0 <= float(out.reco) <= 1
    assert len(info["held_out_accuracy"]) == 4 and min(info["held_out_accuracy"]) > 0.6
    with pytest.raises(ValueError, match="k must be"):
        M.mege_reco_protocol(train, model_fn, explainer, x, y, k=1, key=jax.random.key(0))
    with pytest.raises(ValueError, match="divisible"):
        M.mege_reco_protocol(train, model_fn, explainer, x[:63], y[:63], k=4,
                             key=jax.random.key(0))


def _reference_mege_reco(maps, preds, y, folds):
    """The protocol written out with scipy: NaN distances (a constant map) are dropped."""
    from scipy.stats import spearmanr

    k, n = preds.shape
    same, diff, dropped = [], [], 0
    for i in range(k):
        for j in range(i + 1, k):
            for t in range(n):
                if folds[t] not in (i, j):
                    continue
                ci, cj = preds[i, t] == y[t], preds[j, t] == y[t]
                if not (ci or cj):
                    continue
                a, b = maps[i, t].ravel(), maps[j, t].ravel()
                with np.errstate(invalid="ignore", divide="ignore"):
                    rho = spearmanr(a, b).statistic if np.ptp(a) and np.ptp(b) else np.nan
                if np.isnan(rho):
                    dropped += 1
                    continue
                (same if ci and cj else diff).append(np.sqrt(max(1.0 - abs(rho), 0.0)))
    mege = 1.0 / (1.0 + np.mean(same)) if same else 1.0
    reco = 0.0
    for g in np.unique(np.concatenate([same, diff, (np.add.outer(same + diff, same + diff) / 2).ravel()])):
        reco = max(reco, np.mean(np.asarray(same) < g) + np.mean(np.asarray(diff) > g) - 1.0)
    return mege, reco, len(same), len(diff), dropped


def test_constant_maps_are_dropped_not_maximally_distant():
    """Two models with identical maps, one input's maps all zero: MeGe is 1 (the old rule took the
    correlation of a constant map as 0, a distance of 1, and gave 0.80 here)."""
    rng = np.random.default_rng(2)
    n = 4
    maps = np.repeat(rng.random((1, n, 4, 4)), 2, 0)
    maps[:, 0] = 0.0                                       # an empty map, in both models
    y = np.zeros(n, np.int32)
    preds = np.zeros((2, n), np.int32)
    folds = np.arange(n, dtype=np.int32) % 2
    out = M.mege_reco(jnp.asarray(maps, jnp.float32), jnp.asarray(preds), jnp.asarray(y),
                      jnp.asarray(folds))
    np.testing.assert_allclose(out.mege, 1.0, atol=1e-6)
    assert int(out.n_dropped) == 1 and int(out.n_same) == n - 1
    # an empty map on one side only is dropped too
    maps[1, 1] = 0.0
    out = M.mege_reco(jnp.asarray(maps, jnp.float32), jnp.asarray(preds), jnp.asarray(y),
                      jnp.asarray(folds))
    assert int(out.n_dropped) == 2 and int(out.n_same) == n - 2


def test_mege_reco_against_scipy_reference_with_empty_maps():
    rng = np.random.default_rng(3)
    k, n = 3, 24
    maps = rng.random((k, n, 3, 3))
    maps[:, 1] = 0.0
    maps[0, 5] = 0.0
    maps[2, 7] = 1.5                                       # constant but not zero
    maps[1, 9] = np.round(maps[1, 9])                      # ties
    y = rng.integers(0, 2, n).astype(np.int32)
    preds = np.where(rng.random((k, n)) < 0.7, y[None], 1 - y[None]).astype(np.int32)
    folds = (np.arange(n) % k).astype(np.int32)
    out = M.mege_reco(jnp.asarray(maps, jnp.float32), jnp.asarray(preds), jnp.asarray(y),
                      jnp.asarray(folds))
    mege, reco, n_same, n_diff, dropped = _reference_mege_reco(maps, preds, y, folds)
    assert (int(out.n_same), int(out.n_diff), int(out.n_dropped)) == (n_same, n_diff, dropped)
    assert dropped >= 3
    np.testing.assert_allclose(out.mege, mege, rtol=1e-5)
    np.testing.assert_allclose(out.reco, reco, rtol=1e-5, atol=1e-6)
