"""Pure weight normalizers of the 1-Lipschitz layers, and operator-norm measurement."""

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from xjax._internal.validate import check_positive_int

__all__ = ["bjorck", "conv_lipschitz_factor", "frobenius_normalize", "operator_norm",
           "power_iteration", "spectral_norm_bound", "spectral_normalize"]


def power_iteration(w: Float[Array, "n m"], u: Float[Array, " m"], *, steps: int = 3
                    ) -> tuple[Float[Array, ""], Float[Array, " m"]]:
    r"""Largest singular value of ``w`` by ``steps`` power iterations warm-started at ``u``:
    :math:`v \leftarrow W u / \|W u\|`, :math:`u \leftarrow W^\top v / \|W^\top v\|`, then
    :math:`\sigma = \|W u\|`. ``u`` is treated as a constant (``stop_gradient``), so gradients
    see :math:`\partial \sigma / \partial W` only (deel-lip's default). Returns ``(sigma, u)``."""
    steps = check_positive_int(steps, "steps", where="power_iteration")
    u = jax.lax.stop_gradient(u)

    def body(_, u):
        v = w @ u
        v = v / jnp.maximum(jnp.linalg.norm(v), 1e-12)
        u = w.T @ v
        return u / jnp.maximum(jnp.linalg.norm(u), 1e-12)

    u = jax.lax.stop_gradient(jax.lax.fori_loop(0, steps, body, u))
    return jnp.linalg.norm(w @ u), u


def spectral_norm_bound(w: Float[Array, "n m"], *, squarings: int = 8,
                        margin: float = 1e-4) -> Float[Array, ""]:
    r"""A sound upper bound of the spectral norm :math:`\sigma_{\max}(W)` (power iteration's
    estimate approaches it from below, so dividing by it can leave the norm above 1).

    With :math:`A = W^\top W` (the smaller Gram matrix) and :math:`K = 2^J` (``J = squarings``),
    :math:`\lambda_{\max}(A)^K = \|A^K\|_2 \le \|A^K\|_F`, so
    :math:`\sigma_{\max} \le \|A^K\|_F^{1/(2K)}`, computed by repeated squaring with each
    power normalized by its Frobenius norm :math:`c_j` (no overflow):
    :math:`\log \|A^K\|_F^{1/K} = \sum_j 2^{-j} \log c_j`. The bound exceeds
    :math:`\sigma_{\max}` by at most the factor :math:`\operatorname{rank}(A)^{1/(4K)}` (1.0054
    for rank 256 at ``J = 8``; less when the spectrum is not flat), and ``margin`` (relative)
    covers float32 rounding of the ``J`` products.

    References:
      Gelfand's formula :math:`\rho(A) = \lim_k \|A^k\|^{1/k}`, with :math:`\rho(A) \le
      \|A^k\|^{1/k}` for every k and any submultiplicative norm.
    """
    squarings = check_positive_int(squarings, "squarings", where="spectral_norm_bound")
    w = w.astype(jnp.float32)
    a = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
    log_bound = jnp.zeros((), jnp.float32)
    for j in range(squarings + 1):
        if j:
            a = a @ a
        c = jnp.maximum(jnp.sqrt(jnp.sum(a * a)), 1e-30)
        a = a / c
        log_bound = log_bound + jnp.log(c) * 2.0 ** -j
    return jnp.exp(0.5 * log_bound) * (1.0 + margin)


def spectral_normalize(w: Float[Array, "n m"], u: Float[Array, " m"], *, steps: int = 3,
                       eps: float = 1e-3) -> tuple[Float[Array, "n m"], Float[Array, " m"]]:
    r""":math:`W / (\sigma(W) + \epsilon)` with :math:`\sigma` from :func:`power_iteration`; the
    :math:`\epsilon` (deel-lip's ``eps_spectral``, 1e-3) keeps the norm strictly below 1, inside
    Björck's convergence region. Returns ``(w_normalized, u)``."""
    sigma, u = power_iteration(w, u, steps=steps)
    return w / (sigma + eps), u


