"""Soundness first: every output of every point of the box lies inside the bounds."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xjax

B = xjax.bounds
METHODS = ("ibp", "crown_ibp", "crown")
DN = ("NHWC", "HWIO", "NHWC")
TOL = 1e-4


def _points(lower, upper, key, n=256):
    """Corners (random sign patterns), the centre and uniform samples of each box: [P, B, ...]."""
    k1, k2 = jax.random.split(key)
    u = jax.random.uniform(k1, (n,) + lower.shape)
    corners = jax.random.bernoulli(k2, 0.5, (n,) + lower.shape).astype(lower.dtype)
    centre = ((lower + upper) / 2.0)[None]
    t = jnp.concatenate([u, corners, jnp.full((1,) + lower.shape, 0.5)])
    return jnp.concatenate([lower[None] + t * (upper - lower)[None], centre])


def _assert_sound(model_fn, params, lower, upper, iv, key, spec=None):
    pts = _points(lower, upper, key)
    out = jax.vmap(lambda z: model_fn(params, z))(pts)
    if spec is not None:
        out = jnp.einsum("sk,pbk->pbs", spec, out)
    scale = 1.0 + jnp.abs(out).max()
    assert bool((out >= iv.lower[None] - TOL * scale).all()), "a point is below the lower bound"
    assert bool((out <= iv.upper[None] + TOL * scale).all()), "a point is above the upper bound"


def _random_net(seed, depth, width, activation, conv, pool):
    rng = np.random.default_rng(seed)
    acts = {"relu": jax.nn.relu, "relu6": jax.nn.relu6, "tanh": jnp.tanh,
            "sigmoid": jax.nn.sigmoid, "groupsort": xjax.lipschitz.group_sort2,
            "clip": lambda z: jnp.clip(z, -0.5, 0.5)}
    act = acts[activation]
    c_in = 2
    params = {"convs": [], "dense": []}
    for _ in range(depth if conv else 0):
        c_out = width
        params["convs"].append((jnp.asarray(rng.normal(size=(3, 3, c_in, c_out)) / 3, jnp.float32),
                                jnp.asarray(rng.normal(size=(c_out,)) * 0.1, jnp.float32)))
        c_in = c_out
    feat = (4 if pool != "none" and conv else 8) ** 2 * c_in if conv else 8 * 8 * 2
    dims = [feat] + [width] * (0 if conv else depth) + [3]
    for a, b in zip(dims[:-1], dims[1:], strict=True):
        params["dense"].append((jnp.asarray(rng.normal(size=(a, b)) / np.sqrt(a), jnp.float32),
                                jnp.asarray(rng.normal(size=(b,)) * 0.1, jnp.float32)))

    def model_fn(p, x):
        h = x
        for k, b in p["convs"]:
            h = act(jax.lax.conv_general_dilated(h, k, (1, 1), "SAME", dimension_numbers=DN)
                    + b.reshape(1, 1, 1, -1))
        if conv and pool == "max":
            n, hh, ww, c = h.shape
            h = h.reshape(n, hh // 2, 2, ww // 2, 2, c).max(axis=(2, 4))
        elif conv and pool == "avg":
            h = jax.lax.reduce_window(h, 0.0, jax.lax.add, (1, 2, 2, 1), (1, 2, 2, 1), "VALID") / 4
        elif conv and pool == "l2":
            h = xjax.lipschitz.l2_norm_pool(h, (2, 2))
        h = h.reshape(h.shape[0], -1)
        for i, (w, b) in enumerate(p["dense"]):
            h = h @ w + b[None]
            if i < len(p["dense"]) - 1:
                h = act(h)
        return h

    return model_fn, params


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), depth=st.integers(1, 3), width=st.sampled_from([2, 4]),
       activation=st.sampled_from(["relu", "relu6", "tanh", "sigmoid", "groupsort", "clip"]),
       conv=st.booleans(), pool=st.sampled_from(["none", "max", "avg", "l2"]),
       eps=st.floats(0.0, 0.5))
def test_random_networks_are_bounded(seed, depth, width, activation, conv, pool, eps):
    model_fn, params = _random_net(seed, depth, width, activation, conv, pool)
    x = jax.random.uniform(jax.random.key(seed), (2, 8, 8, 2))
    lower, upper = x - eps, x + eps
    widths = {}
    for method in METHODS:
        iv = B.bounds(model_fn, method=method)(params, lower, upper)
        _assert_sound(model_fn, params, lower, upper, iv, jax.random.key(seed + 1))
        widths[method] = iv.upper - iv.lower
    # CROWN (intermediate bounds intersected with IBP) is never looser than IBP
    assert bool((widths["crown"] <= widths["ibp"] + 1e-4 * (1 + widths["ibp"])).all())


def test_margin_spec_is_sound_and_tighter_than_differences():
    model_fn, params = _random_net(3, 2, 4, "relu", True, "max")
    x = jax.random.uniform(jax.random.key(0), (2, 8, 8, 2))
    spec = jnp.asarray([[1.0, -1.0, 0.0], [0.0, -1.0, 1.0]])
    for method in METHODS:
        iv = B.bounds(model_fn, method=method)(params, x - 0.05, x + 0.05, spec=spec)
        assert iv.lower.shape == (2, 2)
        _assert_sound(model_fn, params, x - 0.05, x + 0.05, iv, jax.random.key(1), spec=spec)
    out = B.bounds(model_fn, method="crown")(params, x - 0.05, x + 0.05)
    naive_lower = out.lower[:, 0] - out.upper[:, 1]
    assert bool((iv.lower[:, 0] >= naive_lower - 1e-5).all())
    # per-example specs (e.g. margins against each example's own class)
    per = jnp.stack([spec, -spec])
    iv2 = B.bounds(model_fn)(params, x - 0.05, x + 0.05, spec=per)
    np.testing.assert_allclose(iv2.lower[0], iv.lower[0], rtol=1e-5, atol=1e-5)


def test_degenerate_box_gives_the_value_and_affine_is_exact():
    model_fn, params = _random_net(5, 2, 4, "tanh", True, "avg")
    x = jax.random.uniform(jax.random.key(2), (3, 8, 8, 2))
    for method in METHODS:
        iv = B.bounds(model_fn, method=method)(params, x, x)
        np.testing.assert_allclose(iv.lower, model_fn(params, x), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(iv.upper, model_fn(params, x), rtol=1e-5, atol=1e-5)
    w = jnp.asarray(np.random.default_rng(0).normal(size=(8 * 8 * 2, 3)), jnp.float32)
    affine = lambda p, x: x.reshape(x.shape[0], -1) @ p * 2.0 - 1.0
    iv = B.bounds(affine, method="crown")(w, x - 0.1, x + 0.1)
    exact_radius = 0.1 * 2.0 * jnp.abs(w).sum(0)
    np.testing.assert_allclose((iv.upper - iv.lower) / 2, exact_radius[None].repeat(3, 0),
                               rtol=1e-5)
    np.testing.assert_allclose((iv.upper + iv.lower) / 2, affine(w, x), rtol=1e-5, atol=1e-5)


def test_hand_computed_relu_network():
    """f(x) = relu(x1 + x2) - relu(x1 - x2) on [-1, 1]^2.

    IBP: relu(a) in [0, 2] for both -> [-2, 2]. The true range is [-2, 2] as well (x = (1, 1)
    gives 2, x = (1, -1) gives -2), so every method must return exactly that interval at most;
    on [0, 1] x [0, 1]: relu(x1 + x2) in [0, 2], relu(x1 - x2) in [0, 1] -> IBP [-1, 2]; true
    range [-1, 2] ... and x1 + x2 >= 0 makes the first ReLU stable (identity)."""
    w = jnp.asarray([[1.0, 1.0], [1.0, -1.0]])
    f = lambda p, x: (jax.nn.relu(x @ p[:, :1]) - jax.nn.relu(x @ p[:, 1:]))
    lo, hi = jnp.asarray([[-1.0, -1.0]]), jnp.asarray([[1.0, 1.0]])
    iv = B.bounds(f, method="ibp")(w, lo, hi)
    np.testing.assert_allclose([iv.lower[0, 0], iv.upper[0, 0]], [-2.0, 2.0])
    iv = B.bounds(f, method="ibp")(w, jnp.zeros((1, 2)), jnp.ones((1, 2)))
    np.testing.assert_allclose([iv.lower[0, 0], iv.upper[0, 0]], [-1.0, 2.0])
    # CROWN on [0, 1]^2: relu(x1 + x2) is stable so it is x1 + x2 exactly; relu(x1 - x2) with
    # pre-activation in [-1, 1] has upper relaxation (z + 1) / 2, so
    # f >= x1 + x2 - (x1 - x2 + 1) / 2 = x1 / 2 + 3 x2 / 2 - 1 / 2 >= -1/2 on the box.
    iv = B.bounds(f, method="crown")(w, jnp.zeros((1, 2)), jnp.ones((1, 2)))
    np.testing.assert_allclose(iv.lower[0, 0], -0.5, atol=1e-6)


def test_jit_vmap_and_lipschitz_export():
    module = xjax.lipschitz.lipschitz_cnn(input_shape=(8, 8, 1), width=2, hidden=4,
                                          num_classes=3, key=jax.random.key(0))
    model_fn, params = xjax.models.from_nnx(xjax.lipschitz.export(module))
    x = jax.random.uniform(jax.random.key(1), (2, 8, 8, 1))
    g = B.bounds(model_fn, method="crown_ibp")
    eager = g(params, x - 0.02, x + 0.02)
    jitted = jax.jit(g)(params, x - 0.02, x + 0.02)
    np.testing.assert_allclose(jitted.lower, eager.lower, rtol=1e-4, atol=1e-5)
    # vmap over a stack of boxes (each a batch of one image)
    eps = jnp.asarray([0.0, 0.01, 0.05])
    stacked = jax.vmap(lambda e: g(params, x[:1] - e, x[:1] + e))(eps)
    assert stacked.lower.shape == (3, 1, 3)
    assert bool((jnp.diff(stacked.upper - stacked.lower, axis=0) >= -1e-6).all())   # nested boxes
    _assert_sound(model_fn, params, x - 0.02, x + 0.02, eager, jax.random.key(2))


def test_softmax_sqrt_and_bad_input():
    w = jnp.asarray(np.random.default_rng(1).normal(size=(4, 3)), jnp.float32)
    f = lambda p, x: jax.nn.softmax(jnp.sqrt(x * x + 1.0) @ p)
    x = jax.random.normal(jax.random.key(3), (2, 4))
    for method in METHODS:
        iv = B.bounds(f, method=method)(w, x - 0.1, x + 0.1)
        _assert_sound(f, w, x - 0.1, x + 0.1, iv, jax.random.key(4))
        assert bool((iv.lower >= 0).all())             # exp > 0 over a positive sum
    with pytest.raises(ValueError, match="lower > upper"):
        B.bounds(f)(w, x + 0.1, x - 0.1)
    with pytest.raises(ValueError, match="same shape"):
        B.bounds(f)(w, x, x[:1])
    with pytest.raises(NotImplementedError, match="'sin'"):
        B.bounds(lambda p, x: jnp.sin(x @ p))(w, x, x + 0.1)
    with pytest.raises(ValueError, match="method"):
        B.bounds(f, method="alpha")


def test_alpha_crown_is_sound_and_never_looser_than_crown():
    model_fn, params = _random_net(11, 2, 4, "relu", False, "none")
    x = jax.random.uniform(jax.random.key(5), (2, 8, 8, 2))
    lower, upper = x - 0.05, x + 0.05
    crown = B.bounds(model_fn, method="crown")(params, lower, upper)
    alpha = jax.jit(B.bounds(model_fn, method="alpha_crown", alpha_steps=10))(params, lower, upper)
    _assert_sound(model_fn, params, lower, upper, alpha, jax.random.key(6))
    assert bool((alpha.lower >= crown.lower - 1e-5).all() and (alpha.upper <= crown.upper + 1e-5)
                .all())
    assert float((alpha.upper - alpha.lower).sum()) < float((crown.upper - crown.lower).sum())


def test_lipschitz_mode_on_an_exported_lipschitz_network():
    module = xjax.lipschitz.lipschitz_cnn(input_shape=(8, 8, 1), width=2, hidden=4,
                                          num_classes=3, key=jax.random.key(2))
    model_fn, params = xjax.models.from_nnx(xjax.lipschitz.export(module))
    x = jax.random.uniform(jax.random.key(3), (2, 8, 8, 1))
    spec = jnp.asarray([[1.0, -1.0, 0.0]])
    for s in (None, spec):
        iv = B.bounds(model_fn, method="lipschitz")(params, x - 0.1, x + 0.1, spec=s)
        _assert_sound(model_fn, params, x - 0.1, x + 0.1, iv, jax.random.key(4), spec=s)
    # the l2 radius of the box is 0.1 sqrt(64): every logit interval has half-width 0.8
    iv = B.bounds(model_fn, method="lipschitz")(params, x - 0.1, x + 0.1)
    np.testing.assert_allclose((iv.upper - iv.lower) / 2, 0.8, rtol=1e-5)


def test_zoo_primitive_coverage_vit():
    """ViT-Tiny's primitives (layer norm, attention: Q K^T and softmax, GELU) are covered: IBP
    runs through all twelve blocks without NaN and stays sound (it is infinite there: layer
    norm's variance and the attention products, which is allowed)."""
    model = xjax.models.vit_tiny(num_classes=3, image_size=16, patch_size=8)
    x = jax.random.uniform(jax.random.key(0), (1, 16, 16, 3))
    iv = B.bounds(model.model_fn, method="ibp")(model.params, x - 1e-4, x + 1e-4)
    assert not bool(jnp.isnan(iv.lower).any() | jnp.isnan(iv.upper).any())
    _assert_sound(model.model_fn, model.params, x - 1e-4, x + 1e-4, iv, jax.random.key(1))


def test_two_block_vit_full_crown_certifies_where_ibp_is_vacuous():
    """A two-block ViT (width 16, 2 heads) around a real photo, radius 1e-4: IBP and CROWN-IBP
    are vacuous (measured +-3.4e17 and +-1.4e17 with GELU as one function; +-1.3e18 and
    +-5.1e17 before; infinite before softmax had its exponential-reciprocal form); full CROWN
    certifies the top-2 margin (measured [0.352, 0.368] around 0.360, unchanged by either).
    Before, full CROWN was infinite from the second block on: its relaxations of max and
    softmax read IBP's output intervals (1e34), and IBP's division of a huge one-sided interval
    by a constant rounded its lower end above the true value, so tight and IBP bounds
    intersected to empty intervals. Eager (op by op), as a user bounding one box would run
    it."""
    from xjax.models._bridge import init_module, model_from_nnx
    from xjax.models._vit import VisionTransformer

    mod = init_module(lambda rngs: VisionTransformer(image_size=16, patch_size=8, dim=16,
                                                     heads=2, mlp=32, depth=2, num_classes=5,
                                                     rngs=rngs), jax.random.key(0))
    m = model_from_nnx(mod, input_shape=(16, 16, 3))
    photo = xjax.data.sample_photos(["chelsea"])[0].image
    x = jnp.asarray(xjax.data.resize_center_crop(photo, 16)[None])
    logits = m.model_fn(m.params, x)[0]
    top2 = jnp.argsort(logits)[-2:]
    spec = jnp.zeros((1, 5)).at[0, top2[1]].set(1.0).at[0, top2[0]].add(-1.0)
    margin = float((spec @ logits)[0])
    lo, hi = x - 1e-4, x + 1e-4
    for method in ("ibp", "crown_ibp"):
        iv = B.bounds(m.model_fn, method=method)(m.params, lo, hi, spec)
        assert float(iv.lower[0, 0]) < -1e6 and float(iv.upper[0, 0]) > 1e6, method
    iv = B.bounds(m.model_fn, method="crown")(m.params, lo, hi, spec)
    _assert_sound(m.model_fn, m.params, lo, hi, iv, jax.random.key(2), spec=spec)
    assert 0.0 < float(iv.lower[0, 0]) <= margin <= float(iv.upper[0, 0])
    assert float(iv.upper[0, 0] - iv.lower[0, 0]) < 0.1 * margin


def test_a_batch_of_boxes_is_bounded_box_by_box_even_when_the_model_moves_the_batch_axis():
    """A ViT's attention moves the batch away from axis 0 (its scores are ``[1, B, heads, T,
    T]``), which CROWN's per-example contractions assumed: three boxes at once raised a shape
    error (CROWN-IBP in McCormick's transpose, full CROWN in the identity spec's reshape).
    Every box of a batch is now bounded on its own under vmap, one path for CROWN's whole family
    (full CROWN's row chunks shrink by the number of boxes: the chunk test below): a batch gives
    each box's bounds alone, with one spec per box or one for all, and stays sound. (Measured
    once, op by op: full CROWN within 2e-6 of each box alone, alpha-CROWN within 7e-5, its Adam
    steps rounding differently under vmap.)"""
    from xjax.models._bridge import init_module, model_from_nnx
    from xjax.models._vit import VisionTransformer

    mod = init_module(lambda rngs: VisionTransformer(image_size=16, patch_size=8, dim=16,
                                                     heads=2, mlp=32, depth=1, num_classes=5,
                                                     rngs=rngs), jax.random.key(0))
    m = model_from_nnx(mod, input_shape=(16, 16, 3))
    x = jax.random.uniform(jax.random.key(1), (3, 16, 16, 3))
    lo, hi = x - 1e-3, x + 1e-3
    specs = jax.random.normal(jax.random.key(2), (3, 2, 5))
    f = jax.jit(B.bounds(m.model_fn, method="crown_ibp"))
    batch, shared = f(m.params, lo, hi, specs), f(m.params, lo, hi, specs[0])
    assert batch.lower.shape == shared.lower.shape == (3, 2)
    scale = 1e-5 * float(jnp.abs(batch.lower).max() + jnp.abs(batch.upper).max())
    for i in range(3):                                  # float32 sums, reassociated by XLA
        alone = f(m.params, lo[i:i + 1], hi[i:i + 1], specs[i])
        np.testing.assert_allclose(batch.lower[i], alone.lower[0], rtol=1e-5, atol=scale)
        np.testing.assert_allclose(batch.upper[i], alone.upper[0], rtol=1e-5, atol=scale)
    np.testing.assert_allclose(shared.lower[0], batch.lower[0], rtol=1e-5, atol=scale)
    pts = _points(lo, hi, jax.random.key(3))
    out = jnp.einsum("bsk,pbk->pbs", specs, jax.vmap(lambda z: m.model_fn(m.params, z))(pts))
    assert bool((out >= batch.lower[None] - 1e-4).all() & (out <= batch.upper[None] + 1e-4).all())
    with pytest.raises(ValueError, match="one"):
        f(m.params, lo, hi, specs[:2])


def test_a_model_with_a_fixed_batch_size_is_bounded_as_a_batch_or_refused():
    """A model that fixes its batch size (``reshape(2, ...)``) cannot be traced on one box; it is
    bounded as a batch, as before, when the batch stays on axis 0 (same bounds as the written-out
    per-box model, sound), and refused with a ValueError when it also moves the batch away
    (CROWN's contractions would mix boxes). Every method refuses a model that does not give one
    row per box."""
    w = jax.random.normal(jax.random.key(0), (12, 3))
    fixed = lambda p, x: jnp.tanh(x.reshape(2, 12)) @ p
    free = lambda p, x: jnp.tanh(x.reshape(x.shape[0], 12)) @ p
    moved = lambda p, x: jnp.tanh(x.reshape(2, 4, 3).transpose(1, 0, 2)).transpose(1, 0, 2
                                                                                 ).reshape(2, 12) @ p
    x = jax.random.normal(jax.random.key(1), (2, 4, 3))
    lo, hi = x - 0.1, x + 0.1
    for method in ("crown_ibp", "crown"):
        a, b = B.bounds(fixed, method=method)(w, lo, hi), B.bounds(free, method=method)(w, lo, hi)
        np.testing.assert_allclose(a.lower, b.lower, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(a.upper, b.upper, rtol=1e-5, atol=1e-6)
        _assert_sound(fixed, w, lo, hi, a, jax.random.key(2))
        with pytest.raises(ValueError, match="moves the batch"):
            B.bounds(moved, method=method)(w, lo, hi)
    for method in ("ibp", "crown_ibp", "crown"):
        with pytest.raises(ValueError, match="one row per box"):
            B.bounds(lambda p, z: free(p, z).sum(0, keepdims=True), method=method)(w, lo, hi)


PRIMITIVE_CASES = {
    "max_pool": lambda x: jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1),
                                                (1, 2, 2, 1), "VALID"),
    "transpose_slice_pad": lambda x: jnp.pad(x.transpose(0, 2, 1, 3)[:, 1:5, :3], ((0, 0), (1, 1),
                                                                                  (0, 2), (0, 0))),
    "concatenate": lambda x: jnp.concatenate([x, -x, 2 * x], axis=-1),
    "exp_log": lambda x: jnp.log(jnp.exp(x) + 1.0),
    "softmax": lambda x: jax.nn.softmax(x.reshape(x.shape[0], -1)),
    "abs_cube": lambda x: jnp.abs(x) + x ** 3,
    "sub_div": lambda x: (x - x[:, ::-1]) / (x * x + 1.0),
    "cumsum_sort": lambda x: jnp.sort(jnp.cumsum(x, axis=1), axis=-1),
    "mean_square_sqrt": lambda x: jnp.sqrt(jnp.mean(jnp.square(x), axis=(1, 2))),
    "sigmoid_tanh_relu6": lambda x: jax.nn.relu6(6 * jax.nn.sigmoid(x)) * jnp.tanh(x),
    "depthwise_conv_batchnorm": lambda x: jax.lax.conv_general_dilated(
        x, jnp.ones((3, 3, 1, 2)) * 0.3, (2, 2), ((1, 0), (0, 1)), dimension_numbers=DN,
        feature_group_count=2) * 1.5 + 0.25,
}


