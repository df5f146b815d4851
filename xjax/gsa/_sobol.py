r"""Pick-and-freeze designs and Sobol' index estimators (first and total order).

For ``Y = f(X)``, ``X ~ U[0, 1]^d``: with ``a = f(A)``, ``b = f(B)`` and ``c_i = f(C_i)`` where
``C_i`` is ``A`` with column ``i`` taken from ``B``, the estimators below read the first-order
index :math:`S_i = V[E(Y|X_i)] / V(Y)` and the total index
:math:`S_{T_i} = E[V(Y|X_{\sim i})] / V(Y)` off ``N (d + 2)`` evaluations.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from xjax._internal.validate import check_positive_int
from xjax.gsa._sequences import halton, latin_hypercube, sobol_sequence

__all__ = ["ESTIMATORS", "SAMPLERS", "SobolIndices", "replicated_design", "sobol_indices"]

SAMPLERS = ("sobol", "halton", "latin_hypercube", "uniform")
ESTIMATORS = ("jansen", "homma", "janon", "glen", "saltelli")


class SobolIndices(NamedTuple):
    """First-order ``first: f32[d]`` and total-order ``total: f32[d]`` Sobol' indices."""

    first: Float[Array, " d"]
    total: Float[Array, " d"]


def _is_pow2(n):
    return n >= 1 and not n & (n - 1)


def sample(sampler: str, n: int, d: int, key: jax.Array | None, skip: int = 0) -> Float[Array, "n d"]:
    """``n`` points of ``[0, 1]^d`` from a named sampler (``key`` scrambles or draws them;
    ``skip`` leaves out the first points of the Sobol sequence)."""
    if skip and sampler != "sobol":
        raise ValueError(f"skip applies to the 'sobol' sampler only, got sampler {sampler!r}")
    if sampler == "sobol":
        return sobol_sequence(n, d, skip=skip, key=key)
    if sampler == "halton":
        return halton(n, d, key=key)
    if sampler in ("latin_hypercube", "uniform"):
        if key is None:
            raise ValueError(f"sampler {sampler!r} is random: pass key=jax.random.key(seed)")
        if sampler == "uniform":
            return jax.random.uniform(key, (n, d), jnp.float32)
        return latin_hypercube(n, d, key=key)
    raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")


# One compiled program: built op by op, a design took 30 small compilations (0.5 s) per call.
@functools.partial(jax.jit, static_argnames=("nb_design", "d", "sampler", "skip"))
def replicated_design(nb_design: int, d: int, *, sampler: str = "sobol", skip: int = 0,
                      key: jax.Array | None = None) -> Float[Array, "nb_design*(d+2) d"]:
    r"""The pick-and-freeze design ``[A; B; C_1; ...; C_d]`` (Saltelli's :math:`A_B^{(i)}`).

    ``nb_design`` points of a ``2d``-dimensional sequence give ``A`` (first d columns) and ``B``
    (last d); ``C_i`` is ``A`` with column ``i`` from ``B``. Rows are ordered ``A``, ``B``,
    ``C_1``, ..., ``C_d`` (``nb_design`` rows each), as Xplique and the Sobol attribution paper.

    Args:
      nb_design: N, a power of two for ``"sobol"`` (balance holds on 2^k prefixes).
      d: number of variables.
      sampler: ``"sobol"`` (default), ``"halton"``, ``"latin_hypercube"`` or ``"uniform"``.
      skip: Sobol points left out first (0: scipy's sequence, from the origin; 1: TensorFlow's
        ``sobol_sample``, which the Sobol attribution uses so that no row is an all-zero mask).
      key: scrambles Sobol (Owen) / rotates Halton; required by the random samplers.

    Returns:
      ``f32[nb_design * (d + 2), d]``.

    Raises:
      ValueError: ``nb_design`` not a power of two with the Sobol sampler, unknown sampler.
    """
    if isinstance(nb_design, bool) or not isinstance(nb_design, int) or nb_design < 1:
        raise ValueError(f"replicated_design: nb_design must be a positive int, got {nb_design!r}")
    if sampler == "sobol" and not _is_pow2(nb_design):
        raise ValueError(f"replicated_design: nb_design must be a power of two with the Sobol "
                         f"sampler, got {nb_design}")
    if sampler not in SAMPLERS:
        raise ValueError(f"replicated_design: sampler must be one of {SAMPLERS}, got {sampler!r}")
    ab = sample(sampler, nb_design, 2 * d, key, skip)
    a, b = ab[:, :d], ab[:, d:]
    eye = jnp.eye(d, dtype=bool)                                        # C_i: column i from B
    c = jnp.where(eye[:, None, :], b[None, :, :], a[None, :, :])       # [d, N, d]
    return jnp.concatenate([a, b, c.reshape(d * nb_design, d)], axis=0)


