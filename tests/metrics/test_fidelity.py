"""Fidelity metrics: an oracle explanation beats a random and an inverted one."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xjax

M = xjax.metrics


@pytest.fixture(scope="module")
def toy():
    """A linear 3-class model that reads only the left half of 8x8x1 images (positive
    weights), so the relevant pixels and each pixel's exact contribution are known."""
    rng = np.random.default_rng(0)
    w = np.zeros((8, 8, 1, 3), np.float32)
    w[:, :4] = rng.uniform(0.5, 2.0, (8, 4, 1, 3))
    w = jnp.asarray(w)
    model_fn = lambda p, x: jnp.einsum("nhwc,hwck->nk", x, p)
    x = jnp.asarray(rng.uniform(0.2, 1.0, (6, 8, 8, 1)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 3, 6), jnp.int32)
    oracle = jnp.einsum("nhwc,hwcn->nhw", x, w[..., y])       # exact contributions
    random = jnp.asarray(rng.random((6, 8, 8)), jnp.float32)
    return model_fn, w, x, y, oracle, random, -oracle


def test_deletion_and_insertion_order(toy):
    model_fn, w, x, y, oracle, random, inverted = toy
    dele = M.deletion(model_fn, steps=16)
    ins = M.insertion(model_fn, steps=16)
    d = [float(dele(w, x, y, m).mean()) for m in (oracle, random, inverted)]
    i = [float(ins(w, x, y, m).mean()) for m in (oracle, random, inverted)]
    assert d[0] < d[1] < d[2]
    assert i[0] > i[1] > i[2]
    # closed form for one image: AUC of the deletion curve of the oracle ordering
    c = np.sort(np.asarray(oracle[0]).ravel())[::-1]
    total = c.sum()
    ts = np.floor(np.linspace(0, 64, 17)).astype(int)
    curve = np.array([total - c[:t].sum() for t in ts])
    expected = np.mean((curve[1:] + curve[:-1]) / 2)
    np.testing.assert_allclose(dele(w, x[:1], y[:1], oracle[:1])[0], expected, rtol=1e-5)
    # jit equals eager; probabilities are in [0, 1]
    np.testing.assert_allclose(jax.jit(dele)(w, x, y, oracle), dele(w, x, y, oracle), rtol=1e-6)
    p = M.insertion(model_fn, activation="softmax")(w, x, y, oracle)
    assert bool(((p >= 0) & (p <= 1)).all())


def test_mu_fidelity(toy):
    model_fn, w, x, y, oracle, random, inverted = toy
    key = jax.random.key(0)
    for corr in ("pearson", "spearman"):
        mu = M.mu_fidelity(model_fn, grid_size=4, nb_samples=64, correlation=corr)
        exact = mu(w, x, y, oracle, key=key)
        # linear model, baseline 0: the score drop IS the removed attribution mass
        np.testing.assert_allclose(exact, 1.0, atol=1e-4)
        np.testing.assert_allclose(mu(w, x, y, inverted, key=key), -1.0, atol=1e-4)
        # a positive random map still correlates (its mass grows with the removed area), but
        # less than the oracle; a zero-mean random map does not
        assert -1.0 < float(mu(w, x, y, random, key=key).mean()) < 0.95
        assert float(jnp.abs(mu(w, x, y, random - 0.5, key=key)).mean()) < 0.5
        assert bool(((exact >= -1) & (exact <= 1 + 1e-6)).all())


def test_average_drop_increase_gain(toy):
    model_fn, w, x, y, oracle, random, inverted = toy
    drop, inc, gain = M.average_drop(model_fn), M.average_increase(model_fn), M.average_gain(model_fn)
    # the mask is |map| min-max normalized, so test against a map on the pixels the model ignores
    misplaced = jnp.zeros_like(oracle).at[:, :, 4:].set(1.0)
    assert float(drop(w, x, y, oracle).mean()) < float(drop(w, x, y, misplaced).mean())
    assert float(gain(w, x, y, oracle).mean()) >= float(gain(w, x, y, misplaced).mean())
    for m in (oracle, random, inverted, misplaced):
        d, i, g = drop(w, x, y, m), inc(w, x, y, m), gain(w, x, y, m)
        assert bool(((d >= 0) & (d <= 1)).all() & ((g >= 0) & (g <= 1)).all())
        assert set(np.unique(np.asarray(i)).tolist()) <= {0.0, 1.0}


