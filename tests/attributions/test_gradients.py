"""Closed forms for the gradient family on toy models."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xjax
from tests.helpers import images, linear_model, linear_params

A = xjax.attributions


@pytest.fixture(scope="module")
def lin():
    w = linear_params()
    x = images(3)
    y = jnp.array([0, 2, 3], jnp.int32)
    w_y = jnp.moveaxis(w[..., y], -1, 0)            # [N, H, W, C]
    return w, x, y, w_y


def test_gradient_input_is_exact_contribution(lin):
    w, x, y, w_y = lin
    np.testing.assert_allclose(A.gradient_input(linear_model, channel_reduction=None)(w, x, y),
                               w_y * x, rtol=1e-6)
    np.testing.assert_allclose(A.gradient_input(linear_model)(w, x, y), (w_y * x).mean(-1),
                               rtol=1e-5, atol=1e-7)


def test_integrated_gradients_completeness_linear(lin):
    w, x, y, w_y = lin
    base = 0.3
    maps = A.integrated_gradients(linear_model, steps=5, baseline=base,
                                  channel_reduction="sum")(w, x, y)
    f = lambda z: A.logit(linear_model(w, z), y)
    np.testing.assert_allclose(maps.sum((1, 2)), f(x) - f(jnp.full_like(x, base)), rtol=1e-4,
                               atol=1e-4)
    np.testing.assert_allclose(maps, ((x - base) * w_y).sum(-1), rtol=1e-4, atol=1e-5)


def tanh_model(p, x):
    return jnp.tanh(jnp.einsum("nhwc,hwck->nk", x, p) / 4.0) * 4.0


@pytest.mark.parametrize("rule", ["trapezoid", "riemann_middle"])
def test_integrated_gradients_completeness_converges_nonlinear(lin, rule):
    w, x, y, _ = lin
    baseline = images(1, seed=9)[0]
    f = lambda z: A.logit(tanh_model(w, z), y)
    gap = f(x) - f(jnp.broadcast_to(baseline, x.shape))
    errors = []
    for steps in (4, 16, 64):
        maps = A.integrated_gradients(tanh_model, steps=steps, baseline=baseline, rule=rule,
                                      channel_reduction="sum")(w, x, y)
        errors.append(float(jnp.abs(maps.sum((1, 2)) - gap).max()))
    assert errors[2] < errors[1] < errors[0]       # the quadrature converges
    assert errors[2] < 1e-2 * float(jnp.abs(gap).max())


def test_noisy_gradients_on_a_linear_model(lin):
    w, x, y, w_y = lin
    key = jax.random.key(0)
    kw = {"nb_samples": 4, "channel_reduction": None}
    np.testing.assert_allclose(A.smoothgrad(linear_model, **kw)(w, x, y, key=key), w_y, rtol=1e-5)
    np.testing.assert_allclose(A.squaregrad(linear_model, **kw)(w, x, y, key=key), w_y ** 2,
                               rtol=1e-5)
    np.testing.assert_allclose(A.vargrad(linear_model, **kw)(w, x, y, key=key), 0.0, atol=1e-5)


def test_smoothgrad_converges_to_the_gaussian_smoothed_gradient(lin):
    """tanh_model's gradient for class y is sech^2(z / 4) w_y with z = <x, w_y>; under noise
    x + sigma eps, z ~ N(<x, w_y>, sigma^2 |w_y|^2), so E[gradient] = E[sech^2(Z / 4)] w_y, a
    one-dimensional Gaussian integral (Gauss-Hermite, float64). The Monte Carlo mean of S samples
    lies within 5 standard errors of it; the standard error comes from the same integral."""
    w, x, y, w_y = lin
    sigma, s = 0.5, 2048
    got = np.asarray(A.smoothgrad(tanh_model, nb_samples=s, noise=sigma, channel_reduction=None,
                                  batch_size=4096)(w, x, y, key=jax.random.key(3)), np.float64)
    w64, x64 = np.asarray(w, np.float64), np.asarray(x, np.float64)
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)      # probabilists': N(0, 1)
    weights = weights / weights.sum()
    tols = []
    for n in range(x.shape[0]):
        wy = w64[..., int(y[n])]
        mu, sd = float((x64[n] * wy).sum()), sigma * float(np.sqrt((wy ** 2).sum()))
        sech2 = 1.0 / np.cosh((mu + sd * nodes) / 4.0) ** 2
        mean, var = (weights * sech2).sum(), (weights * sech2 ** 2).sum() - (weights * sech2).sum() ** 2
        tol = 5 * np.sqrt(var / s) * np.abs(wy) + 1e-6
        assert (np.abs(got[n] - mean * wy) <= tol).all()
        tols.append(tol)
    # and the test can tell it from the plain gradient: the smoothing is visible at this sigma
    plain = np.asarray(A.saliency(tanh_model, absolute=False, channel_reduction=None)(w, x, y))
    assert (np.abs(got - plain) > 3 * np.stack(tols)).any()


def test_noise_tunnel_wraps_any_explainer(lin):
    w, x, y, w_y = lin
    signed = A.saliency(linear_model, absolute=False, channel_reduction=None)
    nt = A.noise_tunnel(signed, nb_samples=3)
    np.testing.assert_allclose(nt(w, x, y, key=jax.random.key(0)), w_y, rtol=1e-5)
    var = A.noise_tunnel(signed, nb_samples=3, reduction="variance")
    np.testing.assert_allclose(var(w, x, y, key=jax.random.key(0)), 0.0, atol=1e-5)
    with pytest.raises(ValueError, match="reduction"):
        A.noise_tunnel(signed, reduction="median")


def relu_net(p, x):
    h = jax.nn.relu(jnp.einsum("nhwc,hwcf->nf", x, p["w1"]))
    h = jax.nn.relu6(h @ p["w2"])
    return jnp.maximum(h, 0.0) @ p["w3"]


def test_guided_backprop_and_deconvnet_rules():
    rng = np.random.default_rng(0)
    p = {"w1": jnp.asarray(rng.normal(size=(4, 4, 2, 6)), jnp.float32),
         "w2": jnp.asarray(rng.normal(size=(6, 6)), jnp.float32),
         "w3": jnp.asarray(rng.normal(size=(6, 3)), jnp.float32)}
    x = images(2, shape=(4, 4, 2))
    y = jnp.array([0, 2], jnp.int32)
    a1 = jnp.einsum("nhwc,hwcf->nf", x, p["w1"])
    a2 = jnp.maximum(a1, 0) @ p["w2"]
    r = p["w3"][:, y].T                                      # d score / d h3
    h2 = jnp.clip(a2, 0, 6)
    # guided: gate by forward activation and by a positive signal at every rectifier
    gate = lambda cond: cond.astype(jnp.float32)
    g = r * gate(h2 > 0) * gate(r > 0)                       # max(h2, 0)
    g = g * gate(a2 < 6)                                     # relu6's upper clip: plain gradient
    g = g * gate(a2 > 0) * gate(g > 0)                       # relu6's lower clip
    g = g @ p["w2"].T
    g = g * gate(a1 > 0) * gate(g > 0)
    expected = jnp.einsum("nf,hwcf->nhwc", g, p["w1"])
    got = A.guided_backprop(relu_net, channel_reduction=None)(p, x, y)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # deconvnet: rectify the backward signal only
    d = jnp.maximum(r, 0)
    d = jnp.maximum(d * gate(a2 < 6), 0)
    d = jnp.maximum(d @ p["w2"].T, 0)
    expected = jnp.einsum("nf,hwcf->nhwc", d, p["w1"])
    got = A.deconvnet(relu_net, channel_reduction=None)(p, x, y)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # forward values are untouched, and without rectifiers guided backprop is the gradient
    np.testing.assert_allclose(A.rewrite_relu_gradients(relu_net)(p, x), relu_net(p, x), rtol=1e-6)
    w = linear_params()
    xs = images(2)
    ys = jnp.array([1, 3], jnp.int32)
    np.testing.assert_allclose(A.guided_backprop(linear_model, channel_reduction=None)(w, xs, ys),
                               A.saliency(linear_model, absolute=False,
                                          channel_reduction=None)(w, xs, ys), rtol=1e-6)


def test_guided_backprop_on_a_zoo_model(fmnist_cnn):
    x = jnp.zeros((1, 28, 28, 1)).at[:, 6:22, 9:19].set(0.8)
    maps = jax.jit(A.guided_backprop(fmnist_cnn.model_fn))(fmnist_cnn.params, x,
                                                          jnp.array([1], jnp.int32))
    assert maps.shape == (1, 28, 28) and bool(jnp.isfinite(maps).all())
    assert float(jnp.abs(maps).sum()) > 0
