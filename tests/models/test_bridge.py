import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import xjax


class TinyNet(nnx.Module):
    def __init__(self, rngs):
        self.conv = nnx.Conv(3, 4, (3, 3), rngs=rngs)
        self.bn = nnx.BatchNorm(4, rngs=rngs)
        self.fc = nnx.Linear(4, 2, rngs=rngs)

    def features(self, x):
        return jax.nn.relu(self.bn(self.conv(x)))

    def head(self, a):
        return self.fc(a.mean(axis=(1, 2)))

    def __call__(self, x):
        return self.head(self.features(x))


def test_from_nnx_is_pure_jittable_and_differentiable():
    module = TinyNet(nnx.Rngs(0))
    module.eval()
    model_fn, params = xjax.models.from_nnx(module)
    x = jnp.asarray(np.random.default_rng(0).random((3, 5, 5, 3)), jnp.float32)
    np.testing.assert_allclose(jax.jit(model_fn)(params, x), module(x), rtol=1e-6)
    # params is an argument: new weights change the output without rebuilding anything
    doubled = jax.tree.map(lambda a: a * 2, params)
    assert not np.allclose(model_fn(doubled, x), model_fn(params, x))
    g = jax.grad(lambda p: model_fn(p, x).sum())(params)
    assert jax.tree.structure(g) == jax.tree.structure(params)
    assert float(jnp.abs(g["fc"]["kernel"][...]).sum()) > 0
    stacked = jax.tree.map(lambda a, b: jnp.stack([a, b]), params, doubled)
    out = jax.vmap(model_fn, in_axes=(0, None))(stacked, x)
    np.testing.assert_allclose(out[1], model_fn(doubled, x), rtol=1e-5)


def test_from_nnx_methods_and_errors():
    module = TinyNet(nnx.Rngs(0))
    module.eval()
    m = xjax.models.model_from_nnx(module, input_shape=(5, 5, 3))
    x = jnp.ones((2, 5, 5, 3))
    np.testing.assert_allclose(m.head_fn(m.params, m.features_fn(m.params, x)),
                               m.model_fn(m.params, x), rtol=1e-6)
    with pytest.raises(TypeError, match="module"):
        xjax.models.from_nnx(lambda x: x)
    with pytest.raises(ValueError, match="method"):
        xjax.models.from_nnx(module, method="nope")


def test_from_linen():
    class Mlp(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(2)(nn.relu(nn.Dense(8)(x.reshape(x.shape[0], -1))))

    m = Mlp()
    variables = m.init(jax.random.key(0), jnp.ones((1, 4, 4, 1)))
    model_fn, params = xjax.models.from_linen(m, variables)
    x = jnp.ones((3, 4, 4, 1))
    np.testing.assert_allclose(jax.jit(model_fn)(params, x), m.apply(variables, x), rtol=1e-6)
    with pytest.raises(TypeError, match="module"):
        xjax.models.from_linen(object(), variables)
