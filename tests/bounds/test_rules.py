"""One soundness test per bound rule, and the call primitives the interpreter inlines.

``RULE_CASES`` has one entry per name in ``xjax.bounds.supported_primitives()`` (a test checks
that the two agree, so a new rule cannot land without its case), each a list of functions whose
jaxpr contains that primitive. Boxes are random, with centres in [-2, 2] and radii in [0, 1],
so some coordinates straddle 0 and others keep one sign (the poles of ``x ** -1`` and ``1 / x``
are inside some boxes). Points are drawn inside every box and at its corners; none may fall
outside the IBP or CROWN bounds.
"""

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

import xjax
from xjax._internal.jaxpr import call_body

B = xjax.bounds
SHAPE = (2, 4, 4, 2)
DN = ("NHWC", "HWIO", "NHWC")
_W = np.random.default_rng(7).normal(size=(32, 3)).astype(np.float32)
_K = np.random.default_rng(8).normal(size=(3, 3, 2, 3)).astype(np.float32) / 3


def flat(x):
    return x.reshape(x.shape[0], -1)


def window(op, init):
    return lambda x: jax.lax.reduce_window(x, init, op, (1, 2, 2, 1), (1, 1, 2, 1), "VALID")


RULE_CASES = {
    "abs": [jnp.abs],
    "acos": [lambda x: jnp.arccos(0.3 * x)],
    "add": [lambda x: x + 1.5, lambda x: x + jnp.flip(x, 1)],
    "asinh": [jnp.arcsinh],
    "atan": [jnp.arctan],
    "broadcast_in_dim": [lambda x: jnp.broadcast_to(x[:, None], (2, 3) + x.shape[1:])],
    "cbrt": [jnp.cbrt],
    "clamp": [lambda x: jax.lax.clamp(-0.5, x, 0.7)],
    "concatenate": [lambda x: jnp.concatenate([x, -x, 2 * x], axis=-1)],
    "conv_general_dilated": [
        lambda x: jax.lax.conv_general_dilated(x, jnp.asarray(_K), (1, 1), "SAME", dimension_numbers=DN),
        lambda x: jax.lax.conv_general_dilated(x, jnp.asarray(_K[..., :1, :2]), (2, 2), ((1, 0), (0, 1)),
                                               dimension_numbers=DN, feature_group_count=2)],
    "convert_element_type": [lambda x: x.astype(ml_dtypes.bfloat16).astype(jnp.float32)],
    "copy": [jnp.copy],
    "cummax": [lambda x: jax.lax.cummax(x, axis=1), lambda x: jax.lax.cummax(x, axis=2, reverse=True)],
    "cumsum": [lambda x: jnp.cumsum(x, axis=1)],
    "div": [lambda x: x / 3.0, lambda x: 1.0 / x, lambda x: x / jnp.flip(x, 1),
            lambda x: (x - 1.0) / (x * x + 0.5)],
    "dot_general": [lambda x: flat(x) @ jnp.asarray(_W),
                    lambda x: x.reshape(2, 4, 8) @ x.reshape(2, 8, 4)],
    "dynamic_slice": [lambda x: jax.lax.dynamic_slice(x, (0, 1, 2, 0), (2, 2, 2, 2))],
    "erf": [jax.scipy.special.erf],
    "erfc": [jax.scipy.special.erfc],
    "exp": [jnp.exp],
    "exp2": [jnp.exp2],
    "expm1": [jnp.expm1],
    "gather": [lambda x: flat(x)[:, jnp.asarray([0, 5, 5, 31])]],
    "integer_pow": [lambda x: x ** 3, lambda x: x ** 4, lambda x: x ** -1, lambda x: x ** -2,
                    lambda x: x ** -3, lambda x: x ** 0 + x, lambda x: x ** 1],
    "log": [lambda x: jnp.log(jnp.abs(x) + 0.1)],
    "log1p": [lambda x: jnp.log1p(jnp.abs(x))],
    "logistic": [jax.nn.sigmoid],
    "max": [jax.nn.relu, lambda x: jnp.maximum(x, jnp.flip(x, 1)), lambda x: jnp.maximum(-0.3, x)],
    "min": [lambda x: jnp.minimum(x, 0.4), lambda x: jnp.minimum(x, jnp.flip(x, 2))],
    "mul": [lambda x: x * -2.5, lambda x: x * jnp.flip(x, 1), lambda x: x * x],
    "neg": [lambda x: -x],
    "optimization_barrier": [lambda x: sum(jax.lax.optimization_barrier((x, 2 * x))),
                             lambda x: sum(jax.lax.optimization_barrier((x, jnp.ones(SHAPE))))],
    "pad": [lambda x: jnp.pad(x, ((0, 0), (1, 2), (0, 1), (0, 0)), constant_values=-1.0),
            lambda x: jax.lax.pad(x, 0.5, ((0, 0, 0), (-1, 1, 1), (0, 0, 0), (0, 0, 0)))],
    "reduce_max": [lambda x: x.max(axis=(1, 2))],
    "reduce_min": [lambda x: x.min(axis=-1)],
    "reduce_precision": [lambda x: jax.lax.reduce_precision(x, 5, 3)],
    "reduce_sum": [lambda x: x.sum(axis=(1, 3))],
    "reduce_window_max": [window(jax.lax.max, -jnp.inf),      # overlapping windows
                          lambda x: jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1),
                                                          (1, 2, 2, 1), "VALID")],  # a partition
    "reduce_window_min": [window(jax.lax.min, jnp.inf)],
    "reduce_window_sum": [window(jax.lax.add, 0.0)],
    "reshape": [lambda x: x.reshape(2, 8, 4)],
    "rev": [lambda x: jax.lax.rev(x, (1, 3))],
    "rsqrt": [lambda x: jax.lax.rsqrt(jnp.abs(x) + 0.05)],
    "select_n": [lambda x: jnp.where(jnp.arange(32).reshape(1, 4, 4, 2) % 3 == 0, x, -2 * x),
                 lambda x: jnp.where(x > 0.1, x, jnp.sin(0.7) * x)],
    "sinh": [jnp.sinh],
    "sign": [jnp.sign],
    "floor": [jnp.floor],
    "ceil": [jnp.ceil],
    "round": [jnp.round],
    "cummin": [lambda x: jax.lax.cummin(x, axis=1)],
    "ge": [lambda x: jnp.where(x >= 0.25, x, 0.1 * x), lambda x: (x >= jnp.flip(x, 1)).astype(jnp.float32)],
    "gt": [lambda x: jnp.where(x > -0.2, x, 0.3 * x), lambda x: jnp.where(x > jnp.flip(x, 2), x * x, -x)],
    "le": [lambda x: (x <= -0.5).astype(jnp.float32) + x],
    "lt": [lambda x: jnp.where(x < 0.5, jnp.exp(x), 2.0 - x)],
    "eq": [lambda x: (jnp.round(x) == 1.0).astype(jnp.float32) * x],
    "ne": [lambda x: (jnp.round(x) != 0.0).astype(jnp.float32) * 1.5],
    "and": [lambda x: ((x > 0) & (x < 1)).astype(jnp.float32) * x],
    "or": [lambda x: jnp.where((x < -1) | (x > 1), 1.0, x)],
    "not": [lambda x: jnp.where(~(x > 0), x, 2.0)],
    "slice": [lambda x: x[:, 1:3, ::2]],
    "sort": [lambda x: jnp.sort(x, axis=1)],
    "split": [lambda x: jnp.split(x, 2, axis=1)[1] - jnp.split(x, 2, axis=1)[0]],
    "sqrt": [lambda x: jnp.sqrt(jnp.abs(x))],
    "square": [jnp.square],
    "squeeze": [lambda x: jnp.squeeze(x[:, :1], axis=1)],
    "stack": [lambda x: jnp.stack([x, -x], axis=1)],
    "stop_gradient": [jax.lax.stop_gradient],
    "sub": [lambda x: x - 1.0, lambda x: 2.0 - x, lambda x: x - jnp.flip(x, 2)],
    "tanh": [jnp.tanh],
    "transpose": [lambda x: x.transpose(0, 3, 1, 2)],
}