@pytest.mark.parametrize("name", sorted(PRIMITIVE_CASES))
def test_primitive_rules_are_sound(name):
    fn = PRIMITIVE_CASES[name]
    model_fn = lambda p, x: fn(x).reshape(x.shape[0], -1)
    k1, k2 = jax.random.split(jax.random.key(len(name)))
    a = jax.random.uniform(k1, (2, 6, 6, 2), minval=-2.0, maxval=2.0)
    b = jax.random.uniform(k2, (2, 6, 6, 2), minval=-2.0, maxval=2.0)
    lower, upper = jnp.minimum(a, b) * 0.3, jnp.maximum(a, b) * 0.3
    for method in ("ibp", "crown"):
        iv = B.bounds(model_fn, method=method)(None, lower, upper)
        _assert_sound(model_fn, None, lower, upper, iv, jax.random.key(3))


def _softmax_written_out(z, shift):
    """``exp(z - shift) / sum(exp(z - shift))`` over the last axis, spelled as jax.nn.softmax."""
    e = jnp.exp(z - shift)
    return e / e.sum(-1, keepdims=True)


def test_softmax_is_bounded_in_exponential_reciprocal_form():
    """jax.nn.softmax is recognised on the tape and bounded as ``1 / (1 + sum_{j != i}
    exp(x_j - x_i))``: its interval is the closed form (float64 NumPy, below), no maximum and no
    product of two bounded tensors is left, and every method is narrower than the same softmax
    written so that it is not recognised (a product with a reciprocal). Measured on this net
    (mean widths, recognised / not): IBP 0.216 / 0.505, CROWN-IBP 0.212 / 0.393, CROWN
    0.191 / 0.322, alpha-CROWN 0.178 / 0.258."""
    from xjax.bounds._ibp import trace

    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(3, 5)), jnp.float32)
    lo, hi = x - jnp.asarray(rng.uniform(0, 0.6, (3, 5)), jnp.float32), x + 0.3
    iv = B.bounds(lambda p, z: jax.nn.softmax(z, axis=-1), method="ibp")(None, lo, hi)
    l64, u64 = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    want_lo, want_hi = np.empty_like(l64), np.empty_like(l64)
    for i in range(5):
        o = [j for j in range(5) if j != i]
        want_lo[:, i] = 1.0 / (1.0 + np.exp(u64[:, o] - l64[:, [i]]).sum(-1))
        want_hi[:, i] = 1.0 / (1.0 + np.exp(l64[:, o] - u64[:, [i]]).sum(-1))
    np.testing.assert_allclose(iv.lower, want_lo, rtol=1e-5)
    np.testing.assert_allclose(iv.upper, want_hi, rtol=1e-5)

    w = jnp.asarray(rng.normal(size=(4, 5)), jnp.float32)
    recognised = lambda p, z: jax.nn.softmax(jnp.tanh(z @ p), axis=-1)

    def hidden(p, z):
        h = jnp.tanh(z @ p)
        e = jnp.exp(h - jax.lax.stop_gradient(h.max(-1, keepdims=True)))
        return e * (1.0 / e.sum(-1, keepdims=True))

    z = jax.random.normal(jax.random.key(3), (2, 4))
    tape, _, _ = trace(recognised, w, z - 0.3, z + 0.3)
    names = [e.prim.name for e in tape.eqns]
    assert "reduce_max" not in names and "div" not in names and names[-1] == "integer_pow"
    assert not any(e.prim.name == "mul" and all(map(xjax.bounds._interval.is_node, e.inputs))
                   for e in tape.eqns)
    for method in ("ibp", "crown_ibp", "crown", "alpha_crown"):
        a = B.bounds(recognised, method=method)(w, z - 0.3, z + 0.3)
        b = B.bounds(hidden, method=method)(w, z - 0.3, z + 0.3)
        _assert_sound(recognised, w, z - 0.3, z + 0.3, a, jax.random.key(4))
        assert float((a.upper - a.lower).mean()) < 0.75 * float((b.upper - b.lower).mean()), method


