"""HKR, tau-CCE and certificates on hand-computed examples; PGD never beats a certificate."""

import math

import jax
import jax.numpy as jnp
import numpy as np

import xjax

L = xjax.lipschitz


def test_multiclass_hkr_hand_example():
    logits = jnp.asarray([[2.0, -1.0, 0.0], [0.5, 1.0, -2.0]])
    labels = jnp.asarray([0, 1])
    # hinge terms ReLU(1/2 - s f): [0, 0, 0.5] and [1.0, 0, 0]; true-class terms are 0
    np.testing.assert_allclose(L.hinge(logits, labels, margin=1.0), 1.5 / 6, rtol=1e-6)
    # KR per class: (2 - 0.5), (1 - (-1)), (0 - mean(0, -2)) -> mean 1.5
    np.testing.assert_allclose(L.kr(logits, labels), 1.5, rtol=1e-6)
    np.testing.assert_allclose(L.multiclass_hkr(logits, labels, alpha=10.0, margin=1.0), 1.0,
                               rtol=1e-6)
    # the true-class hinge term is weighted by K - 1
    np.testing.assert_allclose(L.hinge(jnp.asarray([[0.0, -1.0, -1.0]]), jnp.asarray([0])),
                               0.5 * 2 / 3, rtol=1e-6)


def test_binary_hkr_and_tau_cce():
    s = jnp.asarray([0.8, -0.2, 0.1])
    y = jnp.asarray([1, 0, 0])
    # hinge ReLU(0.5 - s f): [0, 0.3, 0.6] -> 0.3; KR: 0.8 - mean(-0.2, 0.1) = 0.85
    np.testing.assert_allclose(L.hkr(s, y, alpha=2.0, margin=1.0), 2 * 0.3 - 0.85, rtol=1e-6)
    logits = jnp.asarray([[2.0, -1.0, 0.0]])
    np.testing.assert_allclose(L.tau_cce(logits, jnp.asarray([0]), tau=1.0),
                               math.log(math.e ** 2 + math.e ** -1 + 1) - 2, rtol=1e-6)
    # tau scales the logits and divides the loss: tau f = (2, -1, 0) again
    np.testing.assert_allclose(L.tau_cce(logits / 4.0, jnp.asarray([0]), tau=4.0),
                               (math.log(math.e ** 2 + math.e ** -1 + 1) - 2) / 4, rtol=1e-6)


def test_certificate_values():
    logits = jnp.asarray([[2.0, -1.0, 0.0], [0.0, 1.0, 0.5]])
    np.testing.assert_allclose(L.certificate(logits), [2 / math.sqrt(2), 0.5 / math.sqrt(2)],
                               rtol=1e-6)
    np.testing.assert_allclose(L.certificate(logits, jnp.asarray([0, 0]), disjoint=True),
                               [1.0, -0.5], rtol=1e-6)
    np.testing.assert_allclose(L.certificate(logits, lipschitz=2.0)[0], 1 / math.sqrt(2),
                               rtol=1e-6)
    np.testing.assert_allclose(L.certificate(jnp.asarray([[-0.3]]), jnp.asarray([0])), [0.3],
                               rtol=1e-6)
    acc = L.certified_accuracy(logits, jnp.asarray([0, 1]), 0.5)
    np.testing.assert_allclose(acc, 0.5)


def test_attack_never_succeeds_inside_the_certified_radius():
    module = L.lipschitz_cnn(input_shape=(8, 8, 1), width=4, hidden=8, num_classes=3,
                             key=jax.random.key(3))
    plain = L.export(module)
    model_fn, params = xjax.models.from_nnx(plain)
    x = jax.random.uniform(jax.random.key(4), (6, 8, 8, 1))
    logits = model_fn(params, x)
    pred = jnp.argmax(logits, -1).astype(jnp.int32)
    radius = L.certificate(logits)
    attack = xjax.metrics.robustness_sr(model_fn, fractions=(1.0,), norm="l2",
                                        epsilon_max=float(radius.max()) * 8, search_steps=16,
                                        pgd_steps=40, clip=None, batch_size=None)
    found = attack(params, x, pred, jnp.ones((6, 8, 8)))
    assert bool((found >= radius * (1 - 1e-3)).all())          # never inside the certificate
    assert bool((found < float(radius.max()) * 8).any())      # and the attack does work
