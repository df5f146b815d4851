import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xjax import gsa


@pytest.mark.parametrize("kernel", gsa.KERNELS)
def test_hsic_ranks_dependence(kernel):
    u = gsa.sobol_sequence(512, 4, key=jax.random.key(0))
    if kernel == "binary":
        u = jnp.round(u)
    y = 3.0 * u[:, 0] + 1.0 * u[:, 1] + 0.0 * u[:, 2] + 0.05 * jnp.sin(20 * u[:, 3])
    h = np.asarray(gsa.hsic_scores(u, y + 10.0, kernel=kernel))
    assert h[0] > h[1] > max(h[2], h[3])
    assert abs(h[2]) < 0.1 * h[1]                      # independent input: near 0
    np.testing.assert_allclose(gsa.hsic_scores(u, y + 10.0, kernel=kernel, batch_size=3), h,
                               rtol=1e-5, atol=1e-7)


def test_hsic_binary_closed_form():
    """With the binary kernel, tr(K H L H)/n = 2 m^T (HLH) m / n (constant terms vanish)."""
    rng = np.random.default_rng(0)
    m = rng.integers(0, 2, (40, 3)).astype(np.float32)
    y = rng.normal(size=40).astype(np.float32) + 5.0
    w = abs(np.median(y))
    lmat = np.exp(-(y[:, None] - y[None, :]) ** 2 / (2 * w ** 2))
    hc = np.eye(40) - 1.0 / 40
    lc = hc @ lmat @ hc
    expected = np.array([2 * m[:, i] @ lc @ m[:, i] / 40 for i in range(3)])
    np.testing.assert_allclose(gsa.hsic_scores(jnp.asarray(m), jnp.asarray(y)), expected,
                               rtol=1e-4, atol=1e-6)
