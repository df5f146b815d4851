"""Certified output bounds of a JAX function over an input box, by interpreting its jaxpr.

The function is traced once (``jax.make_jaxpr``); sub-jaxprs (``jit``/``pjit``,
``custom_jvp_call``, ``custom_vjp_call``, ``closed_call``, ``checkpoint``) are inlined, so the
interpreter sees primitives only (the binding and inlining are :mod:`xjax._internal.jaxpr`'s,
shared with guided backprop). Every variable that depends on the input box is a node with an
interval; everything else (the parameters, constants built inside the function) is evaluated
concretely, so its values may be traced (the bound function is jit- and vmap-able).

* **IBP** (Gowal et al., 2018): forward interval arithmetic, one rule per primitive.
* **CROWN** (Zhang et al., 2018): linear bounds propagated backward from the output (or a spec
  ``C``) to the input box. Affine primitives are transposed exactly with ``jax.vjp``; ``max`` and
  ``min`` against a constant (ReLU, ReLU6, clip) use the triangle relaxation with the adaptive
  lower slope; any other primitive is *concretized* with its interval (sound, looser). In mode
  ``"crown"`` the pre-activation bounds of every ReLU-like node are themselves computed by a
  backward pass and intersected with IBP, so CROWN is never looser than IBP; ``"crown_ibp"`` uses
  the IBP pre-activation bounds (cheaper).
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jcore
from jaxtyping import Array, Float

from xjax._internal.jaxpr import bind, call_body

__all__ = ["Interval", "alpha_crown", "bounds", "crown", "crown_ibp", "ibp", "lipschitz",
           "supported_primitives"]


class Interval(NamedTuple):
    """Elementwise bounds: ``lower <= f(x) <= upper`` for every x in the box."""

    lower: Array
    upper: Array


class _Node:
    """A value that depends on the input box: its interval and its position on the tape."""

    __slots__ = ("lo", "hi", "index", "shape")

    def __init__(self, lo, hi, index):
        self.lo, self.hi, self.index, self.shape = lo, hi, index, lo.shape


class _Eqn(NamedTuple):
    prim: Any
    params: dict
    inputs: list          # _Node or concrete array
    outputs: list         # _Node


# monotone non-decreasing in every box-dependent input (constants as they are)
_INCREASING = {"reshape", "transpose", "broadcast_in_dim", "squeeze",
               "concatenate", "slice", "pad", "convert_element_type", "copy",
               "reduce_sum", "reduce_max", "reduce_min", "max", "min", "exp", "exp2", "log",
               "log1p", "tanh", "logistic", "sqrt", "cbrt", "erf", "sort", "clamp", "add",
               "stop_gradient", "reduce_window_sum", "reduce_window_max", "reduce_window_min",
               "cumsum", "cummax", "rev", "dynamic_slice", "gather", "select_n",
               "atan", "asinh", "sinh", "expm1", "reduce_precision", "optimization_barrier",
               "stack", "split"}
# monotone non-increasing (one operand)
_DECREASING = {"erfc", "acos"}
# affine in the box-dependent inputs when the conditions of _is_affine hold
_AFFINE = {"add", "sub", "neg", "mul", "dot_general", "conv_general_dilated", "div",
           "reduce_sum", "reshape", "transpose", "broadcast_in_dim", "squeeze",
           "concatenate", "slice", "pad", "convert_element_type", "copy",
           "reduce_window_sum", "select_n", "dynamic_slice", "gather", "rev", "cumsum",
           "stack", "split"}
# the identity on values, whatever their derivative says (stop_gradient's vjp is 0): CROWN passes
# output coefficients to the corresponding inputs unchanged
_IDENTITY = {"stop_gradient", "optimization_barrier"}


def supported_primitives() -> tuple[str, ...]:
    """Names of the primitives with an interval rule (CROWN: affine ones exactly, ``max``/``min``
    against a constant relaxed, the others concretized)."""
    return tuple(sorted(_INCREASING | _AFFINE | _DECREASING | _IDENTITY | {
        "sub", "neg", "mul", "div", "integer_pow", "square", "abs", "rsqrt", "dot_general",
        "conv_general_dilated"}))


def _is_node(v) -> bool:
    return isinstance(v, _Node)


def _increasing(prim, params, inputs):
    los = bind(prim, params, [v.lo if _is_node(v) else v for v in inputs])
    his = bind(prim, params, [v.hi if _is_node(v) else v for v in inputs])
    return list(zip(los, his, strict=True))


def _center_radius(prim, params, inputs, var):
    """Bilinear primitive with one box operand (position ``var``): |W| acts on the radius."""
    node = inputs[var]
    mid, rad = (node.lo + node.hi) / 2.0, (node.hi - node.lo) / 2.0
    args_mid = [mid if i == var else v for i, v in enumerate(inputs)]
    args_rad = [rad if i == var else jnp.abs(v) for i, v in enumerate(inputs)]
    m = bind(prim, params, args_mid)[0]
    r = bind(prim, params, args_rad)[0]
    return [(m - r, m + r)]


def _products(a_lo, a_hi, b_lo, b_hi):
    c = jnp.stack(jnp.broadcast_arrays(a_lo * b_lo, a_lo * b_hi, a_hi * b_lo, a_hi * b_hi))
    # 0 * inf endpoints (an unbounded factor against an exact 0) stand for 0, not NaN: the other
    # endpoint products already carry the infinite side
    c = jnp.where(jnp.isnan(c), 0.0, c)
    return c.min(0), c.max(0)


def _square(x):
    a, b = x.lo * x.lo, x.hi * x.hi
    straddle = (x.lo < 0) & (x.hi > 0)
    return jnp.where(straddle, 0.0, jnp.minimum(a, b)).astype(x.lo.dtype), jnp.maximum(a, b)


def _power(x, y: int):
    """Bounds of ``x ** y`` for an integer ``y``.

    ``y >= 0``: odd powers are increasing; even powers decrease then increase (minimum 0 when the
    box straddles 0). ``y < 0``: ``x ** y = 1 / x ** |y|`` is monotone on a box of constant sign
    (decreasing for x > 0; for x < 0 decreasing when y is odd, increasing when y is even), and
    unbounded on a box that contains the pole at 0: ``(-inf, inf)`` for odd y, and
    ``[min(lo ** y, hi ** y), inf)`` for even y (positive everywhere).
    """
    lo, hi = x.lo, x.hi
    p = lambda v: jax.lax.integer_pow(v, y)
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


def _ibp_rule(prim, params, inputs):
    name = prim.name
    nodes = [i for i, v in enumerate(inputs) if _is_node(v)]
    if name == "sub":
        a, b = inputs
        lo = (a.lo if _is_node(a) else a) - (b.hi if _is_node(b) else b)
        hi = (a.hi if _is_node(a) else a) - (b.lo if _is_node(b) else b)
        return [(lo, hi)]
    if name == "neg":
        return [(-inputs[0].hi, -inputs[0].lo)]
    if name in ("mul", "dot_general", "conv_general_dilated"):
        if len(nodes) == 1:
            return _center_radius(prim, params, inputs, nodes[0])
        if name == "mul" and inputs[0] is inputs[1]:              # x * x: a square
            return [_square(inputs[0])]
        if name == "mul":
            return [_products(inputs[0].lo, inputs[0].hi, inputs[1].lo, inputs[1].hi)]
        if name == "dot_general":
            # interval matrix product (e.g. attention scores Q K^T): with A = Ac +- Ar and
            # B = Bc +- Br, AB lies in Ac Bc +- (|Ac| Br + Ar |Bc| + Ar Br)
            a, b = inputs
            ac, ar = (a.lo + a.hi) / 2.0, (a.hi - a.lo) / 2.0
            bc, br = (b.lo + b.hi) / 2.0, (b.hi - b.lo) / 2.0
            dot = lambda u, v: bind(prim, params, [u, v])[0]
            m = dot(ac, bc)
            r = dot(jnp.abs(ac), br) + dot(ar, jnp.abs(bc)) + dot(ar, br)
            return [(m - r, m + r)]
        raise NotImplementedError(f"xjax.bounds: {name} with two box-dependent operands (a "
                                  "bilinear form of the input) has no rule")
    if name == "div":
        a, b = inputs
        if not _is_node(b):
            mid, rad = (a.lo + a.hi) / 2.0, (a.hi - a.lo) / 2.0
            m = bind(prim, params, [mid, b])[0]
            r = bind(prim, params, [rad, jnp.abs(b)])[0]
            return [(m - r, m + r)]
        # 1/b is decreasing on a box of constant sign and unbounded on one that touches 0
        pos, neg = b.lo > 0, b.hi < 0
        signed = pos | neg
        safe_lo, safe_hi = jnp.where(signed, b.lo, 1.0), jnp.where(signed, b.hi, 1.0)
        inv_lo = jnp.where(signed, 1.0 / safe_hi, -jnp.inf)
        inv_hi = jnp.where(signed, 1.0 / safe_lo, jnp.inf)
        a_lo, a_hi = (a.lo, a.hi) if _is_node(a) else (a, a)
        lo, hi = _products(a_lo, a_hi, inv_lo, inv_hi)
        return [(jnp.where(signed, lo, -jnp.inf), jnp.where(signed, hi, jnp.inf))]
    if name in ("integer_pow", "square"):
        return [_power(inputs[0], params.get("y", 2))]
    if name == "abs":
        x = inputs[0]
        straddle = (x.lo < 0) & (x.hi > 0)
        a, b = jnp.abs(x.lo), jnp.abs(x.hi)
        return [(jnp.where(straddle, 0.0, jnp.minimum(a, b)), jnp.maximum(a, b))]
    if name in ("select_n", "dynamic_slice", "gather", "pad", "clamp") and \
            any(_is_node(inputs[i]) for i in _control_operands(name, len(inputs))):
        raise NotImplementedError(f"xjax.bounds: {name} whose indices, predicate or padding "
                                  "value depend on the input box has no rule")
    if name in ("sqrt", "log", "log1p", "rsqrt"):
        # the function is only defined on its domain: looser bounds that leave it are clipped
        floor = -1.0 if name == "log1p" else 0.0
        x = inputs[0]
        x = _Node(jnp.maximum(x.lo, floor), jnp.maximum(x.hi, floor), x.index)
        if name == "rsqrt":
            return [(jax.lax.rsqrt(x.hi), jax.lax.rsqrt(x.lo))]
        return _increasing(prim, params, [x])
    if name in _DECREASING:
        x = inputs[0]
        return [(bind(prim, params, [x.hi])[0], bind(prim, params, [x.lo])[0])]
    if name == "sort" and len(inputs) != 1:
        raise NotImplementedError("xjax.bounds: sort with several operands (argsort) has no rule")
    if name in _INCREASING:
        return _increasing(prim, params, inputs)
    raise NotImplementedError(f"xjax.bounds: no bound rule for the primitive {name!r}; supported: "
                              f"{', '.join(supported_primitives())}")


def _control_operands(name, n):
    return {"select_n": [0], "dynamic_slice": list(range(1, n)), "gather": [1], "pad": [1],
            "clamp": []}[name]


def _is_affine(prim, params, inputs) -> bool:
    name = prim.name
    nodes = [i for i, v in enumerate(inputs) if _is_node(v)]
    if name not in _AFFINE:
        return False
    if name in ("mul", "dot_general", "conv_general_dilated"):
        return len(nodes) == 1
    if name == "div":
        return nodes == [0]
    if name == "convert_element_type":
        # a cast is affine only when it is exact (a widening float cast); a narrowing one rounds
        # (bfloat16 compute), and CROWN then uses its interval, which rounding keeps sound
        src, dst = inputs[0].lo.dtype, params["new_dtype"]
        if not (jnp.issubdtype(src, jnp.floating) and jnp.issubdtype(dst, jnp.floating)):
            return False
        a, b = jnp.finfo(src), jnp.finfo(dst)
        return b.nmant >= a.nmant and b.maxexp >= a.maxexp and b.minexp <= a.minexp
    if name in ("select_n", "dynamic_slice", "gather", "pad"):
        return not any(i in nodes for i in _control_operands(name, len(inputs)))
    return True


def _rounding(prim, params, inputs):
    """A rounding cast (a narrowing float ``convert_element_type``, ``reduce_precision``):
    ``(u, tiny, big)`` such that ``|round(x) - x| <= u |x| + tiny`` for ``|x| <= big``, else None.
    CROWN relaxes it as the identity plus that error (round to nearest: u = 2^-(p + 1) for p
    stored mantissa bits; tiny covers the subnormal spacing), so bfloat16 compute keeps CROWN's
    linear bounds instead of falling back to the interval."""
    if prim.name == "reduce_precision":
        mb, eb = params["mantissa_bits"], params["exponent_bits"]
        emax = 2 ** (eb - 1) - 1
        return 2.0 ** -(mb + 1), 2.0 ** (1 - emax - mb), (2.0 - 2.0 ** -mb) * 2.0 ** emax
    if prim.name != "convert_element_type" or _is_affine(prim, params, inputs):
        return None
    src, dst = inputs[0].lo.dtype, params["new_dtype"]
    if not (jnp.issubdtype(src, jnp.floating) and jnp.issubdtype(dst, jnp.floating)):
        return None
    fi = jnp.finfo(dst)
    return 2.0 ** -(int(fi.nmant) + 1), float(fi.smallest_subnormal), float(fi.max)


def _relu_like(prim, inputs):
    """``max``/``min`` with exactly one box operand and a constant other: index of the node."""
    if prim.name not in ("max", "min") or len(inputs) != 2:
        return None
    nodes = [i for i, v in enumerate(inputs) if _is_node(v)]
    return nodes[0] if len(nodes) == 1 else None


class _Tape:
    def __init__(self):
        self.eqns: list[_Eqn] = []
        self.nodes: list[_Node] = []

    def node(self, lo, hi):
        n = _Node(lo, hi, len(self.nodes))
        self.nodes.append(n)
        return n


def _run(jaxpr, consts, args, tape: _Tape):
    env = {}

    def read(v):
        return v.val if isinstance(v, jcore.Literal) else env[v]

    for var, val in zip(jaxpr.constvars, consts, strict=True):
        env[var] = val
    for var, val in zip(jaxpr.invars, args, strict=True):
        env[var] = val
    for eqn in jaxpr.eqns:
        inputs = [read(v) for v in eqn.invars]
        prim, params = eqn.primitive, eqn.params
        if not any(_is_node(v) for v in inputs):
            outs = bind(prim, params, inputs)
        elif (body := call_body(prim, params)) is not None:
            outs = _run(body.jaxpr, body.consts, inputs, tape)
        else:
            intervals = _ibp_rule(prim, params, inputs)
            # an undefined endpoint (inf - inf, 0 * inf in a bilinear form) means "unbounded"
            outs = [tape.node(jnp.where(jnp.isnan(lo), -jnp.inf, lo),
                              jnp.where(jnp.isnan(hi), jnp.inf, hi)) for lo, hi in intervals]
            tape.eqns.append(_Eqn(prim, params, inputs, outs))
        for var, val in zip(eqn.outvars, outs, strict=True):
            env[var] = val
    return [read(v) for v in jaxpr.outvars]


def _relu_relaxation(lo, u, lam_positive, alpha=None):
    """Slope and intercept of a linear bound of relu(z) on [lo, u]: a lower bound where the
    coefficient is positive, an upper bound where it is negative (so the product is a lower
    bound). Lower slope adaptive: 1 if u > -lo else 0 (CROWN), or ``alpha``. Infinite ends:
    relu(z) <= z - lo (u = inf), <= u (lo = -inf), unbounded when both are infinite."""
    unstable = (lo < 0) & (u > 0)
    lo_finite, u_finite = jnp.isfinite(lo), jnp.isfinite(u)
    tri = unstable & lo_finite & u_finite
    # every division and product below only sees safe values, so that gradients (EVA is
    # differentiated) stay finite where a branch is not taken (degenerate or infinite intervals)
    lo_t, u_t = jnp.where(tri, lo, -1.0), jnp.where(tri, u, 1.0)
    denom = u_t - lo_t
    s_tri, t_tri = u_t / denom, -u_t * lo_t / denom
    s_inf = jnp.where(lo_finite, 1.0, 0.0)
    t_inf = jnp.where(lo_finite, -jnp.where(lo_finite, lo, 0.0),
                      jnp.where(u_finite, jnp.where(u_finite, u, 0.0), jnp.inf))
    s_up = jnp.where(unstable, jnp.where(tri, s_tri, s_inf), jnp.where(lo >= 0, 1.0, 0.0))
    t_up = jnp.where(unstable, jnp.where(tri, t_tri, t_inf), 0.0)
    adaptive = jnp.where(u > -lo, 1.0, 0.0) if alpha is None else alpha
    s_lo = jnp.where(unstable, adaptive, jnp.where(lo >= 0, 1.0, 0.0))
    slope = jnp.where(lam_positive, s_lo, s_up)
    intercept = jnp.where(lam_positive, 0.0, t_up)
    return slope, intercept


def _mul0(a, b):
    """``a * b`` with 0 * inf = 0 (a zero coefficient ignores an unbounded term); the gradient
    is finite wherever a is 0."""
    return a * jnp.where(a == 0, 0.0, b)


def _concretize(lam, lo, hi):
    """Lower bound of ``sum(lam * y)`` for y in [lo, hi]: ``f32[S, B]``."""
    p = jnp.where(lam > 0, _mul0(lam, lo), jnp.where(lam < 0, _mul0(lam, hi), 0.0))
    return p.reshape(p.shape[0], p.shape[1], -1).sum(-1)


def _sum_tail(a, b):
    """``sum over all but the first two axes of a * b`` (a: [S, B, ...], b broadcast)."""
    p = a * b
    return p.reshape(p.shape[0], p.shape[1], -1).sum(-1)


def _backward(tape: _Tape, target: _Node, lam, bounds_of, x_node: _Node, x_lo, x_hi,
              alphas=None):
    """Lower bounds of ``sum(lam * target)`` over the box: ``f32[S, B]``. ``lam: [S, B, ...]``;
    ``alphas``: optional ``{node index: f32[S, B, ...]}`` lower ReLU slopes in [0, 1]."""
    f32 = jnp.float32
    coeffs = {target.index: lam.astype(f32)}
    bias = jnp.zeros(lam.shape[:2], f32)
    for eqn in reversed(tape.eqns):
        if eqn.outputs[0].index > target.index:
            continue
        outs = [coeffs.pop(o.index, None) for o in eqn.outputs]
        if all(c is None for c in outs):
            continue
        var = [i for i, v in enumerate(eqn.inputs) if _is_node(v)]
        relu = _relu_like(eqn.prim, eqn.inputs)
        if relu is not None:
            (lam_o,) = outs
            node = eqn.inputs[relu]
            c = jnp.asarray(eqn.inputs[1 - relu]).astype(f32)
            c = c[None] if c.ndim else c
            lo, hi = bounds_of(node)
            lo, hi = lo[None].astype(f32), hi[None].astype(f32)
            alpha = None if alphas is None else alphas.get(eqn.outputs[0].index)
            if eqn.prim.name == "max":        # max(x, c) = c + relu(x - c)
                s, t = _relu_relaxation(lo - c, hi - c, lam_o >= 0, alpha)
                coef, const = lam_o * s, _mul0(lam_o, t - s * c + c)
            else:                             # min(x, c) = c - relu(c - x)
                s, t = _relu_relaxation(c - hi, c - lo, -lam_o >= 0, alpha)
                coef, const = lam_o * s, lam_o * c - _mul0(lam_o, s * c + t)
            bias = bias + _sum_tail(const, jnp.ones(()))
            _accumulate(coeffs, node, coef)
        elif (rounding := _rounding(eqn.prim, eqn.params, eqn.inputs)) is not None:
            # round(x) in [x - e, x + e], e = u max|x| + tiny on the box: lam * round(x) >=
            # lam * x - |lam| e
            u, tiny, big = rounding
            (lam_o,) = outs
            node = eqn.inputs[0]
            lo, hi = bounds_of(node)
            m = jnp.maximum(jnp.abs(lo), jnp.abs(hi))[None].astype(f32)
            err = jnp.where(m > big, jnp.inf, u * m + tiny)
            bias = bias - _sum_tail(jnp.ones(()), _mul0(jnp.abs(lam_o), err))
            _accumulate(coeffs, node, lam_o.astype(f32))
        elif eqn.prim.name in _IDENTITY:
            for v, lam_o in zip(eqn.inputs, outs, strict=True):
                if lam_o is None:
                    continue
                if _is_node(v):
                    _accumulate(coeffs, v, lam_o)
                else:                         # a constant passed through: its exact value
                    c = jnp.broadcast_to(jnp.asarray(v, f32), lam_o.shape[1:])[None]
                    bias = bias + _sum_tail(lam_o, c)
        elif _is_affine(eqn.prim, eqn.params, eqn.inputs):
            def g(*vs, eqn=eqn, var=var):
                args = list(eqn.inputs)
                for i, v in zip(var, vs, strict=True):
                    args[i] = v
                return tuple(bind(eqn.prim, eqn.params, args))

            zeros = [jnp.zeros(eqn.inputs[i].shape, eqn.inputs[i].lo.dtype) for i in var]
            offsets, vjp = jax.vjp(g, *zeros)
            s_len = next(c for c in outs if c is not None).shape[0]
            cots = tuple(jnp.zeros((s_len,) + o.shape, o.dtype) if c is None else c.astype(o.dtype)
                         for c, o in zip(outs, offsets, strict=True))
            for c, o in zip(cots, offsets, strict=True):
                bias = bias + _sum_tail(c.astype(f32), o[None].astype(f32))
            grads = jax.vmap(vjp)(cots)
            for i, gi in zip(var, grads, strict=True):
                _accumulate(coeffs, eqn.inputs[i], gi.astype(f32))
        else:
            # concretize: lam * y >= lam+ * lower(y) + lam- * upper(y)
            for o, lam_o in zip(eqn.outputs, outs, strict=True):
                if lam_o is None:
                    continue
                lo, hi = bounds_of(o)
                bias = bias + _concretize(lam_o, lo[None].astype(f32), hi[None].astype(f32))
    lam_x = coeffs.pop(x_node.index, None)
    if lam_x is not None:
        bias = bias + _concretize(lam_x, x_lo[None].astype(f32), x_hi[None].astype(f32))
    for idx, lam_left in coeffs.items():      # nodes reached but not produced by an equation
        lo, hi = bounds_of(tape.nodes[idx])
        bias = bias + _concretize(lam_left, lo[None].astype(f32), hi[None].astype(f32))
    return bias


def _accumulate(coeffs, node, value):
    prev = coeffs.get(node.index)
    coeffs[node.index] = value if prev is None else prev + value


def _identity_spec(shape, dtype):
    """``[S, B, *rest]`` one-hot per example element, S = prod(rest)."""
    b, rest = shape[0], shape[1:]
    s = int(np.prod(rest)) if rest else 1
    eye = jnp.eye(s, dtype=dtype).reshape((s, 1) + tuple(rest))
    return jnp.broadcast_to(eye, (s, b) + tuple(rest))


_METHODS = ("ibp", "crown", "crown_ibp", "alpha_crown", "lipschitz")


def bounds(model_fn: Callable, *, method: str = "crown", alpha_steps: int = 20,
           alpha_learning_rate: float = 0.1, lipschitz_constant: float = 1.0) -> Callable:
    r"""A bound transform: ``g(params, lower, upper, spec=None) -> Interval``.

    For every x with ``lower <= x <= upper`` (elementwise, batch included), the output
    ``model_fn(params, x)`` lies in the returned interval (or, with ``spec``, the linear
    combinations :math:`C f(x)`, e.g. logit margins :math:`f_{c'} - f_c`).

    Args:
      model_fn: ``(params, x) -> f32[B, K]``, built from supported primitives.
      method: ``"ibp"`` (interval bound propagation), ``"crown"`` (backward linear relaxation,
        intermediate bounds by CROWN intersected with IBP; never looser than IBP),
        ``"crown_ibp"`` (backward relaxation on IBP intermediate bounds), ``"alpha_crown"``
        (CROWN, then the lower ReLU slopes of the final pass optimized in [0, 1] with Adam, one
        slope per spec row and neuron, keeping the best bound seen: never looser than CROWN), or
        ``"lipschitz"`` for an L-Lipschitz (l2) network: :math:`f(c) \pm L \|C_s\|_2 \, r`
        with c the box centre and r its l2 radius (sound only if the network *is* L-Lipschitz,
        e.g. an exported ``xjax.lipschitz`` model).
      alpha_steps, alpha_learning_rate: the slope optimization of ``"alpha_crown"`` (20, 0.1).
      lipschitz_constant: L for ``"lipschitz"`` (1.0).

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
            return _lipschitz_bounds(model_fn, params, lower, upper, spec, lipschitz_constant)
        closed = jax.make_jaxpr(lambda p, x: model_fn(p, x))(params, lower)
        p_leaves = jax.tree.leaves(params)
        tape = _Tape()
        x_node = tape.node(lower, upper)
        (out,) = _run(closed.jaxpr, closed.consts, p_leaves + [x_node], tape)
        if not _is_node(out):
            out = tape.node(out, out)
        out.lo, out.hi = out.lo.astype(jnp.float32), out.hi.astype(jnp.float32)
        c = None if spec is None else jnp.asarray(spec, jnp.float32)
        if c is not None:
            if c.ndim == 2:
                c = jnp.broadcast_to(c, (out.shape[0],) + c.shape)
            if c.ndim != 3 or c.shape[0] != out.shape[0] or c.shape[2] != out.shape[-1]:
                raise ValueError(f"bounds: spec must be (S, {out.shape[-1]}) or "
                                 f"({out.shape[0]}, S, {out.shape[-1]}), got {jnp.shape(spec)}")
        if method == "ibp":
            if c is None:
                return Interval(out.lo, out.hi)
            mid, rad = (out.lo + out.hi) / 2.0, (out.hi - out.lo) / 2.0
            m = jnp.einsum("bsk,bk->bs", c, mid)
            r = jnp.einsum("bsk,bk->bs", jnp.abs(c), rad)
            return Interval(m - r, m + r)

        tightened: dict[int, tuple] = {}

        def bounds_of(node):
            return tightened.get(node.index, (node.lo, node.hi))

        def crown(node, lam):
            both = jnp.concatenate([lam, -lam], axis=0)
            lb = _backward(tape, node, both, bounds_of, x_node, lower, upper)
            s = lam.shape[0]
            return lb[:s].T, -lb[s:].T                       # [B, S] each

        if method in ("crown", "alpha_crown"):
            for eqn in tape.eqns:
                relu = _relu_like(eqn.prim, eqn.inputs)
                if relu is None:
                    continue
                pre = eqn.inputs[relu]
                if pre.index == x_node.index or pre.index in tightened:
                    continue
                lo, hi = crown(pre, _identity_spec(pre.shape, pre.lo.dtype))
                lo = jnp.maximum(lo.reshape(pre.shape), pre.lo.astype(jnp.float32))
                hi = jnp.minimum(hi.reshape(pre.shape), pre.hi.astype(jnp.float32))
                tightened[pre.index] = (lo, hi)
        lam = (_identity_spec(out.shape, out.lo.dtype) if c is None
               else jnp.transpose(c, (1, 0, 2)))
        lo, hi = crown(out, lam)
        if method == "alpha_crown":
            lo, hi = _optimize_slopes(tape, out, lam, bounds_of, x_node, lower, upper, lo, hi,
                                      alpha_steps, alpha_learning_rate)
        if c is None:
            lo, hi = jnp.maximum(lo, out.lo), jnp.minimum(hi, out.hi)
        else:
            mid, rad = (out.lo + out.hi) / 2.0, (out.hi - out.lo) / 2.0
            m = jnp.einsum("bsk,bk->bs", c, mid)
            r = jnp.einsum("bsk,bk->bs", jnp.abs(c), rad)
            lo, hi = jnp.maximum(lo, m - r), jnp.minimum(hi, m + r)
        return Interval(lo, hi)

    return g


