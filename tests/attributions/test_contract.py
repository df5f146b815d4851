"""The explainer contract, run on every attribution method (DESIGN.md, issue 3)."""

import jax
import jax.numpy as jnp
import jmp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import xjax
from tests.helpers import conv_features, conv_head, conv_model, conv_params, images

BATCH = 5  # smaller than N x P everywhere, and not a divisor: chunking and padding are exercised

# every entry of the method registry (tests/test_registry.py fails on one missing), plus the
# noise tunnel, which wraps an explainer rather than a model
EXPLAINERS = [
    ("saliency", {}),
    ("gradient_input", {}),
    ("integrated_gradients", {"steps": 4}),
    ("smoothgrad", {"nb_samples": 3}),
    ("vargrad", {"nb_samples": 3}),
    ("squaregrad", {"nb_samples": 3}),
    ("guided_backprop", {}),
    ("deconvnet", {}),
    ("grad_cam", {}),
    ("grad_cam_pp", {}),
    ("occlusion", {"patch_size": 4, "patch_stride": 4}),
    ("rise", {"nb_samples": 6, "grid_size": 2}),
    ("lime", {"nb_samples": 6, "segmentation": "grid", "grid_size": 2}),
    ("kernel_shap", {"nb_samples": 6, "segmentation": "grid", "grid_size": 2}),
    ("noise_tunnel", {}),
    ("sobol", {"grid_size": 2, "nb_design": 8}),
    ("hsic", {"grid_size": 2, "nb_design": 8}),
    ("eva", {"grid_size": 2, "epsilon": 0.05}),
    ("greedy_as", {"grid_size": 2, "nb_samples": 4, "fraction_per_step": 0.25,
                   "max_fraction": 0.5, "search_steps": 2, "pgd_steps": 2}),
]
# rankings: piecewise constant in the parameters, so their gradient is zero (and finite)
PIECEWISE_CONSTANT = {"greedy_as"}
STOCHASTIC = set(xjax.attributions.STOCHASTIC) | {"noise_tunnel"}
IDS = [e[0] for e in EXPLAINERS]


def build(name, kwargs, model_fn=conv_model):
    if name == "noise_tunnel":
        return xjax.attributions.noise_tunnel(
            xjax.attributions.saliency(model_fn, batch_size=BATCH), nb_samples=2)
    if xjax.attributions.REGISTRY[name].split:
        feats = conv_features if model_fn is conv_model else (
            lambda p, x: model_fn(p, x, features=True))
        head = conv_head if model_fn is conv_model else (lambda p, a: model_fn(p, a, head=True))
        return getattr(xjax.attributions, name)(feats, head, batch_size=BATCH, **kwargs)
    return getattr(xjax.attributions, name)(model_fn, batch_size=BATCH, **kwargs)


def call(e, name, params, x, y, key=None):
    if name in STOCHASTIC:
        key = jax.random.key(7) if key is None else key
        return e(params, x, y, key=key)
    return e(params, x, y)


@pytest.fixture(scope="module")
def data():
    return conv_params(), images(4), jnp.array([0, 1, 2, 3], jnp.int32)


