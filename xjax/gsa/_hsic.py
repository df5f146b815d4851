"""HSIC sensitivity estimators (Hilbert-Schmidt independence criterion, Gretton et al. 2005),
as used for global sensitivity analysis (Da Veiga 2015) and attribution (Novello et al. 2022)."""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

__all__ = ["KERNELS", "hsic_scores"]

KERNELS = ("binary", "rbf", "sobolev")


def _input_kernel(kind: str, u: Float[Array, "... n"]) -> Float[Array, "... n n"]:
    """ANOVA-form kernel matrices ``1 + k(u_k, u_l)`` for inputs in [0, 1]."""
    a, b = u[..., :, None], u[..., None, :]
    if kind == "binary":             # 1/2 if equal, -1/2 if different (for u in {0, 1})
        k = 0.5 - (a - b) ** 2
    elif kind == "rbf":              # width 0.5
        k = jnp.exp(-((a - b) ** 2) / (2.0 * 0.5 ** 2))
    else:                            # Sobolev space of order 1 on [0, 1]
        b1 = lambda t: t - 0.5
        b2 = lambda t: t * t - t + 1.0 / 6.0
        k = b1(a) * b1(b) + 0.5 * b2(jnp.abs(a - b))
    return 1.0 + k


def hsic_scores(inputs: Float[Array, "n d"], values: Float[Array, " n"], *, kernel: str = "binary",
                batch_size: int | None = None) -> Float[Array, " d"]:
    r"""HSIC between each input variable and the output, from ``n`` samples.

    .. math:: \mathrm{HSIC}_i = \frac{1}{n} \operatorname{tr}\big(K^{(i)} H L H\big),\quad
       L_{kl} = \exp\!\Big(-\frac{(y_k - y_l)^2}{2 w^2}\Big),\; w = |\mathrm{median}(y)|

    (Xplique's bandwidth and 1/n normalization; the ranking of variables is what attribution
    uses.) ``K^{(i)} = 1 + k(x_{\cdot i}, x_{\cdot i})`` with ``k`` the ``kernel``: ``"binary"``
    (``1/2 - (u - v)^2``), ``"rbf"`` (width 0.5) or ``"sobolev"`` (order 1:
    ``B_1(u) B_1(v) + B_2(|u - v|) / 2``).

    Args:
      inputs: ``f32[n, d]`` samples in [0, 1] (binary for ``"binary"``).
      values: ``f32[n]`` outputs.
      kernel: input kernel.
      batch_size: variables per chunk (memory ``O(batch_size n^2)``); ``None``: all at once.

    Returns:
      ``f32[d]``, one non-negative score per variable (up to estimation noise).
    """
    if kernel not in KERNELS:
        raise ValueError(f"hsic_scores: kernel must be one of {KERNELS}, got {kernel!r}")
    n, d = inputs.shape
    y = values.astype(jnp.float32)
    width = jnp.maximum(jnp.abs(jnp.median(y)), 1e-6)
    lmat = jnp.exp(-((y[:, None] - y[None, :]) ** 2) / (2.0 * width ** 2))
    lc = lmat - lmat.mean(0, keepdims=True)
    lc = lc - lc.mean(1, keepdims=True)                                 # H L H
    cols = inputs.astype(jnp.float32).T                                 # [d, n]
    b = d if batch_size is None else min(batch_size, d)
    chunks = -(-d // b)
    padded = jnp.concatenate([cols, jnp.zeros((chunks * b - d, n), jnp.float32)], axis=0)

    def chunk(c):
        return jnp.einsum("ckl,kl->c", _input_kernel(kernel, c), lc) / n

    out = jax.lax.map(chunk, padded.reshape(chunks, b, n)).reshape(-1)
    return out[:d]
