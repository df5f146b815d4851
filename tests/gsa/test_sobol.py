"""Sobol' index estimators against analytic values, with the error shrinking as N grows."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xjax import gsa


def ishigami(u, a=7.0, b=0.1):
    x = (2.0 * u - 1.0) * jnp.pi
    return jnp.sin(x[:, 0]) + a * jnp.sin(x[:, 1]) ** 2 + b * x[:, 2] ** 4 * jnp.sin(x[:, 0])


def ishigami_indices(a=7.0, b=0.1):
    v1 = 0.5 * (1 + b * np.pi ** 4 / 5) ** 2
    v2 = a ** 2 / 8
    v13 = b ** 2 * np.pi ** 8 / 18 - b ** 2 * np.pi ** 8 / 50
    v = v1 + v2 + v13
    return np.array([v1, v2, 0.0]) / v, np.array([v1 + v13, v2, v13]) / v


def g_function(a):
    a = jnp.asarray(a, jnp.float32)
    return lambda u: jnp.prod((jnp.abs(4.0 * u - 2.0) + a[None]) / (1.0 + a[None]), axis=1)


def g_indices(a):
    a = np.asarray(a, np.float64)
    vi = 1.0 / (3.0 * (1.0 + a) ** 2)
    v = np.prod(1.0 + vi) - 1.0
    total = np.array([vi[i] * np.prod(np.delete(1.0 + vi, i)) for i in range(len(a))]) / v
    return vi / v, total


def linear(w):
    w = jnp.asarray(w, jnp.float32)
    return lambda u: u @ w


def linear_indices(w):
    s = np.asarray(w) ** 2 / np.sum(np.asarray(w) ** 2)
    return s, s


CASES = {
    "ishigami": (ishigami, ishigami_indices(), 3),
    "g_0_1_9_99": (g_function([0.0, 1.0, 9.0, 99.0]), g_indices([0.0, 1.0, 9.0, 99.0]), 4),
    "g_0_0_3": (g_function([0.0, 0.0, 3.0]), g_indices([0.0, 0.0, 3.0]), 3),
    "linear": (linear([1.0, 2.0, 0.5, 0.0]), linear_indices([1.0, 2.0, 0.5, 0.0]), 4),
}


def mean_error(f, exact, d, n, estimator, keys=3):
    errs = []
    for k in range(keys):
        design = gsa.replicated_design(n, d, key=jax.random.key(k))
        s = gsa.sobol_indices(f(design), n, d, estimator=estimator)
        errs.append(max(np.abs(np.asarray(s.first) - exact[0]).max(),
                        np.abs(np.asarray(s.total) - exact[1]).max()))
    return float(np.mean(errs))


@pytest.mark.parametrize("estimator", gsa.ESTIMATORS)
@pytest.mark.parametrize("case", list(CASES))
def test_estimators_converge_to_analytic_indices(case, estimator):
    f, exact, d = CASES[case]
    errors = [mean_error(f, exact, d, n, estimator) for n in (2 ** 7, 2 ** 10, 2 ** 13)]
    # the error shrinks as the design grows (QMC rate is at least N^-1/2: >= 2.8x per 8x N)
    assert errors[1] < errors[0] and errors[2] < errors[1] / 2, errors
    assert errors[2] < 0.02, errors


def test_ishigami_at_xplique_scale():
    """Xplique's own check: total indices within 1e-3... here 5e-3 at N = 2^15, Jansen."""
    first, total = ishigami_indices()
    design = gsa.replicated_design(2 ** 15, 3, key=jax.random.key(0))
    s = gsa.sobol_indices(ishigami(design), 2 ** 15, 3)
    np.testing.assert_allclose(s.total, total, atol=5e-3)
    np.testing.assert_allclose(s.first, first, atol=5e-3)


def test_design_layout():
    d, n = 3, 4
    x = np.asarray(gsa.replicated_design(n, d))
    ab = np.asarray(gsa.sobol_sequence(n, 2 * d))
    a, b = ab[:, :d], ab[:, d:]
    np.testing.assert_array_equal(x[:n], a)
    np.testing.assert_array_equal(x[n:2 * n], b)
    for i in range(d):
        c = x[(2 + i) * n:(3 + i) * n]
        np.testing.assert_array_equal(np.delete(c, i, 1), np.delete(a, i, 1))
        np.testing.assert_array_equal(c[:, i], b[:, i])
    batch = jnp.stack([jnp.asarray(x[:, 0]), jnp.asarray(x[:, 1])])
    s = gsa.sobol_indices(batch, n, d)
    assert s.total.shape == (2, d) and s.first.shape == (2, d)


def test_errors():
    with pytest.raises(ValueError, match="power of two"):
        gsa.replicated_design(24, 3)
    with pytest.raises(ValueError, match="estimator"):
        gsa.sobol_indices(jnp.zeros(20), 4, 3, estimator="sobol")
    with pytest.raises(ValueError, match="nb_design"):
        gsa.sobol_indices(jnp.zeros(21), 4, 3)
    with pytest.raises(ValueError, match="sampler"):
        gsa.replicated_design(4, 3, sampler="grid")