def sobol_indices(values: Float[Array, " P"], nb_design: int, d: int, *,
                  estimator: str = "jansen") -> SobolIndices:
    r"""First- and total-order Sobol' indices from evaluations on :func:`replicated_design`.

    With ``a, b, c_i`` the values on ``A, B, C_i``, :math:`f_0 = \bar a` and
    :math:`V = \widehat{\mathrm{Var}}(a)` (``N - 1`` denominator, floored at 1e-12):

    ==========  ==============================================  =============================================
    estimator   total order :math:`S_{T_i}`                       first order :math:`S_i`
    ==========  ==============================================  =============================================
    jansen      :math:`\frac{1}{2NV}\sum_k (a_k - c_{ik})^2`       :math:`1 - \frac{1}{2NV}\sum_k (b_k - c_{ik})^2`
    homma       :math:`(V - \frac1N\sum_k a_k c_{ik} + f_0^2)/V`   :math:`(\frac1N\sum_k b_k c_{ik} - f_0^2)/V`
    saltelli    :math:`\frac1N\sum_k a_k (a_k - c_{ik})/V`         :math:`\frac1N\sum_k b_k (c_{ik} - a_k)/V`
    janon       :math:`1 - J(a, c_i)`                             :math:`J(b, c_i)`
    glen        :math:`1 - \mathrm{corr}(a, c_i)`                  :math:`\mathrm{corr}(b, c_i)`
    ==========  ==============================================  =============================================

    with Janon's pooled estimator :math:`J(u, w) = \big(\frac1N\sum u_k w_k - m^2\big) /
    \big(\frac{1}{2N}\sum (u_k^2 + w_k^2) - m^2\big)`, :math:`m = \frac{1}{2N}\sum (u_k + w_k)`
    (Janon et al. 2014, eq. (6): both moments over N, not N - 1). Sources of each row: jansen,
    Jansen (1999) as listed in Saltelli et al. (2010) Table 2; homma, Homma & Saltelli (1996)
    (total: Saltelli 2010 Table 2 (e); first: the f0-corrected product); saltelli, Saltelli et al.
    (2010) Table 2, first order (c) and total order (f) (Sobol' 2007's form, listed there beside
    Jansen's (g), which Saltelli et al. recommend; "jansen" is that one); janon, Janon et al.
    (2014); glen, Glen & Isaacs (2012) (correlation form without their bias corrections).
    (``C_i`` shares every variable with ``A`` except ``i``, and only ``i`` with ``B``.)
    Estimates are not clipped: at small N they can leave [0, 1]. Where the values on ``A`` are
    constant (variance within float32 rounding of zero) no input explains any variance: both
    indices are 0 (before, Jansen's first order came out 1 above a total of 0).

    Args:
      values: ``f32[nb_design * (d + 2)]``, or ``f32[..., nb_design * (d + 2)]`` for a batch
        of functions (leading axes are kept).
      nb_design, d: as in :func:`replicated_design`.
      estimator: one of ``"jansen"`` (default), ``"homma"``, ``"janon"``, ``"glen"``,
        ``"saltelli"``.

    Returns:
      :class:`SobolIndices` with ``first`` and ``total`` of shape ``[..., d]``.

    References:
      M. J. W. Jansen, Comput. Phys. Commun. 117 (1999); T. Homma, A. Saltelli, Reliab. Eng.
      Syst. Saf. 52 (1996); A. Saltelli et al., Comput. Phys. Commun. 181 (2010); A. Janon et al.,
      ESAIM P&S 18 (2014); G. Glen, K. Isaacs, Environ. Model. Softw. 37 (2012).
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"sobol_indices: estimator must be one of {ESTIMATORS}, got "
                         f"{estimator!r}")
    nb_design = check_positive_int(nb_design, "nb_design", where="sobol_indices", minimum=2)
    d = check_positive_int(d, "d", where="sobol_indices")
    if not hasattr(values, "shape") or not hasattr(values, "dtype"):
        raise TypeError(f"sobol_indices: values must be an array f32[..., nb_design * (d + 2)], "
                        f"got {type(values).__name__}")
    if not (jnp.issubdtype(values.dtype, jnp.floating) or
            jnp.issubdtype(values.dtype, jnp.integer)) or values.ndim < 1:
        raise TypeError(f"sobol_indices: values must be a real array with at least one axis, "
                        f"got dtype {values.dtype} and shape {values.shape}")
    expected = nb_design * (d + 2)
    if values.shape[-1] != expected:
        raise ValueError(f"sobol_indices: values must have nb_design * (d + 2) = {expected} "
                         f"entries in the last axis, got shape {values.shape}")
    v = values.astype(jnp.float32)
    lead = v.shape[:-1]
    a = v[..., :nb_design]
    b = v[..., nb_design:2 * nb_design]
    c = v[..., 2 * nb_design:].reshape(lead + (d, nb_design))
    a_, b_ = a[..., None, :], b[..., None, :]
    n = nb_design
    f0 = a.mean(-1, keepdims=True)
    var_raw = jnp.sum((a - f0) ** 2, -1, keepdims=True) / (n - 1)
    var = jnp.maximum(var_raw, 1e-12)
    # a function constant on A (to float32 rounding) has no variance to apportion
    constant = var_raw <= (8 * jnp.finfo(jnp.float32).eps * jnp.max(jnp.abs(a), -1,
                                                                    keepdims=True)) ** 2
    f0, var = f0[..., None, 0:1][..., 0], var[..., None, 0:1][..., 0]   # [..., 1] -> broadcast d
    mean = lambda t: t.mean(-1)
    if estimator == "jansen":
        total = mean((a_ - c) ** 2) / (2.0 * var)
        first = 1.0 - mean((b_ - c) ** 2) / (2.0 * var)
    elif estimator == "homma":
        total = (var - mean(a_ * c) + f0 ** 2) / var
        first = (mean(b_ * c) - f0 ** 2) / var
    elif estimator == "saltelli":
        total = mean(a_ * (a_ - c)) / var
        first = mean(b_ * (c - a_)) / var
    elif estimator == "janon":
        def janon(u, w):
            mu = (mean(u) + mean(w)) / 2.0
            pooled = mean(u ** 2 + w ** 2) / 2.0 - mu ** 2
            return (mean(u * w) - mu ** 2) / jnp.maximum(pooled, 1e-12)
        total = 1.0 - janon(a_, c)
        first = janon(b_, c)
    else:  # glen
        def corr(u, w):
            uc, wc = u - mean(u)[..., None], w - mean(w)[..., None]
            return jnp.sum(uc * wc, -1) / jnp.sqrt(
                jnp.maximum(jnp.sum(uc ** 2, -1) * jnp.sum(wc ** 2, -1), 1e-24))
        total = 1.0 - corr(a_, c)
        first = corr(b_, c)
    constant = constant[..., None, 0:1][..., 0]
    return SobolIndices(first=jnp.where(constant, 0.0, first),
                        total=jnp.where(constant, 0.0, total))
