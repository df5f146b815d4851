"""The bound transform: ``bounds(model_fn, method=...)`` and its named factories.

The model is traced once over the box (:func:`xjax.bounds._ibp.trace`, IBP on the way); the
linear methods then run backward passes over the tape (:mod:`xjax.bounds._crown`, with the
relaxations of :mod:`xjax.bounds._relax`), alpha-CROWN optimizes the free parameters of the final
pass (:mod:`xjax.bounds._alpha`), and the Lipschitz bound needs no trace at all
(:mod:`xjax.bounds._lipschitz`).
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from xjax._internal.validate import check_float, check_positive_int
from xjax.bounds import _alpha
from xjax.bounds._crown import identity_spec, spec_bounds, tighten
from xjax.bounds._ibp import IBP_RULES, trace
from xjax.bounds._interval import Interval, concretize
from xjax.bounds._lipschitz import lipschitz_bounds

__all__ = ["alpha_crown", "bounds", "crown", "crown_ibp", "ibp", "lipschitz",
           "supported_primitives"]


def supported_primitives() -> tuple[str, ...]:
    """Names of the primitives with a bound rule (the IBP table's keys; every one of them runs
    under CROWN too: exactly when affine, by its linear relaxation when it has one, else by its
    interval). :data:`xjax.bounds._relax.RELAXATIONS` lists the relaxed ones."""
    return tuple(sorted(IBP_RULES))


def _contract(c, lo, hi):
    """Interval of ``C y`` for y in [lo, hi]: ``c: [B, S, K]``, ``lo, hi: [B, K]`` (a zero
    coefficient ignores an infinite end)."""
    lam = jnp.transpose(c, (1, 0, 2))                           # [S, B, K]
    lower = concretize(lam, lo[None], hi[None]).T
    upper = -concretize(-lam, lo[None], hi[None]).T
    return lower, upper


_METHODS = ("ibp", "crown", "crown_ibp", "alpha_crown", "lipschitz")


def bounds(model_fn: Callable, *, method: str = "crown", alpha_steps: int = 20,
           alpha_learning_rate: float = 0.1, lipschitz_constant: float = 1.0,
           sound_float: bool = False) -> Callable:
    r"""A bound transform: ``g(params, lower, upper, spec=None) -> Interval``.

    For every x with ``lower <= x <= upper`` (elementwise, batch included), the output
    ``model_fn(params, x)`` lies in the returned interval (or, with ``spec``, the linear
    combinations :math:`C f(x)`, e.g. logit margins :math:`f_{c'} - f_c`).

    Args:
      model_fn: ``(params, x) -> f32[B, K]``, built from supported primitives.
      method: ``"ibp"`` (interval bound propagation), ``"crown"`` (backward linear relaxation;
        the inputs of every relaxed equation bounded by their own backward pass intersected with
        IBP, one spec row per element, in chunks of rows under ``lax.map`` when a layer is
        large, and every other interval re-propagated forward from them; never looser than IBP;
        its program grows with the square of the depth, so on deep networks calling ``g``
        without ``jax.jit`` (op by op) can be far cheaper than compiling it), ``"crown_ibp"``
        (backward relaxation on IBP intermediate bounds), ``"alpha_crown"`` (CROWN, then the
        free parameters of the final pass's relaxations, i.e. rectifier lower slopes, tangent
        points of smooth functions and McCormick plane mixes, optimized in [0, 1] with Adam,
        one per spec row and element, keeping the best bound seen: never looser than CROWN), or
        ``"lipschitz"`` for an L-Lipschitz (l2) network: :math:`f(c) \pm L \|C_s\|_2 \, r`
        with c the box centre and r its l2 radius (sound only if the network *is* L-Lipschitz,
        e.g. an exported ``xjax.lipschitz`` model).
      alpha_steps, alpha_learning_rate: the slope optimization of ``"alpha_crown"`` (20, 0.1).
      lipschitz_constant: L for ``"lipschitz"`` (1.0).
      sound_float: bound the model *as it runs in floating point*, not only in exact arithmetic
        (off by default; EVA's certified variant turns it on). Every float value is padded by a
        bound of its rounding error: ``gamma_n * sum |terms|`` for n-term sums (dot products,
        convolutions, reductions; Higham 2002, Sec. 3.1), a few units in the last place for
        elementwise operations (``EXACT_PRIMITIVES`` none), and backward passes charge
        ``|coefficient| * error`` at every value they reach, so the float evaluation of the
        model lies inside the bounds. The bound's own backward arithmetic is covered by an
        outward widening of 64 ulps of the bound's magnitude (an allowance, not a proof under
        heavy cancellation). Not offered for ``"lipschitz"``.

    Returns:
      ``g(params, lower: f32[B, ...], upper: f32[B, ...], spec: f32[S, K] | f32[B, S, K] | None)
      -> Interval`` of shape ``[B, K]`` (or ``[B, S]``), float32 (backward passes accumulate in
      float32 whatever the model's compute dtype); jit- and vmap-able.

    Raises:
      NotImplementedError: a primitive without a rule (named), at trace time.

    References:
      S. Gowal et al., "On the Effectiveness of Interval Bound Propagation for Training
      Verifiably Robust Models", 2018, arXiv:1810.12715. H. Zhang et al., "Efficient Neural Network
      Robustness Certification with General Activation Functions" (CROWN), NeurIPS 2018,
      arXiv:1811.00866.
    """
    if method not in _METHODS:
        raise ValueError(f"bounds: method must be one of {_METHODS}, got {method!r}")
    check_positive_int(alpha_steps, "alpha_steps", where="bounds")
    check_float(alpha_learning_rate, "alpha_learning_rate", where="bounds", minimum=0.0,
                strict=True)
    check_float(lipschitz_constant, "lipschitz_constant", where="bounds", minimum=0.0,
                strict=True)
    if not isinstance(sound_float, bool):
        raise TypeError(f"bounds: sound_float must be a bool, got {sound_float!r}")
    if sound_float and method == "lipschitz":
        raise ValueError("bounds: sound_float is not offered for method='lipschitz' (the "
                         "Lipschitz constant bounds the exact network, not its float rounding)")

    def g(params, lower: Float[Array, "B ..."], upper: Float[Array, "B ..."], spec=None):
        lower, upper = jnp.asarray(lower), jnp.asarray(upper)
        if lower.shape != upper.shape:
            raise ValueError(f"bounds: lower and upper must have the same shape, got "
                             f"{lower.shape} and {upper.shape}")
        try:
            empty = bool(jnp.any(lower > upper))
        except jax.errors.ConcretizationTypeError:
            empty = False                  # traced boxes cannot be checked before compilation
        if empty:
            raise ValueError("bounds: lower > upper somewhere; the box is empty")
        if method == "lipschitz":
            return lipschitz_bounds(model_fn, params, lower, upper, spec, lipschitz_constant)
        if lower.ndim == 0 or lower.shape[0] == 0:
            raise ValueError(f"bounds: lower and upper must be a non-empty batch of boxes "
                             f"[B >= 1, ...], got shape {lower.shape}")
        rows = jax.eval_shape(lambda p, x: model_fn(p, x), params, lower).shape[:1]
        if rows != lower.shape[:1]:
            raise ValueError(f"bounds: model_fn must give one row per box: {lower.shape[0]} "
                             f"box(es) gave {rows[0] if rows else 'no'} row(s)")
        if method != "ibp" and lower.shape[0] > 1:
            # one box at a time under vmap: CROWN's per-example contractions assume the batch
            # is axis 0 of every value, which a model may move (attention's transposes do)
            c = None if spec is None else jnp.asarray(spec, jnp.float32)
            per_box = c is not None and c.ndim == 3
            if per_box and c.shape[0] != lower.shape[0]:
                raise ValueError(f"bounds: a spec of shape {c.shape} must have one (S, K) per "
                                 f"box, {lower.shape[0]} boxes")
            one = lambda lo, hi, s: bound(params, lo[None], hi[None], s, lower.shape[0])
            try:
                iv = jax.vmap(one, in_axes=(0, 0, 0 if per_box else None))(lower, upper, c)
                return Interval(iv.lower[:, 0], iv.upper[:, 0])
            except (TypeError, ValueError) as err:
                one_box = err      # a model that fixes its batch size: the batch at once, if it can
            try:
                return bound(params, lower, upper, spec, 1, batch_axis=True)
            except (TypeError, ValueError) as err:
                raise err from one_box      # with why one box at a time failed
        return bound(params, lower, upper, spec, 1)

    def bound(params, lower, upper, spec, copies, batch_axis=False):
        tape, x_node, out = trace(model_fn, params, lower, upper, sound=sound_float)
        if out.shape[:1] != lower.shape[:1]:
            raise ValueError(f"bounds: model_fn must give one row per box: {lower.shape[0]} "
                             f"box(es) gave an output of shape {out.shape}")
        moved = [v.shape for v in tape.nodes if v.shape and v.shape[0] != lower.shape[0]]
        if batch_axis and moved:
            raise ValueError(f"bounds: model_fn cannot be traced on one box (it fixes its batch "
                             f"size) and moves the batch off axis 0 (a value of shape "
                             f"{moved[0]} for {lower.shape[0]} boxes), which CROWN's per-box "
                             f"contractions need: bound one box at a time")
        out.lo, out.hi = out.lo.astype(jnp.float32), out.hi.astype(jnp.float32)
        c = None if spec is None else jnp.asarray(spec, jnp.float32)
        if c is not None:
            if c.ndim == 2:
                c = jnp.broadcast_to(c, (out.shape[0],) + c.shape)
            if c.ndim != 3 or c.shape[0] != out.shape[0] or c.shape[2] != out.shape[-1]:
                raise ValueError(f"bounds: spec must be (S, {out.shape[-1]}) or "
                                 f"({out.shape[0] * copies}, S, {out.shape[-1]}), got "
                                 f"{jnp.shape(spec)}")
        ibp_lo, ibp_hi = (out.lo, out.hi) if c is None else _contract(c, out.lo, out.hi)
        if method == "ibp":
            return _outward(ibp_lo, ibp_hi, sound_float)
        tightened, errs = tighten(tape, x_node, lower, upper, copies=copies) \
            if method in ("crown", "alpha_crown") else ({}, {})

        def bounds_of(node):
            return tightened.get(node.index, (node.lo, node.hi))

        if out.index in tightened:          # the output's interval re-propagated by CROWN
            o_lo, o_hi = (v.astype(jnp.float32) for v in tightened[out.index])
            ibp_lo, ibp_hi = (o_lo, o_hi) if c is None else _contract(c, o_lo, o_hi)

        lam = identity_spec(out.shape) if c is None else jnp.transpose(c, (1, 0, 2))
        lo, hi = spec_bounds(tape, out, lam, bounds_of, x_node, lower, upper, copies, errs)
        if method == "alpha_crown":
            lo, hi = _alpha.optimize(tape, out, lam, bounds_of, x_node, lower, upper, lo, hi,
                                     alpha_steps, alpha_learning_rate, errs)
        return _outward(jnp.maximum(lo, ibp_lo), jnp.minimum(hi, ibp_hi), sound_float)

    return g


def _outward(lo, hi, sound):
    """The final interval; with ``sound``, widened by 64 ulps of its magnitude (the rounding of
    the bound's own last sums)."""
    if not sound:
        return Interval(lo, hi)
    pad = 64 * float(jnp.finfo(lo.dtype).eps) * jnp.maximum(jnp.abs(lo), jnp.abs(hi)) + \
        float(jnp.finfo(lo.dtype).tiny)
    return Interval(lo - pad, hi + pad)


def ibp(model_fn: Callable, *, sound_float: bool = False) -> Callable:
    """``bounds(model_fn, method="ibp")``: interval bound propagation."""
    return bounds(model_fn, method="ibp", sound_float=sound_float)


def crown(model_fn: Callable, *, sound_float: bool = False) -> Callable:
    """``bounds(model_fn, method="crown")``: CROWN, intermediate bounds by CROWN and IBP."""
    return bounds(model_fn, method="crown", sound_float=sound_float)


def crown_ibp(model_fn: Callable, *, sound_float: bool = False) -> Callable:
    """``bounds(model_fn, method="crown_ibp")``: CROWN on IBP intermediate bounds."""
    return bounds(model_fn, method="crown_ibp", sound_float=sound_float)


def alpha_crown(model_fn: Callable, *, steps: int = 20, learning_rate: float = 0.1,
                sound_float: bool = False) -> Callable:
    """``bounds(model_fn, method="alpha_crown")``: CROWN with optimized lower ReLU slopes."""
    return bounds(model_fn, method="alpha_crown", alpha_steps=steps,
                  alpha_learning_rate=learning_rate, sound_float=sound_float)


def lipschitz(model_fn: Callable, *, constant: float = 1.0) -> Callable:
    """``bounds(model_fn, method="lipschitz")`` for an L-Lipschitz (l2) network."""
    return bounds(model_fn, method="lipschitz", lipschitz_constant=constant)