def primitives_of(closed):
    names = set()
    for eqn in closed.jaxpr.eqns:
        names.add(eqn.primitive.name)
        body = call_body(eqn.primitive, eqn.params)
        if body is not None:
            names |= primitives_of(body)
    return names


def random_boxes(seed):
    k1, k2 = jax.random.split(jax.random.key(seed))
    centre = jax.random.uniform(k1, SHAPE, minval=-2.0, maxval=2.0)
    radius = jax.random.uniform(k2, SHAPE, minval=0.0, maxval=1.0)
    return centre - radius, centre + radius


def sample(lower, upper, key, n=192):
    """Uniform points, corners (random sign patterns) and the two extreme corners: [P, B, ...]."""
    k1, k2 = jax.random.split(key)
    t = jnp.concatenate([jax.random.uniform(k1, (n,) + lower.shape),
                         jax.random.bernoulli(k2, 0.5, (n,) + lower.shape).astype(lower.dtype),
                         jnp.zeros((1,) + lower.shape), jnp.ones((1,) + lower.shape)])
    return lower[None] + t * (upper - lower)[None]


def assert_inside(values, iv):
    """values: [P, B, K]; every one inside [lower, upper] up to float32 rounding of the bound."""
    values = np.asarray(values, np.float64)
    lo, hi = np.asarray(iv.lower, np.float64)[None], np.asarray(iv.upper, np.float64)[None]
    assert not np.isnan(values).any(), "the case leaves its domain; fix the case"
    assert not (np.isnan(lo).any() or np.isnan(hi).any()), "a bound is NaN"
    tol = 1e-5 * (1.0 + np.abs(np.where(np.isfinite(values), values, 0.0)))
    with np.errstate(invalid="ignore"):
        below = values < lo - tol
        above = values > hi + tol
    assert not below.any(), f"{below.sum()} point values below the lower bound"
    assert not above.any(), f"{above.sum()} point values above the upper bound"


