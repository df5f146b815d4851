r"""Non-negative matrix factorization, and its non-negative least-squares encoder with an
implicit (KKT) derivative.

Objective, in scikit-learn's parameterization (sklearn's ``W`` is our codes ``U``, its ``H``
our bank ``W``), with ``M`` rows and ``F`` columns:

.. math::

  \tfrac12\|A - UW\|_F^2 + \alpha_U F (\rho\|U\|_1 + \tfrac{1-\rho}{2}\|U\|_F^2)
  + \alpha_W M (\rho\|W\|_1 + \tfrac{1-\rho}{2}\|W\|_F^2),\quad U, W \ge 0.

The solver is HALS (exact coordinate descent on one column at a time; the same updates as
scikit-learn's ``solver="cd"``) or Lee-Seung multiplicative updates, in ``lax.while_loop``,
initialized by NNDSVDa. JAXopt, named in the design card, raises a DeprecationWarning on import
(it is no longer maintained) and the test suite turns warnings into errors, so the solver and
its implicit differentiation are written here with the same method JAXopt uses: the
derivative of the solution is read from the optimality conditions, not by unrolling the loop.

The encoder :func:`nnls` solves :math:`u(a) = \arg\min_{u \ge 0} \tfrac12\|a - uW\|^2 + \ell_1
\|u\|_1 + \tfrac{\ell_2}2\|u\|^2`. On the support :math:`S = \{i: u_i > 0\}` the KKT conditions
give :math:`u_S (W_S W_S^\top + \ell_2 I) = a W_S^\top - \ell_1`, so its VJP is closed form:
with :math:`z = \bar u_S (W_S W_S^\top + \ell_2 I)^{-1}`, :math:`\bar a = z W_S` and
:math:`\bar W = z^\top a - u^\top (zW) - z^\top (uW)`.

References:
  D. Lee, H. S. Seung, "Algorithms for Non-negative Matrix Factorization", NeurIPS 2000.
  A. Cichocki, A.-H. Phan, "Fast local algorithms for large scale NMF", IEICE 2009 (HALS).
  C. Boutsidis, E. Gallopoulos, "SVD based initialization", Pattern Recognition 2008 (NNDSVD).
  T. Fel et al., "CRAFT: Concept Recursive Activation FacTorization for Explainability",
  CVPR 2023 (implicit differentiation of the NMF encoder).
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from xjax._internal.validate import check_iterations
from xjax.concepts._factorization import Factorization, check_activations, check_rank

__all__ = ["NMFBank", "nmf", "nndsvd", "nnls"]

_EPS = 1e-12
_SOLVERS = ("hals", "mu")


class NMFBank(NamedTuple):
    """A fitted NMF: ``components: f32[R, F]`` (one concept per row, >= 0), the fit data's
    ``codes: f32[M, R]`` and the number of iterations run."""

    components: Float[Array, "R F"]
    codes: Float[Array, "M R"]
    n_iter: Array


def nndsvd(a: Float[Array, "M F"], rank: int, *, fill: str = "mean") -> tuple[Array, Array]:
    """NNDSVD initialization ``(U f32[M, R], W f32[R, F])`` of Boutsidis and Gallopoulos.

    ``fill="mean"`` (NNDSVDa) replaces the zeros by the mean of ``a``; ``fill="zero"`` keeps
    them (plain NNDSVD).
    """
    u, s, vt = jnp.linalg.svd(a, full_matrices=False)
    u, s, vt = u[:, :rank], s[:rank], vt[:rank]
    # Fix the sign ambiguity of the leading pair so it is non-negative.
    x, y = u.T, vt                                                   # [R, M], [R, F]
    pos = lambda t: jnp.maximum(t, 0.0)
    neg = lambda t: jnp.maximum(-t, 0.0)
    nrm = lambda t: jnp.linalg.norm(t, axis=-1)
    xp, xn, yp, yn = pos(x), neg(x), pos(y), neg(y)
    mp = nrm(xp) * nrm(yp)
    mn = nrm(xn) * nrm(yn)
    take_p = mp >= mn
    xs = jnp.where(take_p[:, None], xp, xn) / jnp.maximum(jnp.where(take_p, nrm(xp), nrm(xn)),
                                                         _EPS)[:, None]
    ys = jnp.where(take_p[:, None], yp, yn) / jnp.maximum(jnp.where(take_p, nrm(yp), nrm(yn)),
                                                         _EPS)[:, None]
    sigma = jnp.sqrt(s * jnp.where(take_p, mp, mn))
    lead = jnp.arange(rank) == 0                                      # first pair: |u_0|, |v_0|
    xs = jnp.where(lead[:, None], jnp.abs(x), xs)
    ys = jnp.where(lead[:, None], jnp.abs(y), ys)
    sigma = jnp.where(lead, jnp.sqrt(s), sigma)
    codes = (xs * sigma[:, None]).T
    comps = ys * sigma[:, None]
    codes = jnp.where(codes < 1e-6, 0.0, codes)
    comps = jnp.where(comps < 1e-6, 0.0, comps)
    if fill == "mean":
        avg = a.mean()
        codes = jnp.where(codes == 0, avg, codes)
        comps = jnp.where(comps == 0, avg, comps)
    return codes.astype(jnp.float32), comps.astype(jnp.float32)


def _hals_sweep(u, xw, ww):
    """One HALS sweep on the columns of ``u`` for ``min 1/2 u ww u^T - xw . u`` (``u >= 0``):
    ``xw = A W^T - l1`` ``[M, R]``, ``ww = W W^T + l2 I`` ``[R, R]``. Returns the new ``u``
    and the projected-gradient violation measured before each column's update."""
    def body(t, carry):
        u, viol = carry
        col_ww = jax.lax.dynamic_slice_in_dim(ww, t, 1, axis=1)[:, 0]          # [R]
        hess = ww[t, t]
        grad = u @ col_ww - xw[:, t]                                            # [M]
        ut = u[:, t]
        viol = viol + jnp.sum(jnp.where(ut > 0, jnp.abs(grad), jnp.abs(jnp.minimum(grad, 0.0))))
        new = jnp.where(hess > 0, jnp.maximum(ut - grad / jnp.where(hess > 0, hess, 1.0), 0.0), ut)
        return u.at[:, t].set(new), viol
    return jax.lax.fori_loop(0, u.shape[1], body, (u, jnp.zeros((), u.dtype)))


