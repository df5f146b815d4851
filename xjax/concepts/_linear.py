r"""PCA and FastICA concept banks (orthonormal and independent directions).

PCA keeps the top-R right singular vectors of the centred activations (:math:`WW^\top = I`, codes
unconstrained). FastICA (parallel, log-cosh contrast, symmetric decorrelation) whitens onto the
same R-dimensional principal subspace and rotates it so the codes are as independent as possible:
its reconstructions equal PCA's, its directions differ.

References:
  I. T. Jolliffe, "Principal Component Analysis", 2002.
  A. Hyvarinen, E. Oja, "Independent component analysis: algorithms and applications",
  Neural Networks 13 (2000).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from xjax._internal.validate import check_iterations
from xjax.concepts._factorization import Factorization, check_activations, check_rank

__all__ = ["ICABank", "PCABank", "ica", "pca"]


class PCABank(NamedTuple):
    """``components: f32[R, F]`` (orthonormal rows), ``mean: f32[F]``, fit ``codes: f32[M, R]``
    and ``explained_variance: f32[R]``."""

    components: Float[Array, "R F"]
    mean: Float[Array, " F"]
    codes: Float[Array, "M R"]
    explained_variance: Float[Array, " R"]


class ICABank(NamedTuple):
    """``components: f32[R, F]`` (the mixing directions), ``unmixing: f32[R, F]``,
    ``mean: f32[F]``, fit ``codes: f32[M, R]`` (unit-variance sources), ``n_iter``."""

    components: Float[Array, "R F"]
    unmixing: Float[Array, "R F"]
    mean: Float[Array, " F"]
    codes: Float[Array, "M R"]
    n_iter: Array


def _bcast(v, like):
    """``v: [F]`` shaped to broadcast against ``like: [..., F]``."""
    return v.reshape((1,) * (like.ndim - 1) + v.shape)


def _inverse(bank, u):
    """``u @ components + mean`` (PCA and ICA reconstructions)."""
    rec = u @ bank.components
    return rec + _bcast(bank.mean, rec)


def _svd_flip(vt):
    """Deterministic signs: the largest-magnitude entry of each row is positive."""
    idx = jnp.argmax(jnp.abs(vt), axis=1)
    signs = jnp.sign(vt[jnp.arange(vt.shape[0]), idx])
    return vt * jnp.where(signs == 0, 1.0, signs)[:, None]


def _principal(a, rank):
    mean = a.mean(0)
    _, s, vt = jnp.linalg.svd(a - mean[None], full_matrices=False)
    return mean, s[:rank], _svd_flip(vt[:rank])


def pca(rank: int) -> Factorization:
    """Principal component analysis: the R directions of largest variance.

    Returns:
      A :class:`Factorization`; ``transform(bank, a) = (a - mean) @ components.T`` and
      ``inverse(bank, u) = u @ components + mean``. ``fit`` ignores ``key``.
    """
    rank = check_rank(rank, "pca")

    @jax.jit
    def _fit(a):
        a = a.astype(jnp.float32)
        mean, s, vt = _principal(a, rank)
        return PCABank(vt, mean, (a - mean[None]) @ vt.T, s ** 2 / max(a.shape[0] - 1, 1))

    def fit(a: Float[Array, "M F"], *, key: jax.Array | None = None) -> PCABank:
        del key
        check_activations(a, rank, "pca")
        return _fit(a)

    def transform(bank, a):
        return (a - _bcast(bank.mean, a)) @ bank.components.T

    return Factorization(fit, transform, _inverse, False, "pca")


def _sym_decorrelate(w):
    """``(W W^T)^{-1/2} W``."""
    s, u = jnp.linalg.eigh(w @ w.T)
    return (u * (1.0 / jnp.sqrt(jnp.maximum(s, 1e-12)))[None]) @ u.T @ w


def ica(rank: int, *, max_iter: int = 200, tol: float = 1e-4) -> Factorization:
    """FastICA, parallel version with the log-cosh contrast ``g = tanh`` (scikit-learn's
    defaults: 200 iterations, tol 1e-4, unit-variance whitening).

    Returns:
      A :class:`Factorization`; ``fit(a, *, key)`` draws the initial rotation from ``key``
      (default ``jax.random.key(0)``); ``transform(bank, a) = (a - mean) @ unmixing.T``,
      ``inverse(bank, u) = u @ components + mean``.
    """
    rank = check_rank(rank, "ica")
    check_iterations("ica", max_iter=max_iter, tol=tol)

    @jax.jit
    def _fit(a, key):
        a = a.astype(jnp.float32)
        m = a.shape[0]
        mean, s, vt = _principal(a, rank)
        white = vt / s[:, None] * jnp.sqrt(m)                       # [R, F]: unit variance
        x1 = (a - mean[None]) @ white.T                                   # [M, R]
        w0 = _sym_decorrelate(jax.random.normal(key, (rank, rank)))

        def cond(c):
            i, _, lim = c
            return (i < max_iter) & (lim > tol)

        def body(c):
            i, w, _ = c
            wx = x1 @ w.T                                           # [M, R]
            g = jnp.tanh(wx)
            g_prime = (1.0 - g ** 2).mean(0)
            w1 = _sym_decorrelate(g.T @ x1 / m - g_prime[:, None] * w)
            lim = jnp.max(jnp.abs(jnp.abs(jnp.sum(w1 * w, axis=1)) - 1.0))
            return i + 1, w1, lim

        i, w, _ = jax.lax.while_loop(cond, body, (jnp.zeros((), jnp.int32), w0,
                                                  jnp.asarray(jnp.inf, jnp.float32)))
        unmixing = w @ white                                        # [R, F]
        mixing = jnp.linalg.pinv(unmixing)                          # [F, R]
        return ICABank(mixing.T, unmixing, mean, (a - mean[None]) @ unmixing.T, i)

    def fit(a: Float[Array, "M F"], *, key: jax.Array | None = None) -> ICABank:
        check_activations(a, rank, "ica")
        return _fit(a, jax.random.key(0) if key is None else key)

    def transform(bank, a):
        return (a - _bcast(bank.mean, a)) @ bank.unmixing.T

    return Factorization(fit, transform, _inverse, False, "ica")
