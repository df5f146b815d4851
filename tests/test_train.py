import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import Mesh

import xjax


def linear_model_fn(params, x):
    return x.reshape(x.shape[0], -1) @ params["w"] + params["b"][None]


@pytest.fixture(scope="module")
def toy_data():
    rng = np.random.default_rng(0)
    w_true = rng.normal(size=(16, 3))
    x = rng.random((256, 4, 4, 1)).astype(np.float32)
    y = (x.reshape(256, -1) - 0.5) @ w_true
    return x, y.argmax(-1).astype(np.int32)


def init_params():
    return {"w": jnp.zeros((16, 3), jnp.float32), "b": jnp.zeros((3,), jnp.float32)}


def _fit(x, y, **kw):
    kw = {"optimizer": optax.adam(0.05), "epochs": 3, "batch_size": 32, "key": jax.random.key(0),
          "progress": False, **kw}
    return xjax.train.fit(linear_model_fn, init_params(), x, y, **kw)


def test_fit_learns_a_separable_problem(toy_data):
    x, y = toy_data
    state = _fit(x, y, epochs=8)
    assert state.history[-1]["loss"] < state.history[0]["loss"]
    assert xjax.train.evaluate(linear_model_fn, state.params, x, y, batch_size=100) >= 0.9


def test_data_parallel_equals_single_device(toy_data):
    x, y = toy_data
    one = _fit(x, y, mesh=Mesh(np.array(jax.devices()[:1]), ("data",)))
    eight = _fit(x, y, mesh=Mesh(np.array(jax.devices()[:8]), ("data",)))
    assert len(jax.devices()) == 8
    for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(eight.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert eight.params["w"].sharding.is_fully_replicated


def test_resume_after_interruption_matches_uninterrupted(toy_data, tmp_path):
    x, y = toy_data
    ckpt = str(tmp_path / "run")
    _fit(x, y, epochs=2, checkpoint_dir=ckpt)            # the run "dies" after epoch 2
    resumed = _fit(x, y, epochs=4, checkpoint_dir=ckpt)  # restarted with the full budget
    assert [h["epoch"] for h in resumed.history] == [3, 4]  # nothing redone, nothing skipped
    straight = _fit(x, y, epochs=4)
    for a, b in zip(jax.tree.leaves(resumed.params), jax.tree.leaves(straight.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    again = _fit(x, y, epochs=4, checkpoint_dir=ckpt)    # already finished: no work
    assert again.history == []


def test_bfloat16_policy_trains(toy_data):
    x, y = toy_data
    state = _fit(x, y, epochs=4, precision="bfloat16")
    assert state.params["w"].dtype == jnp.float32
    assert xjax.train.evaluate(linear_model_fn, state.params, x, y, precision="bf16") >= 0.85


def test_make_train_step_is_pure(toy_data):
    x, y = toy_data
    opt = optax.sgd(0.1)
    step = jax.jit(xjax.train.make_train_step(linear_model_fn, opt))
    p = init_params()
    s = opt.init(p)
    p1, _, loss1 = step(p, s, x[:32], y[:32])
    p2, _, loss2 = step(p, s, x[:32], y[:32])
    np.testing.assert_array_equal(p1["w"], p2["w"])
    assert float(loss1) == pytest.approx(np.log(3), rel=1e-6)  # zero weights: uniform softmax


def test_fit_errors(toy_data):
    x, y = toy_data
    with pytest.raises(ValueError, match="divisible"):
        _fit(x, y, batch_size=30)
    with pytest.raises(TypeError, match="key"):
        _fit(x, y, key=0)
    with pytest.raises(ValueError, match="same length"):
        _fit(x, y[:10])
    with pytest.raises(ValueError, match="rank 4"):
        _fit(x[..., 0], y)
    with pytest.raises(ValueError, match="precision"):
        xjax.train.policy("float8")


def test_fit_post_update_carries_lipschitz_power_iteration():
    module = xjax.lipschitz.lipschitz_cnn(input_shape=(8, 8, 1), width=2, hidden=4,
                                          num_classes=2, key=jax.random.key(0))
    model_fn, params = xjax.models.from_nnx(module)
    rng = np.random.default_rng(0)
    x = rng.random((16, 8, 8, 1)).astype(np.float32)
    y = (x[:, :4].mean((1, 2, 3)) > 0.5).astype(np.int32)
    u0 = np.asarray(module.fc1.u.get_value())
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
    state = xjax.train.fit(model_fn, params, x, y, optimizer=optax.adam(1e-2), epochs=1,
                           batch_size=8, key=jax.random.key(1), progress=False, mesh=mesh,
                           post_update=xjax.lipschitz.power_update(module))
    trained = nnx.merge(nnx.split(module)[0], state.params)
    u1 = np.asarray(trained.fc1.u.get_value())
    assert not np.allclose(u0, u1)                      # carried across the two steps
    np.testing.assert_allclose(np.linalg.norm(u1), 1.0, rtol=1e-5)
