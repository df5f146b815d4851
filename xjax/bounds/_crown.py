"""CROWN (Zhang et al., 2018): linear bounds propagated backward over the tape, from the output
(or a spec ``C``) to the input box.

Each equation is handled by the first of three table lookups that applies: an affine primitive
(:data:`AFFINE`, conditions on which operands depend on the box) is transposed exactly with
``jax.vjp``; a primitive of :data:`xjax.bounds._relax.RELAXATIONS` contributes its linear
relaxation; anything else is concretized with its interval (sound, looser). Passing values
unchanged (``stop_gradient``, ``optimization_barrier``) is the identity, whatever its derivative.
"""

import jax
import jax.numpy as jnp
import numpy as np

from xjax._internal.jaxpr import bind
from xjax.bounds._ibp import interval
from xjax.bounds._interval import Node, Tape, concretize, is_node, mul0, sum_tail
from xjax.bounds._relax import RELAXATIONS

__all__ = ["AFFINE", "ROW_BUDGET", "backward", "identity_spec", "relaxed", "spec_bounds",
           "tighten"]

_F32 = jnp.float32


def _nodes(inputs):
    return [i for i, v in enumerate(inputs) if is_node(v)]


def _always(params, inputs):
    """always"""
    return True


def _one_operand(params, inputs):
    """with one box operand"""
    return len(_nodes(inputs)) == 1


def _numerator(params, inputs):
    """with a constant denominator"""
    return _nodes(inputs) == [0]


def _constant_at(positions, what):
    def condition(params, inputs):
        return not any(i in _nodes(inputs) for i in positions(len(inputs)))
    condition.__doc__ = f"with a constant {what}"
    return condition


def _exact_cast(params, inputs):
    """when widening (a narrowing float cast rounds: bfloat16 compute; it has its own
    relaxation)"""
    src, dst = inputs[0].lo.dtype, params["new_dtype"]
    if not (jnp.issubdtype(src, jnp.floating) and jnp.issubdtype(dst, jnp.floating)):
        return False
    a, b = jnp.finfo(src), jnp.finfo(dst)
    return b.nmant >= a.nmant and b.maxexp >= a.maxexp and b.minexp <= a.minexp


# affine in the box-dependent operands when the condition holds
AFFINE = {
    **dict.fromkeys(("add", "sub", "neg", "reduce_sum", "reshape", "transpose", "broadcast_in_dim",
                     "squeeze", "concatenate", "slice", "copy", "reduce_window_sum", "rev",
                     "cumsum", "split", "stack"), _always),
    **dict.fromkeys(("mul", "dot_general", "conv_general_dilated"), _one_operand),
    "div": _numerator,
    "convert_element_type": _exact_cast,
    "select_n": _constant_at(lambda n: [0], "predicate"),
    "dynamic_slice": _constant_at(lambda n: range(1, n), "start index"),
    "gather": _constant_at(lambda n: [1], "index"),
    "pad": _constant_at(lambda n: [1], "padding value"),
}
# the identity on values, whatever their derivative says (stop_gradient's vjp is 0)
_IDENTITY = ("stop_gradient", "optimization_barrier")


def relaxed(eqn) -> bool:
    """Whether ``eqn`` is relaxed (neither affine nor passed through): its inputs' bounds matter."""
    name = eqn.prim.name
    if name in _IDENTITY or (name in AFFINE and AFFINE[name](eqn.params, eqn.inputs)):
        return False
    rule = RELAXATIONS.get(name)
    return rule is not None and rule.applies(eqn)


def _affine(eqn, outs):
    var = _nodes(eqn.inputs)

    def g(*vs):
        args = list(eqn.inputs)
        for i, v in zip(var, vs, strict=True):
            args[i] = v
        return tuple(bind(eqn.prim, eqn.params, args))

    zeros = [jnp.zeros(eqn.inputs[i].shape, eqn.inputs[i].lo.dtype) for i in var]
    offsets, vjp = jax.vjp(g, *zeros)
    s_len = next(c for c in outs if c is not None).shape[0]
    cots = tuple(jnp.zeros((s_len,) + o.shape, o.dtype) if c is None else c.astype(o.dtype)
                 for c, o in zip(outs, offsets, strict=True))
    bias = sum(sum_tail(c.astype(_F32), o[None].astype(_F32))
               for c, o in zip(cots, offsets, strict=True))
    grads = jax.vmap(vjp)(cots)
    return [(eqn.inputs[i], gi.astype(_F32)) for i, gi in zip(var, grads, strict=True)], bias