def _point_and_random_box(model_fn, x, *, atol):
    """IBP and CROWN of ``model_fn`` (no parameters): a point box gives the function's value, a
    box of radius 0.4 is sound; ``[(method, bound on that box)]``."""
    out = []
    for method in ("ibp", "crown"):
        iv = B.bounds(model_fn, method=method)(None, x, x)
        np.testing.assert_allclose(iv.lower, model_fn(None, x), rtol=2e-6, atol=atol)
        np.testing.assert_allclose(iv.upper, model_fn(None, x), rtol=2e-6, atol=atol)
        iv = B.bounds(model_fn, method=method)(None, x - 0.4, x + 0.4)
        _assert_sound(model_fn, None, x - 0.4, x + 0.4, iv, jax.random.key(8))
        out.append((method, iv))
    return out


@pytest.mark.parametrize("case", ["axis1", "shift_varies", "numerator_reused", "reshape_keepdims",
                                  "one_element"])
def test_softmax_form_only_where_the_shift_cancels(case):
    """The rewrite holds only when the quotient is a softmax whatever the shift: a shift that
    varies along the summed axis (``exp(z - reversed z)``) is not rewritten, a numerator read
    elsewhere keeps its own value, another axis and a keepdims spelled as a reshape are found,
    and an axis of one element (no other score) gives exactly 1. A point box must give the
    function's value, and random boxes stay sound."""
    fns = {
        "axis1": lambda z: jax.nn.softmax(z.reshape(z.shape[0], 3, 4), axis=1),
        "shift_varies": lambda z: _softmax_written_out(z, z[:, ::-1]),
        "numerator_reused": lambda z: _softmax_written_out(z, 0.5) + jnp.exp(z - 0.5),
        "reshape_keepdims": lambda z: (lambda e: e / e.sum(-1).reshape(-1, 1))(
            jnp.exp(z - jax.lax.stop_gradient(z.max(-1, keepdims=True)))),
        "one_element": lambda z: jax.nn.softmax(z[..., None], axis=-1),     # exactly 1
    }
    model_fn = lambda p, z: fns[case](z).reshape(z.shape[0], -1)
    x = jax.random.normal(jax.random.key(7), (2, 12))
    for method, iv in _point_and_random_box(model_fn, x, atol=1e-7):
        if case == "one_element":
            assert bool((iv.lower == 1.0).all() and (iv.upper == 1.0).all()), method


