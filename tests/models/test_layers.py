"""``xjax.models._layers``: ``max_pool`` has reduce_window's values and gradients, without
select-and-scatter; ``depthwise_conv`` (slices, no grouped convolution) equals a float64 NumPy
depthwise convolution, and its gradients the grouped convolution's (issue 25)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import lax

from xjax.models._layers import Conv2d, depthwise_conv, max_pool, tf_same_padding


def reference(x, window, stride, padding):
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, window, window, 1), (1, stride, stride, 1),
                             [(0, 0), (padding, padding), (padding, padding), (0, 0)])


@pytest.mark.parametrize("window,stride,padding,size", [(3, 2, 1, 9), (3, 2, 1, 8), (2, 1, 0, 5),
                                                        (3, 3, 0, 7), (2, 2, 0, 6)])
def test_values_and_gradients_equal_reduce_window(window, stride, padding, size):
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, size, size, 3)), jnp.float32)
    ct = jnp.asarray(np.random.default_rng(1).normal(
        size=reference(x, window, stride, padding).shape), jnp.float32)
    np.testing.assert_array_equal(max_pool(x, window, stride, padding),
                                  reference(x, window, stride, padding))
    grad = lambda f: jax.grad(lambda a: (f(a, window, stride, padding) * ct).sum())(x)
    np.testing.assert_array_equal(grad(max_pool), grad(reference))
    # forward mode (a custom VJP would refuse it) and the second derivative of a smooth use
    t = jnp.ones_like(x)
    np.testing.assert_array_equal(jax.jvp(lambda a: max_pool(a, window, stride, padding), (x,),
                                          (t,))[1],
                                  jax.jvp(lambda a: reference(a, window, stride, padding), (x,),
                                          (t,))[1])
    hvp = lambda f: jax.grad(lambda a: (jax.grad(lambda b: (f(b, window, stride, padding) ** 2)
                                                 .sum())(a) * t).sum())(x)
    np.testing.assert_allclose(hvp(max_pool), hvp(reference), rtol=1e-6)


def test_ties_give_the_whole_gradient_to_one_element():
    x = jnp.zeros((1, 4, 4, 1), jnp.float32)                 # every window is a tie
    g = jax.grad(lambda a: max_pool(a, 3, 2, 1).sum())(x)
    assert float(g.sum()) == 4.0                              # one unit per output, conserved
    assert set(np.unique(np.asarray(g))) <= {0.0, 1.0, 2.0, 3.0, 4.0}


def test_no_select_and_scatter_in_the_backward_pass():
    x = jnp.ones((1, 8, 8, 2), jnp.float32)
    hlo = jax.jit(jax.grad(lambda a: max_pool(a, 3, 2, 1).sum())).lower(x).as_text()
    assert "select_and_scatter" not in hlo and "select-and-scatter" not in hlo
    ref = jax.jit(jax.grad(lambda a: reference(a, 3, 2, 1).sum())).lower(x).as_text()
    assert "select_and_scatter" in ref or "select-and-scatter" in ref   # what it replaces


def test_bound_transforms_see_the_reduce_window():
    import xjax

    rng = np.random.default_rng(2)
    centre = jnp.asarray(rng.normal(size=(1, 6, 6, 2)), jnp.float32)
    lo, hi = centre - 0.3, centre + 0.3
    f = lambda p, a: max_pool(a, 3, 2, 1).reshape(a.shape[0], -1) * p
    points = lo + (hi - lo) * jnp.asarray(rng.random((256, 6, 6, 2)), jnp.float32)
    values = f(1.0, points)
    for method in ("ibp", "crown_ibp", "crown"):
        b = xjax.bounds.bounds(f, method=method)(1.0, lo, hi)
        assert bool(jnp.all((b.lower <= values + 1e-5) & (values <= b.upper + 1e-5))), method
        # as tight as bounding reduce_window itself
        r = xjax.bounds.bounds(lambda p, a: reference(a, 3, 2, 1).reshape(a.shape[0], -1) * p,
                               method=method)(1.0, lo, hi)
        np.testing.assert_allclose(b.lower, r.lower, rtol=1e-6)
        np.testing.assert_allclose(b.upper, r.upper, rtol=1e-6)


def _numpy_depthwise(x, kernel, stride, padding):
    """float64 loops over output pixels and taps: ``y[b, i, j, c] = sum_{u, v} xp[b, s i + u,
    s j + v, c] w[u, v, 0, c]``."""
    x, kernel = np.asarray(x, np.float64), np.asarray(kernel, np.float64)
    (pt, pb), (pl, pr) = padding
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    k = kernel.shape[0]
    oh, ow = (xp.shape[1] - k) // stride + 1, (xp.shape[2] - k) // stride + 1
    y = np.zeros((x.shape[0], oh, ow, x.shape[3]))
    for i in range(oh):
        for j in range(ow):
            win = xp[:, i * stride:i * stride + k, j * stride:j * stride + k, :]
            y[:, i, j, :] = (win * kernel[:, :, 0, :]).sum(axis=(1, 2))
    return y


@pytest.mark.parametrize("h,w,k,stride,padding", [
    (9, 7, 3, 1, "tf_same"), (10, 11, 5, 2, "tf_same"), (7, 7, 3, 2, "tf_same"),
    (6, 5, 3, 1, "valid"), (8, 8, 3, 2, 1), (4, 4, 1, 1, "tf_same"), (3, 3, 5, 1, "tf_same")])
def test_depthwise_conv_equals_numpy_and_the_grouped_convolution(h, w, k, stride, padding):
    rng = np.random.default_rng(0)
    c = 4
    x = jnp.asarray(rng.normal(size=(2, h, w, c)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(k, k, 1, c)), jnp.float32)
    pad = ([tf_same_padding(h, k, stride), tf_same_padding(w, k, stride)] if padding == "tf_same"
           else [(0, 0)] * 2 if padding == "valid" else [(padding, padding)] * 2)
    y = depthwise_conv(x, kernel, stride=stride, padding=pad)
    np.testing.assert_allclose(y, _numpy_depthwise(x, kernel, stride, pad), rtol=1e-5, atol=1e-5)

    def grouped(a, kern):
        return lax.conv_general_dilated(a, kern, (stride, stride), pad,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        feature_group_count=c)

    ct = jnp.asarray(rng.normal(size=y.shape), jnp.float32)
    grads = lambda f: jax.grad(lambda a, kern: (f(a, kern) * ct).sum(), argnums=(0, 1))(x, kernel)
    for got, want in zip(grads(lambda a, kern: depthwise_conv(a, kern, stride=stride,
                                                              padding=pad)), grads(grouped),
                         strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # the zoo's layer takes this path for depthwise kernels only, and agrees with it
    conv = Conv2d(c, c, k, stride=stride, padding=padding, groups=c, rngs=nnx.Rngs(0))
    conv.kernel[...] = kernel
    np.testing.assert_allclose(conv(x), y, rtol=0, atol=0)
    hlo = jax.jit(conv.__call__).lower(x).as_text()
    assert "feature_group_count" not in hlo and "convolution" not in hlo