@pytest.mark.parametrize("name,kwargs", EXPLAINERS, ids=IDS)
def test_contract(name, kwargs, data):
    params, x, y = data
    traces = []

    def counting_model(p, xs, features=False, head=False):
        if head:                                   # CAMs: the head reads features, not images
            return conv_head(p, xs)
        traces.append(tuple(xs.shape))
        return conv_features(p, xs) if features else conv_model(p, xs)

    e = build(name, kwargs, conv_model)
    eager = call(e, name, params, x, y)
    # NumPy float64 images are float32 images (x64 off), without JAX's truncation warnings
    # (warnings are errors in this suite)
    np.testing.assert_array_equal(call(e, name, params, np.asarray(x, np.float64), y), eager)
    # 1. shape, dtype, finite; abstract evaluation agrees
    assert eager.shape == (4, 8, 8) and eager.dtype == jnp.float32
    assert bool(jnp.isfinite(eager).all())
    spec = jax.eval_shape(lambda p, xs, ys: call(e, name, p, xs, ys), params, x, y)
    assert spec.shape == (4, 8, 8) and spec.dtype == jnp.float32
    # 2. jit equals eager; 3. a second call with the same shapes does not retrace
    counted = build(name, kwargs, counting_model)
    jitted = jax.jit(lambda p, xs, ys: call(counted, name, p, xs, ys))
    np.testing.assert_allclose(jitted(params, x, y), eager, rtol=1e-5, atol=1e-6)
    n_traces = len(traces)
    assert n_traces > 0
    jitted(params, x * 0.5, y)
    assert len(traces) == n_traces
    # batch_size bounds every model call (recorded at trace time)
    assert all(s[0] <= BATCH for s in traces), traces
    # 4. batch independence and permutation equivariance
    np.testing.assert_allclose(call(e, name, params, x[2:3], y[2:3])[0], eager[2], rtol=1e-5,
                               atol=1e-6)
    perm = jnp.array([3, 1, 0, 2])
    np.testing.assert_allclose(call(e, name, params, x[perm], y[perm]), eager[perm], rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("name,kwargs", EXPLAINERS, ids=IDS)
def test_vmap_params_sharding_grad(name, kwargs, data):
    params, x, y = data
    e = build(name, kwargs)
    other = conv_params(seed=3)
    stacked = jax.tree.map(lambda a, b: jnp.stack([a, b]), params, other)
    # 5. vmap over two stacked parameter sets equals a loop
    vm = jax.jit(jax.vmap(lambda p: call(e, name, p, x, y)))(stacked)
    np.testing.assert_allclose(vm[1], call(e, name, other, x, y), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(vm[0], call(e, name, params, x, y), rtol=1e-4, atol=1e-6)
    # 6. N sharded over the 8 fake devices gives the same values
    mesh = Mesh(np.array(jax.devices()[:8]), ("data",))
    x8, y8 = images(8, seed=5), jnp.arange(8, dtype=jnp.int32) % 4
    xs = jax.device_put(x8, NamedSharding(mesh, P("data")))
    ys = jax.device_put(y8, NamedSharding(mesh, P("data")))
    sharded = jax.jit(lambda p, a, b: call(e, name, p, a, b))(params, xs, ys)
    single = call(e, name, params, x8, y8)
    np.testing.assert_allclose(sharded, single, rtol=1e-5, atol=1e-6)
    # ... and so does per-device code (shard_map: one row per device, the key replicated)
    local = jax.jit(xjax.runs.per_device(lambda p, a, b: call(e, name, p, a, b), mesh))(
        params, xs, ys)
    assert local.sharding.spec[0] == "data"
    np.testing.assert_allclose(local, single, rtol=1e-5, atol=1e-6)
    # 7. gradients w.r.t. params are finite (harmonization trains through explainers)
    g = jax.jit(jax.grad(lambda p: call(e, name, p, x, y).sum()))(params)
    leaves = jax.tree.leaves(g)
    assert all(bool(jnp.isfinite(v).all()) for v in leaves)
    if name not in PIECEWISE_CONSTANT:
        assert sum(float(jnp.abs(v).sum()) for v in leaves) > 0


@pytest.mark.parametrize("name,kwargs", EXPLAINERS, ids=IDS)
def test_keys_and_bfloat16(name, kwargs, data):
    params, x, y = data
    e = build(name, kwargs)
    a = call(e, name, params, x, y)
    if name in STOCHASTIC:
        np.testing.assert_array_equal(call(e, name, params, x, y, key=jax.random.key(7)), a)
        b = call(e, name, params, x, y, key=jax.random.key(8))
        assert not np.allclose(a, b)
        with pytest.raises(ValueError, match="key"):
            e(params, x, y)
        with pytest.raises(TypeError, match="key"):
            e(params, x, y, key=7)
    else:
        np.testing.assert_array_equal(call(e, name, params, x, y), a)
    # a jmp bfloat16 compute policy runs and stays close to float32
    policy = jmp.get_policy("params=float32,compute=bfloat16,output=float32")

    def bf16_model(p, xs, features=False, head=False):
        p = policy.cast_to_compute(p)
        xs = policy.cast_to_compute(xs)
        if features:
            return policy.cast_to_output(conv_features(p, xs))
        if head:
            return policy.cast_to_output(conv_head(p, xs))
        return policy.cast_to_output(conv_model(p, xs))

    if name == "eva":
        # the certificate's sound_float pads every value by bfloat16's rounding (eps 2^-7):
        # honest and much wider; the closeness check is on the exact-arithmetic bounds
        kwargs = {**kwargs, "sound_float": False}
        a = call(build(name, kwargs), name, params, x, y)
    low = call(build(name, kwargs, bf16_model), name, params, x, y)
    assert low.dtype == jnp.float32
    # bfloat16 keeps 8 bits of mantissa (~0.4% per rounding): maps agree to a few percent
    rel = float(jnp.linalg.norm(low - a) / jnp.maximum(jnp.linalg.norm(a), 1e-12))
    assert rel < 0.1, rel


@pytest.mark.parametrize("name,kwargs", EXPLAINERS, ids=IDS)
def test_bad_input(name, kwargs, data):
    params, x, y = data
    e = build(name, kwargs)
    with pytest.raises(ValueError, match="rank 4"):
        call(e, name, params, x[0], y)
    with pytest.raises(ValueError, match="channel-first"):
        call(e, name, params, jnp.zeros((4, 3, 8, 8)), y)
    with pytest.raises(ValueError, match="one entry per image"):
        call(e, name, params, x, y[:2])
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        call(e, name, params, x, y + 4)
    # an empty batch: one decision for every function, a named error (before: a slice error
    # from the batching engine, or ZeroDivisionError in the bounds)
    with pytest.raises(ValueError, match="x is an empty batch"):
        call(e, name, params, x[:0], y[:0])
    # float labels were truncated to classes (1.7 -> 1)
    with pytest.raises(TypeError, match="integer class indices"):
        call(e, name, params, x, y.astype(jnp.float32) + 0.7)
    # NaN or infinite pixels are refused eagerly (before: NaN maps, or sobol's finite map)
    for v in (jnp.nan, jnp.inf):
        with pytest.raises(ValueError, match="NaN or infinite pixels in 1 of its 4 images"):
            call(e, name, params, x.at[2, 1, 1, 0].set(v), y)
    # images in another convention: 0-255, or already normalized by a mean and std
    with pytest.raises(ValueError, match=r"x holds values in \[0\.\d+, 25\d\.\d+\].*need x / 255"):
        call(e, name, params, x * 255, y)
    with pytest.raises(ValueError, match=r"x holds values in \[-1\.9\d*, 1\.9\d*\].*mean/std normalization"):
        call(e, name, params, (x - 0.5) / 0.25, y)


@pytest.mark.parametrize("name,kwargs", EXPLAINERS, ids=IDS)
def test_non_finite_images_under_jit_give_nan_rows(name, kwargs, data):
    """Under jit a NaN image cannot be refused: its row is NaN whatever the model does with NaN
    (the conv model's ReLU and max drop it), the other rows are unchanged."""
    params, x, y = data
    e = build(name, kwargs)
    bad = x.at[1, 2, 3, 0].set(jnp.nan).at[3, 0, 0, 1].set(-jnp.inf)
    maps = jax.jit(lambda p, xs, ys: call(e, name, p, xs, ys))(params, bad, y)
    assert bool(jnp.isnan(maps[1]).all()) and bool(jnp.isnan(maps[3]).all())
    good = call(e, name, params, x, y)
    np.testing.assert_allclose(maps[jnp.asarray([0, 2])], good[jnp.asarray([0, 2])], rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("factory,kwargs,match", [
    ("integrated_gradients", {"steps": 0}, "steps"),
    ("smoothgrad", {"nb_samples": 0}, "nb_samples"),
    ("rise", {"nb_samples": -1}, "nb_samples"),
    ("rise", {"preservation_probability": 1.5}, "preservation_probability"),
    ("occlusion", {"patch_size": 0}, "patch_size"),
    ("lime", {"segmentation": "watershed"}, "segmentation"),
    ("kernel_shap", {"nb_samples": 2}, "nb_samples"),
    ("saliency", {"batch_size": 0}, "batch_size"),
    ("integrated_gradients", {"rule": "simpson"}, "rule"),
    ("sobol", {"nb_design": 24}, "power of two"),
    ("sobol", {"estimator": "sobol"}, "estimator"),
    ("sobol", {"perturbation": "noise"}, "perturbation"),
    ("sobol", {"sampler": "grid"}, "sampler"),
    ("hsic", {"kernel": "laplace"}, "kernel"),
])
def test_bad_hyperparameters(factory, kwargs, match):
    with pytest.raises(ValueError, match=match):
        getattr(xjax.attributions, factory)(conv_model, **kwargs)


@pytest.mark.parametrize("name,kwargs", EXPLAINERS, ids=IDS)
def test_out_of_range_labels_under_jit_give_nan_rows(name, kwargs, data):
    """Eagerly a label outside [0, K) raises; under jit it cannot be seen, so its row is NaN
    (never a plausible all-zero map), and the other rows are unchanged."""
    params, x, y = data
    e = build(name, kwargs)
    with pytest.raises(ValueError, match="y must be class indices"):
        call(e, name, params, x, y.at[1].set(50))
    bad = jnp.asarray([0, 50, 2, -1], jnp.int32)
    maps = jax.jit(lambda p, xs, ys: call(e, name, p, xs, ys))(params, x, bad)
    assert bool(jnp.isnan(maps[1]).all()) and bool(jnp.isnan(maps[3]).all())
    good = call(e, name, params, x, y)
    np.testing.assert_allclose(maps[jnp.asarray([0, 2])], good[jnp.asarray([0, 2])], rtol=1e-5,
                               atol=1e-6)
