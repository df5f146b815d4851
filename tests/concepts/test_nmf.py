"""NMF and its NNLS encoder: parity with scikit-learn, optimality, implicit gradients."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.decomposition import NMF

from xjax.concepts import nmf, nnls


@pytest.fixture(scope="module")
def activations():
    rng = np.random.default_rng(0)
    a = rng.random((240, 10)) ** 2 @ rng.random((10, 48)) ** 3 + 0.05 * rng.random((240, 48))
    return a.astype(np.float32)


def _rel(a, rec):
    return float(np.linalg.norm(a - rec) / np.linalg.norm(a))


@pytest.mark.parametrize("solver,alpha", [("hals", 0.0), ("hals", 1e-2), ("mu", 0.0)])
def test_reconstruction_matches_sklearn(activations, solver, alpha):
    bank = nmf(8, solver=solver, alpha_codes=alpha, alpha_components=alpha,
               max_iter=200 if solver == "hals" else 400).fit(jnp.asarray(activations))
    mine = _rel(activations, np.asarray(bank.codes @ bank.components))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's ConvergenceWarning at max_iter
        sk = NMF(8, init="nndsvda", solver="cd" if solver == "hals" else "mu", alpha_W=alpha,
                 alpha_H=alpha, max_iter=200 if solver == "hals" else 400, tol=1e-4)
        u = sk.fit_transform(activations)
    ref = _rel(activations, u @ sk.components_)
    assert abs(mine - ref) <= 0.05 * ref, (mine, ref)
    assert np.all(np.asarray(bank.codes) >= 0) and np.all(np.asarray(bank.components) >= 0)


def test_fit_is_deterministic_and_jittable(activations):
    fac = nmf(6, init="random")
    a = jnp.asarray(activations)
    b1 = fac.fit(a, key=jax.random.key(3))
    b2 = fac.fit(a, key=jax.random.key(3))
    b3 = jax.jit(lambda a, k: fac.fit(a, key=k))(a, jax.random.key(3))
    np.testing.assert_array_equal(b1.components, b2.components)
    np.testing.assert_allclose(b1.components, b3.components, rtol=1e-5, atol=1e-6)
    b4 = fac.fit(a, key=jax.random.key(4))
    assert not np.allclose(b1.components, b4.components)


def test_nnls_kkt_conditions():
    rng = np.random.default_rng(1)
    w = jnp.asarray(rng.random((6, 20)), jnp.float32)
    a = jnp.asarray(rng.random((5, 20)) - 0.3, jnp.float32)
    u = nnls(a, w, 0.0, 0.1)
    grad = u @ (w @ w.T + 0.1 * jnp.eye(6)) - a @ w.T
    u, grad = np.asarray(u), np.asarray(grad)
    assert np.all(u >= 0)
    assert np.all(np.abs(grad[u > 0]) < 1e-4)          # stationary on the support
    assert np.all(grad[u == 0] > -1e-4)                 # dual feasible off it
    assert (u == 0).any() and (u > 0).any()             # both cases exercised


@pytest.mark.parametrize("wrt", ["a", "w"])
def test_nnls_implicit_gradient_matches_finite_differences(wrt):
    rng = np.random.default_rng(2)
    w = jnp.asarray(rng.random((5, 16)) + 0.1, jnp.float32)
    a = jnp.asarray(rng.random((3, 16)), jnp.float32)
    c = jnp.asarray(rng.normal(size=(3, 5)), jnp.float32)
    f = jax.jit((lambda v: jnp.sum(nnls(v, w) * c)) if wrt == "a"
                else (lambda v: jnp.sum(nnls(a, v) * c)))
    x0 = a if wrt == "a" else w
    g = np.asarray(jax.grad(f)(x0))
    eps = 1e-2
    fd = np.zeros_like(g)
    for idx in np.ndindex(g.shape):
        d = jnp.zeros_like(x0).at[idx].set(eps)
        fd[idx] = (f(x0 + d) - f(x0 - d)) / (2 * eps)
    err = np.abs(g - fd).max() / np.abs(fd).max()
    assert err < 2e-3, err


def test_transform_keeps_leading_axes(activations):
    fac = nmf(4)
    bank = fac.fit(jnp.asarray(activations))
    maps = jnp.asarray(activations[:12]).reshape(2, 2, 3, 48)
    u = fac.transform(bank, maps)
    assert u.shape == (2, 2, 3, 4)
    np.testing.assert_allclose(u.reshape(12, 4), fac.transform(bank, activations[:12]), atol=1e-6)


def test_bad_input_errors(activations):
    with pytest.raises(ValueError, match="non-negative activations.*ReLU"):
        nmf(3).fit(jnp.asarray(activations) - 1.0)
    with pytest.raises(ValueError, match="exceed the activation width F=48"):
        nmf(60).fit(jnp.asarray(activations))
    with pytest.raises(ValueError, match="too few"):
        nmf(8).fit(jnp.asarray(activations[:5]))
    with pytest.raises(ValueError, match="solver"):
        nmf(3, solver="anls")
