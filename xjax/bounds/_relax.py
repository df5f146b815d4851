r"""Linear relaxations for CROWN: per primitive, lower and upper linear bounds of its output in
terms of its box-dependent inputs, valid on the inputs' intervals.

Every rule is an entry of :data:`RELAXATIONS` (keyed by primitive name); a primitive without an
entry, or whose entry does not apply, is *concretized* by the backward pass (its output interval
replaces the linear bound: sound, looser). Three mechanisms cover the table:

* **Elementwise functions by curvature** (:class:`Curvature`): a function is described by its
  breakpoints (inflection points and kinks) and the sign of its curvature between them. For any
  slope ``k`` the tightest intercepts are the minimum and maximum of ``g(x) = f(x) - k x`` over
  ``[l, u]``; they are bounded piece by piece: on a piece where ``g`` is convex its maximum is at
  an end and its minimum is at least that of the two end tangents' upper envelope (exact when the
  tangent point is a piece end), and symmetrically where it is concave. The slope is the tangent
  at the midpoint on the side where the function curves away (the lower side of a convex piece),
  the secant on the other, and the secant on both sides when ``[l, u]`` spans several pieces
  (CROWN's tangent and secant lines, Zhang et al. 2018); alpha-CROWN moves the tangent point
  ``l + alpha (u - l)``. Any slope gives a sound line, so the choice only affects tightness.
  Intercepts are padded by a few float32 ulps of the values involved to absorb rounding.
* **Bilinear forms of two box operands** (``mul``, ``dot_general``: attention, gating, SiLU as
  ``x * sigmoid(x)``): McCormick's planes, ``(a - l_a)(b - l_b) >= 0`` and its three siblings; a
  free mix ``beta`` of the two lower (upper) planes, 1/2 by default, optimized by alpha-CROWN.
* **Piecewise-linear selections**: the rectifier ``max(x, c)`` / ``min(x, c)`` (triangle
  relaxation with CROWN's adaptive lower slope), max pooling and ``reduce_max`` (below by the
  element with the largest lower bound; exact above when that element dominates its window),
  ``select_n`` with a bounded predicate (exact where the predicate is decided), and rounding casts
  (identity plus the rounding error).

References:
  H. Zhang, T.-W. Weng, P.-Y. Chen, C.-J. Hsieh, L. Daniel, "Efficient Neural Network Robustness
  Certification with General Activation Functions", NeurIPS 2018, arXiv:1811.00866.
  G. P. McCormick, "Computability of global solutions to factorable nonconvex programs",
  Mathematical Programming 10, 1976. K. Xu et al., "Fast and Complete: Enabling Complete Neural
  Network Verification with Rapid and Massively Parallel Incomplete Verifiers" (alpha-CROWN),
  ICLR 2021, arXiv:2011.13824.
"""

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from xjax._internal.jaxpr import bind
from xjax.bounds._interval import concretize, is_node, mul0, sum_tail

__all__ = ["CURVATURE", "NAMED_CALLS", "REBUILT", "RELAXATIONS", "Curvature", "NamedCall",
           "Relaxation", "float_softmax", "lines", "named_interval", "relu_relaxation",
           "value_range"]

_F32 = jnp.float32
_ULPS = 16 * float(jnp.finfo(jnp.float32).eps)


class Curvature(NamedTuple):
    """An elementwise function's shape: ``signs[i]`` is +1 (convex), -1 (concave) or 0 (linear)
    between ``breaks[i - 1]`` and ``breaks[i]``; a kink is a repeated break whose zero-width
    region carries the kink's sign (``abs``: breaks (0, 0), signs (0, 1, 0)); ``domain`` clips
    the input interval (as IBP does);
    ``poles`` are points where the function or its derivative is infinite (a box containing one
    is concretized)."""

    breaks: tuple[float, ...] = ()
    signs: tuple[int, ...] = (1,)
    domain: tuple[float, float] = (-float("inf"), float("inf"))
    poles: tuple[float, ...] = ()
    cuts: tuple[float, ...] = ()      # stationary points: pieces end there, so ranges are exact


def _root(g, lo: float, hi: float) -> float:
    """The root of ``g`` on ``[lo, hi]`` (a sign change), by float64 bisection."""
    glo = g(lo)
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi, glo = (mid, hi, g(mid)) if (g(mid) > 0) == (glo > 0) else (lo, mid, glo)
    return (lo + hi) / 2


_CONVEX, _CONCAVE = Curvature(), Curvature(signs=(-1,))
_SIGMOID = Curvature(breaks=(0.0,), signs=(1, -1))          # convex, then concave


