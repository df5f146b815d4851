"""Saliency against closed forms (the contract itself is in test_contract.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xjax

H, W, C, K = 4, 5, 3, 6


def linear_model_fn(params, x):
    """f(x)_k = sum_{hwc} x_hwc W_hwck: saliency is |W[..., y]| maxed over channels."""
    return jnp.einsum("nhwc,hwck->nk", x, params)


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(0)
    params = jnp.asarray(rng.normal(size=(H, W, C, K)), jnp.float32)
    x = jnp.asarray(rng.random((8, H, W, C)), jnp.float32)
    y = jnp.asarray(rng.integers(0, K, 8), jnp.int32)
    return params, x, y


def test_linear_oracle(setup):
    params, x, y = setup
    maps = xjax.attributions.saliency(linear_model_fn)(params, x, y)
    expected = np.abs(np.moveaxis(np.asarray(params)[..., np.asarray(y)], -1, 0)).max(-1)
    np.testing.assert_allclose(maps, expected, rtol=1e-6)
    signed = xjax.attributions.saliency(linear_model_fn, absolute=False, channel_reduction=None)
    np.testing.assert_allclose(signed(params, x, y),
                               np.moveaxis(np.asarray(params)[..., np.asarray(y)], -1, 0),
                               rtol=1e-6)


def test_probability_score(setup):
    params, x, y = setup
    maps = xjax.attributions.saliency(linear_model_fn, score_fn=xjax.attributions.probability,
                                      absolute=False, channel_reduction=None)(params, x, y)
    # d softmax_y / dx = p_y (W_y - sum_k p_k W_k)
    p = np.asarray(jax.nn.softmax(linear_model_fn(params, x)))
    w = np.asarray(params)
    for i in range(len(x)):
        expected = p[i, y[i]] * (w[..., y[i]] - (w * p[i]).sum(-1))
        np.testing.assert_allclose(maps[i], expected, rtol=1e-4, atol=1e-7)


def test_bad_inputs(setup):
    params, x, y = setup
    explain = xjax.attributions.saliency(linear_model_fn)
    with pytest.raises(ValueError, match="rank 4"):
        explain(params, x[0], y)
    with pytest.raises(ValueError, match="y must have one entry"):
        explain(params, x, y[:3])
    with pytest.raises(ValueError, match=r"class indices in \[0, 6\)"):
        explain(params, x, y + 10)
    with pytest.raises(TypeError, match="floating"):
        explain(params, (x * 255).astype(jnp.uint8), y)
    with pytest.raises(ValueError, match="batch_size"):
        xjax.attributions.saliency(linear_model_fn, batch_size=0)
    with pytest.raises(ValueError, match="channel_reduction"):
        xjax.attributions.saliency(linear_model_fn, channel_reduction="median")


def test_on_the_fashion_mnist_model(fmnist_cnn):
    x = jnp.zeros((2, 28, 28, 1)).at[:, 8:20, 10:18].set(1.0)
    maps = jax.jit(xjax.attributions.saliency(fmnist_cnn.model_fn))(fmnist_cnn.params, x,
                                                                     jnp.array([1, 3]))
    assert maps.shape == (2, 28, 28) and bool(jnp.isfinite(maps).all())
    assert float(maps.min()) >= 0