def test_softmax_over_the_pairs_budget_keeps_the_reciprocal_lowering(monkeypatch):
    """Above SOFTMAX_PAIRS_BUDGET differences per example the softmax is bounded as written (a
    product with a reciprocal), still soundly; at the budget it takes the new form, and with
    sound_float the new form then carries the model's rounding (``float_softmax``)."""
    from xjax.bounds import _ibp

    f = lambda p, z: jax.nn.softmax(z, axis=-1)
    x = jax.random.normal(jax.random.key(9), (2, 6))
    for budget, form, sound_form in ((6 * 5, "integer_pow", "float_softmax"),
                                     (6 * 5 - 1, "mul", "mul")):
        monkeypatch.setattr(_ibp, "SOFTMAX_PAIRS_BUDGET", budget)
        tape, _, _ = _ibp.trace(f, None, x - 0.2, x + 0.2)
        assert tape.eqns[-1].prim.name == form, budget
        tape, _, _ = _ibp.trace(f, None, x - 0.2, x + 0.2, sound=True)
        assert tape.eqns[-1].prim.name == sound_form, budget
        iv = B.bounds(f, method="crown")(None, x - 0.2, x + 0.2)
        _assert_sound(f, None, x - 0.2, x + 0.2, iv, jax.random.key(10))