def _power_curvature(params) -> Curvature:
    y = params.get("y", 2)
    if y in (0, 1):
        return _CONVEX                                      # affine: either label is exact
    if y > 0:
        return _CONVEX if y % 2 == 0 else Curvature(breaks=(0.0,), signs=(-1, 1))
    # 1 / x^|y|: convex for x > 0; for x < 0 concave when y is odd, convex when even
    return Curvature(breaks=(0.0,), signs=(-1 if y % 2 else 1, 1), poles=(0.0,))


CURVATURE: dict[str, Callable[[dict], Curvature]] = {
    "exp": lambda p: _CONVEX,
    "exp2": lambda p: _CONVEX,
    "expm1": lambda p: _CONVEX,
    "log": lambda p: Curvature(signs=(-1,), domain=(0.0, float("inf")), poles=(0.0,)),
    "log1p": lambda p: Curvature(signs=(-1,), domain=(-1.0, float("inf")), poles=(-1.0,)),
    "sqrt": lambda p: Curvature(signs=(-1,), domain=(0.0, float("inf")), poles=(0.0,)),
    "rsqrt": lambda p: Curvature(domain=(0.0, float("inf")), poles=(0.0,)),
    "tanh": lambda p: _SIGMOID,
    "logistic": lambda p: _SIGMOID,
    "erf": lambda p: _SIGMOID,
    "atan": lambda p: _SIGMOID,
    "asinh": lambda p: _SIGMOID,
    "erfc": lambda p: Curvature(breaks=(0.0,), signs=(-1, 1)),
    "sinh": lambda p: Curvature(breaks=(0.0,), signs=(-1, 1)),
    "square": lambda p: _CONVEX,
    "integer_pow": _power_curvature,
    "abs": lambda p: Curvature(breaks=(0.0, 0.0), signs=(0, 1, 0)),   # a convex kink at 0
}


class NamedCall(NamedTuple):
    """A named ``jax.nn`` call (a ``jit`` of one elementwise function) kept whole on the tape, so
    that it is relaxed as the function it is rather than through its parts (``softplus`` is
    ``max(x, 0) + log1p(exp(-|x|))``, whose parts lose their correlation). ``exact``: its float
    evaluation rounds nothing (maxima, minima and selections), so ``sound_float`` adds no error.
    ``rounding(eps, input_magnitude, output_magnitude)``: its own rounding error bound for
    ``sound_float`` (else the 16 ulps of the output of :func:`xjax.bounds._ibp.rounding_error`)."""

    name: str
    fn: Callable
    curvature: Curvature
    multiple_results: bool = False
    exact: bool = False
    rounding: Callable | None = None


def _silu_inflection() -> float:
    """SiLU'' = s(1 - s)(2 - x tanh(x / 2)): zero where x tanh(x / 2) = 2 (Newton, float64)."""
    x = 2.4
    for _ in range(50):
        t = np.tanh(x / 2)
        x -= (x * t - 2) / (t + x * (1 - t * t) / 2)
    return float(x)


_C_SILU = _silu_inflection()
# SiLU' = s(x) (1 + x (1 - s(x))): zero at its minimum
_M_SILU = _root(lambda x: 1 + x * (1 - 1 / (1 + np.exp(-x))), -2.0, -1.0)


def _leaky(probe):
    s = -probe(-1.0)                                   # leaky_relu(-1) = -slope
    return NamedCall("leaky_relu", lambda z: jnp.where(z >= 0, z, s * z),
                     Curvature(breaks=(0.0, 0.0), signs=(0, 1 if s <= 1 else -1, 0)))


def _elu(probe):
    a = probe(-1.0) / (np.exp(-1.0) - 1.0)            # elu(-1) = alpha (e^-1 - 1)
    left = 0 if a == 0 else (1 if a > 0 else -1)
    return NamedCall("elu", lambda z: jax.nn.elu(z, a),
                     Curvature(breaks=(0.0, 0.0), signs=(left, 1 if a <= 1 else -1, 0)))