def test_bad_input(toy):
    model_fn, w, x, y, oracle, *_ = toy
    with pytest.raises(ValueError, match="maps must have shape"):
        M.deletion(model_fn)(w, x, y, oracle[:, :4])
    with pytest.raises(ValueError, match="baseline"):
        M.deletion(model_fn, baseline=np.zeros((4, 4, 1)))(w, x, y, oracle)
    with pytest.raises(ValueError, match="steps"):
        M.deletion(model_fn, steps=0)
    with pytest.raises(ValueError, match="key"):
        M.mu_fidelity(model_fn, grid_size=4)(w, x, y, oracle)
    with pytest.raises(ValueError, match="activation"):
        M.insertion(model_fn, activation="relu")


def test_out_of_range_labels_under_jit_give_nan(toy):
    """Traced labels cannot be checked: a label outside [0, K) gives NaN, never a plausible score."""
    model_fn, w, x, y, oracle, random, inverted = toy
    bad = y.at[1].set(3).at[4].set(-1)
    mu = M.mu_fidelity(model_fn, grid_size=2, nb_samples=8, subset_percent=0.25)
    for metric in (M.deletion(model_fn, steps=4), M.insertion(model_fn, steps=4),
                   lambda *a: mu(*a, key=jax.random.key(0)), M.average_drop(model_fn)):
        full = np.asarray(metric(w, x, y, oracle))
        got = np.asarray(jax.jit(metric)(w, x, bad, oracle))
        assert np.isnan(got[[1, 4]]).all(), metric
        np.testing.assert_allclose(got[[0, 2, 3, 5]], full[[0, 2, 3, 5]], rtol=1e-5, atol=1e-6)
    margin = xjax.metrics.robustness_sr(model_fn, search_steps=2, pgd_steps=2)
    assert np.isnan(np.asarray(jax.jit(margin)(w, x, bad, oracle))[[1, 4]]).all()


def test_empty_float_labels_and_non_finite_images(toy):
    """One decision for every metric: an empty batch and float labels are refused eagerly
    (before: a slice error from the batching engine; labels truncated), NaN or infinite pixels
    are refused eagerly and give NaN rows under jit (a linear model would otherwise score them)."""
    model_fn, w, x, y, oracle, random, inverted = toy
    mu = M.mu_fidelity(model_fn, grid_size=2, nb_samples=8, subset_percent=0.25)
    margin = M.robustness_sr(model_fn, search_steps=2, pgd_steps=2)
    metrics = (M.deletion(model_fn, steps=4), M.insertion(model_fn, steps=4),
               lambda *a: mu(*a, key=jax.random.key(0)), M.average_drop(model_fn), margin)
    bad = x.at[2, 0, 0, 0].set(jnp.nan).at[5, 1, 1, 0].set(jnp.inf)
    for metric in metrics:
        with pytest.raises(ValueError, match="x is an empty batch"):
            metric(w, x[:0], y[:0], oracle[:0])
        with pytest.raises(TypeError, match="integer class indices"):
            metric(w, x, y.astype(jnp.float32) + 0.2, oracle)
        with pytest.raises(ValueError, match="NaN or infinite pixels in 2 of its 6 images"):
            metric(w, bad, y, oracle)
        got = np.asarray(jax.jit(metric)(w, bad, y, oracle))
        full = np.asarray(metric(w, x, y, oracle))
        assert np.isnan(got[[2, 5]]).all()
        np.testing.assert_allclose(got[[0, 1, 3, 4]], full[[0, 1, 3, 4]], rtol=1e-5, atol=1e-6)