def test_sound_float_softmax_is_rebuilt_with_the_models_rounding():
    """With sound_float, ``jax.nn.softmax`` (its shift the row maximum) takes the
    exponential-reciprocal form plus a bound of its own float evaluation, ``(70 + 3 n) eps``
    (derived in ``float_softmax``); a shift that is not the maximum (the mean) has no such
    bound and stays as written. Point boxes of scores spread from 0.01 to 100 (differences far
    past exp's float32 overflow at 88.7: the differences are capped at 80, and exp and sums of
    terms >= 0 keep their float floors) contain the float32 and float64 softmax, at most
    ``(70 + 3 n) eps`` plus padding wide (measured 355 eps; before the cap and floors, rows
    with differences past 88.7 were infinite or [0, 1]). On a box of radius 0.1, CROWN with
    sound_float is within 2e-4 of CROWN without it and contains its bounds."""
    from xjax.bounds import _ibp

    f = lambda p, z: jax.nn.softmax(z, axis=-1)
    x = jax.random.normal(jax.random.key(9), (2, 7))
    tape, _, _ = _ibp.trace(f, None, x - 0.2, x + 0.2, sound=True)
    assert tape.eqns[-1].prim.name == "float_softmax"
    by_mean = lambda p, z: _softmax_written_out(z, jax.lax.stop_gradient(
        z.mean(-1, keepdims=True)))
    tape, _, _ = _ibp.trace(by_mean, None, x - 0.2, x + 0.2, sound=True)
    assert "float_softmax" not in {e.prim.name for e in tape.eqns}
    tape, _, _ = _ibp.trace(by_mean, None, x - 0.2, x + 0.2)
    assert tape.eqns[-1].prim.name == "integer_pow"            # rebuilt without sound_float
    # a ViT's attention takes the maximum of the scores before a transpose of them: found too
    from xjax.models._bridge import init_module, model_from_nnx
    from xjax.models._vit import VisionTransformer

    mod = init_module(lambda rngs: VisionTransformer(image_size=16, patch_size=8, dim=16,
                                                     heads=2, mlp=32, depth=1, num_classes=5,
                                                     rngs=rngs), jax.random.key(0))
    vit = model_from_nnx(mod, input_shape=(16, 16, 3))
    img = jax.random.uniform(jax.random.key(1), (1, 16, 16, 3))
    tape, _, _ = _ibp.trace(vit.model_fn, vit.params, img - 1e-3, img + 1e-3, sound=True)
    assert "float_softmax" in {e.prim.name for e in tape.eqns}

    rng = np.random.default_rng(0)
    scale = np.array([0.01, 1, 3, 10, 30, 60, 100])[np.arange(112) % 7][:, None]
    z = jnp.asarray(rng.normal(size=(112, 7)) * scale, jnp.float32)
    z64 = np.asarray(z, np.float64)
    e = np.exp(z64 - z64.max(-1, keepdims=True))
    eps = float(np.finfo(np.float32).eps)
    for method in ("ibp", "crown"):
        iv = jax.jit(B.bounds(f, method=method, sound_float=True))(None, z, z)
        low, up = np.asarray(iv.lower, np.float64), np.asarray(iv.upper, np.float64)
        for v in (np.asarray(f(None, z), np.float64), e / e.sum(-1, keepdims=True)):
            assert bool(((low <= v) & (v <= up)).all()), method
        assert float((up - low).max()) < 4 * (70 + 3 * 7) * eps, method
    lo, hi = x - 0.1, x + 0.1
    plain = jax.jit(B.bounds(f, method="crown"))(None, lo, hi)
    sound = jax.jit(B.bounds(f, method="crown", sound_float=True))(None, lo, hi)
    assert bool((sound.lower <= plain.lower).all() & (sound.upper >= plain.upper).all())
    assert float(jnp.maximum(plain.lower - sound.lower, sound.upper - plain.upper).max()) < 2e-4
    _assert_sound(f, None, lo, hi, sound, jax.random.key(11))


_GELUS = {"gelu": lambda z: jax.nn.gelu(z, approximate=False), "gelu_tanh": jax.nn.gelu}


@pytest.mark.parametrize("name", sorted(_GELUS))
def test_gelu_is_bounded_as_one_function(name):
    """jax.nn.gelu (erf or tanh form) is recognised on the tape as one elementwise function (with and
    without sound_float) and relaxed whole (tangent and secant lines on its curvature pieces) instead of
    McCormick planes of ``x`` times a function of ``x``: its IBP interval is the range (float64 NumPy on a
    dense grid; before GELU's minimum was a cut of its pieces, intervals around it got a lower end up to
    0.12 below it), and IBP, CROWN-IBP and CROWN are narrower than the same GELU written so that it is not
    recognised. Measured on this net (mean widths, recognised / not, erf form): IBP 15.4 / 23.3, CROWN-IBP
    and CROWN 11.4 / 18.4, alpha-CROWN 10.3 / 14.4 (measured once; not rerun here, its compile is the
    slowest part)."""
    from scipy import special

    from xjax.bounds._ibp import trace

    gelu = _GELUS[name]
    if name == "gelu":
        ref = lambda v: v * special.ndtr(v)
        hidden = lambda z: z * (0.5 + 0.5 * jax.lax.erf(z / np.sqrt(2.0)))
    else:
        k = np.sqrt(2 / np.pi)
        ref = lambda v: 0.5 * v * (1 + np.tanh(k * (v + 0.044715 * v ** 3)))
        hidden = lambda z: z * (0.5 + 0.5 * jnp.tanh(np.float32(k) * (z + 0.044715 * z * z * z)))
    rng = np.random.default_rng(2)
    c = rng.normal(0, 2.5, 64)
    w = np.exp(rng.uniform(np.log(1e-3), np.log(8), 64))
    lo = jnp.asarray(np.concatenate([c - w / 2, [-3.0, -1.5, 0.5, -0.1]]), jnp.float32)[None]
    hi = jnp.asarray(np.concatenate([c + w / 2, [3.0, -1.2, 2.0, 0.1]]), jnp.float32)[None]
    iv = B.bounds(lambda p, z: gelu(z), method="ibp")(None, lo, hi)
    grid = np.asarray(lo, np.float64) + np.linspace(0, 1, 20001)[:, None, None] * np.asarray(
        hi - lo, np.float64)
    vals = ref(grid)
    tol = 1e-5 * (1 + np.abs(vals).max(0))
    assert (np.asarray(iv.lower) <= vals.min(0) + tol).all()
    assert (np.asarray(iv.upper) >= vals.max(0) - tol).all()
    np.testing.assert_allclose(iv.lower, vals.min(0), atol=2e-4)
    np.testing.assert_allclose(iv.upper, vals.max(0), atol=2e-4)

    rng = np.random.default_rng(0)
    p = (jnp.asarray(rng.normal(size=(6, 8)) / 2, jnp.float32),
         jnp.asarray(rng.normal(size=(8, 3)), jnp.float32))
    recognised = lambda p, z: gelu(3 * z @ p[0]) @ p[1]
    written = lambda p, z: hidden(3 * z @ p[0]) @ p[1]
    x = jax.random.normal(jax.random.key(1), (2, 6))
    tape, _, _ = trace(recognised, p, x - 0.3, x + 0.3)
    names = [e.prim.name for e in tape.eqns]
    assert name in names and not {"erfc", "tanh", "integer_pow"} & set(names)
    assert not any(e.prim.name == "mul" and all(map(xjax.bounds._interval.is_node, e.inputs))
                   for e in tape.eqns)
    tape, _, _ = trace(written, p, x - 0.3, x + 0.3)
    assert name not in [e.prim.name for e in tape.eqns]
    # sound_float rebuilds it too, with the parts' rounding bound (36 eps |x|): point boxes
    # from -40 to 40 (and |x| down to 1e-30) contain the float32 evaluation and the float64
    # value, whose distance is at most 0.95 eps |x| (erf form) and 1.55 eps |x| (tanh form)
    tape, _, _ = trace(recognised, p, x - 0.3, x + 0.3, sound=True)
    assert name in [e.prim.name for e in tape.eqns]
    z = np.concatenate([np.linspace(-40, 40, 8001), -np.logspace(-30, 1.6, 500),
                        np.logspace(-30, 1.6, 500)]).astype(np.float32)[None]
    if name == "gelu_tanh":               # the model's real function has its float32 constants
        k64, a64 = float(np.float32(k)), float(np.float32(0.044715))
        ref = lambda v: 0.5 * v * (1 + np.tanh(k64 * (v + a64 * v ** 3)))
    iv = B.bounds(lambda p, v: gelu(v), method="ibp", sound_float=True)(None, z, z)
    low, up = np.asarray(iv.lower, np.float64), np.asarray(iv.upper, np.float64)
    for v in (np.asarray(gelu(jnp.asarray(z)), np.float64), ref(z.astype(np.float64))):
        assert bool(((low <= v) & (v <= up)).all())
    for method in ("ibp", "crown_ibp", "crown"):
        a = B.bounds(recognised, method=method)(p, x - 0.3, x + 0.3)
        b = B.bounds(written, method=method)(p, x - 0.3, x + 0.3)
        _assert_sound(recognised, p, x - 0.3, x + 0.3, a, jax.random.key(4))
        assert float((a.upper - a.lower).mean()) < 0.8 * float((b.upper - b.lower).mean()), method