def bjorck(w: Float[Array, "n m"], *, steps: int = 15, beta: float = 0.5) -> Float[Array, "n m"]:
    r"""Björck & Bowie orthonormalization, ``steps`` fixed iterations (differentiable):

    .. math:: W \leftarrow (1 + \beta) W - \beta\, W W^\top W

    computed as :math:`W (W^\top W)` when W is tall, :math:`(W W^\top) W` when wide. It converges to
    the orthogonal polar factor when every singular value is in :math:`(0, \sqrt{3})` (ensured by
    :func:`spectral_normalize` first); ``beta`` must be in (0, 0.5] (0.5, deel-lip)."""
    steps = check_positive_int(steps, "steps", where="bjorck")
    if not 0.0 < beta <= 0.5:
        raise ValueError(f"bjorck: beta must be in (0, 0.5], got {beta}")
    tall = w.shape[0] >= w.shape[1]

    def body(_, w):
        cubic = w @ (w.T @ w) if tall else (w @ w.T) @ w
        return (1.0 + beta) * w - beta * cubic

    return jax.lax.fori_loop(0, steps, body, w)


def frobenius_normalize(w: Float[Array, "n m"], *, disjoint_neurons: bool = True
                        ) -> Float[Array, "n m"]:
    r"""Each column divided by its norm (``disjoint_neurons``: every output is 1-Lipschitz on its
    own), else :math:`W / \|W\|_F` (the whole map is 1-Lipschitz)."""
    if disjoint_neurons:
        return w / jnp.maximum(jnp.linalg.norm(w, axis=0, keepdims=True), 1e-12)
    return w / jnp.maximum(jnp.linalg.norm(w), 1e-12)


def conv_lipschitz_factor(kernel_size: tuple[int, int], strides: tuple[int, int]) -> float:
    r"""Factor that makes a convolution whose reshaped kernel
    :math:`\tilde K \in \mathbb{R}^{k_h k_w c_{in} \times c_{out}}` has spectral norm 1 a
    1-Lipschitz operator: each input pixel enters at most
    :math:`\lceil k_h / s_h \rceil \lceil k_w / s_w \rceil` patches, so
    :math:`\|\mathrm{conv}\| \le \sqrt{\lceil k_h/s_h \rceil \lceil k_w/s_w \rceil}\,\|\tilde K\|`
    and the factor is its inverse. (deel-lip uses this for strides > 1; for stride 1 with zero
    padding it uses a border-averaged correction, e.g. 0.3404 instead of 1/3 for 3x3 on 32x32,
    which is not a strict bound; xjax uses the strict one.)"""
    kh, kw = kernel_size
    sh, sw = strides
    return 1.0 / math.sqrt(math.ceil(kh / sh) * math.ceil(kw / sw))


def operator_norm(linear_fn: Callable, shape: tuple[int, ...], *, steps: int = 100,
                  key: jax.Array | None = None, dtype=jnp.float32) -> Float[Array, ""]:
    r"""Spectral norm of a *linear* map ``linear_fn: f32[shape] -> f32[...]`` by power iteration
    on :math:`A^\top A`, with :math:`A^\top` from ``jax.linear_transpose`` (no matrix is formed).
    Converges from below: a lower estimate of the true norm."""
    steps = check_positive_int(steps, "steps", where="operator_norm")
    key = jax.random.key(0) if key is None else key
    x0 = jax.random.normal(key, shape, dtype)
    transpose = jax.linear_transpose(linear_fn, x0)

    def body(_, x):
        z = transpose(linear_fn(x))[0]
        return z / jnp.maximum(jnp.linalg.norm(z.ravel()), 1e-30)

    x = jax.lax.fori_loop(0, steps, body, x0 / jnp.linalg.norm(x0.ravel()))
    return jnp.linalg.norm(linear_fn(x).ravel())
