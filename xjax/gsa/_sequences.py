"""Low-discrepancy and stratified samplers of the unit hypercube, in JAX.

* :func:`sobol_sequence`: Sobol' points (Joe-Kuo direction numbers, 4096 dimensions shipped),
  built by Gray-code doubling in O(n d) XORs, optionally Owen-scrambled from a key.
* :func:`halton`: radical inverses in the first d prime bases.
* :func:`latin_hypercube`: one point per stratum in every 1-D projection.

All take a static ``n`` and ``d`` and return ``f32[n, d]``; they run under ``jit``.
"""

import functools
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

__all__ = ["MAX_SOBOL_DIMS", "halton", "latin_hypercube", "sobol_sequence"]

_BITS = 30
MAX_SOBOL_DIMS = 4096


@functools.cache
def _direction_numbers() -> np.ndarray:
    path = os.path.join(os.path.dirname(__file__), "sobol_direction_numbers.npz")
    with np.load(path) as f:
        return f["v"]                                                    # u32[4096, 30]


def _check(n, d, where, max_d=None):
    for name, v in (("n", n), ("d", d)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{where}: {name} must be a positive int, got {v!r}")
    if max_d is not None and d > max_d:
        raise ValueError(f"{where}: d must be <= {max_d} (direction numbers shipped), got {d}")


def _reverse_bits(x):
    x = ((x >> 1) & jnp.uint32(0x55555555)) | ((x & jnp.uint32(0x55555555)) << 1)
    x = ((x >> 2) & jnp.uint32(0x33333333)) | ((x & jnp.uint32(0x33333333)) << 2)
    x = ((x >> 4) & jnp.uint32(0x0F0F0F0F)) | ((x & jnp.uint32(0x0F0F0F0F)) << 4)
    x = ((x >> 8) & jnp.uint32(0x00FF00FF)) | ((x & jnp.uint32(0x00FF00FF)) << 8)
    return (x >> 16) | (x << 16)


def _owen_scramble(x, seed):
    """Nested uniform (Owen) scramble of 32-bit fixed-point values (Burley 2020).

    In bit-reversed order, ``x += seed`` and ``x ^= x * c`` with even ``c`` change each bit only
    as a function of the bits below it, i.e. each original bit is flipped as a function of the
    bits above it (its prefix): exactly the structure of Owen's nested permutation. The
    multipliers are the Laine-Karras constants from Burley, "Practical Hash-based Owen
    Scrambling", JCGT 9(4), 2020.
    """
    x = _reverse_bits(x)
    x = x + seed
    for c in (0x6C50B47C, 0xB82F1E52, 0xC7AFE638, 0x8D22F6E6):
        x = x ^ (x * jnp.uint32(c))
    return _reverse_bits(x)


def sobol_sequence(n: int, d: int, *, skip: int = 0,
                   key: jax.Array | None = None) -> Float[Array, "n d"]:
    r"""``n`` points of the ``d``-dimensional Sobol' sequence, after the first ``skip``.

    Point ``i`` is :math:`x_i = \bigoplus_j g_j(i) V_j 2^{-30}` with ``g(i) = i XOR (i >> 1)``
    (Gray code) and Joe-Kuo direction numbers ``V``; it is built by doubling,
    ``X[m:2m] = X[:m] XOR V_{k-1} XOR V_{k-2}`` for ``m = 2^{k-1}``, so the cost is ``O(n d)``.
    Unscrambled points equal ``scipy.stats.qmc.Sobol(d, scramble=False).random(n)`` rounded to
    float32 (they start at the origin). Balance properties hold on power-of-two prefixes.
    ``skip=1`` drops the origin: the points of TensorFlow's ``tf.math.sobol_sample(d, n)``
    (whose kernel starts at the first non-zero point), used by the reference Sobol attribution
    code.

    Args:
      n: number of points (static).
      d: dimension, at most 4096 (static).
      skip: initial points left out (0: scipy's sequence; 1: TensorFlow's).
      key: if given, an Owen (nested uniform) scramble with per-dimension seeds from the key;
        the points then are randomized QMC: uniform marginals, still stratified.

    Returns:
      ``f32[n, d]`` in [0, 1].

    Example:
      >>> sobol_sequence(4, 2)
      Array([[0.  , 0.  ],
             [0.5 , 0.5 ],
             [0.75, 0.25],
             [0.25, 0.75]], dtype=float32)

    References:
      I. M. Sobol', "On the distribution of points in a cube and the approximate evaluation of
      integrals", 1967; S. Joe, F. Y. Kuo, SIAM J. Sci. Comput. 30 (2008); A. B. Owen,
      "Randomly permuted (t,m,s)-nets and (t,s)-sequences", 1995.
    """
    _check(n, d, "sobol_sequence", MAX_SOBOL_DIMS)
    if isinstance(skip, bool) or not isinstance(skip, int) or skip < 0:
        raise ValueError(f"sobol_sequence: skip must be an int >= 0, got {skip!r}")
    v = jnp.asarray(_direction_numbers()[:d])                           # u32[d, 30]
    m = max(1, math.ceil(math.log2(n + skip)))
    if m > _BITS:
        raise ValueError(f"sobol_sequence: n + skip must be <= 2^{_BITS}, got {n + skip}")
    x = jnp.zeros((1, d), jnp.uint32)
    for k in range(1, m + 1):
        c = v[:, k - 1] if k == 1 else v[:, k - 1] ^ v[:, k - 2]
        x = jnp.concatenate([x, x ^ c[None, :]], axis=0)
    x = x[skip:skip + n]
    if key is None:
        return x.astype(jnp.float32) * jnp.float32(2.0 ** -_BITS)
    seeds = jax.random.bits(key, (d,), jnp.uint32)
    x = _owen_scramble(x << 2, seeds[None, :])                          # 32-bit fixed point
    # top 24 bits: exact in float32 and strictly below 1
    return (x >> 8).astype(jnp.float32) * jnp.float32(2.0 ** -24)


def _primes(k: int) -> np.ndarray:
    out, c = [], 2
    while len(out) < k:
        if all(c % p for p in out if p * p <= c):
            out.append(c)
        c += 1
    return np.array(out, np.int64)


def halton(n: int, d: int, *, key: jax.Array | None = None) -> Float[Array, "n d"]:
    r"""The first ``n`` points of the Halton sequence: dimension ``j`` is the radical inverse of
    ``i`` in the ``j``-th prime base, :math:`\phi_p(i) = \sum_k a_k(i) p^{-k-1}`.

    Unscrambled points agree with ``scipy.stats.qmc.Halton(d, scramble=False).random(n)`` to
    float32 rounding (one ulp).
    With a ``key``, a Cranley-Patterson rotation ``(x + u) mod 1``, ``u ~ U[0, 1)^d``, makes the
    points randomized QMC (unbiased), keeping their discrepancy structure.

    Args:
      n, d: number of points and dimension (static).
      key: optional rotation key.

    Returns:
      ``f32[n, d]`` in [0, 1).

    References:
      J. H. Halton, "On the efficiency of certain quasi-random sequences of points in evaluating
      multi-dimensional integrals", Numer. Math. 2 (1960).
    """
    _check(n, d, "halton")
    bases = _primes(d)
    digits = max(1, math.ceil(math.log(max(n, 2)) / math.log(2)) + 1)
    i = jnp.arange(n, dtype=jnp.int32)[:, None]
    b = jnp.asarray(bases, jnp.int32)[None, :]
    bf = jnp.asarray(bases, jnp.float32)[None, :]
    out = jnp.zeros((n, d), jnp.float32)
    q, scale = jnp.broadcast_to(i, (n, d)), 1.0 / bf
    for _ in range(digits):
        out = out + (q % b).astype(jnp.float32) * scale
        q = q // b
        scale = scale / bf
    if key is not None:
        out = jnp.mod(out + jax.random.uniform(key, (1, d), jnp.float32), 1.0)
    return out


def latin_hypercube(n: int, d: int, *, key: jax.Array) -> Float[Array, "n d"]:
    r"""Latin hypercube sample: in every dimension, exactly one point per interval
    ``[k/n, (k+1)/n)``, at a uniform position inside it; strata are paired at random.

    .. math:: x_{ij} = (\pi_j(i) + u_{ij}) / n

    Args:
      n, d: number of points and dimension (static).
      key: required (the design is random).

    References:
      M. D. McKay, R. J. Beckman, W. J. Conover, Technometrics 21 (1979).
    """
    _check(n, d, "latin_hypercube")
    if key is None:
        raise ValueError("latin_hypercube: the design is random; pass key=jax.random.key(seed)")
    k_perm, k_u = jax.random.split(key)
    perms = jnp.argsort(jax.random.uniform(k_perm, (d, n)), axis=1).T    # [n, d]
    u = jax.random.uniform(k_u, (n, d), jnp.float32)
    return (perms.astype(jnp.float32) + u) / n
