"""1-Lipschitz layers: operator norms, Lipschitz pairs, gradient norm, export, state update."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import xjax

L = xjax.lipschitz
DN = ("NHWC", "HWIO", "NHWC")


def _conv_norm(conv: nnx.Conv, shape):
    k = conv.kernel.get_value()
    if conv.padding == "CIRCULAR":
        return L.operator_norm(lambda z: conv(z) - conv(jnp.zeros_like(z)), shape)
    return L.operator_norm(lambda z: jax.lax.conv_general_dilated(
        z, k, conv.strides, conv.padding, dimension_numbers=DN), shape)


@pytest.fixture(scope="module")
def cnn():
    module = L.lipschitz_cnn(input_shape=(8, 8, 1), width=4, hidden=8, num_classes=3,
                             key=jax.random.key(0))
    return module, L.export(module)


def test_exported_layers_have_norm_at_most_one(cnn):
    module, plain = cnn
    assert type(plain.conv1) is nnx.Conv and type(plain.fc1) is nnx.Linear
    for conv, shape in [(plain.conv1, (1, 8, 8, 1)), (plain.conv2, (1, 4, 4, 16)),
                        (plain.conv3, (1, 2, 2, 32))]:
        assert float(_conv_norm(conv, shape)) <= 1.0 + 1e-3
    for dense in (plain.fc1, plain.fc2):
        s = np.linalg.svd(np.asarray(dense.kernel.get_value()), compute_uv=False)
        np.testing.assert_allclose(s, 1.0, atol=1e-3)          # orthonormal after Björck
    sc = L.SpectralConv(3, 5, (3, 3), 2, rngs=nnx.Rngs(1)).export()
    assert float(_conv_norm(sc, (1, 9, 9, 3))) <= 1.0 + 1e-3


def test_export_matches_training_time_outputs(cnn):
    module, plain = cnn
    x = jax.random.uniform(jax.random.key(1), (5, 8, 8, 1))
    np.testing.assert_allclose(plain(x), module(x), atol=1e-5)
    oc = L.OrthogonalConv(4, input_size=(6, 6), rngs=nnx.Rngs(2))
    z = jax.random.normal(jax.random.key(3), (2, 6, 6, 4))
    np.testing.assert_allclose(oc.export()(z), oc(z), atol=1e-5)
    assert oc.export().padding == "CIRCULAR"


def test_whole_stack_is_1_lipschitz(cnn):
    module, plain = cnn
    f = jax.jit(lambda x: plain(x))
    ka, kb = jax.random.split(jax.random.key(4))
    a = jax.random.uniform(ka, (64, 8, 8, 1))
    b = a + 0.3 * jax.random.normal(kb, a.shape)
    out = jnp.linalg.norm(f(a) - f(b), axis=1)
    inp = jnp.linalg.norm((a - b).reshape(64, -1), axis=1)
    assert bool((out <= inp * (1 + 1e-4)).all())
    # Jacobian spectral norm at a few points (the linearized network)
    for i in range(3):
        _, lin = jax.linearize(lambda z: plain(z), a[i:i + 1])
        assert float(L.operator_norm(lin, (1, 8, 8, 1), steps=60)) <= 1.0 + 1e-3


def test_orthogonal_gnp_stack_has_unit_gradient():
    """OrthogonalConv -> GroupSort2 -> global L2 pool -> SpectralDense(1): every block preserves
    the gradient norm, so ||grad f|| = 1 almost everywhere."""
    rngs = nnx.Rngs(5)
    conv = L.OrthogonalConv(4, input_size=(6, 6), rngs=rngs)
    dense = L.SpectralDense(4, 1, rngs=rngs)
    f = lambda x: dense(L.scaled_global_l2_norm_pool(L.group_sort2(conv(x))))[:, 0]
    x = jax.random.normal(jax.random.key(6), (8, 6, 6, 4))
    g = jax.vmap(jax.grad(lambda xi: f(xi[None])[0]))(x)
    np.testing.assert_allclose(jnp.linalg.norm(g.reshape(8, -1), axis=1), 1.0, atol=1e-4)
    # orthogonal convolution: exactly norm preserving on any input
    lin = lambda z: conv(z) - conv(jnp.zeros_like(z))
    np.testing.assert_allclose(jnp.linalg.norm(lin(x).reshape(8, -1), axis=1),
                               jnp.linalg.norm(x.reshape(8, -1), axis=1), rtol=1e-5)


def test_activations_and_pooling():
    x = jnp.asarray([[3.0, 1.0, -2.0, 5.0]])
    np.testing.assert_array_equal(L.group_sort2(x), [[1.0, 3.0, -2.0, 5.0]])
    np.testing.assert_array_equal(L.group_sort(x, 4), [[-2.0, 1.0, 3.0, 5.0]])
    np.testing.assert_array_equal(L.full_sort(x), [[-2.0, 1.0, 3.0, 5.0]])
    img = jnp.arange(16.0).reshape(1, 4, 4, 1)
    pooled = L.l2_norm_pool(img, (2, 2))
    np.testing.assert_allclose(pooled[0, 0, 0, 0], np.sqrt(0 + 1 + 16 + 25), rtol=1e-6)
    np.testing.assert_allclose(L.scaled_global_l2_norm_pool(img), [[np.sqrt((np.arange(16.0) ** 2)
                                                                            .sum())]], rtol=1e-6)
    # L2 pooling gradient is finite at 0 (deel-lip's custom gradient)
    assert bool(jnp.isfinite(jax.grad(lambda z: L.l2_norm_pool(z).sum())(jnp.zeros((1, 2, 2, 1))))
                .all())
    down = L.invertible_downsampling(img, 2)
    assert down.shape == (1, 2, 2, 4)
    np.testing.assert_array_equal(np.sort(down.ravel()), np.arange(16.0))     # a permutation
    with pytest.raises(ValueError, match="divide"):
        L.group_sort(x, 3)
    with pytest.raises(ValueError, match="divide"):
        L.invertible_downsampling(jnp.zeros((1, 3, 4, 1)), 2)


def test_power_update_carries_the_iteration(cnn):
    module, _ = cnn
    model_fn, params = xjax.models.from_nnx(module)
    update = jax.jit(L.power_update(module))
    for _ in range(40):
        params = update(params)
    m = nnx.merge(nnx.split(module)[0], params)
    w = m.fc1._matrix()
    sigma, _ = L.power_iteration(w, m.fc1.u.get_value(), steps=1)
    np.testing.assert_allclose(sigma, np.linalg.svd(np.asarray(w), compute_uv=False)[0],
                               rtol=1e-4)


def test_bad_configuration():
    rngs = nnx.Rngs(0)
    with pytest.raises(ValueError, match="n_power"):
        L.SpectralDense(3, 3, n_power=0, rngs=rngs)
    with pytest.raises(ValueError, match="n_bjorck"):
        L.SpectralConv(3, 3, n_bjorck=-1, rngs=rngs)
    with pytest.raises(ValueError, match="padding"):
        L.SpectralConv(3, 3, padding="CIRCULAR", rngs=rngs)
    with pytest.raises(ValueError, match="kernel_size"):
        L.OrthogonalConv(3, input_size=(2, 2), kernel_size=(3, 3), rngs=rngs)
    with pytest.raises(ValueError, match="input_size"):
        L.OrthogonalConv(3, input_size=(4, 4), rngs=rngs)(jnp.zeros((1, 5, 5, 3)))
