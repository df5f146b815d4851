"""Robustness-S_r against the closed form of a linear two-class model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xjax

M = xjax.metrics


@pytest.fixture(scope="module")
def linear():
    """Two linear classes on 6x6x1 images; only the left half of the weights differ, so the
    margin direction v = w_y - w_other is zero on the right half."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(6, 6, 1, 2)).astype(np.float32)
    w[:, 3:, :, 1] = w[:, 3:, :, 0]
    x = rng.uniform(0.0, 1.0, (5, 6, 6, 1)).astype(np.float32)
    logits = np.einsum("nhwc,hwck->nk", x, w)
    y = logits.argmax(1).astype(np.int32)
    v = w[..., 0][None] * np.where(y == 0, 1, -1)[:, None, None, None] \
        + w[..., 1][None] * np.where(y == 1, 1, -1)[:, None, None, None]     # [N, 6, 6, 1]
    margin = np.abs(logits[:, 0] - logits[:, 1])
    model_fn = lambda p, x: jnp.einsum("nhwc,hwck->nk", x, p)
    return model_fn, jnp.asarray(w), jnp.asarray(x), jnp.asarray(y), v[..., 0], margin


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_closed_form_minimal_radius(linear, norm):
    model_fn, w, x, y, v, margin = linear
    fraction = 5 / 36                                  # |S_r| = 5 positions
    metric = M.robustness_sr(model_fn, fractions=(fraction,), norm=norm, epsilon_max=4.0,
                             search_steps=14, pgd_steps=10, clip=None, batch_size=3)
    oracle = jnp.asarray(np.abs(v))                     # the most sensitive positions first
    got = np.asarray(metric(w, x, y, oracle))
    top = np.sort(np.abs(v).reshape(len(v), -1), axis=1)[:, ::-1][:, :5]
    dual = top.sum(1) if norm == "linf" else np.sqrt((top ** 2).sum(1))
    expected = np.minimum(margin / dual, 4.0)
    resolution = 4.0 / 2 ** 14
    assert np.all(got >= expected - 1e-5)
    assert np.all(got <= expected + resolution + 1e-5)


def test_oracle_beats_random_and_inverted(linear):
    model_fn, w, x, y, v, margin = linear
    metric = M.robustness_sr(model_fn, fractions=(0.1, 0.2, 0.3), epsilon_max=2.0, clip=None)
    oracle = jnp.asarray(np.abs(v))
    random = jnp.asarray(np.random.default_rng(1).random(v.shape), jnp.float32)
    vals = [float(metric(w, x, y, m).mean()) for m in (oracle, random, -oracle)]
    assert vals[0] < vals[1] < vals[2]
    # the inverted map picks the right half first, where the margin does not move: capped
    inverted_only_right = M.robustness_sr(model_fn, fractions=(0.5,), epsilon_max=2.0, clip=None)
    np.testing.assert_allclose(inverted_only_right(w, x, y, -oracle), 2.0)


def test_range_jit_and_misclassified(linear):
    model_fn, w, x, y, v, margin = linear
    metric = M.robustness_sr(model_fn, fractions=(0.25,), epsilon_max=0.5, search_steps=6,
                             pgd_steps=5)
    maps = jnp.asarray(np.abs(v))
    eager = metric(w, x, y, maps)
    assert bool(((eager >= 0) & (eager <= 0.5)).all())
    np.testing.assert_allclose(jax.jit(metric)(w, x, y, maps), eager, rtol=1e-6)
    # a wrong label is already an "attack" of radius 0
    np.testing.assert_allclose(metric(w, x, 1 - y, maps), 0.0)


def test_bad_input(linear):
    model_fn, w, x, y, v, margin = linear
    metric = M.robustness_sr(model_fn)
    with pytest.raises(ValueError, match="maps"):
        metric(w, x, y, jnp.zeros((5, 3, 3)))
    for kwargs, match in [({"norm": "l1"}, "norm"), ({"fractions": (0.0,)}, "fractions"),
                          ({"epsilon_max": 0.0}, "epsilon_max"), ({"pgd_steps": 0}, "pgd_steps"),
                          ({"clip": (1.0, 0.0)}, "clip")]:
        with pytest.raises(ValueError, match=match):
            M.robustness_sr(model_fn, **kwargs)