def test_every_supported_primitive_has_a_case():
    assert set(RULE_CASES) == set(B.supported_primitives())


@pytest.mark.parametrize("name", sorted(RULE_CASES))
def test_rule_is_sound_on_random_boxes(name):
    for i, fn in enumerate(RULE_CASES[name]):
        model_fn = lambda p, x, fn=fn: flat(fn(x))
        assert name in primitives_of(jax.make_jaxpr(model_fn)(None, jnp.zeros(SHAPE))), \
            f"case {i} of {name!r} does not contain the primitive"
        lower, upper = random_boxes(1000 * i + len(name))
        values = jax.vmap(lambda z, f=model_fn: f(None, z))(sample(lower, upper, jax.random.key(i)))
        for method in ("ibp", "crown"):
            assert_inside(values, B.bounds(model_fn, method=method)(None, lower, upper))


def test_negative_powers_measured_cases():
    """x ** -1 on [1, 2] is [0.5, 1] (the old rule returned lower 1 > upper 0.5); on [-1, 1] it is
    unbounded (f(0.01) = 100; the old rule returned [-1, 1]); x ** -2 on [-2, -1] is [0.25, 1]."""
    cases = [(-1, 1.0, 2.0, 0.5, 1.0), (-1, -1.0, 1.0, -np.inf, np.inf), (-1, -2.0, -1.0, -1.0, -0.5),
             (-2, -2.0, -1.0, 0.25, 1.0), (-2, -1.0, 2.0, 0.25, np.inf), (-3, 0.0, 2.0, -np.inf, np.inf),
             (4, -1.0, 2.0, 0.0, 16.0), (2, -3.0, -1.0, 1.0, 9.0)]
    for y, lo, hi, want_lo, want_hi in cases:
        f = lambda p, x, y=y: x ** y
        for method in ("ibp", "crown"):
            iv = B.bounds(f, method=method)(None, jnp.full((1, 1), lo), jnp.full((1, 1), hi))
            np.testing.assert_allclose([iv.lower[0, 0], iv.upper[0, 0]], [want_lo, want_hi],
                                       rtol=1e-6, err_msg=f"x ** {y} on [{lo}, {hi}] by {method}")


