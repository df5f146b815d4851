import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xjax
from tests.helpers import conv_model, conv_params, images, linear_model, linear_params

M = xjax.metrics
A = xjax.attributions


def test_average_stability():
    w, x, y = linear_params(), images(3), jnp.array([0, 1, 2], jnp.int32)
    key = jax.random.key(0)
    sal = A.saliency(linear_model, absolute=False, channel_reduction=None)
    # a linear model's gradient does not depend on x: perfectly stable
    np.testing.assert_allclose(M.average_stability(sal, nb_samples=4)(w, x, y, key=key), 0.0,
                               atol=1e-6)
    gi = A.gradient_input(linear_model)
    d = M.average_stability(gi, nb_samples=4, radius=0.1)(w, x, y, key=key)
    assert bool((d > 0).all())
    d2 = M.average_stability(gi, nb_samples=4, radius=0.2)(w, x, y, key=key)
    np.testing.assert_allclose(d2, 2 * d, rtol=1e-4)  # linear in the noise for gradient x input
    with pytest.raises(ValueError, match="distance"):
        M.average_stability(gi, distance="cosine")


def test_randomization_checks():
    p, x, y = conv_params(), images(4), jnp.array([0, 1, 2, 3], jnp.int32)
    key = jax.random.key(1)
    ignores_model = lambda params, xs, ys, key=None: xs.mean(-1)      # an "edge detector"
    np.testing.assert_allclose(M.model_randomization(ignores_model)(p, x, y, key=key), 1.0,
                               atol=1e-6)
    np.testing.assert_allclose(M.label_randomization(ignores_model, num_classes=4)(
        p, x, y, key=key), 1.0, atol=1e-5)
    sal = A.saliency(conv_model)
    assert float(M.model_randomization(sal)(p, x, y, key=key).mean()) < 0.9
    w = linear_params()
    lin = A.saliency(linear_model, absolute=False)
    assert float(M.label_randomization(lin, num_classes=4)(w, x, y, key=key).mean()) < 0.5


def test_complexity_and_sparseness():
    uniform = jnp.ones((1, 8, 8))
    delta = jnp.zeros((1, 8, 8)).at[0, 3, 3].set(5.0)
    np.testing.assert_allclose(M.sparseness(uniform), 0.0, atol=1e-6)
    np.testing.assert_allclose(M.sparseness(delta), 1 - 1 / 64, atol=1e-6)
    np.testing.assert_allclose(M.complexity(uniform), np.log(64), rtol=1e-6)
    np.testing.assert_allclose(M.complexity(delta), 0.0, atol=1e-6)
    r = jnp.asarray(np.random.default_rng(0).random((5, 8, 8)), jnp.float32)
    assert bool(((M.sparseness(r) >= 0) & (M.sparseness(r) <= 1)).all())
    assert bool(((M.complexity(r) >= 0) & (M.complexity(r) <= np.log(64) + 1e-5)).all())
    np.testing.assert_allclose(M.ssim(r, r), 1.0, atol=1e-5)


def test_spearman_matches_scipy_with_ties():
    from scipy.stats import spearmanr

    from xjax.metrics._common import spearman

    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, (3, 40)).astype(np.float32)       # many ties
    b = rng.integers(0, 4, (3, 40)).astype(np.float32)
    expected = [spearmanr(a[i], b[i]).statistic for i in range(3)]
    np.testing.assert_allclose(spearman(jnp.asarray(a), jnp.asarray(b)), expected, rtol=1e-5)
