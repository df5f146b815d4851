"""The linear relaxations, one by one and end to end.

* Every relaxed elementwise function: its lower and upper lines hold at every sampled point
  (float64 NumPy values) of random intervals, for CROWN's lines and for random alpha-CROWN
  tangent points (2.6 million points in all), and exist wherever the interval avoids a pole.
* Where the relaxation has a closed form (one convexity region: tangent at the midpoint and
  secant; the ReLU triangle; McCormick's planes), a float64 NumPy implementation of the same
  bound on one-hidden-layer nets agrees with CROWN-IBP.
* End to end, every activation family (including leaky_relu, ELU, hard_tanh, softplus, SiLU,
  GELU, a ``jnp.where``, softmax, layer norm and attention products) is sound on sampled
  points and corners, survives a PGD search for violations, and is tighter than IBP.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from scipy import special

import xjax
from xjax.bounds import _relax

B = xjax.bounds

# name -> (primitive and parameters, or a NAMED_CALLS entry; float64 NumPy function)
_SIGMOID = lambda x: special.expit(x)
ELEMENTWISE = {
    "exp": ((lax.exp_p, {"accuracy": None}), np.exp),
    "exp2": ((lax.exp2_p, {"accuracy": None}), np.exp2),
    "expm1": ((lax.expm1_p, {"accuracy": None}), np.expm1),
    "log": ((lax.log_p, {"accuracy": None}), np.log),
    "log1p": ((lax.log1p_p, {"accuracy": None}), np.log1p),
    "sqrt": ((lax.sqrt_p, {"accuracy": None}), np.sqrt),
    "rsqrt": ((lax.rsqrt_p, {"accuracy": None}), lambda x: 1 / np.sqrt(x)),
    "tanh": ((lax.tanh_p, {"accuracy": None}), np.tanh),
    "logistic": ((lax.logistic_p, {"accuracy": None}), _SIGMOID),
    "erf": ((lax.erf_p, {}), special.erf),
    "erfc": ((lax.erfc_p, {}), special.erfc),
    "atan": ((lax.atan_p, {}), np.arctan),
    "asinh": ((lax.asinh_p, {}), np.arcsinh),
    "sinh": ((lax.sinh_p, {}), np.sinh),
    "square": ((lax.square_p, {}), np.square),
    "abs": ((lax.abs_p, {}), np.abs),
    "pow3": ((lax.integer_pow_p, {"y": 3}), lambda x: x ** 3),
    "pow4": ((lax.integer_pow_p, {"y": 4}), lambda x: x ** 4),
    "pow-1": ((lax.integer_pow_p, {"y": -1}), lambda x: 1 / x),
    "pow-2": ((lax.integer_pow_p, {"y": -2}), lambda x: x ** -2.0),
    "softplus": ("softplus", lambda x: np.logaddexp(x, 0)),
    "log_sigmoid": ("log_sigmoid", lambda x: -np.logaddexp(-x, 0)),
    "silu": ("silu", lambda x: x * _SIGMOID(x)),
    "hard_tanh": ("hard_tanh", lambda x: np.clip(x, -1, 1)),
    "selu": ("selu", lambda x: 1.0507009873554805 * np.where(
        x > 0, x, 1.6732632423543772 * np.expm1(np.minimum(x, 0)))),
    "leaky_relu": ("leaky_relu", lambda x: np.where(x >= 0, x, 0.01 * x)),
    "elu": ("elu", lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0)))),
    # rebuilt from the primitives jax.nn.gelu writes (xjax.bounds._relax.REBUILT)
    "gelu": ("gelu", lambda x: x * special.ndtr(x)),
    "gelu_tanh": ("gelu_tanh", lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (
        x + 0.044715 * x ** 3)))),
}
_NAMED_FN = {"softplus": jax.nn.softplus, "log_sigmoid": jax.nn.log_sigmoid, "silu": jax.nn.silu,
             "hard_tanh": jax.nn.hard_tanh, "selu": jax.nn.selu, "leaky_relu": jax.nn.leaky_relu,
             "elu": jax.nn.elu}


def _fns(name):
    """``(f, df, curvature)`` as the relaxation uses them (jax, float32)."""
    spec, _ = ELEMENTWISE[name]
    if isinstance(spec, str) and spec in _relax.REBUILT:
        call = _relax.REBUILT[spec]
        return (*_relax._unary_fns(call, {}), call.curvature)
    if isinstance(spec, str):
        fn = _NAMED_FN[spec]
        call = _relax.NAMED_CALLS[spec](lambda v: float(fn(jnp.float32(v))))
        return (*_relax._unary_fns(call, {}), call.curvature)
    prim, params = spec
    return (*_relax._unary_fns(prim, params), _relax.CURVATURE[prim.name](params))


def test_every_relaxed_function_is_covered():
    named = {s for s, _ in ELEMENTWISE.values() if isinstance(s, str)}
    prims = {s[0].name for s, _ in ELEMENTWISE.values() if not isinstance(s, str)}
    assert named == set(_relax.NAMED_CALLS) | set(_relax.REBUILT)
    assert prims == set(_relax.CURVATURE)


def _intervals(rng, n=48):
    """Random intervals of every scale, plus ones on and across the breakpoints (0, +-1, the
    SiLU inflections) and degenerate ones."""
    c = rng.normal(0, 3, n)
    w = np.exp(rng.uniform(np.log(1e-3), np.log(12), n))
    lo, hi = c - w / 2, c + w / 2
    special_lo = np.array([0, -1, -2.5, 0, -1e-3, 1, -3, 2.39935728, 0.5, -4])
    special_hi = np.array([2, 1, 2.5, 0, 1e-3, 1, -1, 3, 0.5, -2.39935728])
    return (np.concatenate([lo, special_lo]).astype(np.float32),
            np.concatenate([hi, special_hi]).astype(np.float32))


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_lines_hold_on_sampled_points(name):
    f, df, curv = _fns(name)
    ref = ELEMENTWISE[name][1]
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    lo, hi = _intervals(rng)
    dlo, dhi = curv.domain
    lo, hi = np.clip(lo, dlo, dhi), np.clip(hi, dlo, dhi)
    t = np.concatenate([np.linspace(0, 1, 101)[:, None] * np.ones((1, lo.size)),
                        rng.uniform(size=(800, lo.size))]).astype(np.float32)
    xs = (lo[None] + t * (hi - lo)[None]).astype(np.float32)
    xs = np.clip(xs, lo[None], hi[None])
    with np.errstate(all="ignore"):
        truth = ref(xs.astype(np.float64))
    for alpha in (None, rng.uniform(size=lo.shape).astype(np.float32)):
        k_lo, t_lo, k_up, t_up, ok = (np.asarray(v, np.float64) for v in jax.jit(
            lambda a, b, al: _relax.lines(f, df, curv, a, b, al))(lo, hi, alpha))
        ok = ok.astype(bool)
        pole = np.zeros(lo.shape, bool)
        for p in curv.poles:
            pole |= (lo <= p) & (p <= hi)
        assert ok[~pole].all(), f"{name}: no line on {lo[~pole & ~ok]}..{hi[~pole & ~ok]}"
        below = k_lo[None] * xs + t_lo[None]
        above = k_up[None] * xs + t_up[None]
        fin = np.isfinite(truth) & ok[None]
        tol = 1e-6 * (1 + np.abs(truth))
        assert (below[fin] <= truth[fin] + tol[fin]).all(), f"{name}: lower line above f"
        assert (above[fin] >= truth[fin] - tol[fin]).all(), f"{name}: upper line below f"


@pytest.mark.parametrize("name", ["exp", "log", "sqrt", "tanh", "logistic", "square",
                                  "softplus", "silu"])
def test_one_region_lines_are_the_tangent_and_the_secant(name):
    """On an interval of one convexity region the lines are the tangent at the midpoint (the
    side the function curves away from) and the secant, computed here in float64."""
    f, df, curv = _fns(name)
    ref = ELEMENTWISE[name][1]
    region = {"log": (0.5, 3.0), "sqrt": (0.5, 3.0), "tanh": (0.2, 2.0), "logistic": (-3, -0.5),
              "silu": (-2.0, 1.5)}.get(name, (-1.5, 1.0))
    lo, hi = np.float32(region[0]), np.float32(region[1])
    convex = name in ("exp", "logistic", "square", "softplus", "silu")
    k_lo, t_lo, k_up, t_up, ok = (float(v) for v in _relax.lines(f, df, curv, lo, hi))
    a, b = float(lo), float(hi)
    m = (a + b) / 2
    h = 1e-6
    dm = (ref(m + h) - ref(m - h)) / (2 * h)
    secant = (ref(b) - ref(a)) / (b - a)
    tangent_line = (dm, ref(m) - dm * m)
    secant_line = (secant, ref(a) - secant * a)
    want_lo, want_up = (tangent_line, secant_line) if convex else (secant_line, tangent_line)
    np.testing.assert_allclose([k_lo, t_lo], want_lo, rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose([k_up, t_up], want_up, rtol=2e-4, atol=2e-5)


def _numpy_crown_one_layer(w1, b1, w2, x, eps, line_fn):
    """Float64 CROWN-IBP of ``w2 . act(w1 x + b1)`` over the l_inf box: exact pre-activation
    interval, per-neuron lines from ``line_fn(l, u) -> (k_lo, t_lo, k_up, t_up)``."""
    z_c, z_r = x @ w1 + b1, eps * np.abs(w1).sum(0)
    lines = line_fn(z_c - z_r, z_c + z_r)
    out = []
    for sgn in (1.0, -1.0):
        lam = sgn * w2                                         # [H, K]
        pos = lam >= 0
        k = np.where(pos, lines[0][:, None], lines[2][:, None])
        t = np.where(pos, lines[1][:, None], lines[3][:, None])
        coef_x = w1 @ (lam * k)                                # [D, K]
        const = (lam * (k * b1[:, None] + t)).sum(0)
        low = x @ coef_x + const - eps * np.abs(coef_x).sum(0)
        out.append(sgn * low)
    return out[0], out[1]


def _closed_form_lines(name):
    f64 = {"exp": (np.exp, np.exp), "tanh": (np.tanh, lambda z: 1 - np.tanh(z) ** 2)}[name]
    f, df = f64

    def line_fn(lo, hi):
        m = (lo + hi) / 2
        sec = (f(hi) - f(lo)) / (hi - lo)
        tangent = (df(m), f(m) - df(m) * m)
        secant = (sec, f(lo) - sec * lo)
        if name == "exp":                  # convex
            return (*tangent, *secant)
        return (*secant, *tangent)         # tanh on positive pre-activations: concave
    return line_fn


def _relu_lines(lo, hi):
    unstable = (lo < 0) & (hi > 0)
    s_up = np.where(unstable, hi / np.where(unstable, hi - lo, 1), (lo >= 0) * 1.0)
    t_up = np.where(unstable, -hi * lo / np.where(unstable, hi - lo, 1), 0.0)
    s_lo = np.where(unstable, (hi > -lo) * 1.0, (lo >= 0) * 1.0)
    return s_lo, np.zeros_like(lo), s_up, t_up


@pytest.mark.parametrize("name", ["exp", "tanh", "relu"])
def test_crown_ibp_matches_a_float64_numpy_crown_on_one_hidden_layer(name):
    rng = np.random.default_rng(7)
    d, h, k = 6, 10, 3
    w1 = rng.normal(size=(d, h)) / np.sqrt(d)
    b1 = rng.normal(size=h) * 0.3 + (3.0 if name == "tanh" else 0.0)   # tanh: z > 0 (concave)
    w2 = rng.normal(size=(h, k))
    x = rng.normal(size=(1, d))
    eps = 0.05 if name != "relu" else 0.4
    act = {"exp": jnp.exp, "tanh": jnp.tanh, "relu": jax.nn.relu}[name]
    line_fn = _relu_lines if name == "relu" else _closed_form_lines(name)
    want_lo, want_hi = _numpy_crown_one_layer(w1, b1, w2, x[0], eps, line_fn)
    model_fn = lambda p, z: act(z @ p[0] + p[1][None]) @ p[2]
    params = tuple(jnp.asarray(v, jnp.float32) for v in (w1, b1, w2))
    xf = jnp.asarray(x, jnp.float32)
    iv = B.crown_ibp(model_fn)(params, xf - eps, xf + eps)
    ibp = B.ibp(model_fn)(params, xf - eps, xf + eps)
    np.testing.assert_allclose(iv.lower[0], np.maximum(want_lo, ibp.lower[0]), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(iv.upper[0], np.minimum(want_hi, ibp.upper[0]), rtol=1e-4, atol=1e-4)
    assert float((iv.upper - iv.lower).sum()) < 0.9 * float((ibp.upper - ibp.lower).sum())


def test_mccormick_matches_float64_numpy_on_a_product_layer():
    """``w . ((A x) * (B x))``: McCormick's mixed planes (beta = 1/2) in float64."""
    rng = np.random.default_rng(3)
    d, h = 5, 7
    a, b, w = rng.normal(size=(d, h)), rng.normal(size=(d, h)), rng.normal(size=(h, 1))
    x, eps = rng.normal(size=d), 0.1
    ac, ar = x @ a, eps * np.abs(a).sum(0)
    bc, br = x @ b, eps * np.abs(b).sum(0)
    la, ua, lb, ub = ac - ar, ac + ar, bc - br, bc + br
    lam = w[:, 0]
    pos, neg = np.maximum(lam, 0), np.minimum(lam, 0)
    # coefficients on the products' operands and the constant, planes mixed half and half
    ca = pos * (lb + ub) / 2 + neg * (ub + lb) / 2
    cb = pos * (la + ua) / 2 + neg * (la + ua) / 2
    const = -(pos * (la * lb + ua * ub) / 2 + neg * (la * ub + ua * lb) / 2).sum()
    coef_x = a @ ca + b @ cb
    want_lo = x @ coef_x + const - eps * np.abs(coef_x).sum()
    model_fn = lambda p, z: ((z @ p[0]) * (z @ p[1])) @ p[2]
    params = tuple(jnp.asarray(v, jnp.float32) for v in (a, b, w))
    xf = jnp.asarray(x[None], jnp.float32)
    iv = B.crown_ibp(model_fn)(params, xf - eps, xf + eps)
    ibp = B.ibp(model_fn)(params, xf - eps, xf + eps)
    np.testing.assert_allclose(float(iv.lower[0, 0]), max(want_lo, float(ibp.lower[0, 0])),
                               rtol=1e-4, atol=1e-4)