# name of the jax.nn call -> its NamedCall, given ``probe(v)``: the call's value at the constant v
# (the hyperparameters are read back from it)
NAMED_CALLS: dict[str, Callable] = {
    "softplus": lambda probe: NamedCall("softplus", jax.nn.softplus, _CONVEX),
    "log_sigmoid": lambda probe: NamedCall("log_sigmoid", jax.nn.log_sigmoid, _CONCAVE),
    "silu": lambda probe: NamedCall("silu", jax.nn.silu, Curvature(
        breaks=(-_C_SILU, _C_SILU), signs=(-1, 1, -1), cuts=(_M_SILU,))),
    "hard_tanh": lambda probe: NamedCall("hard_tanh", jax.nn.hard_tanh, Curvature(
        breaks=(-1.0, -1.0, 1.0, 1.0), signs=(0, 1, 0, -1, 0)), exact=True),
    "selu": lambda probe: NamedCall("selu", jax.nn.selu, Curvature(
        breaks=(0.0, 0.0), signs=(1, -1, 0))),       # left slope 1.76 > 1.05: a concave kink
    "leaky_relu": _leaky,
    "elu": _elu,
}


def _gelu_tanh(z):
    return jax.nn.gelu(z, approximate=True)


def _gelu_tanh_inflection() -> float:
    """The tanh approximation of GELU, ``x (1 + tanh(u)) / 2`` with ``u = k (x + a x^3)``, has
    ``f'' = (1 - tanh^2 u) (u' + x u'' / 2 - x tanh(u) u'^2)``, even in x: zero at +-c, the root
    of the bracket on (1, 2); convex between, concave outside."""
    k, a = np.sqrt(2 / np.pi), 0.044715

    def g(x):
        u1 = k * (1 + 3 * a * x * x)
        return u1 + x * 3 * a * k * x - x * np.tanh(k * (x + a * x ** 3)) * u1 * u1

    return _root(g, 1.0, 2.0)


_C_GELU_TANH = _gelu_tanh_inflection()
_SQRT2 = float(np.sqrt(2.0))
# the minima: GELU' = Phi(x) + x phi(x); the tanh form's derivative (1 + tanh u + x u' (1 -
# tanh^2 u)) / 2
_M_GELU = _root(lambda x: 0.5 * (1 + math.erf(x / _SQRT2)) + x * np.exp(-x * x / 2)
                / np.sqrt(2 * np.pi), -2.0, 0.0)
_M_GELU_TANH = _root(lambda x: 1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3))
                     + x * np.sqrt(2 / np.pi) * (1 + 3 * 0.044715 * x * x)
                     * (1 - np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)) ** 2),
                     -2.0, 0.0)


def _gelu_rounding(eps, x_mag, out_mag):
    """``sound_float``'s bound for either GELU as ``jax.nn.gelu`` evaluates it in floats, times
    two (the model's evaluation and the bound's own). Erf form, ``(0.5 x) erfc(-x c)``: the
    argument's relative error (one product, 1 ulp) moves ``erfc`` by at most
    ``sup_t |t erfc'(t)| = 2 / sqrt(2 pi e) < 0.49`` ulps; ``erfc`` itself is within 16 ulps
    (the transcendental allowance) of a value at most 2, and the last product rounds once:
    ``|error| <= |x| / 2 (0.49 + 32 + 1) eps < 17 eps |x|``. Tanh form, ``x (0.5 (1 + tanh(u)))``:
    u's relative error (the integer power's 8 ulps, then three roundings) moves ``tanh`` by at
    most ``sup |u sech^2 u| < 0.45`` times it, ``tanh`` is within 16 ulps of a value at most 1,
    the sum and product round once each: under 12 eps |x|. Hence ``36 eps |x|`` for both; it
    is absolute, since for x << 0 ``erfc``'s relative error grows as ``x^2`` while GELU vanishes."""
    del out_mag
    return 36.0 * eps * x_mag


def float_softmax(n: int, cap: float) -> NamedCall:
    """The identity, carrying (for ``sound_float``) the rounding of a softmax over ``n`` scores
    as ``jax.nn.softmax`` evaluates it, ``e = exp(x - max x)``, ``e / sum e``: the tape rebuilds
    the softmax in another form (:func:`xjax.bounds._ibp._softmax_exp_reciprocal`) whose own
    roundings are not the model's, then applies this to its output.

    With u = eps / 2: ``x_j - max`` rounds to a relative u, so ``exp`` (within 16 ulps, the
    transcendental allowance) is off by a relative ``r_j <= |x_j - max| u + 16 eps``, and
    ``e_j |x_j - max| <= 1 / e``. The sum is at least 1 (the maximum's term) and within
    ``gamma_n`` of its terms, so it is off by a relative ``rho <= n u / e + 16 eps + gamma_n``;
    the division rounds once. Each probability p is then within
    ``p (r_i + rho + u) <= u / e + 16 eps + rho + u < (33 + 1.2 n) eps`` of its real value
    (gamma_n ~ n eps): ``(70 + 3 n) eps``, absolute (p <= 1), covers the model's evaluation
    and the bound's own, with margin; plus ``e^-cap``, the most by which the rebuilt form with
    its score differences capped at ``cap`` differs from the softmax."""
    return NamedCall("float_softmax", lambda z: z, Curvature(signs=(0,)),
                     rounding=lambda eps, x_mag, out_mag: jnp.full_like(
                         out_mag, (70.0 + 3.0 * n) * eps + math.exp(-cap)))