def _identity(eqn, outs):
    contributions, bias = [], 0.0
    for v, lam in zip(eqn.inputs, outs, strict=True):
        if lam is None:
            continue
        if is_node(v):
            contributions.append((v, lam))
        else:                                 # a constant passed through: its exact value
            bias = bias + sum_tail(lam, jnp.broadcast_to(jnp.asarray(v, _F32), lam.shape[1:])[None])
    return contributions, bias


def _concretized(eqn, outs, bounds_of):
    bias = 0.0
    for o, lam in zip(eqn.outputs, outs, strict=True):
        if lam is not None:
            lo, hi = bounds_of(o)
            bias = bias + concretize(lam, lo[None].astype(_F32), hi[None].astype(_F32))
    return [], bias


def _step(eqn, outs, bounds_of, alpha):
    name = eqn.prim.name
    if name in _IDENTITY:
        return _identity(eqn, outs)
    if name in AFFINE and AFFINE[name](eqn.params, eqn.inputs):
        return _affine(eqn, outs)
    rule = RELAXATIONS.get(name)
    if rule is not None and rule.applies(eqn) and len(outs) == 1 and outs[0] is not None:
        result = rule.fn(eqn, [outs[0].astype(_F32)], bounds_of, alpha)
        if result is not None:
            return result
    return _concretized(eqn, outs, bounds_of)


def backward(tape: Tape, target: Node, lam, bounds_of, x_node: Node, x_lo, x_hi, alphas=None,
             errs=None):
    """Lower bounds of ``sum(lam * target)`` over the box: ``f32[S, B]``. ``lam: [S, B, ...]``;
    ``alphas``: optional ``{output node index: f32[S, B, ...]}`` free parameters in [0, 1];
    ``errs``: optional ``{node index: rounding error bound}`` replacing the traced ones
    (``sound_float``: :func:`tighten`'s, from its tightened magnitudes)."""
    coeffs = {target.index: lam.astype(_F32)}
    bias = jnp.zeros(lam.shape[:2], _F32)
    for eqn in reversed(tape.eqns):
        if eqn.outputs[0].index > target.index:
            continue
        outs = [coeffs.pop(o.index, None) for o in eqn.outputs]
        if all(c is None for c in outs):
            continue
        for o, c in zip(eqn.outputs, outs, strict=True):
            err = o.err if errs is None else errs.get(o.index, o.err)
            if c is not None and err is not None:          # sound_float: the rounding of o
                bias = bias - sum_tail(mul0(jnp.abs(c), err[None].astype(_F32)))
        alpha = None if alphas is None else alphas.get(eqn.outputs[0].index)
        contributions, b = _step(eqn, outs, bounds_of, alpha)
        bias = bias + b
        for node, coef in contributions:
            prev = coeffs.get(node.index)
            coeffs[node.index] = coef if prev is None else prev + coef
    lam_x = coeffs.pop(x_node.index, None)
    if lam_x is not None:
        bias = bias + concretize(lam_x, x_lo[None].astype(_F32), x_hi[None].astype(_F32))
    for idx, lam_left in coeffs.items():      # nodes reached but not produced by an equation
        lo, hi = bounds_of(tape.nodes[idx])
        bias = bias + concretize(lam_left, lo[None].astype(_F32), hi[None].astype(_F32))
    return bias


def identity_spec(shape, dtype=_F32):
    """``[S, B, *rest]`` one-hot per example element, S = prod(rest)."""
    b, rest = shape[0], shape[1:]
    s = int(np.prod(rest)) if rest else 1
    eye = jnp.eye(s, dtype=dtype).reshape((s, 1) + tuple(rest))
    return jnp.broadcast_to(eye, (s, b) + tuple(rest))


def two_sided(tape, node, lam, bounds_of, x_node, lower, upper, alphas=None, errs=None):
    """``(lower, upper)`` of ``lam . node`` per spec row: ``[B, S]`` each (one pass on
    ``[lam; -lam]``)."""
    both = jnp.concatenate([lam, -lam], axis=0)
    lb = backward(tape, node, both, bounds_of, x_node, lower, upper, alphas, errs)
    s = lam.shape[0]
    return lb[:s].T, -lb[s:].T


# coefficient elements held at once by one chunk of intermediate-bound rows (2**26 float32:
# 256 MiB per coefficient tensor); larger layers are bounded chunk by chunk under lax.map
ROW_BUDGET = 2 ** 26