@jax.custom_vjp
def _scaled_relu(x):
    return jax.nn.relu(x) * 2.0


_scaled_relu.defvjp(lambda x: (_scaled_relu(x), x), lambda x, g: (g * 2.0 * (x > 0),))


def _with_calls(p, x):
    """Call primitives with parameters and with box inputs: pjit, custom_jvp (relu),
    custom_vjp, checkpoint (remat), closed_call."""
    h = flat(x) @ jax.nn.relu(p["w"])                            # custom_jvp on params only
    h = jax.jit(lambda w, h: h @ w + 0.5)(p["v"], h)             # pjit with params and a box
    h = jax.checkpoint(lambda h: jnp.tanh(h) * 2.0)(h)           # remat
    return _scaled_relu(h) + jax.jit(jax.nn.relu)(h)             # custom_vjp, pjit(custom_jvp)


def test_call_primitives_with_parameters_are_bound_correctly():
    """The old interpreter bound call primitives with their raw equation parameters and raised
    ``KeyError: 'subfuns'``; both walkers (bounds and guided backprop) now share one binding."""
    w = jnp.ones((4, 3))
    f = lambda p, x: x.reshape(2, -1) @ jax.nn.relu(p)
    iv = B.ibp(f)(w, jnp.zeros((2, 2, 2)), jnp.ones((2, 2, 2)))
    np.testing.assert_allclose(iv.lower, 0.0)
    np.testing.assert_allclose(iv.upper, 4.0)                     # four inputs in [0, 1] times 1

    rng = np.random.default_rng(0)
    p = {"w": jnp.asarray(rng.normal(size=(32, 5)), jnp.float32),
         "v": jnp.asarray(rng.normal(size=(5, 3)) / 3, jnp.float32)}
    x = jax.random.uniform(jax.random.key(0), SHAPE)
    names = primitives_of(jax.make_jaxpr(_with_calls)(p, x))
    assert names & {"pjit", "jit"} and names & {"remat", "remat2", "checkpoint"}
    assert {"custom_jvp_call", "custom_vjp_call"} <= names
    want = _with_calls(p, x)
    for method in ("ibp", "crown", "alpha_crown"):
        iv = B.bounds(_with_calls, method=method)(p, x, x)        # a point box: the value itself
        np.testing.assert_allclose(iv.lower, want, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(iv.upper, want, rtol=1e-5, atol=1e-5)
        lower, upper = x - 0.05, x + 0.05
        pts = sample(lower, upper, jax.random.key(1), n=64)
        assert_inside(jax.vmap(lambda z: _with_calls(p, z))(pts),
                      B.bounds(_with_calls, method=method)(p, lower, upper))
    guided = xjax.attributions.rewrite_relu_gradients(_with_calls)
    np.testing.assert_allclose(guided(p, x), want, rtol=1e-6, atol=1e-6)


def _numpy_ibp(layers, lo, hi):
    """Interval arithmetic of a ReLU MLP in float64 (W = W+ + W-), an independent oracle."""
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    for i, (w, b) in enumerate(layers):
        w, b = np.asarray(w, np.float64), np.asarray(b, np.float64)
        wp, wn = np.maximum(w, 0), np.minimum(w, 0)
        lo, hi = lo @ wp + hi @ wn + b, hi @ wp + lo @ wn + b
        if i < len(layers) - 1:
            lo, hi = np.maximum(lo, 0), np.maximum(hi, 0)
    return lo, hi


def _numpy_crown_one_hidden(layers, lo, hi):
    """CROWN (Zhang et al. 2018, adaptive lower slope) of W2 relu(W1 x + b1) + b2 in float64.

    The pre-activation bounds of the only ReLU layer are exact interval bounds, so "crown" and
    "crown_ibp" must both equal this."""
    (w1, b1), (w2, b2) = [(np.asarray(w, np.float64), np.asarray(b, np.float64)) for w, b in layers]
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    l1 = lo @ np.maximum(w1, 0) + hi @ np.minimum(w1, 0) + b1      # pre-activation, no ReLU
    u1 = hi @ np.maximum(w1, 0) + lo @ np.minimum(w1, 0) + b1
    out_lo, out_hi = [], []
    for sign in (1.0, -1.0):
        rows = []
        for k in range(w2.shape[1]):
            lam = sign * w2[:, k]                                    # one per hidden unit
            res = []
            for n in range(lo.shape[0]):
                lb, ub = l1[n], u1[n]
                unstable = (lb < 0) & (ub > 0)
                width = np.where(unstable, ub - lb, 1.0)
                s_up = np.where(unstable, ub / width, (lb >= 0) * 1.0)
                t_up = np.where(unstable, -ub * lb / width, 0.0)
                s_lo = np.where(unstable, (ub > -lb) * 1.0, (lb >= 0) * 1.0)
                s = np.where(lam >= 0, s_lo, s_up)
                t = np.where(lam >= 0, 0.0, t_up)
                a = w1 @ (lam * s)                                    # coefficient on x
                c = lam @ (s * b1 + t) + sign * b2[k]
                res.append(c + np.sum(np.where(a > 0, a * lo[n], a * hi[n])))
            rows.append(res)
        bound = np.asarray(rows).T
        (out_lo if sign > 0 else out_hi).append(bound if sign > 0 else -bound)
    return out_lo[0], out_hi[0]


def test_named_factories_against_numpy_oracles():
    """ibp and crown/crown_ibp against float64 NumPy implementations written here."""
    rng = np.random.default_rng(3)
    layers = [(rng.normal(size=(6, 5)), rng.normal(size=5) * 0.3), (rng.normal(size=(5, 4)),
                                                                    rng.normal(size=4) * 0.3)]
    params = [(jnp.asarray(w, jnp.float32), jnp.asarray(b, jnp.float32)) for w, b in layers]

    def mlp(p, x):
        h = x
        for i, (w, b) in enumerate(p):
            h = h @ w + b[None]
            h = jax.nn.relu(h) if i < len(p) - 1 else h
        return h

    x = rng.uniform(-1, 1, size=(3, 6))
    lo, hi = x - 0.3, x + 0.3
    want_lo, want_hi = _numpy_ibp(layers, lo, hi)
    iv = B.ibp(mlp)(params, jnp.asarray(lo, jnp.float32), jnp.asarray(hi, jnp.float32))
    np.testing.assert_allclose(iv.lower, want_lo, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(iv.upper, want_hi, rtol=1e-5, atol=1e-5)
    assert len(jax.tree.leaves(iv)) == 2                   # Interval is a pytree of (lower, upper)
    want_lo, want_hi = _numpy_crown_one_hidden(layers, lo, hi)
    assert (want_hi - want_lo < _numpy_ibp(layers, lo, hi)[1] - _numpy_ibp(layers, lo, hi)[0]).any()
    for factory in (B.crown, B.crown_ibp):
        iv = factory(mlp)(params, jnp.asarray(lo, jnp.float32), jnp.asarray(hi, jnp.float32))
        # the library intersects CROWN with IBP; the oracle's CROWN alone may be looser
        ibp_lo, ibp_hi = _numpy_ibp(layers, lo, hi)
        np.testing.assert_allclose(iv.lower, np.maximum(want_lo, ibp_lo), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(iv.upper, np.minimum(want_hi, ibp_hi), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op", ["div", "mul"])
def test_scaling_a_huge_one_sided_interval_keeps_its_lower_end(op):
    """A product with, or a division by, a constant maps the interval's ends. The centre-radius
    form ``m - r`` rounded the lower end of ``[1e6, 1e15]`` (a layer norm's mean of squares
    under IBP deep in a ViT) to anywhere in ``+-3e7``; full CROWN then intersected that
    positive, unsound end with its own tight bounds and got empty intervals. Checked against
    float64 on 256 random boxes."""
    rng = np.random.default_rng(0)
    lo = rng.uniform(0.0, 1e7, (256, 1)).astype(np.float32)
    hi = rng.uniform(1e14, 1e15, (256, 1)).astype(np.float32)
    f = {"div": lambda p, x: x / 3.0, "mul": lambda p, x: x * 0.25}[op]
    scale = {"div": 1 / 3.0, "mul": 0.25}[op]
    iv = B.ibp(f)(None, jnp.asarray(lo), jnp.asarray(hi))
    want_lo = lo.astype(np.float64) * scale
    want_hi = hi.astype(np.float64) * scale
    ulp = np.finfo(np.float32).eps
    assert (np.asarray(iv.lower, np.float64) <= want_lo * (1 + ulp)).all()
    assert (np.asarray(iv.upper, np.float64) >= want_hi * (1 - ulp)).all()
    np.testing.assert_allclose(iv.lower, want_lo, rtol=1e-6)


@pytest.mark.parametrize("stride, padding, size", [(1, [(1, 1), (1, 1)], 6),
                                                   (2, [(0, 1), (1, 2)], 7),
                                                   (2, [(0, 0), (0, 0)], 7),
                                                   (1, [(2, 2), (2, 2)], 3)])
def test_zoo_depthwise_convolution_is_bounded_as_one_grouped_convolution(stride, padding, size):
    """The zoo's depthwise convolution (k^2 strided slices, fast on XLA:CPU) is bounded as the
    grouped convolution it equals: one tape equation instead of 3k^2 - 1 (EfficientNet-Lite0's
    EVA compiled 137 s before on this CPU), with the grouped convolution's bounds."""
    from xjax.bounds._ibp import trace
    from xjax.models._layers import depthwise_conv

    rng = np.random.default_rng(stride + size)
    kern = jnp.asarray(rng.normal(size=(3, 3, 1, 4)), jnp.float32)
    x = jnp.asarray(rng.uniform(size=(2, size, size, 4)), jnp.float32)
    slices = lambda p, z: depthwise_conv(z, p, stride=stride, padding=padding).reshape(2, -1)
    grouped = lambda p, z: jax.lax.conv_general_dilated(
        z, p, (stride, stride), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=4).reshape(2, -1)
    np.testing.assert_allclose(slices(kern, x), grouped(kern, x), rtol=1e-5, atol=1e-5)
    tape = trace(slices, kern, x - 0.1, x + 0.1)[0]
    assert [e.prim.name for e in tape.eqns] == ["conv_general_dilated", "reshape"]
    for method in ("ibp", "crown"):
        got = B.bounds(slices, method=method)(kern, x - 0.1, x + 0.1)
        want = B.bounds(grouped, method=method)(kern, x - 0.1, x + 0.1)
        np.testing.assert_array_equal(got.lower, want.lower)
        np.testing.assert_array_equal(got.upper, want.upper)
        assert_inside(jax.vmap(lambda z: slices(kern, z))(sample(x - 0.1, x + 0.1,
                                                                  jax.random.key(0), n=64)), got)


def test_a_namesake_of_the_zoo_depthwise_call_is_inlined_not_misread():
    """The call rule checks that the body is the zoo function's jaxpr at the parsed settings: a
    user function that happens to be called ``depthwise_conv_slices`` (here: pad, then scale)
    is walked as it is, and its bounds are its own."""
    import functools

    from xjax.bounds._ibp import trace

    @functools.partial(jax.jit, static_argnames=("stride", "padding"))
    def depthwise_conv_slices(x, kernel, *, stride, padding):
        return jnp.pad(x, ((0, 0),) + padding + ((0, 0),))[:, ::stride, ::stride] * 2.0

    f = lambda p, x: depthwise_conv_slices(x, p, stride=1, padding=((1, 1), (1, 1))).reshape(1, -1)
    k, lo, hi = jnp.ones((3, 3, 1, 2)), jnp.zeros((1, 4, 4, 2)), jnp.ones((1, 4, 4, 2))
    assert "conv_general_dilated" not in [e.prim.name for e in trace(f, k, lo, hi)[0].eqns]
    iv = B.ibp(f)(k, lo, hi)
    np.testing.assert_array_equal(iv.upper, f(k, hi))
    np.testing.assert_array_equal(iv.lower, f(k, lo))