@pytest.mark.parametrize("case", ["other_operand", "other_constant", "cubic_of_other"])
def test_gelu_form_only_on_its_exact_spelling(case):
    """Products that look like GELU but are not (the erf's argument from another value, the
    tanh form with another constant, the cubic of another value) stay products; a point box
    gives the function's value and random boxes stay sound."""
    from xjax.bounds._ibp import trace

    k = np.float32(np.sqrt(2 / np.pi))
    fns = {
        "other_operand": lambda z: (0.5 * z) * jax.lax.erfc(-jnp.flip(z, -1) * np.float32(
            1 / np.sqrt(2))),
        "other_constant": lambda z: z * (0.5 * (1.0 + jnp.tanh(k * (z + 0.05 * z ** 3)))),
        "cubic_of_other": lambda z: z * (0.5 * (1.0 + jnp.tanh(k * (z + 0.044715 * jnp.flip(
            z, -1) ** 3)))),
    }
    model_fn = lambda p, z: fns[case](z)
    x = jax.random.normal(jax.random.key(7), (2, 6))
    tape, _, _ = trace(model_fn, None, x - 0.3, x + 0.3)
    assert not {"gelu", "gelu_tanh"} & {e.prim.name for e in tape.eqns}
    _point_and_random_box(model_fn, x, atol=1e-6)