def _mu_step(u, xw, ww):
    """One multiplicative update of ``u`` for the same problem (``xw`` must be >= 0)."""
    grad = u @ ww - xw
    viol = jnp.sum(jnp.where(u > 0, jnp.abs(grad), jnp.abs(jnp.minimum(grad, 0.0))))
    return u * jnp.maximum(xw, 0.0) / jnp.maximum(u @ ww, _EPS), viol


def _solve_codes(a, w, u0, l1, l2, max_iter, tol, solver):
    """min_{u>=0} 1/2||a - u w||^2 + l1 |u| + l2/2 |u|^2 by HALS or MU, ``[M, R]``."""
    xw = a @ w.T - l1
    ww = w @ w.T + l2 * jnp.eye(w.shape[0], dtype=w.dtype)
    step = _hals_sweep if solver == "hals" else _mu_step

    def cond(c):
        i, _, viol, viol0 = c
        return (i < max_iter) & (viol > tol * viol0)

    def body(c):
        i, u, _, viol0 = c
        u, viol = step(u, xw, ww)
        viol0 = jnp.where(i == 0, jnp.maximum(viol, _EPS), viol0)
        return i + 1, u, viol, viol0

    init = (jnp.zeros((), jnp.int32), u0, jnp.asarray(jnp.inf, a.dtype), jnp.ones((), a.dtype))
    return jax.lax.while_loop(cond, body, init)[1]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def nnls(a: Float[Array, "M F"], w: Float[Array, "R F"], l1: float = 0.0, l2: float = 0.0,
         max_iter: int = 500, tol: float = 1e-8) -> Float[Array, "M R"]:
    r"""Non-negative codes :math:`\arg\min_{u\ge0} \frac12\|a-uW\|^2 + l_1\|u\|_1 + \frac{l_2}2
    \|u\|^2` of each row of ``a`` (HALS), differentiable in ``a`` and ``w`` by the implicit
    function theorem on the KKT conditions (no unrolling).

    Args:
      a: ``f32[M, F]`` activations.
      w: ``f32[R, F]`` bank, one concept per row.
      l1, l2: penalties on the codes.
      max_iter, tol: HALS sweeps and the relative projected-gradient tolerance.

    Returns:
      ``f32[M, R]`` codes, >= 0.
    """
    return _nnls_fwd(a, w, l1, l2, max_iter, tol)[0]


def _nnls_fwd(a, w, l1, l2, max_iter, tol):
    diag = jnp.sum(w * w, axis=1) + l2
    u0 = jnp.maximum(a @ w.T - l1, 0.0) / jnp.maximum(diag, _EPS)[None]
    u0 = u0 / jnp.maximum(w.shape[0], 1)
    u = _solve_codes(a, w, u0, l1, l2, max_iter, tol, "hals")
    return u, (a, w, u)


def _nnls_bwd(l1, l2, max_iter, tol, res, u_bar):
    del l1, max_iter, tol
    a, w, u = res
    r = w.shape[0]
    s = (u > 0).astype(u.dtype)                                         # [M, R] support
    g = w @ w.T + l2 * jnp.eye(r, dtype=w.dtype)                        # [R, R]
    eye = jnp.eye(r, dtype=w.dtype)
    g_s = s[:, :, None] * g[None] * s[:, None, :] + (1.0 - s)[:, :, None] * eye[None]
    z = jnp.linalg.solve(g_s, (u_bar * s)[..., None])[..., 0] * s      # [M, R] (G_S symmetric)
    a_bar = z @ w
    w_bar = z.T @ a - u.T @ (z @ w) - z.T @ (u @ w)
    return a_bar, w_bar


nnls.defvjp(_nnls_fwd, _nnls_bwd)