# functions the tape recognises from the primitives they are written with and rebuilds as one
# elementwise call (``xjax.bounds._ibp``): GELU is ``x`` times a function of ``x``, whose product
# McCormick's planes would relax as if the two factors were unrelated
REBUILT: dict[str, NamedCall] = {
    # GELU = x Phi(x): f'' = phi(x) (2 - x^2), convex on [-sqrt 2, sqrt 2], concave outside
    "gelu": NamedCall("gelu", lambda z: jax.nn.gelu(z, approximate=False), Curvature(
        breaks=(-_SQRT2, _SQRT2), signs=(-1, 1, -1), cuts=(_M_GELU,)), rounding=_gelu_rounding),
    "gelu_tanh": NamedCall("gelu_tanh", _gelu_tanh, Curvature(
        breaks=(-_C_GELU_TANH, _C_GELU_TANH), signs=(-1, 1, -1), cuts=(_M_GELU_TANH,)),
        rounding=_gelu_rounding),
}


def _unary_fns(prim, params):
    if isinstance(prim, NamedCall):
        f = prim.fn
    else:
        f = lambda z: bind(prim, params, [z])[0]
    df = lambda z: jax.jvp(f, (z,), (jnp.ones_like(z),))[1]
    return f, df


def _curvature(prim, params) -> Curvature:
    return prim.curvature if isinstance(prim, NamedCall) else CURVATURE[prim.name](params)


def _nudge(a, b):
    """Points just inside ``[a, b]`` from each end (one-sided derivatives at kinks)."""
    step = (b - a) * 2.0 ** -20
    sg = jax.lax.stop_gradient                                 # nextafter has no derivative
    up, down = jnp.nextafter(sg(a), jnp.inf), jnp.nextafter(sg(b), -jnp.inf)
    a1 = jnp.minimum(jnp.maximum(a + step, up), b)
    b1 = jnp.maximum(jnp.minimum(b - step, down), a)
    return a1, b1


def _regions(curv: Curvature, x, right: bool):
    """Index of the region holding ``x`` (``right``: a point on a break counts to its right)."""
    if not curv.breaks:
        return jnp.zeros(jnp.shape(x), jnp.int32)
    cmp = (lambda b: b <= x) if right else (lambda b: b < x)
    return sum(cmp(b).astype(jnp.int32) for b in curv.breaks)


def _safe_box(f, curv: Curvature, lo, hi):
    """The box clipped to the domain, safe stand-ins (1, 2) where no finite line can exist, and
    the mask of where one can (finite ends, no pole, finite values)."""
    dlo, dhi = curv.domain
    lo, hi = jnp.clip(lo, dlo, dhi), jnp.clip(hi, dlo, dhi)
    ok = jnp.isfinite(lo) & jnp.isfinite(hi)
    for pole in curv.poles:
        ok = ok & ~((lo <= pole) & (pole <= hi))
    ls, hs = jnp.where(ok, lo, 1.0), jnp.where(ok, hi, 2.0)
    ok = ok & jnp.isfinite(f(ls)) & jnp.isfinite(f(hs))
    return jnp.where(ok, ls, 1.0), jnp.where(ok, hs, 2.0), ok