def _optimize_slopes(tape, out, lam, bounds_of, x_node, lower, upper, lo, hi, steps, lr):
    """alpha-CROWN on the final pass: maximize the lower bounds of [lam; -lam] over the lower
    slopes of every unstable ReLU (projected Adam); every alpha in [0, 1] gives a sound bound, so
    the elementwise best over the iterations is returned."""
    import optax

    both = jnp.concatenate([lam, -lam], axis=0)
    relus = [e for e in tape.eqns if _relu_like(e.prim, e.inputs) is not None
             and e.outputs[0].index < out.index + 1]
    alphas = {e.outputs[0].index: jnp.full((both.shape[0],) + e.outputs[0].shape, 0.5,
                                           both.dtype) for e in relus}
    if not alphas:
        return lo, hi
    s = lam.shape[0]

    def objective(a):
        return _backward(tape, out, both, bounds_of, x_node, lower, upper, alphas=a)

    opt = optax.adam(lr)
    with jax.numpy_dtype_promotion("standard"):
        state = opt.init(alphas)

    def step(carry, _):
        a, st, best = carry
        value, grads = jax.value_and_grad(lambda a: -objective(a).sum())(a)
        with jax.numpy_dtype_promotion("standard"):
            updates, st = opt.update(grads, st, a)
        a = jax.tree.map(lambda v: jnp.clip(v, 0.0, 1.0), optax.apply_updates(a, updates))
        best = jnp.maximum(best, objective(a))
        return (a, st, best), None

    start = jnp.concatenate([lo.T, -hi.T], axis=0)
    (_, _, best), _ = jax.lax.scan(step, (alphas, state, jnp.maximum(start, objective(alphas))),
                                   None, length=steps)
    return best[:s].T, -best[s:].T


