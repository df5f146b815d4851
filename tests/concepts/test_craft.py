"""CRAFT: crops, importance identities at a linear head, recursion, concept maps, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xjax.attributions import saliency
from xjax.concepts import craft, crop_boxes, nmf, pca

R = 3


def features(params, x):
    return x                                               # the "activations" are the image


def signed_features(params, x):
    return x - 0.5                                         # activations of both signs


def head(params, a):                                       # GAP then dense: affine in a
    return a.mean((1, 2)) @ params["w"]


@pytest.fixture(scope="module")
def toy():
    rng = np.random.default_rng(0)
    atoms = rng.random((R, 6)) ** 2
    codes = rng.random((12, 16, 16, R)) ** 4
    x = codes @ atoms + 0.01 * rng.random((12, 16, 16, 6))
    x = jnp.asarray(x / x.max(), jnp.float32)          # images are in [0, 1]
    params = {"w": jnp.asarray(rng.normal(size=(6, 4)), jnp.float32)}
    model = craft(features, head, nb_concepts=R, patch_size=8, sampler="sobol")
    return model, params, x, model.fit(params, x)


def test_crop_grid_by_hand():
    np.testing.assert_array_equal(crop_boxes(28, 28, 14), [[0, 0], [0, 11], [11, 0], [11, 11]])
    assert crop_boxes(224, 224, 64).shape == (4 * 4, 2)    # stride 51: 0, 51, 102, 153


def test_fit_shapes_and_nonnegative_codes(toy):
    _, _, x, bank = toy
    assert bank.crops.shape == (12 * 4, 8, 8, 6)
    assert bank.codes.shape == (48, R) and bank.components.shape == (R, 6)
    assert np.all(np.asarray(bank.codes) >= 0)
    np.testing.assert_array_equal(bank.crop_source, np.repeat(np.arange(12), 4))
    np.testing.assert_array_equal(bank.crops[5], x[1, 0:8, 6:14])


def _contributions(model, params, bank, x, y):
    u = model.transform(params, bank, x)                               # [N, h, w, R]
    w_prime = bank.components @ params["w"][:, y]                       # [R]
    return u.mean((1, 2)) * w_prime[None]


def test_sobol_total_indices_match_the_linear_closed_form(toy):
    model, params, x, bank = toy
    y = 2
    c = np.asarray(_contributions(model, params, bank, x[:4], y))
    expected = c ** 2 / (c ** 2).sum(1, keepdims=True)
    big = craft(features, head, nb_concepts=R, patch_size=8, sampler="sobol", nb_design=1024)
    st = np.asarray(big.importance(params, bank, x[:4], y))
    np.testing.assert_allclose(st, expected, atol=2e-2)


def test_gradient_input_equals_occlusion_and_is_complete(toy):
    model, params, x, bank = toy
    gi = np.asarray(model.importance(params, bank, x, 1, method="gradient_input"))
    occ = np.asarray(model.importance(params, bank, x, 1, method="occlusion"))
    np.testing.assert_allclose(gi, occ, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gi, _contributions(model, params, bank, x, 1), rtol=1e-4,
                               atol=1e-5)


def test_concept_maps_differentiate_through_the_encoder(toy):
    model, params, x, bank = toy
    f = model.concept_model(bank)
    g = np.asarray(jax.grad(lambda xi: f(params, xi)[0, 1])(x[:1]))
    eps, checked = 1e-2, 0
    support = lambda v: np.asarray(model.transform(params, bank, v)) > 0
    for idx in [(0, 3, 4, 0), (0, 10, 2, 5), (0, 7, 7, 2), (0, 1, 12, 4), (0, 14, 9, 1)]:
        d = jnp.zeros_like(x[:1]).at[idx].set(eps)
        if not np.array_equal(support(x[:1] + d), support(x[:1] - d)):
            continue                        # the codes are piecewise linear: skip a kink
        fd = (f(params, x[:1] + d)[0, 1] - f(params, x[:1] - d)[0, 1]) / (2 * eps)
        np.testing.assert_allclose(g[idx], fd, rtol=2e-2, atol=2e-6)
        checked += 1
    assert checked >= 3
    cam = model.attribute(params, bank, x[:2], 1)
    assert cam.shape == (2, 16, 16) and np.all(np.asarray(cam) >= 0)
    sal = model.attribute(params, bank, x[:2], jnp.asarray([0, 2]), explainer=saliency)
    assert sal.shape == (2, 16, 16) and np.all(np.isfinite(np.asarray(sal)))


def test_refine_factorizes_the_top_crops_again(toy):
    model, params, x, bank = toy
    sub = model.refine(params, bank, 0, features_fn=lambda p, v: jnp.sqrt(v), nb_concepts=2,
                       percentile=50)
    col = np.asarray(bank.codes[:, 0])
    assert sub.codes.shape == ((col >= np.percentile(col, 50)).sum(), 2)
    assert np.all(np.asarray(sub.codes) >= 0) and sub.components.shape == (2, 6)
    with pytest.raises(ValueError, match="too few"):
        model.refine(params, bank, 0, features_fn=features, nb_concepts=6, percentile=99)


def test_random_crops_are_keyed(toy):
    _, params, x, _ = toy
    model = craft(features, head, nb_concepts=R, patch_size=8, crop_mode="random", nb_crops=5)
    b1 = model.fit(params, x, key=jax.random.key(1))
    b2 = model.fit(params, x, key=jax.random.key(1))
    np.testing.assert_array_equal(b1.crops, b2.crops)
    assert b1.crops.shape == (60, 8, 8, 6)
    # every crop is an 8x8 window of its own source image, found here by exhaustive search
    xs = np.asarray(x)
    for crop, src in zip(np.asarray(b1.crops), np.asarray(b1.crop_source), strict=True):
        assert any(np.array_equal(crop, xs[src, r:r + 8, c:c + 8])
                   for r in range(9) for c in range(9))
    assert not np.array_equal(model.fit(params, x, key=jax.random.key(2)).crops, b1.crops)
    with pytest.raises(ValueError, match="key"):
        model.fit(params, x)


def test_other_factorizations_plug_in(toy):
    _, params, x, _ = toy
    model = craft(signed_features, head, nb_concepts=2, patch_size=8, factorization=pca(2))
    bank = model.fit(params, x)                            # signed activations are fine for PCA
    assert bank.components.shape == (2, 6)
    # the concepts are the top principal directions of the crops' activations (NumPy SVD, float64)
    a = np.asarray(bank.activations, np.float64)
    _, _, vt = np.linalg.svd(a - a.mean(0), full_matrices=False)
    comps = np.asarray(bank.components, np.float64)
    comps = comps / np.linalg.norm(comps, axis=1, keepdims=True)
    np.testing.assert_allclose(np.abs((comps * vt[:2]).sum(1)), 1.0, atol=1e-4)


def test_bad_input_errors(toy):
    _, params, x, _ = toy
    with pytest.raises(ValueError, match="non-negative activations.*my_layer"):
        craft(signed_features, head, nb_concepts=R, patch_size=8, layer="my_layer").fit(params, x)
    with pytest.raises(ValueError, match="too few"):
        craft(features, head, nb_concepts=R, patch_size=16).fit(params, x[:2])
    with pytest.raises(ValueError, match="exceed the activation width"):
        craft(features, head, nb_concepts=8, patch_size=8, factorization=nmf(8)).fit(params, x)
    with pytest.raises(ValueError, match="crop_mode"):
        craft(features, head, crop_mode="sliding")
    with pytest.raises(ValueError, match="method"):
        craft(features, head, nb_concepts=R, patch_size=8).importance(params, None, x, 0,
                                                                       method="tcav")


def test_real_model_end_to_end(fmnist_cnn):
    """CRAFT on the shipped Fashion-MNIST CNN (non-linear head): Sobol indices stay in [0, 1]."""
    m = fmnist_cnn
    x = jax.random.uniform(jax.random.key(0), (16, 28, 28, 1))
    model = craft(m.features_fn, m.head_fn, nb_concepts=4, patch_size=14, nb_design=16)
    bank = model.fit(m.params, x)
    st = np.asarray(model.importance(m.params, bank, x[:3], 0))
    assert st.shape == (3, 4) and np.all(np.isfinite(st))
    assert np.all(st > -0.2) and np.all(st < 1.5)