def _intercepts(f, df, curv: Curvature, ls, hs, d):
    """``intercepts(k) -> (t_lo, t_hi)`` with ``t_lo <= f(x) - k x <= t_hi`` on ``[ls, hs]``,
    bounded piece by piece between the ends, the breaks, the curvature's cuts and the extra cut
    ``d``."""
    cuts = [ls, hs, d] + [jnp.clip(jnp.asarray(b, ls.dtype), ls, hs)
                          for b in (*curv.breaks, *curv.cuts)]
    pts = jnp.sort(jnp.stack(jnp.broadcast_arrays(*cuts)), axis=0)
    a, b = pts[:-1], pts[1:]
    a1, b1 = _nudge(a, b)
    sign = jnp.asarray(curv.signs, _F32)[_regions(curv, (a + b) / 2.0, right=False)]
    sign = jnp.where(sign == 0, 1.0, sign)                      # a linear piece: either is exact
    fa, fb, fa1, fb1, sa, sb = f(a), f(b), f(a1), f(b1), df(a1), df(b1)
    size = jnp.max(jnp.abs(jnp.stack([fa, fb])), axis=(0, 1)) + 1e-30
    reach = jnp.maximum(jnp.abs(ls), jnp.abs(hs))

    def intercepts(k):
        pad = _ULPS * (size + reach * jnp.abs(k))               # float32 rounding of f and k x
        k = k[None]                                             # over the pieces
        g = lambda fx, x: sign * (fx - k * x)                   # convex on each piece
        ha, hb, ha1, hb1 = g(fa, a), g(fb, b), g(fa1, a1), g(fb1, b1)
        da, db = sign * (sa - k), sign * (sb - k)
        den = db - da
        pos = den > 0
        xs = jnp.where(pos, (ha1 - hb1 + db * b1 - da * a1) / jnp.where(pos, den, 1.0), a)
        xs = jnp.clip(xs, a, b)
        env = lambda x: jnp.maximum(ha1 + da * (x - a1), hb1 + db * (x - b1))
        hmin = jnp.minimum(jnp.minimum(env(a), env(b)), jnp.minimum(env(xs), jnp.minimum(ha, hb)))
        hmax = jnp.maximum(ha, hb)
        g_lo = jnp.where(sign > 0, hmin, -hmax).min(0)
        g_hi = jnp.where(sign > 0, hmax, -hmin).max(0)
        return g_lo - pad, g_hi + pad

    return intercepts


def lines(f, df, curv: Curvature, lo, hi, alpha=None):
    """Sound lower and upper lines of ``f`` on ``[lo, hi]``: ``(k_lo, t_lo, k_up, t_up, ok)``
    with ``k_lo x + t_lo <= f(x) <= k_up x + t_up``; ``ok`` is False where no finite line exists
    (the caller uses the interval there). Shapes broadcast ``lo`` with ``alpha``."""
    ls, hs, ok = _safe_box(f, curv, lo, hi)
    width = hs - ls
    r_lo, r_hi = _regions(curv, ls, right=True), _regions(curv, hs, right=False)
    convex = jnp.ones(ls.shape, bool)
    concave = jnp.ones(ls.shape, bool)
    for r, sgn in enumerate(curv.signs):
        spanned = (r_lo <= r) & (r <= r_hi)
        convex = convex & ~(spanned & (sgn < 0))
        concave = concave & ~(spanned & (sgn > 0))
    concave = concave & ~convex                                 # linear counts as convex
    d = ls + (0.5 if alpha is None else alpha) * width          # the tangent point
    secant = jnp.where(width > 0, (f(hs) - f(ls)) / jnp.where(width > 0, width, 1.0), df(ls))
    tangent = df(d)
    if alpha is None:                  # CROWN: tangent where the function curves away, else secant
        k_lo = jnp.where(convex, tangent, secant)
        k_up = jnp.where(concave, tangent, secant)
    else:                              # alpha-CROWN: the tangent point moves; secant on the far side
        k_lo = jnp.where(concave, secant, tangent)
        k_up = jnp.where(convex, secant, tangent)
    intercepts = _intercepts(f, df, curv, ls, hs, d)
    t_lo, _ = intercepts(k_lo)
    _, t_up = intercepts(k_up)
    ok = ok & jnp.isfinite(t_lo) & jnp.isfinite(t_up) & jnp.isfinite(k_lo) & jnp.isfinite(k_up)
    return k_lo, t_lo, k_up, t_up, ok


def value_range(f, df, curv: Curvature, lo, hi):
    """An interval of ``f`` over ``[lo, hi]`` from the same piecewise bounds (slope 0); the
    whole line where none is finite."""
    ls, hs, ok = _safe_box(f, curv, lo, hi)
    t_lo, t_hi = _intercepts(f, df, curv, ls, hs, (ls + hs) / 2.0)(jnp.zeros_like(ls))
    ok = ok & jnp.isfinite(t_lo) & jnp.isfinite(t_hi)
    return jnp.where(ok, t_lo, -jnp.inf), jnp.where(ok, t_hi, jnp.inf)


class Relaxation(NamedTuple):
    """``fn(eqn, lams, bounds_of, alpha) -> (contributions, bias)`` or ``None`` (concretize);
    contributions are ``(node, coefficient)`` pairs, bias ``f32[S, B]``. ``free``: the rule
    takes an optimizable parameter in [0, 1] of the output's shape (alpha-CROWN)."""

    fn: Callable
    free: bool = False
    applies: Callable = lambda eqn: True


