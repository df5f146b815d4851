r"""K-means concepts (ACE's extractor): each activation is coded by a one-hot vector on its
nearest centroid, the bank is the centroids.

k-means++ seeding (Arthur and Vassilvitskii, 2007), then Lloyd iterations in
``lax.while_loop`` until the centroids move less than ``tol`` times the data variance;
``n_init`` seeds run at once under ``vmap`` and the lowest inertia wins.

References:
  A. Ghorbani et al., "Towards Automatic Concept-based Explanations" (ACE), NeurIPS 2019.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from xjax._internal.validate import check_iterations
from xjax.concepts._factorization import Factorization, check_activations, check_rank

__all__ = ["KMeansBank", "kmeans"]


class KMeansBank(NamedTuple):
    """``components: f32[R, F]`` (centroids), fit ``codes: f32[M, R]`` (one-hot), ``inertia``."""

    components: Float[Array, "R F"]
    codes: Float[Array, "M R"]
    inertia: Array


def _sq_dist(a, c):
    return jnp.maximum(jnp.sum(a * a, 1)[:, None] - 2 * a @ c.T + jnp.sum(c * c, 1)[None], 0.0)


def _plusplus(a, rank, key):
    m = a.shape[0]
    k0, key = jax.random.split(key)
    first = a[jax.random.randint(k0, (), 0, m)]
    cents = jnp.zeros((rank, a.shape[1]), a.dtype).at[0].set(first)
    d2 = jnp.sum((a - first[None]) ** 2, 1)

    def body(i, c):
        cents, d2, key = c
        key, k = jax.random.split(key)
        p = d2 / jnp.maximum(d2.sum(), 1e-30)
        j = jax.random.choice(k, m, p=p)
        cents = cents.at[i].set(a[j])
        return cents, jnp.minimum(d2, jnp.sum((a - a[j][None]) ** 2, 1)), key

    return jax.lax.fori_loop(1, rank, body, (cents, d2, key))[0]


def _lloyd(a, cents, max_iter, tol):
    def cond(c):
        i, _, shift = c
        return (i < max_iter) & (shift > tol)

    def body(c):
        i, cents, _ = c
        onehot = jax.nn.one_hot(jnp.argmin(_sq_dist(a, cents), 1), cents.shape[0], dtype=a.dtype)
        counts = onehot.sum(0)
        new = jnp.where(counts[:, None] > 0, onehot.T @ a / jnp.maximum(counts, 1)[:, None], cents)
        return i + 1, new, jnp.sum((new - cents) ** 2)

    return jax.lax.while_loop(cond, body, (jnp.zeros((), jnp.int32), cents,
                                           jnp.asarray(jnp.inf, a.dtype)))[1]


def kmeans(rank: int, *, n_init: int = 4, max_iter: int = 300, tol: float = 1e-4) -> Factorization:
    """K-means with one-hot codes.

    Args:
      rank: R, the number of centroids.
      n_init: seeds run in parallel; the lowest inertia is kept.
      max_iter, tol: Lloyd iterations; ``tol`` is relative to the mean feature variance
        (scikit-learn's convention).

    Returns:
      A :class:`Factorization`; ``fit(a, *, key)`` (default ``jax.random.key(0)``);
      ``transform`` gives one-hot codes of the nearest centroid, ``inverse(bank, u) = u @ C``.
    """
    rank = check_rank(rank, "kmeans")
    check_iterations("kmeans", n_init=n_init, max_iter=max_iter, tol=tol)
    if isinstance(n_init, bool) or not isinstance(n_init, int) or n_init < 1:
        raise ValueError(f"kmeans: n_init must be a positive int, got {n_init!r}")

    @jax.jit
    def _fit(a, key):
        a = a.astype(jnp.float32)
        tol_abs = tol * jnp.mean(jnp.var(a, 0))

        def run(k):
            c = _lloyd(a, _plusplus(a, rank, k), max_iter, tol_abs)
            return c, jnp.sum(jnp.min(_sq_dist(a, c), 1))

        cents, inertia = jax.vmap(run)(jax.random.split(key, n_init))
        best = jnp.argmin(inertia)
        c = cents[best]
        return KMeansBank(c, _encode(c, a), inertia[best])

    def _encode(c, a):
        flat = a.reshape(-1, a.shape[-1])
        u = jax.nn.one_hot(jnp.argmin(_sq_dist(flat, c), 1), c.shape[0], dtype=jnp.float32)
        return u.reshape(a.shape[:-1] + (c.shape[0],))

    def fit(a: Float[Array, "M F"], *, key: jax.Array | None = None) -> KMeansBank:
        check_activations(a, rank, "kmeans")
        return _fit(a, jax.random.key(0) if key is None else key)

    def transform(bank, a):
        return _encode(bank.components, a)

    def inverse(bank, u):
        return u @ bank.components

    return Factorization(fit, transform, inverse, False, "kmeans")
