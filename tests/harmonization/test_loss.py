"""Harmonization loss: hand-computed values, float64 gradients, sharded step, resume."""

import jax
import jax.numpy as jnp
import jmp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import xjax
from tests.helpers import conv_model, conv_params, images

H = xjax.harmonization


def test_standardize_cut_and_pyramid_by_hand():
    m = jnp.asarray([[[1.0, 2.0], [3.0, 6.0]]])           # mean 3, population std sqrt(3.5)
    sd = np.sqrt(3.5)
    np.testing.assert_allclose(H.standardize_cut(m)[0],
                               np.maximum((np.array([[1, 2], [3, 6]]) - 3) / (sd + 1e-5), 0),
                               rtol=1e-6)
    # an impulse at the centre of a 5x5 map: level 1 (stride 2, SAME) samples the binomial kernel
    imp = jnp.zeros((1, 5, 5)).at[0, 2, 2].set(1.0)
    p = H.binomial_pyramid(imp, 3)
    assert [a.shape for a in p] == [(1, 5, 5), (1, 3, 3), (1, 2, 2)]
    b = np.array([1, 4, 6, 4, 1]) / 16
    k = np.outer(b, b)
    # output (i, j) reads input rows 2i-2 .. 2i+2 (SAME with 2 pad on each side for 5 -> 3)
    expected = np.array([[k[4 - 2 * i + 2 - 2, 4 - 2 * j + 2 - 2] if 0 <= 2 - 2 * i + 2 < 5 and
                          0 <= 2 - 2 * j + 2 < 5 else 0 for j in range(3)] for i in range(3)])
    np.testing.assert_allclose(p[1][0], expected, atol=1e-7)
    # pyramidal MSE ignores examples without a map but counts them in the mean
    a, z = jnp.ones((2, 4, 4)), jnp.zeros((2, 4, 4))
    np.testing.assert_allclose(H.pyramidal_mse(a, z, jnp.asarray([1.0, 0.0]), levels=1), 0.5)


def _reference_loss(w, x, y, h, t, lam, wd, ls, levels, absolute=False):
    """An independent NumPy version for a linear model f(x) = x . W (its input gradient for
    class y is W[..., y], so no autodiff is involved)."""
    b = x.shape[0]
    logits = np.einsum("nhwc,hwck->nk", x, w)
    k = logits.shape[1]
    sal = np.stack([(np.abs(w[..., y[i]]) if absolute else w[..., y[i]]).mean(-1)
                    for i in range(b)])

    def z(m):
        mu = m.mean(axis=(1, 2), keepdims=True)
        sd = m.std(axis=(1, 2), keepdims=True)
        return np.maximum((m - mu) / (sd + 1e-5), 0)

    s, hh = z(sal), z(h)
    hh = hh / (hh.max(axis=(1, 2), keepdims=True) + 1e-6) * (s.max(axis=(1, 2), keepdims=True)
                                                              + 1e-6)
    bk = np.array([1, 4, 6, 4, 1]) / 16
    kern = np.outer(bk, bk)

    def down(m):                                          # 5x5, stride 2, SAME
        n, hgt, wid = m.shape
        oh, ow = -(-hgt // 2), -(-wid // 2)
        ph = max((oh - 1) * 2 + 5 - hgt, 0)
        pw = max((ow - 1) * 2 + 5 - wid, 0)
        mp = np.pad(m, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)))
        return np.stack([[[np.sum(mp[q, 2 * i:2 * i + 5, 2 * j:2 * j + 5] * kern)
                           for j in range(ow)] for i in range(oh)] for q in range(n)])

    harm, ps, ph = 0.0, s, hh
    for lvl in range(levels):
        harm += np.mean((ps - ph) ** 2 * t[:, None, None])
        if lvl < levels - 1:
            ps, ph = down(ps), down(ph)
    harm /= levels
    targets = np.eye(k)[y] * (1 - ls) + ls / k
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    ce = -(targets * logp).sum(1).mean()
    return ce + wd * 0.5 * np.sum(w ** 2) + lam * harm