def _apply_lines(lam, k_lo, t_lo, k_up, t_up, ok, out_lo, out_hi):
    """Coefficient and bias of ``lam * y`` >= the chosen line, per element; the output interval
    where no line exists."""
    pos = lam >= 0
    k = jnp.where(ok, jnp.where(pos, k_lo, k_up), 0.0)
    t = jnp.where(ok, jnp.where(pos, t_lo, t_up), jnp.where(pos, out_lo, out_hi))
    return lam * k, sum_tail(mul0(lam, t))


def _unary(eqn, lams, bounds_of, alpha):
    """Tangent and secant lines with exact piecewise intercepts, from the function's curvature."""
    (lam,) = lams
    (x,) = eqn.inputs
    out = eqn.outputs[0]
    lo, hi = (v[None].astype(_F32) for v in bounds_of(x))
    o_lo, o_hi = (v[None].astype(_F32) for v in bounds_of(out))
    f, df = _unary_fns(eqn.prim, eqn.params)
    curv = _curvature(eqn.prim, eqn.params)
    coef, bias = _apply_lines(lam, *lines(f, df, curv, lo, hi, alpha), o_lo, o_hi)
    return [(x, coef)], bias


def _square_of_mul(eqn, lams, bounds_of, alpha):
    """``x * x``: the convex square (tangent below, secant above)."""
    (lam,) = lams
    x = eqn.inputs[0]
    lo, hi = (v[None].astype(_F32) for v in bounds_of(x))
    o_lo, o_hi = (v[None].astype(_F32) for v in bounds_of(eqn.outputs[0]))
    f = lambda z: z * z
    coef, bias = _apply_lines(lam, *lines(f, lambda z: 2.0 * z, _CONVEX, lo, hi, alpha),
                              o_lo, o_hi)
    return [(x, coef)], bias


def relu_relaxation(lo, u, lam_positive, alpha=None):
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


def _one_node(eqn) -> bool:
    return len(eqn.inputs) == 2 and sum(is_node(v) for v in eqn.inputs) == 1


def _rectifier(eqn, lams, bounds_of, alpha):
    """``max(x, c) = c + relu(x - c)`` and ``min(x, c) = c - relu(c - x)`` for a constant c."""
    (lam,) = lams
    i = 0 if is_node(eqn.inputs[0]) else 1
    node = eqn.inputs[i]
    c = jnp.asarray(eqn.inputs[1 - i]).astype(_F32)
    c = c[None] if c.ndim else c
    lo, hi = (v[None].astype(_F32) for v in bounds_of(node))
    # an infinite constant: max(x, -inf) = x (the initial value of a max reduction); max(x, inf)
    # = inf; and symmetrically for min
    sign = 1.0 if eqn.prim.name == "max" else -1.0
    passes, absorbs = sign * c == -jnp.inf, sign * c == jnp.inf
    c = jnp.where(jnp.isfinite(c), c, 0.0)
    if eqn.prim.name == "max":
        s, t = relu_relaxation(lo - c, hi - c, lam >= 0, alpha)
        coef, const = lam * s, mul0(lam, t - s * c + c)
    else:
        s, t = relu_relaxation(c - hi, c - lo, -lam >= 0, alpha)
        coef, const = lam * s, lam * c - mul0(lam, s * c + t)
    coef = jnp.where(passes, lam, jnp.where(absorbs, 0.0, coef))
    # (the infinite term only where it applies: a where over an infinite branch has NaN gradients)
    const = jnp.where(passes | absorbs, 0.0, const) + mul0(lam, jnp.where(absorbs, sign * jnp.inf,
                                                                         0.0))
    return [(node, coef)], sum_tail(const)


def _two_nodes(eqn) -> bool:
    return len(eqn.inputs) == 2 and all(is_node(v) for v in eqn.inputs)


