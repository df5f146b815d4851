"""Every zoo model honours the model contract: shapes, features/head split, jit, grad, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xjax

# (name, constructor kwargs, test input shape): small inputs keep compilation cheap.
CASES = [
    ("small_cnn", {}, (2, 28, 28, 1)),
    ("resnet18", {"num_classes": 10}, (2, 32, 32, 3)),
    ("resnet50", {"num_classes": 10}, (1, 32, 32, 3)),
    ("vit_tiny", {"num_classes": 10, "image_size": 32}, (2, 32, 32, 3)),
]


@pytest.mark.parametrize("name,kwargs,shape", CASES, ids=[c[0] for c in CASES])
def test_model_contract(name, kwargs, shape):
    m = xjax.models.get_model(name, **{"pretrained": None} if name == "small_cnn" else {}, **kwargs)
    x = jnp.asarray(np.random.default_rng(0).random(shape), jnp.float32)

    @jax.jit
    def run(params, x):
        out = m.model_fn(params, x)
        split = m.head_fn(params, m.features_fn(params, x))
        grad = jax.grad(lambda xs: m.model_fn(params, xs)[:, 0].sum())(x)
        return out, split, m.features_fn(params, x), grad

    out, split, feats, grad = run(m.params, x)
    assert out.shape == (shape[0], 10) and out.dtype == jnp.float32
    assert feats.ndim == 4 and feats.shape[0] == shape[0]
    np.testing.assert_allclose(split, out, rtol=1e-5, atol=1e-5)
    assert bool(jnp.isfinite(grad).all()) and float(jnp.abs(grad).sum()) > 0
    # examples are independent (batch norm in inference form)
    np.testing.assert_allclose(jax.jit(m.model_fn)(m.params, x[:1]), out[:1], rtol=1e-4,
                               atol=1e-5)
    with pytest.raises(ValueError, match="x"):
        m.model_fn(m.params, x[0])


def test_zoo_errors():
    with pytest.raises(ValueError, match="unknown zoo model"):
        xjax.models.get_model("alexnet")
    with pytest.raises(ValueError, match="pretrained"):
        xjax.models.small_cnn(pretrained="imagenet")
    with pytest.raises(ValueError, match="multiple"):
        xjax.models.vit_tiny(image_size=30)


def test_checkpoint_round_trip(tmp_path):
    a = xjax.models.small_cnn(key=jax.random.key(1))
    b = xjax.models.small_cnn(key=jax.random.key(2))
    xjax.models.save_checkpoint(tmp_path / "ckpt", a.params)
    restored = xjax.models.restore_checkpoint(tmp_path / "ckpt", b.params)
    for u, v in zip(jax.tree.leaves(restored), jax.tree.leaves(a.params), strict=True):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
    with pytest.raises(FileExistsError, match="path"):
        xjax.models.save_checkpoint(tmp_path / "ckpt", a.params)
    with pytest.raises(FileNotFoundError, match="path"):
        xjax.models.restore_checkpoint(tmp_path / "none", b.params)