def _paper_estimators(a, b, c):
    """Each estimator written from its paper in float64 NumPy (c: [d, N]); returns first, total."""
    n = a.size
    f0 = a.mean()
    v = a.var(ddof=1)
    out = {}
    out["jansen"] = (1 - ((b - c) ** 2).mean(1) / (2 * v), ((a - c) ** 2).mean(1) / (2 * v))
    out["homma"] = (((b * c).mean(1) - f0 ** 2) / v, 1 - ((a * c).mean(1) - f0 ** 2) / v)
    out["saltelli"] = ((b * (c - a)).mean(1) / v, (a * (a - c)).mean(1) / v)

    def janon(u, w):                       # Janon et al. (2014): both moments over N
        m = (u.sum(-1) + w.sum(-1)) / (2 * n)
        return ((u * w).sum(-1) / n - m ** 2) / ((u ** 2 + w ** 2).sum(-1) / (2 * n) - m ** 2)

    out["janon"] = (janon(b[None], c), 1 - janon(a[None], c))

    def corr(u, w):
        return np.array([np.corrcoef(u, wi)[0, 1] for wi in w])

    out["glen"] = (corr(b, c), 1 - corr(a, c))
    return out


def test_estimators_equal_their_papers_formulas():
    rng = np.random.default_rng(0)
    n, d = 64, 3
    values = rng.normal(size=n * (d + 2)) ** 2 + 1.0
    a, b, c = values[:n], values[n:2 * n], values[2 * n:].reshape(d, n)
    want = _paper_estimators(a, b, c)
    for name in gsa.ESTIMATORS:
        s = gsa.sobol_indices(jnp.asarray(values, jnp.float32), n, d, estimator=name)
        np.testing.assert_allclose(s.first, want[name][0], rtol=1e-4, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(s.total, want[name][1], rtol=1e-4, atol=1e-5, err_msg=name)
    totals = {name: np.asarray(gsa.sobol_indices(jnp.asarray(values, jnp.float32), n, d,
                                                  estimator=name).total) for name in gsa.ESTIMATORS}
    for i, x in enumerate(gsa.ESTIMATORS):                  # no two rows compute the same thing
        for y in gsa.ESTIMATORS[i + 1:]:
            assert np.abs(totals[x] - totals[y]).max() > 1e-3, (x, y)


def test_skip_gives_tensorflow_sequence_and_zero_gives_scipy():
    """skip=0 is scipy's sequence (from the origin); skip=1 drops the origin, which TensorFlow's
    sobol_sample kernel never emits (it starts from the first column of direction numbers)."""
    qmc = pytest.importorskip("scipy.stats.qmc")
    ref = qmc.Sobol(6, scramble=False).random(64)
    np.testing.assert_allclose(gsa.sobol_sequence(32, 6), ref[:32], atol=1e-7)
    tf_like = np.asarray(gsa.sobol_sequence(32, 6, skip=1))
    np.testing.assert_allclose(tf_like, ref[1:33], atol=1e-7)
    np.testing.assert_array_equal(tf_like[0], 0.5)           # TF's first point: all 1/2
    assert (tf_like.sum(1) > 0).all()
    design = np.asarray(gsa.replicated_design(8, 3, skip=1))
    assert (design.sum(1) > 0).all()                          # no all-zero mask row
    assert (np.asarray(gsa.replicated_design(8, 3)).sum(1) == 0).any()
    with pytest.raises(ValueError, match="skip"):
        gsa.sobol_sequence(4, 2, skip=-1)
    with pytest.raises(ValueError, match="skip"):
        gsa.replicated_design(8, 3, sampler="halton", skip=1)


def test_sobol_indices_bad_arguments_and_constant_values():
    """Before: a negative d or nb_design, a list, or nb_design = 0 raised NumPy errors or gave NaN
    with warnings, and constant values gave first = 1 above total = 0."""
    import jax.numpy as jnp

    from xjax.gsa import ESTIMATORS, sobol_indices

    v = jnp.ones(8 * 5)
    for kw, err, match in (({"nb_design": 8, "d": -1}, ValueError, "d must be >= 1"),
                           ({"nb_design": 0, "d": 3}, ValueError, "nb_design must be >= 2"),
                           ({"nb_design": -8, "d": 3}, ValueError, "nb_design must be >= 2"),
                           ({"nb_design": 8.0, "d": 3}, TypeError, "nb_design must be an int")):
        with pytest.raises(err, match=match):
            sobol_indices(v, **kw)
    with pytest.raises(TypeError, match="values must be an array"):
        sobol_indices([1.0] * 40, 8, 3)
    with pytest.raises(TypeError, match="real array"):
        sobol_indices(jnp.ones(40, bool), 8, 3)
    for est in ESTIMATORS:
        for c in (0.0, 3.5, -1e6):
            s = sobol_indices(jnp.full((2, 40), c), 8, 3, estimator=est)
            np.testing.assert_array_equal(s.first, 0.0)
            np.testing.assert_array_equal(s.total, 0.0)