def test_full_crown_skips_passes_that_cannot_tighten(monkeypatch):
    """A node made from an already tightened node through equations whose interval is exact
    (here relu6's ``min(max(x, 0), 6)``: the ``min`` reads the rectifier's output) gets that
    node's bounds propagated forward instead of its own backward pass: one pass per relu6 layer
    instead of two, and bounds equal to those with every pass (which cannot be tighter)."""
    from xjax.bounds import _crown

    rng = np.random.default_rng(5)
    p = [jnp.asarray(rng.normal(size=s) / np.sqrt(s[0]), jnp.float32)
         for s in ((6, 16), (16, 16), (16, 16), (16, 4))]
    model_fn = lambda p, z: jax.nn.relu6(jax.nn.relu6(jax.nn.relu6(8 * z @ p[0]) @ p[1])
                                         @ p[2]) @ p[3]
    x = jax.random.normal(jax.random.key(1), (2, 6))
    lo, hi = x - 0.05, x + 0.05
    calls = []
    real = _crown._elementwise_bounds
    monkeypatch.setattr(_crown, "_elementwise_bounds", lambda *a: calls.append(1) or real(*a))
    skipped = B.bounds(model_fn, method="crown")(p, lo, hi)
    n_skipped = len(calls)
    monkeypatch.setattr(_crown, "_exact_chain", lambda *a: None)
    every = B.bounds(model_fn, method="crown")(p, lo, hi)
    assert (n_skipped, len(calls) - n_skipped) == (3, 6)   # max's inputs; and min's, skipped
    _assert_sound(model_fn, p, lo, hi, skipped, jax.random.key(2))
    np.testing.assert_allclose(skipped.lower, every.lower, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(skipped.upper, every.upper, rtol=1e-5, atol=1e-5)
    assert float((skipped.upper - skipped.lower).sum()) < 0.5 * float(
        (B.ibp(model_fn)(p, lo, hi).upper - B.ibp(model_fn)(p, lo, hi).lower).sum())


def test_sound_float_softmax_output_needs_no_pass_of_its_own(monkeypatch):
    """Under sound_float the rebuilt softmax ends in ``float_softmax`` (the identity padded by the
    model's rounding): an attention-like product reading it gets its bounds propagated forward
    from the tightened reciprocal, not a backward pass of its own, with the same bounds."""
    from xjax.bounds import _crown

    rng = np.random.default_rng(6)
    p = [jnp.asarray(rng.normal(size=s) / np.sqrt(s[0]), jnp.float32)
         for s in ((6, 5), (6, 5), (5, 3))]
    model_fn = lambda p, z: (jax.nn.softmax(z @ p[0], axis=-1) * (z @ p[1])) @ p[2]
    x = jax.random.normal(jax.random.key(1), (1, 6))
    lo, hi = x - 0.05, x + 0.05
    passed = []
    real = _crown._elementwise_bounds

    def counted(*a):
        passed.append(a[0].producer[a[1].index].prim.name)
        return real(*a)

    monkeypatch.setattr(_crown, "_elementwise_bounds", counted)
    skipped = B.bounds(model_fn, method="crown", sound_float=True)(p, lo, hi)
    seen = list(passed)
    monkeypatch.setattr(_crown, "_exact_chain", lambda *a: None)
    every = B.bounds(model_fn, method="crown", sound_float=True)(p, lo, hi)
    assert "float_softmax" not in seen and "float_softmax" in passed[len(seen):], passed
    np.testing.assert_allclose(skipped.lower, every.lower, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(skipped.upper, every.upper, rtol=1e-5, atol=1e-5)
    _assert_sound(model_fn, p, lo, hi, skipped, jax.random.key(2))


def test_trace_drops_equations_the_output_does_not_read():
    """A value computed and never used (here a tanh beside the returned exp) is pruned from the
    tape, so CROWN does not bound its inputs."""
    from xjax.bounds._ibp import trace

    def model_fn(p, z):
        jnp.tanh(3.0 * z)
        return jnp.exp(z)

    x = jnp.zeros((1, 3))
    tape, _, out = trace(model_fn, None, x, x + 1.0)
    assert [e.prim.name for e in tape.eqns] == ["exp"]
    assert tape.eqns[-1].outputs[0] is out


@pytest.mark.parametrize("method", ["ibp", "crown_ibp", "crown", "alpha_crown"])
def test_sound_float_bounds_the_float_evaluation(method):
    """Bounds in exact arithmetic are exceeded by the float32 evaluation of the model: on a
    point box (and boxes of radius 1e-6) the model's own summation order lands outside them by
    a few ulps (before: up to 2.4e-6 against PGD points on a small CNN). With sound_float every
    float evaluation (the point, random points, corners) lies inside, and the bounds contain
    the exact-arithmetic ones."""
    from tests.helpers import conv_model, conv_params, images

    p, x = conv_params(), images(4)
    plain = jax.jit(xjax.bounds.bounds(conv_model, method=method))
    sound = jax.jit(xjax.bounds.bounds(conv_model, method=method, sound_float=True))
    f = conv_model(p, x)
    b = plain(p, x, x)
    assert bool(((b.lower > f) | (f > b.upper)).any())       # the failure sound_float mends
    s = sound(p, x, x)
    assert bool(((s.lower <= f) & (f <= s.upper)).all())
    for r in (1e-6, 1e-3):
        lo, hi = x - r, x + r
        s, b = sound(p, lo, hi), plain(p, lo, hi)
        assert bool((s.lower <= b.lower).all() and (s.upper >= b.upper).all())
        pts = x[None] + jax.random.uniform(jax.random.key(1), (128,) + x.shape, minval=-r,
                                           maxval=r)
        pts = jnp.concatenate([pts, lo[None], hi[None]])
        fs = jax.vmap(lambda z: conv_model(p, z))(pts)
        assert bool(((s.lower[None] <= fs) & (fs <= s.upper[None])).all()), r
        # the price of rigour: worst-case gamma_n sums, measured 4.6e-4 on outputs of about 5
        # (1e-4 relative) at r = 1e-3, where the crown_ibp width is 5e-3 or more
        widening = (s.upper - s.lower) - (b.upper - b.lower)
        assert bool((widening < 2e-4 * (1.0 + jnp.abs(f))).all()), float(widening.max())


def test_sound_float_charges_rounding_at_the_tightened_magnitudes():
    """A 14-layer ReLU net (width 24) on a box of radius 0.01: IBP's widths reach 2e5 while
    CROWN's are below 1. Charged at IBP's traced magnitudes, the rounding errors made full CROWN
    with sound_float 25x wider than without (mean width 6.64 against 0.268, measured before
    this change); charged at the bounds that CROWN itself tightened, they add about 1% (0.272).
    The float32 evaluation at sampled points and corners stays inside. (alpha-CROWN charges the
    same errors: measured the same way, it passed too, in 15 s.)"""
    method = "crown"
    rng = np.random.default_rng(0)
    ws = [jnp.asarray(rng.normal(size=(24, 24)) * 1.5 / np.sqrt(24), jnp.float32)
          for _ in range(14)]

    def f(p, z):
        for w in p[:-1]:
            z = jax.nn.relu(z @ w)
        return z @ p[-1]

    x = jnp.asarray(rng.normal(size=(1, 24)), jnp.float32)
    lo, hi = x - 0.01, x + 0.01
    ibp = xjax.bounds.bounds(f, method="ibp")(ws, lo, hi)
    assert float((ibp.upper - ibp.lower).max()) > 1e5
    plain = jax.jit(xjax.bounds.bounds(f, method=method))(ws, lo, hi)
    sound = jax.jit(xjax.bounds.bounds(f, method=method, sound_float=True))(ws, lo, hi)
    assert bool((sound.lower <= plain.lower).all() and (sound.upper >= plain.upper).all())
    width = lambda iv: float((iv.upper - iv.lower).mean())
    assert width(plain) < 0.3 and width(sound) < 1.05 * width(plain), (width(plain), width(sound))
    pts = _points(lo, hi, jax.random.key(4), n=1024)
    fs = jax.vmap(lambda z: f(ws, z))(pts)
    assert bool(((sound.lower[None] <= fs) & (fs <= sound.upper[None])).all())


def test_empty_batch_of_boxes_and_sound_float_arguments():
    from tests.helpers import conv_model, conv_params, images

    p, x = conv_params(), images(2)
    for method in ("ibp", "crown_ibp", "crown"):
        with pytest.raises(ValueError, match="non-empty batch"):   # before: ZeroDivisionError
            xjax.bounds.bounds(conv_model, method=method)(p, x[:0], x[:0])
    with pytest.raises(ValueError, match="not offered for method='lipschitz'"):
        xjax.bounds.bounds(conv_model, method="lipschitz", sound_float=True)
    with pytest.raises(TypeError, match="sound_float must be a bool"):
        xjax.bounds.bounds(conv_model, sound_float="yes")


def test_sound_float_tables_name_only_rules_and_cover_smooth_nets():
    """Each rounding table entry is a primitive the bounds support (no dead names), and a smooth
    net (exp, tanh, softplus, integer powers, division) is bounded in float32 on point boxes."""
    from xjax.bounds._ibp import ACCUMULATING, EXACT_PRIMITIVES, IBP_RULES, ROUNDING

    for table in (EXACT_PRIMITIVES, ACCUMULATING, ROUNDING):
        assert set(table) <= set(IBP_RULES), sorted(set(table) - set(IBP_RULES))
    assert not set(EXACT_PRIMITIVES) & (set(ACCUMULATING) | set(ROUNDING))
    rng = np.random.default_rng(0)
    w1 = jnp.asarray(rng.normal(size=(12, 16)), jnp.float32)
    w2 = jnp.asarray(rng.normal(size=(16, 3)), jnp.float32)

    def net(p, x):
        h = jnp.tanh(x @ p[0]) + jax.nn.softplus(x @ p[0]) ** 2
        return (jnp.exp(-h) / (1.0 + h ** 2)) @ p[1]

    x = jnp.asarray(rng.uniform(-1, 1, (32, 12)), jnp.float32)
    f = net((w1, w2), x)
    for method in ("ibp", "crown_ibp"):
        s = xjax.bounds.bounds(net, method=method, sound_float=True)((w1, w2), x, x)
        assert bool(((s.lower <= f) & (f <= s.upper)).all()), method
        b = xjax.bounds.bounds(net, method=method)((w1, w2), x, x)
        assert bool((s.lower <= b.lower).all() and (s.upper >= b.upper).all()), method


def test_crown_intermediate_rows_in_chunks_equal_one_pass(monkeypatch):
    """Full CROWN bounds a large layer's elements chunk by chunk (``lax.map`` over rows, memory
    bounded by ``ROW_BUDGET``): the same bounds as one pass over every row. So does the final
    pass of a spec of many rows (EVA's every rival), in every method of CROWN's family."""
    from xjax.bounds import _crown
    model_fn, params = _random_net(3, 2, 4, "relu", conv=True, pool="avg")
    x = jax.random.uniform(jax.random.key(5), (2, 8, 8, 2))
    lo, hi = x - 0.05, x + 0.05
    whole = B.bounds(model_fn, method="crown")(params, lo, hi)
    k = whole.lower.shape[-1]
    spec = jax.random.normal(jax.random.key(8), (20, k))
    whole_spec = B.bounds(model_fn, method="crown_ibp")(params, lo, hi, spec)
    monkeypatch.setattr(_crown, "ROW_BUDGET", 2 * 2 * 8 * 8 * 4 * 7)   # 7 rows per chunk
    from xjax.bounds._ibp import trace
    tape = trace(model_fn, params, lo, hi)[0]
    assert _crown._rows_per_chunk(tape, tape.nodes[-1], 256) == 7     # the widest: [2, 8, 8, 4]
    # the two boxes run one at a time under vmap: traced at [1, 8, 8, 4], chunks for 2 copies
    tape = trace(model_fn, params, lo[:1], hi[:1])[0]
    assert _crown._rows_per_chunk(tape, tape.nodes[-1], 256, copies=2) == 7
    chunked = jax.jit(B.bounds(model_fn, method="crown"))(params, lo, hi)
    np.testing.assert_allclose(chunked.lower, whole.lower, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(chunked.upper, whole.upper, rtol=1e-5, atol=1e-5)
    _assert_sound(model_fn, params, lo, hi, chunked, jax.random.key(6))
    spec_chunked = jax.jit(B.bounds(model_fn, method="crown_ibp"))(params, lo, hi, spec)
    assert spec_chunked.lower.shape == (2, 20)                      # 20 rows: chunks of 7
    np.testing.assert_allclose(spec_chunked.lower, whole_spec.lower, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(spec_chunked.upper, whole_spec.upper, rtol=1e-5, atol=1e-5)


def test_zoo_resnet18_crown_end_to_end():
    """ResNet-18 around a real photo (16 x 16, radius 1e-4): IBP and CROWN-IBP are vacuous on a
    deep network (widths of order 1e12: every layer multiplies them by |W|), full CROWN is not
    (measured width about 2.7, intermediate layers bounded chunk by chunk); all three are sound
    on sampled points and corners of the box."""
    m = xjax.models.resnet18(num_classes=10)
    photo = xjax.data.sample_photos(["chelsea"])[0].image
    x = jnp.asarray(xjax.data.resize_center_crop(photo, 16)[None])
    lo, hi = x - 1e-4, x + 1e-4
    spec = jnp.asarray([[1.0, -1.0] + [0.0] * 8])
    widths = {}
    for method in ("ibp", "crown_ibp", "crown"):
        iv = jax.jit(lambda p, a, b, method=method: B.bounds(m.model_fn, method=method)(
            p, a, b, spec))(m.params, lo, hi)
        _assert_sound(m.model_fn, m.params, lo, hi, iv, jax.random.key(7), spec=spec)
        widths[method] = float(iv.upper[0, 0] - iv.lower[0, 0])
    assert widths["ibp"] > 1e6 and widths["crown_ibp"] <= widths["ibp"]
    assert widths["crown"] < 1e-6 * widths["ibp"] and widths["crown"] < 100.0, widths


def test_crown_reads_output_intervals_propagated_from_tightened_inputs():
    """Full CROWN re-propagates intervals forward from its tightened intermediate bounds: a
    relaxation that reads its *output* interval (here ``reduce_max`` with a tie, whose upper
    side is the output's upper bound) gets the tight one, not IBP's. ``u = xW - xW + b`` is the
    constant ``b`` (IBP: width 2|W|r per element), so ``-max(u)`` is exactly ``-max(b)``."""
    rng = np.random.default_rng(0)
    w = jnp.asarray(rng.normal(size=(4, 3)), jnp.float32)
    b = jnp.asarray([[0.3, 0.3, 0.1]], jnp.float32)          # a tie: no element dominates
    f = lambda p, x: -jnp.max(x @ p - x @ p + b, axis=-1, keepdims=True)
    x = jnp.asarray(rng.normal(size=(2, 4)), jnp.float32)
    lo, hi = x - 0.1, x + 0.1
    ibp = B.bounds(f, method="ibp")(w, lo, hi)
    assert float(ibp.lower.min()) < -0.3 - 0.1                # IBP loses the cancellation
    for method in ("crown", "alpha_crown"):
        iv = jax.jit(B.bounds(f, method=method))(w, lo, hi)
        np.testing.assert_allclose(iv.lower, -0.3, atol=1e-5)
        np.testing.assert_allclose(iv.upper, -0.3, atol=1e-5)
    iv = B.bounds(f, method="crown", sound_float=True)(w, lo, hi)
    assert bool((iv.lower <= -0.3).all() and (iv.lower > -0.3 - 1e-4).all())


def test_tighten_reports_each_bounded_node_once():
    """``tighten(..., on_bound=...)`` (the diagnostics hook of benchmarks/bounds_vit_widths.py)
    is called once per node that a relaxation needs, with the relaxed equation, and bounds that
    contain the node's value at sampled points of the box and equal what it returns."""
    from xjax.bounds._crown import relaxed, tighten
    from xjax.bounds._ibp import trace

    rng = np.random.default_rng(3)
    w1 = jnp.asarray(rng.normal(size=(4, 6)), jnp.float32)
    w2 = jnp.asarray(rng.normal(size=(6, 2)), jnp.float32)
    hidden = lambda p, x: x @ p[0]
    f = lambda p, x: jnp.tanh(jax.nn.relu(hidden(p, x)) @ p[1])
    x = jnp.asarray(rng.normal(size=(1, 4)), jnp.float32)
    lo, hi = x - 0.2, x + 0.2
    tape, x_node, _ = trace(f, (w1, w2), lo, hi, sound=False)
    seen = []
    out, errs = tighten(tape, x_node, lo, hi, on_bound=lambda eqn, node, a, b: seen.append(
        (eqn.prim.name, node.index, a, b)))
    assert errs == {}                                          # no sound_float, no rounding
    assert [name for name, *_ in seen] == ["max", "tanh"]      # relu's and tanh's inputs
    assert len({i for _, i, *_ in seen}) == len(seen) == sum(relaxed(e) for e in tape.eqns)
    pre = hidden((w1, w2), x + rng.uniform(-0.2, 0.2, size=(4096, 4)).astype(np.float32))
    _, node, low, up = seen[0]
    assert bool((pre >= low - 1e-5).all() and (pre <= up + 1e-5).all())
    np.testing.assert_array_equal(out[node][0], low)


def test_sound_float_adds_nothing_to_exact_named_calls():
    """hard_tanh's float evaluation only selects (exact), so sound_float charges it no rounding
    error (the traced node's ``err`` is None and its interval is the plain one); a named call
    that rounds (softplus) carries a positive error."""
    from xjax.bounds._ibp import trace

    x = jnp.asarray([[-3.0, -1.0, -0.37, 0.0, 0.5, 1.0, 2.5]], jnp.float32)
    for fn, exact in ((jax.nn.hard_tanh, True), (jax.nn.softplus, False)):
        _, _, plain = trace(lambda p, z, fn=fn: fn(z), None, x - 0.1, x + 0.1)
        _, _, sound = trace(lambda p, z, fn=fn: fn(z), None, x - 0.1, x + 0.1, sound=True)
        if exact:
            assert sound.err is None
            np.testing.assert_array_equal(sound.lo, plain.lo)
            np.testing.assert_array_equal(sound.hi, plain.hi)
        else:
            assert bool((sound.err > 0).all() & (sound.lo < plain.lo).all())
