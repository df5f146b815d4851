"""ClickMe alignment: Spearman / ceiling, top-k% Dice and IoU."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import spearmanr

import xjax

H = xjax.harmonization


def test_alignment_values():
    rng = np.random.default_rng(0)
    a = rng.random((3, 10, 10)).astype(np.float32)
    b = rng.random((3, 10, 10)).astype(np.float32)
    out = H.alignment(jnp.asarray(a), jnp.asarray(b))
    for i in range(3):
        rho = spearmanr(a[i].ravel(), b[i].ravel()).statistic
        np.testing.assert_allclose(out.spearman[i], rho / 0.65753, rtol=1e-4)
    same = H.alignment(jnp.asarray(a), jnp.asarray(a))
    np.testing.assert_allclose(same.spearman, 1 / 0.65753, rtol=1e-5)
    np.testing.assert_allclose(same.dice, 1.0, rtol=1e-6)
    np.testing.assert_allclose(same.iou, 1.0, rtol=1e-6)
    # top 10% of two maps that peak on disjoint halves: no overlap
    left = np.zeros((1, 10, 10), np.float32)
    left[0, :, :5] = np.arange(50).reshape(10, 5)
    right = left[:, :, ::-1].copy()
    apart = H.alignment(jnp.asarray(left), jnp.asarray(right))
    assert float(apart.dice[0]) == 0.0 and float(apart.iou[0]) == 0.0
    # IoU = Dice / (2 - Dice)
    np.testing.assert_allclose(out.iou, out.dice / (2 - out.dice), rtol=1e-5)
    with pytest.raises(ValueError, match="shape"):
        H.alignment(jnp.asarray(a), jnp.asarray(b[:, :5]))