def _rows_per_chunk(tape, node, n_rows, copies: int = 1) -> int:
    widest = max(int(np.prod(v.shape)) for v in tape.nodes[:node.index + 1])
    return int(max(1, min(n_rows, ROW_BUDGET // (2 * widest * copies))))


def _rows_in_chunks(tape, node, rows_of, n, chunk, bounds_of, x_node, lower, upper, errs):
    """:func:`two_sided` over ``n`` spec rows made ``chunk`` at a time by ``rows_of(j) ->
    [chunk, B, ...]`` (one compiled backward pass, iterated by ``lax.map``): ``[B, n]`` each."""
    n_chunks = -(-n // chunk)
    lo, hi = jax.lax.map(lambda j: two_sided(tape, node, rows_of(j), bounds_of, x_node, lower,
                                             upper, errs=errs),
                         jnp.arange(n_chunks))                   # [n_chunks, B, chunk] each
    b = lo.shape[1]
    flat = lambda v: jnp.transpose(v, (1, 0, 2)).reshape(b, n_chunks * chunk)[:, :n]
    return flat(lo), flat(hi)


def _elementwise_bounds(tape, node, bounds_of, x_node, lower, upper, copies=1, errs=None):
    """``(lower, upper)`` of every element of ``node``: one spec row per element, in chunks of
    rows so that memory stays bounded."""
    b, rest = node.shape[0], node.shape[1:]
    n = int(np.prod(rest)) if rest else 1
    chunk = _rows_per_chunk(tape, node, n, copies)
    if chunk >= n:
        lo, hi = two_sided(tape, node, identity_spec(node.shape), bounds_of, x_node, lower, upper,
                           errs=errs)
        return lo.reshape(node.shape), hi.reshape(node.shape)

    def rows(j):
        eye = jax.nn.one_hot(j * chunk + jnp.arange(chunk), n, dtype=_F32)   # past n: zero
        return jnp.broadcast_to(eye.reshape((chunk, 1) + tuple(rest)), (chunk, b) + tuple(rest))

    lo, hi = _rows_in_chunks(tape, node, rows, n, chunk, bounds_of, x_node, lower, upper, errs)
    return lo.reshape(node.shape), hi.reshape(node.shape)


def spec_bounds(tape, node, lam, bounds_of, x_node, lower, upper, copies=1, errs=None):
    """:func:`two_sided` of every row of ``lam: [S, B, ...]``, in chunks of rows when all S
    rows at once would pass :data:`ROW_BUDGET`: a spec of many rows (EVA's every rival of a
    1000-class model) costs the memory of a chunk."""
    s = lam.shape[0]
    chunk = _rows_per_chunk(tape, node, s, copies)
    if chunk >= s:
        return two_sided(tape, node, lam, bounds_of, x_node, lower, upper, errs=errs)
    padded = jnp.concatenate([lam, jnp.zeros((-(-s // chunk) * chunk - s,) + lam.shape[1:],
                                             lam.dtype)])
    return _rows_in_chunks(tape, node,
                           lambda j: jax.lax.dynamic_slice_in_dim(padded, j * chunk, chunk),
                           s, chunk, bounds_of, x_node, lower, upper, errs)


def _narrow_outward(lo, hi, dtype):
    """Float32 bounds as ``dtype`` bounds that still contain them (a narrowing cast rounds to
    nearest: step the ends that moved inward one ulp outward)."""
    if lo.dtype == dtype:
        return lo, hi
    lo_d, hi_d = lo.astype(dtype), hi.astype(dtype)
    lo_d = jnp.where(lo_d.astype(lo.dtype) > lo, jnp.nextafter(lo_d, jnp.array(-jnp.inf, dtype)),
                     lo_d)
    hi_d = jnp.where(hi_d.astype(hi.dtype) < hi, jnp.nextafter(hi_d, jnp.array(jnp.inf, dtype)),
                     hi_d)
    return lo_d, hi_d


# equations of one box-dependent operand whose interval rule is the exact range of every output
# element over the operand's interval: each output element is a copy of one operand element, or
# a monotone function of one (a constant operand broadcast against it; for ``div`` the operand is
# the numerator). A node made from a tightened node through such equations alone needs no
# backward pass of its own: the pass would bound it through the same lines and the operand's
# same bounds, so it cannot be tighter than the operand's bounds propagated forward
FORWARD_EXACT = frozenset({
    "add", "sub", "neg", "mul", "div", "max", "min", "reshape", "broadcast_in_dim", "transpose",
    "squeeze", "copy", "slice", "rev", "exp", "log", "tanh", "logistic", "erf", "sqrt", "rsqrt",
    "float_softmax"})      # the identity plus a constant rounding pad, both ways the same


def _exact_chain(tape, node, tightened: set) -> list | None:
    """The equations (in evaluation order) that make ``node`` from a node of ``tightened``
    through :data:`FORWARD_EXACT` equations only, or None when there is no such chain."""
    chain = []
    while True:
        eqn = tape.producer.get(node.index)
        if eqn is None or eqn.prim.name not in FORWARD_EXACT or len(eqn.outputs) != 1:
            return None
        operands = [i for i, v in enumerate(eqn.inputs) if is_node(v)]
        if len(operands) != 1 or (eqn.prim.name == "div" and operands != [0]):
            return None
        chain.append(eqn)
        node = eqn.inputs[operands[0]]
        if node.index in tightened:
            return chain[::-1]


def tighten(tape, x_node, lower, upper, *, on_bound=None, copies: int = 1) -> tuple[dict, dict]:
    """CROWN intermediate bounds of every node, ``{node index: (lower, upper)}``, and (with
    ``tape.sound``) the rounding error bound of every float node at those bounds,
    ``{node index: err}``.

    In tape order, every input of a relaxed equation is first bounded by its own backward pass
    (each pass using the bounds tightened before it; an input made from an already tightened
    node through :data:`FORWARD_EXACT` equations alone, such as ``min(relu(x), 6)``'s, instead
    gets those bounds propagated forward), then every equation's outputs get the
    interval rule of :mod:`xjax.bounds._ibp` applied to its inputs' current bounds. All are
    intersected with the traced IBP intervals. The forward re-propagation is what keeps the
    equations whose relaxation reads an *output* interval (max pooling's upper side, a select
    whose predicate is undecided, anything concretized) from inheriting IBP's blow-up: on a
    two-block ViT, IBP's attention-score maximum reaches 1e34 while its inputs, tightened,
    span [-0.65, 2.3].

    With ``sound_float`` each node's rounding error is bounded by the interval rule at its
    inputs' tightened bounds, and the smaller of that and the traced error (both sound) is what
    later passes charge: charged at IBP's magnitudes, which are vacuous on a deep network, the
    rounding alone made full CROWN infinite on a two-block ViT that it certifies in real
    arithmetic.

    ``on_bound(eqn, node, lo, hi)``, if given, is called after each node's own pass (with the
    relaxed equation that needed it and the intersected bounds): a hook for diagnostics such as
    ``benchmarks/bounds_vit_widths.py``, which finds where the bounds of a deep network grow.
    ``copies``: how many boxes run this at once under ``jax.vmap`` (the row chunks shrink so
    that memory stays within :data:`ROW_BUDGET`).
    """
    current: dict[int, tuple] = {}
    errs: dict = {}                                        # sound_float: rounding at current
    passed: set[int] = set()                               # nodes bounded by their own pass

    def bounds_of(node):
        return current.get(node.index, (node.lo, node.hi))

    def forward(eqn):
        views: dict[int, Node] = {}                        # one view per node: x * x stays a square
        for v in eqn.inputs:
            if is_node(v) and v.index not in views:
                views[v.index] = Node(*bounds_of(v), v.index, v.err)
        inputs = [views[v.index] if is_node(v) else v for v in eqn.inputs]
        for o, (lo, hi, err) in zip(eqn.outputs,
                                    interval(eqn.prim, eqn.params, inputs, tape.sound),
                                    strict=True):
            if lo.dtype == o.lo.dtype and lo.shape == o.lo.shape:
                current[o.index] = (jnp.maximum(lo, o.lo), jnp.minimum(hi, o.hi))
                if err is not None and o.err is not None and err.shape == o.err.shape:
                    errs[o.index] = jnp.minimum(err, o.err)

    for eqn in tape.eqns:
        if relaxed(eqn):
            for pre in eqn.inputs:
                if not is_node(pre) or pre.index == x_node.index \
                        or not jnp.issubdtype(pre.lo.dtype, jnp.floating):
                    continue
                if pre.index in passed:
                    continue
                chain = _exact_chain(tape, pre, passed | {x_node.index})
                if chain is not None:        # its pass could not beat the tightened operand's
                    for link in chain:
                        forward(link)
                else:
                    lo, hi = _elementwise_bounds(tape, pre, bounds_of, x_node, lower, upper,
                                                 copies, errs)
                    lo, hi = _narrow_outward(lo, hi, pre.lo.dtype)
                    c_lo, c_hi = bounds_of(pre)
                    current[pre.index] = (jnp.maximum(lo, c_lo), jnp.minimum(hi, c_hi))
                passed.add(pre.index)
                if on_bound is not None:
                    on_bound(eqn, pre, *current[pre.index])
        forward(eqn)
    return current, errs