def test_loss_matches_an_independent_computation():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(6, 6, 2, 3)).astype(np.float32)
    x = rng.random((4, 6, 6, 2)).astype(np.float32)
    y = np.array([0, 2, 1, 2])
    h = rng.random((4, 6, 6)).astype(np.float32)
    t = np.array([1.0, 1.0, 0.0, 1.0])
    model_fn = lambda p, xs: jnp.einsum("nhwc,hwck->nk", xs, p["kernel"])
    loss, aux = H.harmonization_loss(model_fn, {"kernel": jnp.asarray(w)}, jnp.asarray(x),
                                     jnp.asarray(y), jnp.asarray(h), jnp.asarray(t > 0),
                                     lambda_harmonization=2.0, weight_decay=1e-3, levels=3)
    expected = _reference_loss(w.astype(np.float64), x.astype(np.float64), y, h.astype(np.float64),
                               t, 2.0, 1e-3, 0.1, 3)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    assert set(aux) == {"cross_entropy", "harmonization", "weight_decay"}
    loss_abs, _ = H.harmonization_loss(model_fn, {"kernel": jnp.asarray(w)}, jnp.asarray(x),
                                       jnp.asarray(y), jnp.asarray(h), jnp.asarray(t > 0),
                                       lambda_harmonization=2.0, weight_decay=1e-3, levels=3,
                                       gradient="absolute")
    np.testing.assert_allclose(float(loss_abs), _reference_loss(
        w.astype(np.float64), x.astype(np.float64), y, h.astype(np.float64), t, 2.0, 1e-3, 0.1, 3,
        absolute=True), rtol=1e-5)
    with pytest.raises(ValueError, match="human_maps"):
        H.harmonization_loss(model_fn, {"kernel": jnp.asarray(w)}, jnp.asarray(x),
                             jnp.asarray(y), jnp.asarray(h[:, :3]), jnp.asarray(t > 0))


def test_gradient_matches_finite_differences_in_float64():
    f64 = jmp.get_policy("params=float64,compute=float64,output=float64")
    with jax.enable_x64(True):
        params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), conv_params())
        x = jnp.asarray(images(3), jnp.float64)
        y = jnp.asarray([0, 1, 3])
        # a uniform human map standardizes to 0, so the stop-gradient rescaling of the human map
        # (by the saliency's max, deliberately not differentiated) drops out and finite
        # differences see exactly what autodiff does: the double backprop through the saliency
        h = jnp.ones((3, 8, 8), jnp.float64)
        t = jnp.asarray([True, True, False])

        def f(p):
            return H.harmonization_loss(conv_model, p, x, y, h, t, levels=3, precision=f64)[0]

        g = jax.grad(f)(params)
        rng = np.random.default_rng(2)
        d = jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape), jnp.float64), params)
        eps = 1e-6
        plus = f(jax.tree.map(lambda a, b: a + eps * b, params, d))
        minus = f(jax.tree.map(lambda a, b: a - eps * b, params, d))
        fd = (plus - minus) / (2 * eps)
        analytic = sum(jnp.sum(a * b) for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(d),
                                                        strict=True))
        np.testing.assert_allclose(float(analytic), float(fd), rtol=1e-6)


def test_sharded_step_equals_single_device():
    params = conv_params()
    opt = optax.adam(1e-2)
    step = jax.jit(H.make_train_step(conv_model, opt, levels=2))
    x = images(8, seed=3)
    y = jnp.arange(8, dtype=jnp.int32) % 4
    h = jnp.asarray(np.random.default_rng(4).random((8, 8, 8)), jnp.float32)
    t = jnp.asarray([True, False] * 4)
    p1, _, l1 = step(params, opt.init(params), x, y, h, t)
    mesh = Mesh(np.array(jax.devices()[:8]), ("data",))
    shard = NamedSharding(mesh, P("data"))
    xs, ys, hs, ts = (jax.device_put(a, shard) for a in (x, y, h, t))
    p8, _, l8 = step(params, opt.init(params), xs, ys, hs, ts)
    np.testing.assert_allclose(l8, l1, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(p8), jax.tree.leaves(p1), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_resumed_run_matches_uninterrupted(tmp_path):
    params = conv_params()
    opt = optax.sgd(0.05)
    step = H.make_train_step(conv_model, opt, levels=2)
    rng = np.random.default_rng(5)
    data = (rng.random((16, 8, 8, 3)).astype(np.float32), rng.integers(0, 4, 16).astype(np.int32),
            rng.random((16, 8, 8)).astype(np.float32), np.ones(16, bool))
    mesh = Mesh(np.array(jax.devices()[:1]), ("data",))
    kw = dict(batch_size=8, key=jax.random.key(0), mesh=mesh, progress=False)
    straight = xjax.train.run_epochs(step, params, opt.init(params), data, epochs=2, **kw)
    ckpt = str(tmp_path / "run")
    xjax.train.run_epochs(step, params, opt.init(params), data, epochs=1, checkpoint_dir=ckpt,
                          **kw)                                        # "killed" after epoch 1
    resumed = xjax.train.run_epochs(step, params, opt.init(params), data, epochs=2,
                                    checkpoint_dir=ckpt, **kw)
    assert [h["epoch"] for h in resumed.history] == [2]
    for a, b in zip(jax.tree.leaves(resumed.params), jax.tree.leaves(straight.params),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
