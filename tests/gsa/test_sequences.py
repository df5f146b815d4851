import warnings

import jax
import numpy as np
import pytest
from scipy.stats import qmc

from xjax import gsa


@pytest.mark.parametrize("n,d", [(1, 1), (16, 5), (1024, 200), (1000, 64), (64, 4096)])
def test_unscrambled_sobol_equals_scipy(n, d):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on non power-of-two n
        expected = qmc.Sobol(d, scramble=False, bits=30).random(n).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(gsa.sobol_sequence(n, d)), expected)


def test_scrambled_sobol_is_a_randomized_net():
    n, d = 256, 16
    a = np.asarray(gsa.sobol_sequence(n, d, key=jax.random.key(0)))
    b = np.asarray(gsa.sobol_sequence(n, d, key=jax.random.key(1)))
    assert a.min() >= 0 and a.max() < 1
    # Owen scrambling keeps the (0, m, 1)-net property: one point per 1/n interval per axis
    for j in range(d):
        assert len(np.unique(np.floor(a[:, j] * n))) == n
    # ... and 2-D stratification of the first two axes on 16 x 16 elementary boxes
    cells = np.floor(a[:, 0] * 16) * 16 + np.floor(a[:, 1] * 16)
    assert len(np.unique(cells)) == 256
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(a, np.asarray(gsa.sobol_sequence(n, d, key=jax.random.key(0))))
    # randomized QMC is unbiased: the mean over keys of a point set's mean is 1/2
    means = [float(gsa.sobol_sequence(16, 4, key=jax.random.key(k)).mean()) for k in range(32)]
    assert abs(np.mean(means) - 0.5) < 0.01


def test_large_design_under_jit():
    """2^15 points in 1024 dimensions under jit: every one-dimensional projection of a 2^m
    prefix of an unscrambled Sobol' sequence is exactly {k / 2^m} (a (0, m, 1)-net), and the
    first rows equal scipy's."""
    out = jax.jit(lambda: gsa.sobol_sequence(2 ** 15, 1024))()
    assert out.shape == (2 ** 15, 1024) and out.dtype == np.float32
    cells = np.sort(np.floor(np.asarray(out, np.float64) * 2 ** 15), axis=0)
    np.testing.assert_array_equal(cells, np.broadcast_to(np.arange(2 ** 15)[:, None], cells.shape))
    np.testing.assert_allclose(out[:64, :32], qmc.Sobol(32, scramble=False).random(64), atol=1e-7)


def test_halton_and_latin_hypercube():
    h = np.asarray(gsa.halton(100, 10))
    np.testing.assert_allclose(h, qmc.Halton(10, scramble=False).random(100), atol=2e-7)
    r = np.asarray(gsa.halton(100, 10, key=jax.random.key(0)))
    assert r.min() >= 0 and r.max() < 1 and not np.allclose(r, h)
    lhs = np.asarray(gsa.latin_hypercube(50, 3, key=jax.random.key(0)))
    for j in range(3):
        np.testing.assert_array_equal(np.sort(np.floor(lhs[:, j] * 50)), np.arange(50))
    with pytest.raises(ValueError, match="key"):
        gsa.latin_hypercube(5, 2, key=None)


def test_errors():
    with pytest.raises(ValueError, match="d must be <= 4096"):
        gsa.sobol_sequence(4, 5000)
    with pytest.raises(ValueError, match="n must be a positive int"):
        gsa.sobol_sequence(0, 3)
