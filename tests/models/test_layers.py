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


# --- strided_conv: the plain strided convolution, differentiated through space to depth ------

def _numpy_conv(x, w, stride, padding):
    """Float64 NumPy cross-correlation, NHWC / HWIO, explicit padding."""
    x = np.pad(np.asarray(x, np.float64), ((0, 0), padding[0], padding[1], (0, 0)))
    w = np.asarray(w, np.float64)
    k1, k2, _, f = w.shape
    oh, ow = (x.shape[1] - k1) // stride + 1, (x.shape[2] - k2) // stride + 1
    out = np.zeros((x.shape[0], oh, ow, f))
    for i in range(k1):
        for j in range(k2):
            patch = x[:, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride]
            out += patch @ w[i, j]
    return out


STRIDED = [(2, 7, (3, 3), (17, 16)), (2, 3, (0, 1), (9, 9)), (3, 5, (2, 1), (13, 11)),
           (2, 4, (0, 0), (8, 10)), (2, 1, (0, 0), (7, 7)), (4, 3, (5, 5), (6, 6))]


@pytest.mark.parametrize("stride,kernel,pad,hw", STRIDED)
def test_strided_conv_values_and_derivatives(stride, kernel, pad, hw):
    """Values: exactly lax's strided convolution, and the space-to-depth form equals a float64
    NumPy convolution (kernels not a multiple of the stride, asymmetric and wide padding, a
    1x1 kernel, stride 4 over a 6-pixel image). Derivatives: the gradients in the input and the
    kernel, forward mode and a second derivative equal lax's to float rounding."""
    from xjax.models._layers import space_to_depth_conv, strided_conv

    rng = np.random.default_rng(stride * 100 + kernel)
    x = jnp.asarray(rng.normal(size=(2, *hw, 3)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(kernel, kernel, 3, 5)), jnp.float32)
    padding = (pad, pad[::-1])
    plain = lambda a, k: lax.conv_general_dilated(a, k, (stride, stride), padding,
                                                  dimension_numbers=("NHWC", "HWIO", "NHWC"))
    ours = lambda a, k: strided_conv(a, k, stride, padding)
    expected = _numpy_conv(x, w, stride, padding)
    np.testing.assert_array_equal(ours(x, w), plain(x, w))
    np.testing.assert_allclose(space_to_depth_conv(x, w, stride=stride, padding=padding),
                               expected, rtol=1e-5, atol=1e-5)
    ct = jnp.asarray(rng.normal(size=expected.shape), jnp.float32)
    grads = lambda f: jax.grad(lambda a, k: (f(a, k) * ct).sum(), argnums=(0, 1))(x, w)
    for g, r in zip(grads(ours), grads(plain), strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5)
    t = jnp.asarray(rng.normal(size=x.shape), jnp.float32)
    np.testing.assert_allclose(jax.jvp(lambda a: ours(a, w), (x,), (t,))[1],
                               jax.jvp(lambda a: plain(a, w), (x,), (t,))[1], rtol=1e-5, atol=1e-5)
    second = lambda f: jax.grad(lambda k: (jax.grad(lambda a: (f(a, k) * ct).sum())(x) ** 2)
                                .sum())(w)
    np.testing.assert_allclose(second(ours), second(plain), rtol=1e-5, atol=1e-4)


def test_resnet_stem_differentiates_through_space_to_depth():
    """ResNet's 7x7 stride-2 stem uses it: the compiled input gradient holds no input-dilated
    convolution (XLA's own transpose of a strided one), and the model's input gradient equals
    the one through the plain convolution (the same module with the option off)."""
    from xjax.models._bridge import from_nnx
    from xjax.models._resnet import BasicBlock, ResNet

    module = ResNet(BasicBlock, (1, 1, 1, 1), num_classes=4, rngs=nnx.Rngs(0))
    module.eval()
    x = jnp.asarray(np.random.default_rng(0).random((2, 32, 32, 3)), jnp.float32)

    def input_grad():
        model_fn, params = from_nnx(module)
        return jax.jit(jax.grad(lambda a: model_fn(params, a)[:, 1].sum()))

    def stem_transposes(f):           # convolutions producing the image's gradient, dilated
        return [line for line in f.lower(x).as_text().splitlines()
                if "stablehlo.convolution" in line and "-> tensor<2x32x32x3xf32>" in line
                and "lhs_dilate = [2, 2]" in line]

    fast = input_grad()
    assert module.conv1.space_to_depth_gradient and not stem_transposes(fast)
    module.conv1.space_to_depth_gradient = False
    plain = input_grad()
    assert len(stem_transposes(plain)) == 1                      # what it replaces
    np.testing.assert_allclose(fast(x), plain(x), rtol=1e-5, atol=1e-6)
