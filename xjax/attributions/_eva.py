"""EVA (Fel et al., CVPR 2023): attributions from verified perturbation analysis."""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from xjax._internal.batching import chunked, scan_chunks
from xjax._internal.validate import check_positive_int
from xjax.attributions._common import check_batch_size, check_key, guarded
from xjax.attributions._score import logit
from xjax.bounds import bounds as make_bounds
from xjax.typing import Explainer, ModelFn

__all__ = ["eva"]

_BOUNDS = ("ibp", "crown_ibp", "crown", "alpha_crown")


def _cells(h: int, w: int, g: int) -> Array:
    """``i32[H, W]``: the grid cell (0..g^2 - 1) of every pixel."""
    rows = (jnp.arange(h) * g) // h
    cols = (jnp.arange(w) * g) // w
    return rows[:, None] * g + cols[None, :]


def eva(model_fn: ModelFn, *, epsilon: float = 0.05, grid_size: int = 7, bound: str = "crown_ibp",
        clip: tuple[float, float] | None = (0.0, 1.0), top_k_rivals: int | None = 9,
        empirical: bool = False, features_fn=None, head_fn=None, nb_samples: int = 64,
        sound_float: bool = True, batch_size: int | None = 64) -> Explainer:
    r"""EVA, Explainability with Verified perturbation Analysis (Fel et al., CVPR 2023).

    With c the explained class and :math:`B` the :math:`\ell_\infty` ball of radius
    :math:`\epsilon` around x (intersected with ``clip``), the verified *adversarial overlap* is

    .. math:: \overline{AO}(x, P) = \max_{c' \ne c} U\big[f_{c'} - f_c\big](P),

    an upper bound of the best margin an adversary reaches in P, computed by ``xjax.bounds`` on
    the margin specification (rows :math:`e_{c'} - e_c`; much tighter than subtracting separately
    bounded logits). The importance of a feature group u (a cell of a ``grid_size`` grid, all
    channels) is the drop of the overlap when u is frozen,

    .. math:: \mathrm{EVA}(x, u) = \overline{AO}(x, B) - \overline{AO}(x, B_u), \qquad
       B_u = \{x' \in B : x'_u = x_u\}.

    All ``1 + grid_size^2`` boxes of every image are bounded in one jitted computation,
    ``batch_size`` boxes per bound pass, every bound by the same method. ``top_k_rivals = k``
    bounds the margins of every rival on the whole ball B (in rows of k rivals), then each box
    :math:`B_u` against the k rivals whose bounds on B are largest; the other rivals keep their
    bound on B, which is sound on :math:`B_u \subset B`. So the overlap of B is exact (every
    rival), the overlap of :math:`B_u` is exact whenever no left-out rival's bound on B exceeds
    it, and otherwise an upper bound, which can only lower that cell's score. With k >= K - 1
    (or None) every box gets every rival. With ``bound="crown"`` the ball is bounded against all
    its rivals at once (one spec of K - 1 rows: full CROWN's intermediate bounds, its costly
    part, once per image instead of once per row of k rivals; the ball and the cells are then
    two compiled bounds).

    ``empirical=True`` is the paper's scaling variant, **not certified**: ``nb_samples`` points
    drawn uniformly in each box are pushed through ``features_fn`` and their coordinatewise
    min/max is the box propagated through ``head_fn`` (an under-approximation of the reachable
    set; needs ``key``); every rival, chosen or not, is bounded through ``head_fn`` on a sampled
    feature box.

    Args:
      model_fn: ``(params, x) -> f32[B, K]`` logits, from primitives ``xjax.bounds`` supports.
      epsilon: radius of the l_inf ball in input units (0.05 for [0, 1] images; the paper's
        value was not retrievable, so this is xjax's default).
      grid_size: g, the image is cut into g x g groups (7).
      bound: ``"crown_ibp"`` (default: full ``"crown"`` bounds every pre-activation by a backward
        pass, quadratic in the width of the network), ``"crown"``, ``"alpha_crown"`` or ``"ibp"``.
      clip: valid input range intersected with the boxes (tighter, still sound), or None.
      top_k_rivals: rival rows per box (9: every rival of a 10-class model; an ImageNet model
        gets 9 rows per frozen box, after 111 rows of 9 on the whole ball, instead of 999 per
        box); None: every rival for every box.
      empirical, features_fn, head_fn, nb_samples: the non-certified variant.
      sound_float: bound the model as it runs in float32 (``xjax.bounds.bounds(...,
        sound_float=True)``: every value padded by its rounding error bound), so a certified
        overlap also holds for the float network; on by default for the certificate.
      batch_size: most boxes per bound pass.

    Returns:
      ``explainer(params, x, y, *, key=None) -> f32[N, H, W]`` (each pixel carries its cell's
      score; key only for ``empirical``).

    References:
      T. Fel, M. Ducoffe, D. Vigouroux, R. Cadène, M. Capelle, C. Nicodème, T. Serre, "Don't Lie
      to Me! Robust and Efficient Explainability with Verified Perturbation Analysis", CVPR 2023,
      arXiv:2202.07728.
    """
    name = "eva"
    grid_size = check_positive_int(grid_size, "grid_size", where=name)
    batch_size = check_batch_size(batch_size, name)
    if bound not in _BOUNDS:
        raise ValueError(f"{name}: bound must be one of {_BOUNDS}, got {bound!r}")
    if not epsilon > 0:
        raise ValueError(f"{name}: epsilon must be > 0, got {epsilon}")
    if clip is not None and not clip[0] < clip[1]:
        raise ValueError(f"{name}: clip must be (low, high) with low < high, got {clip}")
    if top_k_rivals is not None:
        check_positive_int(top_k_rivals, "top_k_rivals", where=name)
    if empirical:
        if features_fn is None or head_fn is None:
            raise ValueError(f"{name}: empirical=True needs features_fn and head_fn (the split "
                             "where sampled feature boxes start)")
        nb_samples = check_positive_int(nb_samples, "nb_samples", where=name)
        verified = make_bounds(head_fn, method=bound, sound_float=sound_float)
    else:
        verified = make_bounds(model_fn, method=bound, sound_float=sound_float)

    def margins(params, xr, frozen, yr, rivals, key):
        """Upper bounds of the margins ``f_c' - f_c`` over the boxes of a block of rows against
        their rival rows: ``f32[R, S]`` (``rivals: f32[R, S, K]`` one-hot; a row naming the own
        class, used as padding, gives -inf; ``key``: one key per row, for ``empirical``)."""
        move = (1.0 - frozen)[..., None].astype(xr.dtype) * epsilon
        lo, hi = xr - move, xr + move
        if clip is not None:
            lo, hi = jnp.clip(lo, clip[0], clip[1]), jnp.clip(hi, clip[0], clip[1])
        onehot = jax.nn.one_hot(yr, rivals.shape[-1], dtype=jnp.float32)
        spec = rivals - onehot[:, None, :]                              # [R, S, K]
        is_self = jnp.sum(rivals * onehot[:, None, :], -1) > 0           # [R, S]
        if empirical:
            def body(carry, s):
                u = jax.vmap(lambda kr: jax.random.uniform(jax.random.fold_in(kr, s), xr.shape[1:],
                                                           xr.dtype))(key)
                a = features_fn(params, lo + u * (hi - lo))
                return (jnp.minimum(carry[0], a), jnp.maximum(carry[1], a)), None

            a0 = features_fn(params, xr)
            (f_lo, f_hi), _ = jax.lax.scan(body, (a0, a0), jnp.arange(nb_samples))
            iv = verified(params, f_lo, f_hi, spec=spec)
        else:
            iv = verified(params, lo, hi, spec=spec)
        return jnp.where(is_self, -jnp.inf, iv.upper)

    @guarded(name, model_fn, logit)          # y: class indices (margins against rivals)
    def explainer(params, x: Float[Array, "N H W C"], y, *, key=None) -> Float[Array, "N H W"]:
        if empirical:
            check_key(key, name)
        n, h, w = x.shape[:3]
        if grid_size > min(h, w):
            raise ValueError(f"{name}: grid_size={grid_size} is larger than the images ({h}, {w})")
        n_cls = jax.eval_shape(lambda p, a: model_fn(p, a), params, x[:1]).shape[-1]
        if n_cls < 2:
            raise ValueError(f"{name}: the model must have at least 2 classes, got {n_cls}")
        cells = _cells(h, w, grid_size)
        g2 = grid_size * grid_size
        y = jnp.asarray(y, jnp.int32)
        k1, k2 = jax.random.split(jax.random.key(0) if key is None else key)
        bound_rows = chunked(lambda a, m, b, r, k: margins(params, a, m, b, r, k), batch_size)

        # Pass 1 bounds the whole ball B of every image against every rival, s rival rows per
        # box (the own class pads the last row); pass 2 every box B_u (cell u frozen) against
        # the s rivals with the largest bounds on B. B_u is inside B, so the others' bounds on B
        # stay sound on B_u: the overlap of B_u is the max of its own rows and the largest bound
        # left out (-inf when none is). Both passes run through one compiled bound: the rows of
        # both in one chunked call when every rival fits one row (nothing to choose), else one
        # scan over chunks whose later chunks choose their rivals from the ball bounds carried.
        others = n_cls - 1
        s = others if top_k_rivals is None else min(top_k_rivals, others)
        p = -(-others // s)
        ids = jnp.arange(others)[None] + (jnp.arange(others)[None] >= y[:, None]).astype(jnp.int32)
        ids = jnp.concatenate([ids, jnp.repeat(y[:, None], p * s - others, 1)], 1)   # [N, p s]
        n_ball, n_cell = n * p, n * g2
        # full CROWN's cost is its intermediate bounds, the same for every rival of a box: the
        # ball is bounded once against all its rivals rather than once per row of s rivals
        whole_ball = bound == "crown" and not empirical and p > 1
        keys = jnp.concatenate([jax.random.split(k1, n_ball), jax.random.split(k2, n_cell)])
        ball_rivals = ids.reshape(n_ball, s)

        def choose(m_ball):
            """Rivals of every frozen box and the largest bound left out: [N, s], [N]."""
            if p == 1:
                return ids, jnp.full((n,), -jnp.inf)
            best, order = jax.lax.top_k(m_ball.reshape(n, p * s), s + 1)
            return jnp.take_along_axis(ids, order[:, :s], axis=1), best[:, s]

        def rows_of(rows, top):
            """The bound arguments of rows (ball rows 0..n_ball-1 image-major, then cell rows
            image-major; indices past the end repeat the last row): cell rows face ``top``."""
            rows = jnp.minimum(rows, n_ball + n_cell - 1)
            ball, r, c = rows < n_ball, jnp.minimum(rows, n_ball - 1), jnp.maximum(rows - n_ball, 0)
            img = jnp.where(ball, r // p, c // g2)
            frozen = jnp.where(ball[:, None, None], 0.0,
                               (cells[None] == (c % g2)[:, None, None]).astype(jnp.float32))
            rivals = jnp.where(ball[:, None], ball_rivals[r], top[c // g2])
            return x[img], frozen, y[img], jax.nn.one_hot(rivals, n_cls, dtype=jnp.float32), \
                keys[rows]

        if p == 1:                       # nothing to choose: every row in one chunked call
            m = bound_rows(*rows_of(jnp.arange(n_ball + n_cell), ids))
            m_ball, m_cells = m[:n_ball], m[n_ball:]
        elif whole_ball:                 # full CROWN: every rival of the ball in one bound
            none = jnp.zeros((n, h, w), jnp.float32)
            m_ball = bound_rows(x, none, y, jax.nn.one_hot(ids, n_cls, dtype=jnp.float32),
                                keys[:n]).reshape(n_ball, s)
            m_cells = bound_rows(*rows_of(n_ball + jnp.arange(n_cell), choose(m_ball)[0]))
        elif batch_size is None:         # everything at once: one call per pass
            m_ball = bound_rows(*rows_of(jnp.arange(n_ball), ids[:, :s]))   # (no cell rows)
            m_cells = bound_rows(*rows_of(n_ball + jnp.arange(n_cell), choose(m_ball)[0]))
        else:                            # ball chunks, then cell chunks choosing from them
            b = batch_size
            cb, cc = -(-n_ball // b), -(-n_cell // b)

            def body(m_ball, i):
                ball = i < cb
                rows = jnp.where(ball, jnp.minimum(i * b + jnp.arange(b), n_ball - 1),
                                 n_ball + (i - cb) * b + jnp.arange(b))
                m = margins(params, *rows_of(rows, choose(m_ball[:n_ball])[0]))
                grown = jax.lax.dynamic_update_slice(m_ball, m, (jnp.minimum(i, cb - 1) * b, 0))
                return jnp.where(ball, grown, m_ball), m

            m_pad, out = scan_chunks(body, jnp.full((cb * b, s), -jnp.inf), cb + cc)
            m_ball, m_cells = m_pad[:n_ball], out[cb:].reshape(cc * b, s)[:n_cell]
        rest = choose(m_ball)[1]
        ao_ball = jnp.max(m_ball.reshape(n, p * s), axis=-1)                        # [N]
        ao_cells = jnp.maximum(jnp.max(m_cells, -1).reshape(n, g2), rest[:, None])  # [N, g2]
        scores = ao_ball[:, None] - ao_cells
        # an out-of-range label (unchecked under jit) gives a NaN row, as every score function
        scores = jnp.where(((y >= 0) & (y < n_cls))[:, None], scores, jnp.nan)
        return jnp.take_along_axis(scores, cells.reshape(1, -1).repeat(n, 0), axis=1
                                   ).reshape(n, h, w).astype(jnp.float32)

    return explainer
