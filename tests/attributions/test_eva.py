"""EVA: closed form on a linear model, zero on ignored pixels, monotone under IBP."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xjax
from tests.helpers import conv_model, conv_params, images

A = xjax.attributions


@pytest.fixture(scope="module")
def linear():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 4, 1, 2)).astype(np.float32)
    w[:, 2:] = 0.0                                       # the right half is ignored
    x = rng.uniform(0.2, 0.8, (3, 4, 4, 1)).astype(np.float32)
    model_fn = lambda p, x: jnp.einsum("nhwc,hwck->nk", x, p)
    y = np.asarray(model_fn(jnp.asarray(w), jnp.asarray(x)).argmax(1), np.int32)
    return model_fn, jnp.asarray(w), jnp.asarray(x), jnp.asarray(y)


def test_closed_form_on_a_linear_model(linear):
    model_fn, w, x, y = linear
    e = A.eva(model_fn, epsilon=0.1, grid_size=2, bound="crown", clip=None)
    maps = np.asarray(e(w, x, y))
    # AO(B) - AO(B_u) = eps * sum_{i in u} |w_other,i - w_y,i|
    v = np.abs(np.asarray(w[..., 0] - w[..., 1]))[..., 0]                   # [4, 4]
    for n in range(3):
        for r in range(2):
            for c in range(2):
                expected = 0.1 * v[2 * r:2 * r + 2, 2 * c:2 * c + 2].sum()
                np.testing.assert_allclose(maps[n, 2 * r:2 * r + 2, 2 * c:2 * c + 2], expected,
                                           rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(maps[:, :, 2:], 0.0, atol=1e-6)            # ignored pixels
    # top-k rivals (k = 1 of 1 rival) gives the same
    np.testing.assert_allclose(A.eva(model_fn, epsilon=0.1, grid_size=2, bound="crown",
                                     clip=None, top_k_rivals=1)(w, x, y), maps, rtol=1e-5)


def test_ibp_eva_is_non_negative_and_topk_is_sound():
    params, x = conv_params(), images(2)
    y = jnp.asarray([0, 1], jnp.int32)
    e = A.eva(conv_model, epsilon=0.05, grid_size=4, bound="ibp")
    assert bool((e(params, x, y) >= -1e-5).all())
    # fewer CROWN rows, the rest by IBP: a looser (never tighter) overlap, so a valid map
    full = A.eva(conv_model, epsilon=0.05, grid_size=2)(params, x, y)
    top = A.eva(conv_model, epsilon=0.05, grid_size=2, top_k_rivals=1)(params, x, y)
    assert full.shape == top.shape and bool(jnp.isfinite(top).all())


def test_empirical_variant_needs_a_split_and_a_key():
    from tests.helpers import conv_features, conv_head
    params, x = conv_params(), images(2)
    y = jnp.asarray([0, 1], jnp.int32)
    with pytest.raises(ValueError, match="features_fn"):
        A.eva(conv_model, empirical=True)
    e = A.eva(conv_model, epsilon=0.05, grid_size=2, empirical=True, features_fn=conv_features,
              head_fn=conv_head, nb_samples=8)
    with pytest.raises(ValueError, match="key"):
        e(params, x, y)
    m = e(params, x, y, key=jax.random.key(0))
    assert m.shape == (2, 8, 8) and bool(jnp.isfinite(m).all())
    with pytest.raises(ValueError, match="bound"):
        A.eva(conv_model, bound="fast")
    with pytest.raises(ValueError, match="epsilon"):
        A.eva(conv_model, epsilon=0.0)
