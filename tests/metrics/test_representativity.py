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
