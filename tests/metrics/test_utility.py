"""Human-centred utility: the paper's arithmetic, and meta-predictors that use explanations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xjax

M = xjax.metrics


def test_utility_score_reproduces_the_paper_table():
    # Colin, Fel et al. (NeurIPS 2022) Table 1: session accuracies (%) -> printed utility
    baseline = {"husky": [55.7, 66.2, 62.9], "leaves": [70.1, 76.8, 78.6],
                "imagenet": [58.8, 62.2, 58.8]}
    rows = [("husky", [53.9, 69.6, 73.3], 1.06), ("husky", [77.6, 85.7, 84.1], 1.34),
            ("leaves", [83.2, 88.7, 82.4], 1.13), ("imagenet", [50.3, 55.0, 61.4], 0.93),
            ("husky", [53.3, 61.0, 61.4], 0.95)]
    for dataset, acc, printed in rows:
        assert round(float(M.utility_score(acc, baseline[dataset])), 2) == printed
    np.testing.assert_allclose(M.utility_score(np.ones((4, 3)), np.ones((4, 3))), np.ones(4))
    with pytest.raises(ValueError, match="sessions"):
        M.utility_score([1.0, 2.0], [1.0, 2.0, 3.0])


@pytest.fixture(scope="module")
def shortcut():
    """8x8 noise images with a uniform top-left 2x2 block; the 'model decision' is whether that
    block is bright, and the oracle explanation marks it."""
    rng = np.random.default_rng(0)
    x = rng.random((260, 8, 8, 1)).astype(np.float32)
    x[:, :2, :2] = rng.random((260, 1, 1, 1))
    d = (x[:, 0, 0, 0] > 0.5).astype(np.int32)
    oracle = np.zeros((260, 8, 8), np.float32)
    oracle[:, :2, :2] = 1.0
    return jnp.asarray(x), jnp.asarray(d), jnp.asarray(oracle)


def test_similarity_meta_predictor_uses_the_explanation(shortcut):
    x, d, oracle = shortcut
    meta = M.similarity_meta_predictor(num_classes=2)
    kw = dict(sessions=3, key=jax.random.key(0))
    with_maps = M.simulatability(meta, x[:30], oracle[:30], d[:30], x[60:], d[60:], **kw)
    without = M.simulatability(meta, x[:30], None, d[:30], x[60:], d[60:], **kw)
    assert with_maps.shape == (3,) and np.all((with_maps >= 0) & (with_maps <= 1))
    assert with_maps[-1] >= 0.85 and without[-1] <= 0.7
    assert M.utility_score(with_maps, without) > 1.2
    # uniform weights are exactly plain 1-nearest-neighbour
    state = meta.fit(x[:30], jnp.ones((30, 8, 8)), d[:30], jnp.ones(30, bool))
    dist = jnp.sum((x[60:, None] - x[None, :30]) ** 2, axis=(2, 3, 4))
    np.testing.assert_array_equal(meta.predict(state, x[60:]), d[:30][jnp.argmin(dist, 1)])


def test_cnn_meta_predictor_moves_its_gradient_into_the_explanation(shortcut):
    x, d, oracle = shortcut
    meta = M.cnn_meta_predictor(num_classes=2, width=8, steps=100, learning_rate=1e-2)
    valid = jnp.ones(60, bool)
    key = jax.random.key(1)
    ones = jnp.ones((60, 8, 8))
    plain = meta.fit(x[:60], ones, d[:60], valid, key)
    guided = meta.fit(x[:60], oracle[:60], d[:60], valid, key)
    # no explanation means no penalty: same as lambda = 0 with the oracle maps
    zero = M.cnn_meta_predictor(num_classes=2, width=8, steps=100, learning_rate=1e-2,
                                explanation_weight=0.0)
    for a, b in zip(jax.tree.leaves(zero.fit(x[:60], oracle[:60], d[:60], valid, key)),
                    jax.tree.leaves(plain), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

    def outside_share(params):
        from xjax.metrics._utility import _cnn_apply
        g = jax.grad(lambda a: jnp.sum(jax.nn.log_softmax(_cnn_apply(params, a))))(x[60:])
        e = jnp.sum(g ** 2, axis=(1, 2, 3))
        return float(jnp.mean(jnp.sum((g * (1 - oracle[60:, ..., None])) ** 2, (1, 2, 3)) / e))

    assert outside_share(guided) < 0.5 * outside_share(plain)
    acc = lambda p: float(jnp.mean(meta.predict(p, x[60:]) == d[60:]))
    assert acc(guided) >= 0.9 and acc(guided) > acc(plain)


def test_simulatability_bad_input(shortcut):
    x, d, oracle = shortcut
    meta = M.similarity_meta_predictor(num_classes=2)
    with pytest.raises(ValueError, match="divisible"):
        M.simulatability(meta, x[:10], None, d[:10], x[60:], d[60:], sessions=3,
                         key=jax.random.key(0))
    with pytest.raises(ValueError, match="maps_train"):
        M.simulatability(meta, x[:9], oracle[:9, :4], d[:9], x[60:], d[60:], sessions=3,
                         key=jax.random.key(0))
    with pytest.raises(ValueError, match="baseline"):
        M.utility_protocol(meta, None, x, d, x, d, conditions=["saliency"], key=jax.random.key(0))


def test_empty_maps_carry_no_information_and_score_like_the_control(shortcut):
    """An all-zero map means "no information": uniform weights, so a method whose maps are all
    zero scores exactly as the no-explanation control (the old weights of 0 made every empty
    exemplar a perfect match, and Grad-CAM scored 38% on a two-class task)."""
    x, d, oracle = shortcut
    zero = jnp.zeros((30, 8, 8))
    np.testing.assert_array_equal(M.explanation_weights(zero, x[:30].shape), jnp.ones((30, 8, 8)))
    mixed = oracle[:30].at[3].set(0.0)
    w = M.explanation_weights(mixed, x[:30].shape)
    np.testing.assert_array_equal(w[3], 1.0)
    np.testing.assert_array_equal(w[4], oracle[4])
    assert bool(jnp.isnan(M.explanation_weights(zero.at[0, 0, 0].set(jnp.nan), x[:30].shape)[0]).all())
    kw = dict(sessions=3, key=jax.random.key(0))
    for meta in (M.similarity_meta_predictor(num_classes=2),
                 M.cnn_meta_predictor(num_classes=2, width=4, steps=20)):
        empty = M.simulatability(meta, x[:30], zero, d[:30], x[60:], d[60:], **kw)
        control = M.simulatability(meta, x[:30], None, d[:30], x[60:], d[60:], **kw)
        np.testing.assert_array_equal(empty, control)
        assert control[-1] > 0.5                       # above chance: the control learns something