def _layer_norm(z):
    mu = z.mean(-1, keepdims=True)
    var = ((z - mu) ** 2).mean(-1, keepdims=True)
    return (z - mu) * jax.lax.rsqrt(var + 1e-3)


def _attention(z):
    q = z.reshape(z.shape[0], 4, -1)                           # 4 tokens
    scores = jnp.einsum("btd,bsd->bts", q, q) / 2.0
    return jnp.einsum("bts,bsd->btd", jax.nn.softmax(scores, -1), q).reshape(z.shape[0], -1)


ACTIVATIONS = {
    "relu": jax.nn.relu, "leaky_relu": jax.nn.leaky_relu, "elu": jax.nn.elu,
    "hard_tanh": jax.nn.hard_tanh, "softplus": jax.nn.softplus, "silu": jax.nn.silu,
    "gelu_tanh": jax.nn.gelu, "gelu_erf": lambda z: jax.nn.gelu(z, approximate=False),
    "sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh,
    "where": lambda z: jnp.where(z > 0.2, z * z, 0.5 * z),
    "softmax": lambda z: jax.nn.softmax(z, -1), "layer_norm": _layer_norm,
    "attention": _attention, "max_pool": lambda z: jnp.repeat(z.reshape(z.shape[0], -1, 2).max(-1),
                                                            2, axis=-1),
}


