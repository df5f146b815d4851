"""PCA, FastICA, k-means, sparse coding and the TopK SAE against scikit-learn and known sources."""

import itertools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA, DictionaryLearning, FastICA

from xjax.concepts import ica, kmeans, lasso_codes, pca, sparse_coding, topk_sae


@pytest.fixture(scope="module")
def mixed():
    """Independent non-Gaussian sources (Laplace, uniform, binary) mixed into 24 features."""
    rng = np.random.default_rng(0)
    n = 600
    s = np.stack([rng.laplace(size=n), rng.uniform(-1.7, 1.7, n), rng.choice([-1.0, 1.0], n),
                  rng.laplace(size=n)], 1)
    mix = rng.normal(size=(4, 24))
    return (s @ mix + 0.01 * rng.normal(size=(n, 24))).astype(np.float32), s


def _rel(a, rec):
    return float(np.linalg.norm(a - rec) / np.linalg.norm(a))


def test_pca_matches_sklearn(mixed):
    a, _ = mixed
    fac = pca(3)
    bank = fac.fit(jnp.asarray(a))
    rec = np.asarray(fac.inverse(bank, fac.transform(bank, a)))
    sk = PCA(3).fit(a)
    assert abs(_rel(a, rec) - _rel(a, sk.inverse_transform(sk.transform(a)))) < 1e-4
    np.testing.assert_allclose(np.abs(bank.components @ sk.components_.T), np.eye(3), atol=1e-3)
    np.testing.assert_allclose(bank.explained_variance, sk.explained_variance_, rtol=1e-3)


def test_ica_recovers_independent_sources(mixed):
    a, s = mixed
    fac = ica(4)
    bank = fac.fit(jnp.asarray(a), key=jax.random.key(0))
    u = np.asarray(bank.codes)
    np.testing.assert_allclose(np.cov(u.T, bias=True), np.eye(4), atol=2e-2)  # whitened
    corr = np.abs(np.corrcoef(u.T, s.T)[:4, 4:])
    best = max(sum(corr[i, p[i]] for i in range(4)) for p in itertools.permutations(range(4)))
    assert best / 4 > 0.95, corr
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk = FastICA(4, random_state=0, whiten="unit-variance").fit(a)
    ref = _rel(a, sk.inverse_transform(sk.transform(a)))
    mine = _rel(a, np.asarray(fac.inverse(bank, fac.transform(bank, a))))
    assert abs(mine - ref) <= 0.05 * ref + 1e-4


def test_kmeans_matches_sklearn_and_separates_blobs():
    rng = np.random.default_rng(1)
    centers = rng.normal(size=(5, 8)) * 6
    labels = rng.integers(0, 5, 400)
    a = (centers[labels] + rng.normal(size=(400, 8))).astype(np.float32)
    fac = kmeans(5)
    bank = fac.fit(jnp.asarray(a), key=jax.random.key(0))
    ref = KMeans(5, n_init=4, random_state=0).fit(a).inertia_
    assert float(bank.inertia) <= 1.05 * ref
    u = np.asarray(bank.codes)
    assert np.all(u.sum(1) == 1) and set(np.unique(u)) == {0.0, 1.0}
    found = u.argmax(1)
    # same partition up to relabeling
    assert all(len(set(found[labels == k])) == 1 for k in range(5))
    np.testing.assert_array_equal(np.asarray(fac.transform(bank, a)), u)


def test_sparse_coding_objective_matches_sklearn():
    rng = np.random.default_rng(2)
    a = (rng.random((120, 6)) ** 3 @ rng.normal(size=(6, 16))).astype(np.float32)
    fac = sparse_coding(6, alpha=0.5)
    bank = fac.fit(jnp.asarray(a))
    assert np.all(np.linalg.norm(np.asarray(bank.components), axis=1) <= 1 + 1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dl = DictionaryLearning(6, alpha=0.5, random_state=0, max_iter=100,
                                transform_algorithm="lasso_cd", transform_alpha=0.5).fit(a)
        u = dl.transform(a)
    ref = (0.5 * np.sum((a - u @ dl.components_) ** 2) + 0.5 * np.abs(u).sum()) / len(a)
    assert float(bank.objective) <= 1.05 * ref, (float(bank.objective), ref)
    assert float(np.mean(np.asarray(bank.codes) == 0)) > 0.2          # the L1 makes zeros


def test_lasso_codes_are_optimal():
    rng = np.random.default_rng(3)
    w = jnp.asarray(rng.normal(size=(5, 12)), jnp.float32)
    a = jnp.asarray(rng.normal(size=(4, 12)), jnp.float32)
    u = lasso_codes(a, w, 0.3, steps=2000)
    grad = np.asarray(u @ (w @ w.T) - a @ w.T)
    u = np.asarray(u)
    on = u != 0
    np.testing.assert_allclose(grad[on], -0.3 * np.sign(u[on]), atol=1e-3)
    assert np.all(np.abs(grad[~on]) <= 0.3 + 1e-3)


def test_topk_sae_learns_sparse_dictionary():
    rng = np.random.default_rng(4)
    atoms = rng.normal(size=(12, 16))
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    z = np.zeros((2000, 12))
    for i in range(2000):
        z[i, rng.choice(12, 2, replace=False)] = rng.random(2) + 0.5
    a = (z @ atoms).astype(np.float32)
    fac = topk_sae(12, k=2, steps=1500, learning_rate=3e-3)
    bank = fac.fit(jnp.asarray(a), key=jax.random.key(0))
    codes = np.asarray(fac.transform(bank, a))
    assert (codes > 0).sum(1).max() <= 2 and np.all(codes >= 0)
    rec = np.asarray(fac.inverse(bank, codes))
    assert _rel(a, rec) < 0.3
    losses = np.asarray(bank.losses)
    assert losses[-100:].mean() < 0.2 * losses[:10].mean()
    np.testing.assert_allclose(np.linalg.norm(bank.components, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("make", [lambda: pca(2), lambda: ica(2), lambda: kmeans(2),
                                  lambda: sparse_coding(2, max_iter=5)],
                         ids=["pca", "ica", "kmeans", "sparse_coding"])
def test_fit_jit_equals_eager(make, mixed):
    a = jnp.asarray(mixed[0][:100])
    fac = make()
    eager = fac.fit(a, key=jax.random.key(1))
    jitted = jax.jit(lambda a, k: fac.fit(a, key=k))(a, jax.random.key(1))
    np.testing.assert_allclose(eager.components, jitted.components, rtol=1e-4, atol=1e-4)