def nmf(rank: int, *, solver: str = "hals", max_iter: int = 200, tol: float = 1e-4,
        alpha_codes: float = 0.0, alpha_components: float = 0.0, l1_ratio: float = 0.0,
        init: str = "nndsvda", transform_max_iter: int = 500) -> Factorization:
    r"""Non-negative matrix factorization :math:`A \approx UW` (CRAFT's concept extractor).

    Args:
      rank: R, the number of concepts.
      solver: ``"hals"`` (coordinate descent, scikit-learn's ``"cd"``) or ``"mu"``.
      max_iter: alternating iterations (scikit-learn's default 200).
      tol: stop when the projected-gradient violation falls below ``tol`` times the first one.
      alpha_codes: penalty on the codes, scaled by F (scikit-learn's ``alpha_W``; Xplique's
        CRAFT uses 1e-2).
      alpha_components: penalty on the bank, scaled by M (scikit-learn's ``alpha_H``).
      l1_ratio: share of the L1 penalty in both (0: pure L2).
      init: ``"nndsvda"`` (default), ``"nndsvd"`` or ``"random"`` (needs ``key``).
      transform_max_iter: HALS sweeps of the encoder :func:`nnls`.

    Returns:
      A :class:`Factorization`: ``fit(a: f32[M, F], *, key=None) -> NMFBank``;
      ``transform(bank, a: f32[..., F]) -> f32[..., R]`` (differentiable, implicit);
      ``inverse(bank, u) = u @ bank.components``.

    Raises:
      ValueError: unknown solver or init, a rank above F or M, negative activations.
    """
    rank = check_rank(rank, "nmf")
    check_iterations("nmf", max_iter=max_iter, transform_max_iter=transform_max_iter, tol=tol)
    if solver not in _SOLVERS:
        raise ValueError(f"nmf: solver must be one of {_SOLVERS}, got {solver!r}")
    if init not in ("nndsvda", "nndsvd", "random"):
        raise ValueError(f"nmf: init must be 'nndsvda', 'nndsvd' or 'random', got {init!r}")
    for name, v in (("alpha_codes", alpha_codes), ("alpha_components", alpha_components)):
        if v < 0:
            raise ValueError(f"nmf: {name} must be >= 0, got {v}")
    if not 0.0 <= l1_ratio <= 1.0:
        raise ValueError(f"nmf: l1_ratio must be in [0, 1], got {l1_ratio}")

    def penalties(m, f):
        return (alpha_codes * f * l1_ratio, alpha_codes * f * (1 - l1_ratio),
                alpha_components * m * l1_ratio, alpha_components * m * (1 - l1_ratio))

    @functools.partial(jax.jit, static_argnames=())
    def _fit(a, key):
        a = a.astype(jnp.float32)
        m, f = a.shape
        l1u, l2u, l1w, l2w = penalties(m, f)
        if init == "random":
            scale = jnp.sqrt(a.mean() / rank)
            ku, kw = jax.random.split(key)
            u = scale * jnp.abs(jax.random.normal(ku, (m, rank)))
            w = scale * jnp.abs(jax.random.normal(kw, (rank, f)))
        else:
            u, w = nndsvd(a, rank, fill="mean" if init == "nndsvda" else "zero")
        step = _hals_sweep if solver == "hals" else _mu_step

        def cond(c):
            i, _, _, viol, viol0 = c
            return (i < max_iter) & (viol > tol * viol0)

        def body(c):
            i, u, w, _, viol0 = c
            u, v1 = step(u, a @ w.T - l1u, w @ w.T + l2u * jnp.eye(rank))
            wt, v2 = step(w.T, a.T @ u - l1w, u.T @ u + l2w * jnp.eye(rank))
            viol = v1 + v2
            viol0 = jnp.where(i == 0, jnp.maximum(viol, _EPS), viol0)
            return i + 1, u, wt.T, viol, viol0

        init_c = (jnp.zeros((), jnp.int32), u, w, jnp.asarray(jnp.inf, jnp.float32),
                  jnp.ones((), jnp.float32))
        i, u, w, _, _ = jax.lax.while_loop(cond, body, init_c)
        return NMFBank(w, u, i)

    def fit(a: Float[Array, "M F"], *, key: jax.Array | None = None) -> NMFBank:
        check_activations(a, rank, "nmf", nonnegative=True)
        if init == "random" and key is None:
            raise ValueError("nmf: init='random' needs key=jax.random.key(seed)")
        return _fit(a, jax.random.key(0) if key is None else key)

    def transform(bank: NMFBank, a: Float[Array, "... F"]) -> Float[Array, "... R"]:
        w = bank.components
        m, f = bank.codes.shape[0], w.shape[1]
        l1u, l2u, _, _ = penalties(m, f)
        flat = a.reshape(-1, a.shape[-1]).astype(jnp.float32)
        u = nnls(flat, w, l1u, l2u, transform_max_iter, 1e-8)
        return u.reshape(a.shape[:-1] + (w.shape[0],))

    def inverse(bank: NMFBank, u: Float[Array, "... R"]) -> Float[Array, "... F"]:
        return u @ bank.components

    return Factorization(fit, transform, inverse, True, "nmf")