def _net(act):
    rng = np.random.default_rng(0)
    w1 = jnp.asarray(rng.normal(size=(6, 8)) / 2, jnp.float32)
    w2 = jnp.asarray(rng.normal(size=(8, 8)) / 3, jnp.float32)
    w3 = jnp.asarray(rng.normal(size=(8, 3)) / 3, jnp.float32)
    return (lambda p, z: act(act(z @ p[0]) @ p[1]) @ p[2]), (w1, w2, w3)


def _pgd_violation(model_fn, params, lower, upper, iv, key, steps=40, starts=8):
    """The largest amount by which a PGD search (signed gradient ascent inside the box, random
    starts) gets an output outside the bounds."""
    def excess(z):
        out = model_fn(params, z)
        return jnp.maximum(out - iv.upper, iv.lower - out).max()

    grad = jax.grad(excess)
    step = (upper - lower) / 10.0

    def search(z):
        def body(z, _):
            z = jnp.clip(z + step * jnp.sign(grad(z)), lower, upper)
            return z, excess(z)
        _, hist = jax.lax.scan(body, z, None, length=steps)
        return hist.max()

    z0 = lower[None] + jax.random.uniform(key, (starts,) + lower.shape) * (upper - lower)[None]
    return float(jax.jit(jax.vmap(search))(z0).max())


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_every_activation_is_sound_pgd_proof_and_tighter_than_ibp(name):
    model_fn, params = _net(ACTIVATIONS[name])
    x = jax.random.normal(jax.random.key(1), (2, 6))
    eps = jnp.asarray([[0.01], [0.3]], jnp.float32)
    lower, upper = x - eps, x + eps
    ibp = B.ibp(model_fn)(params, lower, upper)
    for method in ("crown_ibp", "crown"):
        iv = B.bounds(model_fn, method=method)(params, lower, upper)
        assert not bool(jnp.isnan(iv.lower).any() | jnp.isnan(iv.upper).any())
        t = jax.random.uniform(jax.random.key(2), (3000,) + lower.shape)
        corners = jax.random.bernoulli(jax.random.key(3), 0.5, (1000,) + lower.shape)
        pts = lower[None] + jnp.concatenate([t, corners.astype(t.dtype)]) * (upper - lower)[None]
        out = jax.vmap(lambda z: model_fn(params, z))(pts)
        tol = 1e-5 * (1.0 + float(jnp.abs(out).max()))
        assert bool((out >= iv.lower[None] - tol).all()), f"{name}/{method}: below the lower bound"
        assert bool((out <= iv.upper[None] + tol).all()), f"{name}/{method}: above the upper bound"
        assert _pgd_violation(model_fn, params, lower, upper, iv, jax.random.key(4)) <= tol
        ratio = float((iv.upper - iv.lower)[0].sum() / (ibp.upper - ibp.lower)[0].sum())
        assert ratio < 0.9, f"{name}/{method}: CROWN/IBP width ratio {ratio:.3f} at eps 0.01"