def _mccormick(eqn, lams, bounds_of, alpha):
    r"""McCormick planes of a bilinear ``P(a, b)`` (``mul``, ``dot_general``) of two box operands.

    With a in [la, ua] and b in [lb, ub] elementwise, ``ab >= lb a + la b - la lb`` and
    ``ab >= ub a + ua b - ua ub`` (lower planes), ``ab <= ub a + la b - la ub`` and
    ``ab <= lb a + ua b - ua lb`` (upper planes); summed over a contraction they bound ``P``.
    ``beta`` mixes the two planes of each side per output element.
    """
    (lam,) = lams
    a, b = eqn.inputs
    if a is b and eqn.prim.name == "mul":
        return _square_of_mul(eqn, lams, bounds_of, alpha)
    la, ua = (v.astype(_F32) for v in bounds_of(a))
    lb, ub = (v.astype(_F32) for v in bounds_of(b))
    o_lo, o_hi = (v[None].astype(_F32) for v in bounds_of(eqn.outputs[0]))
    axes = lambda v: tuple(range(1, v.ndim))
    finite = jnp.all(jnp.isfinite(la) & jnp.isfinite(ua), axis=axes(la)) & jnp.all(
        jnp.isfinite(lb) & jnp.isfinite(ub), axis=axes(lb))              # per example: [B]
    safe = lambda v, fin: jnp.where(fin.reshape((-1,) + (1,) * (v.ndim - 1)), v, 0.0)
    la, ua, lb, ub = safe(la, finite), safe(ua, finite), safe(lb, finite), safe(ub, finite)
    p = lambda u, v: bind(eqn.prim, eqn.params, [u, v])[0].astype(_F32)
    beta = 0.5 if alpha is None else alpha
    pos, neg = jnp.maximum(lam, 0.0), jnp.minimum(lam, 0.0)
    w1, w2, w3, w4 = pos * (1 - beta), pos * beta, neg * (1 - beta), neg * beta

    def vjp_a(fixed_b, w):
        _, f = jax.vjp(lambda u: p(u, fixed_b), la)
        return jax.vmap(lambda c: f(c)[0])(w)

    def vjp_b(fixed_a, w):
        _, f = jax.vjp(lambda v: p(fixed_a, v), lb)
        return jax.vmap(lambda c: f(c)[0])(w)

    coef_a = vjp_a(lb, w1 + w4) + vjp_a(ub, w2 + w3)
    coef_b = vjp_b(la, w1 + w3) + vjp_b(ua, w2 + w4)
    bias = -(sum_tail(mul0(w1, p(la, lb)[None])) + sum_tail(mul0(w2, p(ua, ub)[None]))
             + sum_tail(mul0(w3, p(la, ub)[None])) + sum_tail(mul0(w4, p(ua, lb)[None])))
    # per spec row and example: the planes where everything stayed finite (huge ends overflow)
    keep = finite[None, :] & jnp.isfinite(bias)
    for c in (coef_a, coef_b):
        keep = keep & jnp.all(jnp.isfinite(c).reshape(c.shape[:2] + (-1,)), axis=-1)
    flat = lambda v: jnp.where(keep.reshape(keep.shape + (1,) * (v.ndim - 2)), v, 0.0)
    fallback = concretize(lam, o_lo, o_hi)
    return ([(a, flat(coef_a)), (b, flat(coef_b))],
            jnp.where(keep, jnp.where(keep, bias, 0.0), fallback))


def _max_reduction(eqn, lams, bounds_of, alpha):
    """``reduce_max`` / ``reduce_window_max`` (max pooling): below by the element with the
    largest lower bound in each window; above by that element where it dominates (its lower
    bound above every other upper bound: ``reduce_max`` and non-overlapping windows), else by
    the output's upper bound."""
    (lam,) = lams
    (x,) = eqn.inputs
    lo, hi = (v.astype(_F32) for v in bounds_of(x))
    o_lo, o_hi = (v[None].astype(_F32) for v in bounds_of(eqn.outputs[0]))
    pool = lambda z: bind(eqn.prim, eqn.params, [z])[0]
    top, route = jax.vjp(pool, lo)                     # cotangents to each window's argmax of lo
    dominant = _dominant(eqn, pool, route, top, lo, hi)[None]
    down = jnp.where((lam >= 0) | dominant, lam, 0.0)
    coef = jax.vmap(lambda c: route(c)[0])(down)
    return [(x, coef)], concretize(lam - down, o_lo, o_hi)


def _dominant(eqn, pool, route, top, lo, hi):
    """Where the window's argmax of ``lo`` (``top = pool(lo)``, ``route`` its vjp) is strictly
    above every other element's ``hi``."""
    if eqn.prim.name == "reduce_max":
        axes = eqn.params["axes"]
        keep = [d for d in range(lo.ndim) if d not in axes]
        spread = jax.lax.broadcast_in_dim(top, lo.shape, keep)
        count = jnp.sum(hi >= spread, axis=axes)
        return count == 1
    p = eqn.params
    non_overlapping = (tuple(p["window_dimensions"]) == tuple(p["window_strides"])
                       and all(d == 1 for d in p["base_dilation"])
                       and all(d == 1 for d in p["window_dilation"]))
    if not non_overlapping:
        return jnp.zeros(top.shape, bool)
    (mark,) = route(jnp.ones_like(top))
    others = pool(jnp.where(mark > 0, -jnp.inf, hi))
    return others < top


