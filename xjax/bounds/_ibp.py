"""Interval bound propagation (Gowal et al., 2018): one interval rule per primitive, in a table.

:func:`trace` walks the model's jaxpr once (the shared walker of :mod:`xjax._internal.jaxpr`
inlines call primitives); every value that depends on the input box becomes a node with an
interval, recorded on a :class:`~xjax.bounds._interval.Tape` for the linear (CROWN) passes.
Everything else is evaluated concretely, so its values may be traced.

A few primitives are *lowered* before their rule applies (:data:`LOWERINGS`): a division by a
box-dependent value becomes a product with its reciprocal, ``max``/``min`` of two box-dependent
values becomes a rectifier of their difference, and ``clamp`` a ``max`` then a ``min``. The
linear relaxations then only need the elementwise, bilinear and rectifier cases. A softmax (the
quotient ``jax.nn.softmax`` writes) is rebuilt from its scores in the exponential-reciprocal
form, whose bounds do not carry the subtracted maximum's width; the equations it replaces are
pruned from the tape with every other value the output does not read.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from xjax._internal.jaxpr import bind, call_body, walk
from xjax.bounds._interval import Eqn, Node, Tape, endpoints, is_node, products
from xjax.bounds._relax import NAMED_CALLS, REBUILT, NamedCall, float_softmax, named_interval

__all__ = ["CALL_RULES", "IBP_RULES", "LOWERINGS", "SOFTMAX_PAIRS_BUDGET", "emit", "interval",
           "trace"]


def _increasing(prim, params, inputs):
    """Non-decreasing in every box-dependent operand: the bounds are the images of the ends."""
    los = bind(prim, params, [endpoints(v)[0] for v in inputs])
    his = bind(prim, params, [endpoints(v)[1] for v in inputs])
    return list(zip(los, his, strict=True))


def _decreasing(prim, params, inputs):
    (x,) = inputs
    return [(bind(prim, params, [x.hi])[0], bind(prim, params, [x.lo])[0])]


def _on_domain(floor):
    """An increasing function defined on ``[floor, inf)``: bounds that leave it are clipped."""
    def rule(prim, params, inputs):
        (x,) = inputs
        return _increasing(prim, params, [Node(jnp.maximum(x.lo, floor), jnp.maximum(x.hi, floor),
                                               x.index)])
    return rule


def _rsqrt(prim, params, inputs):
    (x,) = inputs
    return [(lax.rsqrt(jnp.maximum(x.hi, 0.0)), lax.rsqrt(jnp.maximum(x.lo, 0.0)))]


def _sub(prim, params, inputs):
    (a_lo, a_hi), (b_lo, b_hi) = (endpoints(v) for v in inputs)
    return [(a_lo - b_hi, a_hi - b_lo)]


def _neg(prim, params, inputs):
    return [(-inputs[0].hi, -inputs[0].lo)]


def _ordered(lo_image, hi_image):
    """The images of an interval's two ends under an elementwise monotone map (a product with,
    or a division by, a constant), ordered. The end form costs what the centre-radius form
    costs and, unlike it, keeps a bound near 0 of a huge interval (a layer norm's mean of
    squares, IBP's ``[0, 1e15]`` deep in a ViT) from rounding to a positive value: in float32,
    ``m - r`` with ``m = r = 5e14`` lands anywhere in ``+-3e7``."""
    return jnp.minimum(lo_image, hi_image), jnp.maximum(lo_image, hi_image)


def _center_radius(prim, params, inputs, var):
    """A bilinear primitive with one box operand (position ``var``): |W| acts on the radius.
    An elementwise product takes the ends' images instead (see :func:`_ordered`)."""
    node = inputs[var]
    if prim.name == "mul":
        # (an undefined end, 0 * inf or a NaN factor, is NaN: interval() makes it unbounded)
        return [_ordered(*(bind(prim, params, [e if i == var else v for i, v in
                                               enumerate(inputs)])[0] for e in (node.lo, node.hi)))]
    mid, rad = (node.lo + node.hi) / 2.0, (node.hi - node.lo) / 2.0
    m = bind(prim, params, [mid if i == var else v for i, v in enumerate(inputs)])[0]
    r = bind(prim, params, [rad if i == var else jnp.abs(v) for i, v in enumerate(inputs)])[0]
    return [(m - r, m + r)]


def _bilinear(prim, params, inputs):
    nodes = [i for i, v in enumerate(inputs) if is_node(v)]
    if len(nodes) == 1:
        return _center_radius(prim, params, inputs, nodes[0])
    a, b = inputs
    if prim.name == "mul" and a is b:                       # x * x: a square
        return [_power(a, 2)]
    if prim.name == "mul":
        return [products(a.lo, a.hi, b.lo, b.hi)]
    # an interval matrix product (attention scores Q K^T): with A = Ac +- Ar and B = Bc +- Br,
    # AB lies in Ac Bc +- (|Ac| Br + Ar |Bc| + Ar Br)
    ac, ar = (a.lo + a.hi) / 2.0, (a.hi - a.lo) / 2.0
    bc, br = (b.lo + b.hi) / 2.0, (b.hi - b.lo) / 2.0
    dot = lambda u, v: bind(prim, params, [u, v])[0]
    m = dot(ac, bc)
    r = dot(jnp.abs(ac), br) + dot(ar, jnp.abs(bc)) + dot(ar, br)
    return [(m - r, m + r)]


def _div(prim, params, inputs):
    """``a / b`` for a constant ``b`` (a box-dependent ``b`` is lowered to a reciprocal)."""
    a, b = inputs
    return [_ordered(*(bind(prim, params, [e, b])[0] for e in (a.lo, a.hi)))]


def _power(x, y: int):
    """Bounds of ``x ** y`` for an integer ``y``.

    ``y >= 0``: odd powers are increasing; even powers decrease then increase (minimum 0 when the
    box straddles 0). ``y < 0``: ``x ** y = 1 / x ** |y|`` is monotone on a box of constant sign
    (decreasing for x > 0; for x < 0 decreasing when y is odd, increasing when y is even), and
    unbounded on a box that contains the pole at 0: ``(-inf, inf)`` for odd y, and
    ``[min(lo ** y, hi ** y), inf)`` for even y (positive everywhere).
    """
    lo, hi = x.lo, x.hi
    p = lambda v: lax.integer_pow(v, y)
    if y == 0:
        return jnp.ones_like(lo), jnp.ones_like(hi)
    if y > 0 and y % 2 == 1:
        return p(lo), p(hi)
    if y > 0:
        a, b = jnp.abs(lo), jnp.abs(hi)
        straddle = (lo < 0) & (hi > 0)
        return jnp.where(straddle, jnp.zeros_like(lo), p(jnp.minimum(a, b))), p(jnp.maximum(a, b))
    pole = (lo <= 0) & (hi >= 0)
    if y % 2 == 1:                       # odd negative: decreasing on each side of the pole
        # the where keeps the pole's 1/0 out of values and gradients
        lo_s, hi_s = (jnp.where(pole, 1.0, v).astype(v.dtype) for v in (lo, hi))
        return jnp.where(pole, -jnp.inf, p(hi_s)), jnp.where(pole, jnp.inf, p(lo_s))
    # even negative: |x| ** y, decreasing in |x|, which spans [near, far] on the box
    a, b = jnp.abs(lo), jnp.abs(hi)
    near, far = jnp.where(pole, jnp.zeros_like(a), jnp.minimum(a, b)), jnp.maximum(a, b)
    inv = lambda v: jnp.where(v > 0, p(jnp.where(v > 0, v, 1.0).astype(v.dtype)), jnp.inf)
    return inv(far), inv(near)


def _pow_rule(prim, params, inputs):
    return [_power(inputs[0], params.get("y", 2))]


def _abs(prim, params, inputs):
    (x,) = inputs
    straddle = (x.lo < 0) & (x.hi > 0)
    a, b = jnp.abs(x.lo), jnp.abs(x.hi)
    return [(jnp.where(straddle, 0.0, jnp.minimum(a, b)).astype(a.dtype), jnp.maximum(a, b))]


def _select_n(prim, params, inputs):
    """``select_n(which, *cases)``; a box-dependent ``which`` (a bounded predicate, from a
    comparison) gives the hull of the cases it may pick."""
    which, cases = inputs[0], inputs[1:]
    if not is_node(which):
        return _increasing(prim, params, inputs)
    w_lo, w_hi = (v.astype(jnp.int32) for v in (which.lo, which.hi))
    los, his = [], []
    for i, case in enumerate(cases):
        c_lo, c_hi = endpoints(case)
        maybe = (w_lo <= i) & (i <= w_hi)
        los.append(jnp.where(maybe, c_lo, jnp.inf))
        his.append(jnp.where(maybe, c_hi, -jnp.inf))
    lo = jnp.min(jnp.stack(jnp.broadcast_arrays(*los)), axis=0)
    hi = jnp.max(jnp.stack(jnp.broadcast_arrays(*his)), axis=0)
    dtype = endpoints(cases[0])[0].dtype
    return [(lo.astype(dtype), hi.astype(dtype))]


def _greater(strict):
    """``a >= b`` (or ``a > b``) on intervals: certainly true / possibly true."""
    def rule(prim, params, inputs):
        (a_lo, a_hi), (b_lo, b_hi) = (endpoints(v) for v in inputs)
        cmp = jnp.greater if strict else jnp.greater_equal
        return [(cmp(a_lo, b_hi), cmp(a_hi, b_lo))]
    return rule


def _swapped(rule):
    return lambda prim, params, inputs: rule(prim, params, inputs[::-1])


def _eq(prim, params, inputs):
    (a_lo, a_hi), (b_lo, b_hi) = (endpoints(v) for v in inputs)
    surely = (a_lo == a_hi) & (b_lo == b_hi) & (a_lo == b_lo)
    maybe = (a_lo <= b_hi) & (b_lo <= a_hi)
    return [(surely, maybe)]


def _ne(prim, params, inputs):
    ((surely, maybe),) = _eq(prim, params, inputs)
    return [(~maybe, ~surely)]


def _boolean(rule):
    """Logical ``and``/``or``/``not``: monotone on booleans; bitwise on integers is not."""
    def checked(prim, params, inputs):
        if any(endpoints(v)[0].dtype != jnp.bool_ for v in inputs):
            raise NotImplementedError(f"xjax.bounds: {prim.name} on integers (bitwise) has no rule")
        return rule(prim, params, inputs)
    return checked


def _not(prim, params, inputs):
    (x,) = inputs
    return [(~x.hi, ~x.lo)]


def _constant_operands(positions, what):
    """A rule that refuses a box-dependent operand at ``positions`` (indices, padding values)."""
    def guard(rule):
        def checked(prim, params, inputs):
            pos = positions(len(inputs))
            if any(is_node(inputs[i]) for i in pos):
                raise NotImplementedError(f"xjax.bounds: {prim.name} whose {what} depends on the "
                                          "input box has no rule")
            return rule(prim, params, inputs)
        return checked
    return guard


def _single_operand(rule):
    def checked(prim, params, inputs):
        if len(inputs) != 1:
            raise NotImplementedError(f"xjax.bounds: {prim.name} with several operands (argsort) "
                                      "has no rule")
        return rule(prim, params, inputs)
    return checked


# monotone non-decreasing in every box-dependent operand (constants as they are)
_INCREASING = ("reshape", "transpose", "broadcast_in_dim", "squeeze", "stack",
               "concatenate", "convert_element_type", "copy", "reduce_sum",
               "reduce_max", "reduce_min", "max", "min", "exp", "exp2", "tanh", "logistic", "cbrt",
               "erf", "add", "stop_gradient", "reduce_window_sum", "reduce_window_max",
               "reduce_window_min", "cumsum", "cummax", "cummin", "rev", "atan", "asinh", "sinh",
               "expm1", "reduce_precision", "optimization_barrier", "split", "floor", "ceil",
               "round", "sign", "slice")

IBP_RULES = {
    **dict.fromkeys(_INCREASING, _increasing),
    "sort": _single_operand(_increasing),
    "dynamic_slice": _constant_operands(lambda n: range(1, n), "start index")(_increasing),
    "gather": _constant_operands(lambda n: [1], "index")(_increasing),
    "pad": _constant_operands(lambda n: [1], "padding value")(_increasing),
    "select_n": _select_n,
    "erfc": _decreasing,
    "acos": _decreasing,
    "log": _on_domain(0.0),
    "sqrt": _on_domain(0.0),
    "log1p": _on_domain(-1.0),
    "rsqrt": _rsqrt,
    "sub": _sub,
    "neg": _neg,
    "mul": _bilinear,
    "dot_general": _bilinear,
    "conv_general_dilated": _bilinear,
    "div": _div,
    "integer_pow": _pow_rule,
    "square": _pow_rule,
    "abs": _abs,
    "ge": _greater(strict=False),
    "gt": _greater(strict=True),
    "le": _swapped(_greater(strict=False)),
    "lt": _swapped(_greater(strict=True)),
    "eq": _eq,
    "ne": _ne,
    "and": _boolean(_increasing),
    "or": _boolean(_increasing),
    "not": _boolean(_not),
}


# sound_float: what rounding each primitive commits (every name is a key of IBP_RULES; a test
# checks it). Exact: moves, selections, sign changes and rounding to integers. Accumulating:
# n-term sums, |error| <= gamma_n * sum |terms| (Higham, Accuracy and Stability of Numerical
# Algorithms, 2002, Sec. 3.1), evaluated by the primitive itself on magnitudes, n the number of
# terms. Every other float primitive: a relative error of its output from ROUNDING (units of
# the output dtype's eps: 2 for the arithmetic operations, 2|y| + 2 for integer powers, the
# kept mantissa for reduce_precision) or, for transcendental functions and named jax.nn calls,
# whose XLA implementations are not correctly rounded, 16 ulps.
EXACT_PRIMITIVES = frozenset({
    "abs", "broadcast_in_dim", "ceil", "concatenate", "copy", "cummax", "cummin",
    "dynamic_slice", "floor", "gather", "max", "min", "neg", "optimization_barrier", "pad",
    "reduce_max", "reduce_min", "reduce_window_max", "reduce_window_min", "reshape", "rev",
    "round", "select_n", "sign", "slice", "sort", "split", "squeeze", "stack", "stop_gradient",
    "transpose"})


def _terms_dot(params, inputs):
    (lc, _), _ = params["dimension_numbers"]
    return int(np.prod([inputs[0].shape[d] for d in lc])) if lc else 1


def _terms_conv(params, inputs):
    rhs = inputs[1].shape
    return max(1, int(np.prod(rhs)) // rhs[params["dimension_numbers"].rhs_spec[0]])


ACCUMULATING = {
    "dot_general": _terms_dot,
    "conv_general_dilated": _terms_conv,
    "reduce_sum": lambda params, inputs: int(np.prod([inputs[0].shape[a]
                                                      for a in params["axes"]])),
    "cumsum": lambda params, inputs: inputs[0].shape[params["axis"]],
    "reduce_window_sum": lambda params, inputs: int(np.prod(params["window_dimensions"])),
}
ROUNDING = {        # relative error of the output, from the primitive's params and eps
    **{name: (lambda params, eps: 2 * eps) for name in ("add", "sub", "mul", "div", "sqrt",
                                                         "square")},
    "rsqrt": lambda params, eps: 4 * eps,
    "convert_element_type": lambda params, eps: eps,
    "integer_pow": lambda params, eps: (2 * abs(params["y"]) + 2) * eps,
    "reduce_precision": lambda params, eps: 2.0 ** -params["mantissa_bits"] + eps,
}
_TRANSCENDENTAL_ULPS = 16


def _floor_of_add(params, inputs):
    """Adding a number >= 0 never rounds a float below the other term: ``fl(a + b) >= a``."""
    (la, _), (lb, _) = (endpoints(v) for v in inputs)
    return jnp.maximum(jnp.where(lb >= 0, la, -jnp.inf), jnp.where(la >= 0, lb, -jnp.inf))


def _floor_of_sum(params, inputs):
    """A float sum of terms >= 0 (any order) is >= 0."""
    lo = endpoints(inputs[0])[0]
    return jnp.where(jnp.min(lo, axis=params["axes"]) >= 0, 0.0, -jnp.inf)


# sound_float: a value the float evaluation never goes below, whatever the rounding (exp rounds
# to +0 at worst; sums of terms >= 0): the padded interval keeps it, so an absolute error bound
# taken at a huge upper end (the exponential of a large score difference, and sums of them)
# does not push the lower end below it (and 1 + sum_j exp(x_j - x_i) off its pole at 0)
_FLOAT_FLOOR = {
    "exp": lambda params, inputs: jnp.zeros(()),
    "add": _floor_of_add,
    "reduce_sum": _floor_of_sum,
}


def _magnitude(v):
    lo, hi = endpoints(v)
    return jnp.maximum(jnp.abs(lo), jnp.abs(hi))


def rounding_error(prim, params, inputs, lo, hi):
    """A bound of the rounding error of the float evaluation of ``prim`` at any point of the
    box, and of the interval arithmetic that bounded it (sound_float); None where exact."""
    name = getattr(prim, "name", "named_call")
    exact = prim.exact if isinstance(prim, NamedCall) else name in EXACT_PRIMITIVES
    if exact:
        return None
    eps = float(jnp.finfo(lo.dtype).eps)
    out_mag = jnp.maximum(jnp.abs(lo), jnp.abs(hi))
    tiny = float(jnp.finfo(lo.dtype).tiny)
    if name in ACCUMULATING:
        n = ACCUMULATING[name](params, inputs)
        gamma = n * eps / max(1.0 - n * eps, 1e-3)
        mags = [_magnitude(v).astype(lo.dtype) for v in inputs]
        terms = bind(prim, params, mags)
        terms = terms[0] if isinstance(terms, (list, tuple)) else terms
        # the model's float sum and the bound's two sums (centre and radius) each within
        # gamma_n * sum |terms|
        return 2.0 * gamma * terms + eps * out_mag + tiny
    if isinstance(prim, NamedCall) and prim.rounding is not None:
        return prim.rounding(eps, _magnitude(inputs[0]).astype(lo.dtype), out_mag) + tiny
    rel = ROUNDING[name](params, eps) if name in ROUNDING else _TRANSCENDENTAL_ULPS * eps
    return rel * out_mag + tiny


def interval(prim, params, inputs, sound: bool = False) -> list[tuple]:
    """``[(lower, upper, err)]`` per output of ``prim`` over its operands' intervals (nodes carry
    theirs, constants are exact); with ``sound``, each float output widened by its
    :func:`rounding_error` ``err`` (else ``err`` is None)."""
    rule = named_interval if isinstance(prim, NamedCall) else IBP_RULES.get(prim.name)
    if rule is None:
        raise NotImplementedError(f"xjax.bounds: no bound rule for the primitive {prim.name!r}; "
                                  f"supported: {', '.join(sorted(IBP_RULES))}")
    outs = []
    for lo, hi in rule(prim, params, inputs):
        err = None
        if jnp.issubdtype(lo.dtype, jnp.floating):
            # an undefined endpoint (inf - inf, 0 * inf in a bilinear form) means "unbounded"
            lo, hi = jnp.where(jnp.isnan(lo), -jnp.inf, lo), jnp.where(jnp.isnan(hi), jnp.inf, hi)
            if sound:
                err = rounding_error(prim, params, inputs, lo, hi)
                if err is not None:
                    err = jnp.where(jnp.isfinite(err), err, jnp.inf)
                    lo, hi = lo - err, hi + err
                    if (rule := _FLOAT_FLOOR.get(getattr(prim, "name", None))) is not None:
                        floor = rule(params, inputs).astype(lo.dtype)
                        lo = jnp.where(jnp.isnan(lo), floor, jnp.maximum(lo, floor))
        outs.append((lo, hi, err))
    return outs


def emit(tape: Tape, prim, params, inputs) -> list[Node]:
    """Apply the interval rule of ``prim`` and record the equation on the tape (with
    ``tape.sound``, each float output widened by its :func:`rounding_error`)."""
    outs = [tape.node(lo, hi, err) for lo, hi, err in interval(prim, params, inputs, tape.sound)]
    tape.record(Eqn(prim, params, inputs, outs))
    return outs


def _zero(v):
    return jnp.zeros((), endpoints(v)[0].dtype)


def _lower_div(tape, prim, params, inputs):
    a, b = inputs
    if not is_node(b):
        return None
    # sound_float bounds the model as it evaluates in floats: the rebuilt form's rounding is not
    # the model's, so its output then carries the model's own (float_softmax), which needs the
    # shift to be the row's maximum, as in jax.nn.softmax; any other shift stays as written
    if (softmax := _softmax_input(tape, a, b)) is not None \
            and np.prod(a.shape[1:]) * (a.shape[softmax[1]] - 1) <= SOFTMAX_PAIRS_BUDGET \
            and (not tape.sound or _is_row_max(tape, *softmax)):
        x, axis, _ = softmax
        cap = SOFTMAX_CAP if tape.sound else None
        out = _emit_function(tape, lambda v: _softmax_exp_reciprocal(v, axis, cap), [x])
        return emit(tape, float_softmax(x.shape[axis], cap), {}, out) if tape.sound else out
    (r,) = emit(tape, lax.integer_pow_p, {"y": -1}, [b])
    return emit(tape, lax.mul_p, {"out_dtype": None}, [a, r])


# most pairwise differences per example one softmax may hold in the exponential-reciprocal form
# (2**24 float32: 64 MiB per array): ViT-Tiny's attention at 224 px (196 tokens, 3 heads) needs
# 22.5 million per image and keeps the product-with-reciprocal lowering
SOFTMAX_PAIRS_BUDGET = 2 ** 24
# sound_float: the cap of every score difference in the rebuilt softmax (exp(80) < 2^116 is a
# finite float32; the form is then within e^-80 of the softmax)
SOFTMAX_CAP = 80.0


def _keepdims_sum_of(tape, den, num) -> int | None:
    """The axis ``k`` when ``den`` is ``num.sum(axis=k, keepdims=True)`` (a ``reduce_sum`` of the
    very node ``num``, its axis put back by ``broadcast_in_dim`` or ``reshape``), else None."""
    embed = tape.producer.get(den.index)
    if embed is None or embed.prim.name not in ("broadcast_in_dim", "reshape") \
            or not is_node(embed.inputs[0]):
        return None
    total = tape.producer.get(embed.inputs[0].index)
    if total is None or total.prim.name != "reduce_sum" or not is_node(total.inputs[0]) \
            or total.inputs[0].index != num.index or len(total.params["axes"]) != 1:
        return None
    (k,) = (int(a) for a in total.params["axes"])
    rank = len(num.shape)
    kept = tuple(d for d in range(rank) if d != k)
    if len(den.shape) != rank or den.shape[k] != 1 \
            or any(den.shape[d] != num.shape[d] for d in kept):
        return None
    if embed.prim.name == "broadcast_in_dim":
        return k if tuple(embed.params["broadcast_dimensions"]) == kept else None
    return k if embed.params.get("dimensions") is None else None


def _softmax_input(tape, num, den):
    """``(x, k)`` when ``num / den`` is ``softmax(x, axis=k)`` written as ``jax.nn.softmax``
    writes it, ``e = exp(x - s)``, ``e / e.sum(k, keepdims=True)``, with a shift ``s`` constant
    along ``k`` (its value never matters: it cancels), else None. The quotient equals the
    softmax of ``x`` whatever else reads ``e``."""
    if not is_node(num):
        return None
    exp = tape.producer.get(num.index)
    if exp is None or exp.prim.name != "exp" or not is_node(exp.inputs[0]):
        return None
    shifted = tape.producer.get(exp.inputs[0].index)
    if shifted is None or shifted.prim.name != "sub" or not is_node(shifted.inputs[0]):
        return None
    x, shift = shifted.inputs
    k = _keepdims_sum_of(tape, den, num)
    if k is None or x.shape != num.shape or not jnp.issubdtype(x.lo.dtype, jnp.floating):
        return None
    s_shape = np.shape(shift) if not is_node(shift) else shift.shape
    if len(s_shape) not in (0, len(x.shape)) or (len(s_shape) and s_shape[k] != 1):
        return None
    return x, k, shift


def _is_row_max(tape, x, k, shift) -> bool:
    """Whether ``shift`` is ``max(x, axis=k)`` kept as a size-1 axis, as ``jax.nn.softmax``
    writes it (``reduce_max``, ``max`` with ``-inf``, then broadcasts and ``stop_gradient``),
    possibly of another layout of the same scores (transposes and reshapes, as a vmapped
    attention gives). The two chains of shape-only equations are found on the tape and checked
    on a probe: the recorded equations evaluated on distinct values."""
    chain, v = [], shift
    while (eqn := tape.producer.get(v.index) if is_node(v) else None) is not None \
            and eqn.prim.name in _SHIFT_LINKS:
        nodes = [u for u in eqn.inputs if is_node(u)]
        if len(nodes) != 1 or (eqn.prim.name == "max" and [
                _scalar(u) for u in eqn.inputs if not is_node(u)] != [-np.inf]):
            return False
        chain.append(eqn)
        v = nodes[0]
    reduce = tape.producer.get(v.index) if is_node(v) else None
    if reduce is None or reduce.prim.name != "reduce_max" or not is_node(reduce.inputs[0]):
        return False
    scores, view, u = reduce.inputs[0], [], x
    while not _same(u, scores):
        eqn = tape.producer.get(u.index) if is_node(u) else None
        if eqn is None or eqn.prim.name not in ("transpose", "reshape", "copy") \
                or not is_node(eqn.inputs[0]):
            return False
        view.append(eqn)
        u = eqn.inputs[0]

    def run(eqns, value):
        for eqn in reversed(eqns):
            args = [value if is_node(a) else a for a in eqn.inputs]
            value = bind(eqn.prim, eqn.params, args)[0]
        return value

    with jax.ensure_compile_time_eval():
        probe = jnp.asarray(np.random.default_rng(0).permutation(int(np.prod(scores.shape)))
                            .reshape(scores.shape), jnp.float32)
        got = run(chain, bind(reduce.prim, reduce.params, [probe])[0])
        want = jnp.max(run(view, probe), axis=k, keepdims=True)
        return got.shape == want.shape and bool(jnp.all(got == want))


# the equations between a softmax's row maximum and its shift
_SHIFT_LINKS = ("stop_gradient", "broadcast_in_dim", "reshape", "transpose", "max", "copy")


def _softmax_exp_reciprocal(x, axis, cap=None):
    """``softmax(x)_i = 1 / (1 + sum_{j != i} exp(x_j - x_i))`` along ``axis``: the
    exponential-reciprocal form (Wei et al., "Convex Bounds on the Softmax Function with
    Applications to Robustness Verification", AISTATS 2023). Every exponential reads a
    difference of two scores, so no maximum is subtracted (its bounds would add to the
    exponential's input width) and no product of two bounded tensors needs McCormick planes;
    its interval is the tight ``[1 / (1 + sum e^{u_j - l_i}), 1 / (1 + sum e^{l_j - u_i})]``.
    The other scores ``x_j, j != i`` are a cyclic shift of the tiled row, made of broadcasts,
    reshapes and slices only (cheap exact transposes). Costs ``n - 1`` times the scores' memory,
    so it is used up to :data:`SOFTMAX_PAIRS_BUDGET` differences. ``cap`` (``sound_float``):
    each difference is first capped there, so that no exponential overflows (a float32 one
    overflows past 88.7, and the rounding bound of an infinite value is infinite); where a
    difference exceeds it the probability is below ``e^-cap`` with or without the cap, so the
    capped form is within ``e^-cap`` of the softmax."""
    v = jnp.moveaxis(x, axis, -1)
    n = v.shape[-1]
    if n == 1:                                      # no other score: exactly 1, a constant
        return jnp.ones_like(x)
    lead = v.shape[:-1]
    tiled = jnp.broadcast_to(v[..., None, :], lead + (n + 1, n)).reshape(lead + (n, n + 1))
    others = tiled[..., 1:n]                        # [..., i, k] = v[..., (i + k + 1) mod n]
    d = others - v[..., None]
    total = 1.0 + jnp.sum(jnp.exp(d if cap is None else jnp.minimum(d, cap)), axis=-1)
    return jnp.moveaxis(lax.integer_pow(total, -1), -1, axis)


def _emit_function(tape, fn, nodes):
    """Record ``fn(*nodes)`` (a JAX function of box-dependent values) on the tape, primitive by
    primitive, through the same lowerings and rules as the model's own equations."""
    closed = jax.make_jaxpr(fn)(*[jax.ShapeDtypeStruct(v.shape, v.lo.dtype) for v in nodes])

    def visit(eqn, invals):
        if call_body(eqn.primitive, eqn.params) is not None:
            return None                                             # inline it
        return _apply(tape, eqn.primitive, eqn.params, invals)

    return walk(closed.jaxpr, closed.consts, list(nodes), visit)


def _lower_mul(tape, prim, params, inputs):
    """A product of two box operands that is GELU of one node (as ``jax.nn.gelu`` writes it) is
    recorded as the one elementwise function :data:`xjax.bounds._relax.REBUILT` relaxes whole;
    any other product is left to its own rules. With ``sound_float`` too: the rebuilt call
    carries a rounding bound of the parts as the model evaluates them
    (:func:`xjax.bounds._relax._gelu_rounding`)."""
    a, b = inputs
    if not (is_node(a) and is_node(b)):
        return None
    for name, form in PRODUCT_FORMS.items():
        x = form(tape, a, b)
        if x is None:
            x = form(tape, b, a)
        if x is not None:
            return emit(tape, REBUILT[name], {}, [x])
    return None


def _scalar(v) -> float | None:
    """The value of a concrete scalar constant (a literal), else None."""
    if is_node(v) or isinstance(v, jax.core.Tracer) or np.size(v) != 1:
        return None
    return float(np.asarray(v).reshape(()))


def _scaled(tape, v, name="mul"):
    """``(u, c)`` when the node ``v`` is ``u * c`` (``name="add"``: ``u + c``) for a node ``u`` and
    a scalar constant ``c``, either order, else None."""
    eqn = tape.producer.get(v.index) if is_node(v) else None
    if eqn is None or eqn.prim.name != name or len(eqn.inputs) != 2:
        return None
    for u, c in (eqn.inputs, eqn.inputs[::-1]):
        if is_node(u) and (k := _scalar(c)) is not None and u.shape == v.shape:
            return u, k
    return None


def _unary_of(tape, v, name):
    """The input node of the node ``v`` when ``v = name(input)``, else None."""
    eqn = tape.producer.get(v.index) if is_node(v) else None
    if eqn is None or eqn.prim.name != name or not is_node(eqn.inputs[0]) \
            or eqn.inputs[0].shape != v.shape:
        return None
    if name == "integer_pow" and eqn.params["y"] != 3:
        return None
    return eqn.inputs[0]


def _same(u, v) -> bool:
    return is_node(u) and is_node(v) and u.index == v.index


def _gelu_input(tape, half, tail):
    """``x`` when ``half * tail`` is ``jax.nn.gelu(x, approximate=False)``: ``half = 0.5 x``,
    ``tail = erfc(-x * (1 / sqrt 2))``, else None."""
    h, e = _scaled(tape, half), _unary_of(tape, tail, "erfc")
    if h is None or e is None or h[1] != 0.5 or (d := _scaled(tape, e)) is None \
            or d[1] != np.float32(1 / np.sqrt(2)) or (x := _unary_of(tape, d[0], "neg")) is None:
        return None
    return h[0] if _same(x, h[0]) else None


def _gelu_tanh_input(tape, x, half):
    """``x`` when ``x * half`` is ``jax.nn.gelu(x)`` (the tanh approximation): ``half = 0.5 (1 +
    tanh(sqrt(2 / pi) (x + 0.044715 x^3)))`` with jax's float32 constants, else None."""
    if (g := _scaled(tape, half)) is None or g[1] != 0.5 \
            or (t := _scaled(tape, g[0], "add")) is None or t[1] != 1.0 \
            or (e := _unary_of(tape, t[0], "tanh")) is None or (d := _scaled(tape, e)) is None \
            or d[1] != np.float32(np.sqrt(2 / np.pi)):
        return None
    sum_eqn = tape.producer.get(d[0].index)
    if sum_eqn is None or sum_eqn.prim.name != "add" or len(sum_eqn.inputs) != 2:
        return None
    for u, cubic in (sum_eqn.inputs, sum_eqn.inputs[::-1]):
        c = _scaled(tape, cubic) if is_node(cubic) else None
        if _same(u, x) and c is not None and c[1] == np.float32(0.044715) \
                and _same(_unary_of(tape, c[0], "integer_pow"), x):
            return x
    return None


# products recognised as one elementwise function of a node: REBUILT's name -> matcher of the
# two factors (either order), giving that node or None
PRODUCT_FORMS = {"gelu": _gelu_input, "gelu_tanh": _gelu_tanh_input}


def _lower_max_min(tape, prim, params, inputs):
    """``max(a, b) = b + relu(a - b)``, ``min(a, b) = a - relu(a - b)`` for two box operands."""
    a, b = inputs
    if not (is_node(a) and is_node(b)):
        return None
    (d,) = emit(tape, lax.sub_p, {}, [a, b])
    (r,) = emit(tape, lax.max_p, {}, [d, _zero(d)])
    return (emit(tape, lax.add_p, {}, [b, r]) if prim.name == "max"
            else emit(tape, lax.sub_p, {}, [a, r]))


def _lower_clamp(tape, prim, params, inputs):
    """``clamp(low, x, high) = min(max(x, low), high)``."""
    low, x, high = inputs
    (m,) = _apply(tape, lax.max_p, {}, [x, low])
    return _apply(tape, lax.min_p, {}, [m, high])


LOWERINGS = {"div": _lower_div, "mul": _lower_mul, "max": _lower_max_min,
             "min": _lower_max_min, "clamp": _lower_clamp}
IBP_RULES["clamp"] = _increasing          # listed as supported; always lowered


def _apply(tape, prim, params, inputs):
    if not any(is_node(v) for v in inputs):
        return bind(prim, params, inputs)
    lowering = LOWERINGS.get(prim.name)
    outs = None if lowering is None else lowering(tape, prim, params, inputs)
    return emit(tape, prim, params, inputs) if outs is None else outs


def _depthwise_as_grouped_conv(tape, eqn, body, invals):
    """The zoo's depthwise convolution (``xjax.models._layers.depthwise_conv``: k^2 strided
    slices of the padded input times the filter taps, fast on XLA:CPU) bounded as the grouped
    convolution it equals: one affine equation instead of 3k^2 - 1 (on EfficientNet-Lite0, most
    of the tape). Its padding and stride are read from the body's ``pad`` and ``slice``, and
    the body must be exactly the zoo function's jaxpr at those settings (another function that
    happens to share the name is inlined, never misread)."""
    if len(invals) != 2 or not is_node(invals[0]) or is_node(invals[1]):
        return None
    x, kernel = invals
    eqns = _flat_eqns(body.jaxpr)
    pads = [e for e in eqns if e.primitive.name == "pad"]
    if jnp.ndim(kernel) != 4 or len(pads) > 1:
        return None
    cfg = pads[0].params["padding_config"] if pads else ((0, 0, 0),) * 4     # no pad: valid
    stride = max(((e.params["strides"] or (1, 1, 1, 1))[1] for e in eqns
                  if e.primitive.name == "slice"), default=1)
    pad = (tuple(cfg[1][:2]), tuple(cfg[2][:2]))
    from xjax.models._layers import depthwise_conv_slices  # (models do not import bounds)
    own = jax.make_jaxpr(lambda a, w: depthwise_conv_slices(a, w, stride=stride, padding=pad))(
        jax.ShapeDtypeStruct(x.shape, x.lo.dtype), jax.ShapeDtypeStruct(kernel.shape,
                                                                        kernel.dtype))
    if str(call_body(own.eqns[0].primitive, own.eqns[0].params).jaxpr) != str(body.jaxpr):
        return None                       # not the zoo's function with these settings: inline
    grouped = jax.make_jaxpr(lambda a, w: lax.conv_general_dilated(
        a, w, (stride, stride), list(pad),
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=kernel.shape[-1]))(
        jax.ShapeDtypeStruct(x.shape, x.lo.dtype), jax.ShapeDtypeStruct(kernel.shape,
                                                                        kernel.dtype))
    (conv,) = grouped.jaxpr.eqns
    if conv.outvars[0].aval.shape != eqn.outvars[0].aval.shape:
        return None
    return _apply(tape, conv.primitive, conv.params, [x, kernel])


def _flat_eqns(jaxpr) -> list:
    """The equations of ``jaxpr`` with every call's body spliced in, in order."""
    out = []
    for e in jaxpr.eqns:
        body = call_body(e.primitive, e.params)
        out.extend(_flat_eqns(body.jaxpr) if body is not None else [e])
    return out


# call primitives (by the called function's name) bounded as one equivalent primitive
CALL_RULES = {"depthwise_conv_slices": _depthwise_as_grouped_conv}


def _named_call(eqn, body, invals) -> NamedCall | None:
    """A ``jax.nn`` elementwise call of :data:`NAMED_CALLS` on one box operand, or ``None``."""
    build = NAMED_CALLS.get(eqn.params.get("name"))
    if build is None or len(invals) != 1 or len(eqn.outvars) != 1:
        return None
    (x,) = invals
    if eqn.outvars[0].aval.shape != x.shape or not jnp.issubdtype(x.lo.dtype, jnp.floating):
        return None

    def probe(v):
        with jax.ensure_compile_time_eval():
            (out,) = walk(body.jaxpr, body.consts, [jnp.full(x.shape, v, x.lo.dtype)],
                          lambda eqn, invals: None)
            return float(jnp.ravel(out)[0])

    try:
        return build(probe)
    except (jax.errors.ConcretizationTypeError, TypeError):
        return None                               # hyperparameters traced: relax the parts


def trace(model_fn, params, lower, upper, *, sound: bool = False) -> tuple[Tape, Node, Node]:
    """Trace ``model_fn(params, x)`` over the box: ``(tape, input node, output node)``;
    ``sound``: every float value padded by its rounding error bound."""
    closed = jax.make_jaxpr(lambda p, x: model_fn(p, x))(params, lower)
    tape = Tape(sound)
    x_node = tape.node(lower, upper)

    def visit(eqn, invals):
        if not any(is_node(v) for v in invals):
            return bind(eqn.primitive, eqn.params, invals)
        if (body := call_body(eqn.primitive, eqn.params)) is not None:
            rule = CALL_RULES.get(eqn.params.get("name"))
            if rule is not None and (outs := rule(tape, eqn, body, invals)) is not None:
                return outs
            named = _named_call(eqn, body, invals)
            return None if named is None else emit(tape, named, {}, invals)  # None: inline it
        return _apply(tape, eqn.primitive, eqn.params, invals)

    (out,) = walk(closed.jaxpr, closed.consts, jax.tree.leaves(params) + [x_node], visit)
    if not is_node(out):
        out = tape.node(out, out)
    tape.prune(out)
    return tape, x_node, out
