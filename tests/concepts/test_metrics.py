"""Concept metrics: the exact identities of a linear head, assignment, distances, clusters."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xjax.concepts import (
    concept_deletion,
    concept_insertion,
    concept_mufidelity,
    frechet_distance,
    hoyer,
    linear_assignment,
    ood_score,
    sparsity,
    stability,
    strategic_clusters,
)


@pytest.fixture(scope="module")
def linear_problem():
    rng = np.random.default_rng(0)
    w_prime = jnp.asarray(rng.normal(size=6), jnp.float32)            # W w_c
    u = jnp.asarray(rng.random((5, 6)), jnp.float32)
    score = lambda ui: ui @ w_prime + 0.3
    phi = u * w_prime[None]                                            # Gradient x Input
    return score, u, phi, w_prime


def test_gradient_input_mufidelity_is_one_at_a_linear_head(linear_problem):
    score, u, phi, _ = linear_problem
    mu = concept_mufidelity(score, u, phi, key=jax.random.key(0), nb_samples=100)
    np.testing.assert_allclose(mu, 1.0, atol=1e-5)
    # a shuffled importance is not faithful
    mu_bad = concept_mufidelity(score, u, phi[:, ::-1], key=jax.random.key(0), nb_samples=100)
    assert float(mu_bad.mean()) < 0.9


def test_gradient_input_gives_the_optimal_deletion_and_insertion(linear_problem):
    score, u, phi, _ = linear_problem
    del_gi = np.asarray(concept_deletion(score, u, phi))
    ins_gi = np.asarray(concept_insertion(score, u, phi))
    perms = jnp.asarray(list(itertools.permutations(range(6))), jnp.float32)   # [720, 6]
    every = jax.jit(jax.vmap(lambda p: (
        concept_deletion(score, u, jnp.broadcast_to(-p[None], u.shape)),     # rank by p
        concept_insertion(score, u, jnp.broadcast_to(-p[None], u.shape)))))
    dels, inss = every(perms)
    best_del, best_ins = np.asarray(dels).min(0), np.asarray(inss).max(0)
    np.testing.assert_allclose(del_gi, best_del, atol=1e-5)
    np.testing.assert_allclose(ins_gi, best_ins, atol=1e-5)


def test_deletion_curve_by_hand():
    score = lambda ui: ui.sum()
    u = jnp.asarray([[3.0, 1.0, 2.0]])
    phi = jnp.asarray([[3.0, 1.0, 2.0]])
    # curve: 6, 3, 1, 0 -> trapezoid mean ((6+3)/2 + (3+1)/2 + (1+0)/2) / 3
    np.testing.assert_allclose(concept_deletion(score, u, phi), [(4.5 + 2 + 0.5) / 3], rtol=1e-6)
    # insertion: 0, 3, 5, 6
    np.testing.assert_allclose(concept_insertion(score, u, phi), [(1.5 + 4 + 5.5) / 3], rtol=1e-6)


def test_spatial_codes_are_accepted(linear_problem):
    """Codes with positions: removing a concept zeroes it at every position. With codes that are
    constant over positions the curve is the flat codes' curve, written out here in NumPy."""
    _, u_flat, phi, w_prime = linear_problem
    u = jnp.broadcast_to(u_flat[:, None, None, :], (5, 3, 3, 6))
    score = lambda ui: (ui.mean((0, 1)) * w_prime).sum()
    got = np.asarray(concept_deletion(score, u, phi))
    uf, wp, ph = (np.asarray(a, np.float64) for a in (u_flat, w_prime, phi))
    want = []
    for n in range(5):
        kept = uf[n].copy()
        curve = [kept @ wp]
        for r in np.argsort(-ph[n], kind="stable"):             # most important first
            kept[r] = 0.0
            curve.append(kept @ wp)
        curve = np.asarray(curve)
        want.append(((curve[1:] + curve[:-1]) / 2).mean())
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_linear_assignment_matches_brute_force():
    rng = np.random.default_rng(1)
    for n, m in [(5, 5), (4, 6), (6, 4)]:
        cost = rng.random((n, m))
        rows, cols = linear_assignment(cost)
        best = min(sum(cost[i, p[i]] for i in range(n))
                   for p in itertools.permutations(range(m), n)) if n <= m else \
            min(sum(cost[p[j], j] for j in range(m)) for p in itertools.permutations(range(n), m))
        assert len(set(cols)) == len(cols)
        np.testing.assert_allclose(cost[rows, cols].sum(), best, rtol=1e-12)


def test_stability_is_invariant_to_order_sign_and_scale():
    rng = np.random.default_rng(2)
    bank = rng.normal(size=(5, 12))
    other = -3.0 * bank[[2, 0, 4, 1, 3]]
    assert stability(bank, other) < 1e-12
    assert stability(bank, rng.normal(size=(5, 12))) > 0.2


def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(3)
    a = jnp.asarray(rng.normal(size=(4000, 3)), jnp.float32)
    np.testing.assert_allclose(frechet_distance(a, a), 0.0, atol=1e-3)
    shift = jnp.asarray([1.0, -2.0, 0.5])
    np.testing.assert_allclose(frechet_distance(a, a + shift[None]), 5.25, rtol=1e-3)
    # same mean, covariance S vs 4 S: tr S + 4 tr S - 2 tr (4 S^2)^(1/2) = tr S
    np.testing.assert_allclose(frechet_distance(a, 2 * a), np.trace(np.cov(np.asarray(a).T)),
                               rtol=1e-3)


def test_ood_score_separates_on_and_off_manifold():
    rng = np.random.default_rng(4)
    basis = np.abs(rng.normal(size=(2, 16)))
    a = np.abs(rng.normal(size=(300, 2))) @ basis                      # a 2-D cone
    near = np.abs(rng.normal(size=(300, 2))) @ basis                   # new draws, same cone
    far = np.abs(rng.normal(size=a.shape))
    on = float(ood_score(jnp.asarray(a), jnp.asarray(near)))
    off = float(ood_score(jnp.asarray(a), jnp.asarray(far)))
    assert 0.5 < on < 2.0 and off > 20 * on


def test_sparsity_and_hoyer_by_hand():
    u = jnp.asarray([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    np.testing.assert_allclose(sparsity(u), 3 / 8)
    np.testing.assert_allclose(hoyer(u), 0.5, atol=1e-6)               # (1 + 0) / 2


def test_strategic_clusters_by_hand():
    phi = jnp.asarray([[0.9, 0.1, 0.0], [0.8, 0.0, 0.1], [0.0, 0.2, 0.7], [0.6, 0.3, 0.0]])
    correct = jnp.asarray([True, False, True, True])
    c = strategic_clusters(phi, correct, min_points=2)
    np.testing.assert_array_equal(c.dominant, [0, 0, 2, 0])
    np.testing.assert_allclose(c.prevalence, [0.75, 0.0, 0.25])
    np.testing.assert_allclose(np.asarray(c.reliability)[[0, 2]], [2 / 3, 1.0])
    assert np.isnan(c.reliability[1])
    np.testing.assert_array_equal(c.important, [True, False, False])
    with pytest.raises(ValueError, match="one entry per image"):
        strategic_clusters(phi, correct[:3])