def _select(eqn, lams, bounds_of, alpha):
    """``select_n`` with a bounded predicate: exact where the predicate is decided, the output
    interval where it is not."""
    (lam,) = lams
    which, cases = eqn.inputs[0], eqn.inputs[1:]
    o_lo, o_hi = (v[None].astype(_F32) for v in bounds_of(eqn.outputs[0]))
    if not is_node(which):
        return None
    w_lo, w_hi = (v.astype(jnp.int32)[None] for v in (which.lo, which.hi))
    decided = w_lo == w_hi
    contributions, bias = [], concretize(jnp.where(decided, 0.0, lam), o_lo, o_hi)
    for i, case in enumerate(cases):
        part = jnp.where(decided & (w_lo == i), lam, 0.0)
        if is_node(case):
            contributions.append((case, part))
        else:
            bias = bias + sum_tail(part, jnp.asarray(case, _F32)[None])
    return contributions, bias


def rounding(prim, params, dtype):
    """A rounding cast (a narrowing float ``convert_element_type``, ``reduce_precision``):
    ``(u, tiny, big)`` such that ``|round(x) - x| <= u |x| + tiny`` for ``|x| <= big``, else None.
    CROWN relaxes it as the identity plus that error (round to nearest: u = 2^-(p + 1) for p
    stored mantissa bits; tiny covers the subnormal spacing), so bfloat16 compute keeps CROWN's
    linear bounds instead of falling back to the interval."""
    if prim.name == "reduce_precision":
        mb, eb = params["mantissa_bits"], params["exponent_bits"]
        emax = 2 ** (eb - 1) - 1
        return 2.0 ** -(mb + 1), 2.0 ** (1 - emax - mb), (2.0 - 2.0 ** -mb) * 2.0 ** emax
    dst = params["new_dtype"]
    if not (jnp.issubdtype(dtype, jnp.floating) and jnp.issubdtype(dst, jnp.floating)):
        return None
    fi = jnp.finfo(dst)
    return 2.0 ** -(int(fi.nmant) + 1), float(fi.smallest_subnormal), float(fi.max)


def _rounding(eqn, lams, bounds_of, alpha):
    """``round(x)`` in ``[x - e, x + e]``, ``e = u max|x| + tiny``: ``lam round(x) >= lam x -
    |lam| e``."""
    (lam,) = lams
    (x,) = eqn.inputs
    spec = rounding(eqn.prim, eqn.params, x.lo.dtype)
    if spec is None:
        return None
    u, tiny, big = spec
    lo, hi = bounds_of(x)
    m = jnp.maximum(jnp.abs(lo), jnp.abs(hi))[None].astype(_F32)
    err = jnp.where(m > big, jnp.inf, u * m + tiny)
    return [(x, lam.astype(_F32))], -sum_tail(mul0(jnp.abs(lam), err))


RELAXATIONS: dict[str, Relaxation] = {
    **{name: Relaxation(_unary, free=True) for name in (*CURVATURE, *NAMED_CALLS, *REBUILT,
                                                         "float_softmax")},
    "max": Relaxation(_rectifier, free=True, applies=_one_node),
    "min": Relaxation(_rectifier, free=True, applies=_one_node),
    "mul": Relaxation(_mccormick, free=True, applies=_two_nodes),
    "dot_general": Relaxation(_mccormick, free=True, applies=_two_nodes),
    "reduce_max": Relaxation(_max_reduction),
    "reduce_window_max": Relaxation(_max_reduction),
    "select_n": Relaxation(_select, applies=lambda eqn: is_node(eqn.inputs[0])),
    "convert_element_type": Relaxation(_rounding),
    "reduce_precision": Relaxation(_rounding),
}


def named_interval(prim: NamedCall, params, inputs):
    """The IBP rule of a named call: its range over the interval, from the piecewise bounds."""
    (x,) = inputs
    f, df = _unary_fns(prim, params)
    lo, hi = value_range(f, df, prim.curvature, x.lo.astype(_F32), x.hi.astype(_F32))
    return [(lo.astype(x.lo.dtype), hi.astype(x.lo.dtype))]