def _lipschitz_bounds(model_fn, params, lower, upper, spec, lipschitz_constant):
    centre = (lower + upper) / 2.0
    radius = jnp.sqrt(jnp.sum(((upper - lower) / 2.0).reshape(lower.shape[0], -1) ** 2, axis=1))
    f = model_fn(params, centre)
    if spec is None:
        r = (lipschitz_constant * radius)[:, None]
        return Interval(f - r, f + r)
    c = jnp.asarray(spec, f.dtype)
    if c.ndim == 2:
        c = jnp.broadcast_to(c, (f.shape[0],) + c.shape)
    m = jnp.einsum("bsk,bk->bs", c, f)
    r = lipschitz_constant * radius[:, None] * jnp.linalg.norm(c, axis=-1)
    return Interval(m - r, m + r)


def ibp(model_fn: Callable) -> Callable:
    """``bounds(model_fn, method="ibp")``: interval bound propagation."""
    return bounds(model_fn, method="ibp")


def crown(model_fn: Callable) -> Callable:
    """``bounds(model_fn, method="crown")``: CROWN, intermediate bounds by CROWN and IBP."""
    return bounds(model_fn, method="crown")


def crown_ibp(model_fn: Callable) -> Callable:
    """``bounds(model_fn, method="crown_ibp")``: CROWN on IBP intermediate bounds."""
    return bounds(model_fn, method="crown_ibp")


def alpha_crown(model_fn: Callable, *, steps: int = 20, learning_rate: float = 0.1) -> Callable:
    """``bounds(model_fn, method="alpha_crown")``: CROWN with optimized lower ReLU slopes."""
    return bounds(model_fn, method="alpha_crown", alpha_steps=steps,
                  alpha_learning_rate=learning_rate)


def lipschitz(model_fn: Callable, *, constant: float = 1.0) -> Callable:
    """``bounds(model_fn, method="lipschitz")`` for an L-Lipschitz (l2) network."""
    return bounds(model_fn, method="lipschitz", lipschitz_constant=constant)
