"""A sweep of malformed arguments over the public factories and functions of every package
(the explainers and metrics at call time are swept by tests/attributions/test_contract.py and
tests/metrics/test_fidelity.py): each raises ValueError or TypeError naming the argument, at
construction or before anything is compiled. Cases marked in the issue: nmf with max_iter -5 or
0 or tol NaN returned the initialisation, FrobeniusDense(0, 4) raised ZeroDivisionError,
featviz.logit past the model's classes ran, sobol_indices with bad sizes raised NumPy errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import xjax

C, G, L, F, B, M = xjax.concepts, xjax.gsa, xjax.lipschitz, xjax.featviz, xjax.bounds, xjax.metrics
nan = float("nan")
CASES = [
    ("nmf max_iter -5", lambda: C.nmf(3, max_iter=-5), "max_iter must"),
    ("nmf max_iter 0", lambda: C.nmf(3, max_iter=0), "max_iter must"),
    ("nmf tol nan", lambda: C.nmf(3, tol=nan), "tol must"),
    ("nmf rank 0", lambda: C.nmf(0), "rank must"),
    ("nmf rank float", lambda: C.nmf(2.5), "rank must"),
    ("kmeans n_init 0", lambda: C.kmeans(3, n_init=0), "n_init must"),
    ("ica tol -1", lambda: C.ica(3, tol=-1.0), "tol must"),
    ("sparse max_iter 0", lambda: C.sparse_coding(3, max_iter=0), "max_iter must"),
    ("pca rank -1", lambda: C.pca(-1), "rank must"),
    ("topk_sae", lambda: C.topk_sae(0), "rank must"),
    ("sobol_sequence n 0", lambda: G.sobol_sequence(0, 3), "n must"),
    ("sobol_sequence d 0", lambda: G.sobol_sequence(8, 0), "d must"),
    ("replicated_design", lambda: G.replicated_design(0, 3), "nb_design must"),
    ("halton", lambda: G.halton(-1, 2), "n must"),
    ("latin", lambda: G.latin_hypercube(0, 2, key=jax.random.key(0)), "n must"),
    ("sobol_indices d -1", lambda: G.sobol_indices(jnp.ones(40), 8, -1), "d must"),
    ("frob 0", lambda: L.FrobeniusDense(0, 4, rngs=nnx.Rngs(0)), "in_features must"),
    ("spectral n_power 0", lambda: L.SpectralDense(4, 4, n_power=0, rngs=nnx.Rngs(0)), "n_power must"),
    ("groupsort 0", lambda: L.GroupSort(0), "group_size must"),
    ("bjorck beta", lambda: L.bjorck(jnp.eye(3), beta=0.9), "beta must"),
    ("power_iteration steps", lambda: L.power_iteration(jnp.eye(3), jnp.ones(3), steps=0), "steps must"),
    ("featviz logit -1", lambda: F.logit(-1), "index must"),
    ("featviz logit float", lambda: F.logit(1.5), "index must"),
    ("bounds method", lambda: B.bounds(lambda p, x: x, method="nope"), "method"),
    ("alpha_crown steps", lambda: B.alpha_crown(lambda p, x: x, steps=0), "alpha_steps must"),
    ("deletion steps", lambda: M.deletion(lambda p, x: x, steps=0), "steps must"),
    ("mu_fidelity grid", lambda: M.mu_fidelity(lambda p, x: x, grid_size=0), "grid_size must"),
    ("robustness fractions", lambda: M.robustness_sr(lambda p, x: x, fractions=()), "fractions must"),
    ("maco", lambda: F.maco((0, 8, 3)), "shape must"),
    ("fourier", lambda: F.fourier((8, 8, 0)), "shape must"),
    ("random_crops", lambda: F.random_crops((0, 8)), "size must"),
    ("jitter", lambda: F.jitter(-2), "d must be"),
    (
        "decoy corr",
        lambda: xjax.data.decoy_patch(
            np.zeros((4, 28, 28, 1), np.float32), np.zeros(4, np.int32), correlation=1.5
        ),
        "correlation",
    ),
    ("resize", lambda: xjax.data.resize_center_crop(np.zeros((10, 10, 3), np.uint8), 0), "size must"),
    (
        "binomial_pyramid",
        lambda: xjax.harmonization.binomial_pyramid(jnp.zeros((1, 8, 8)), levels=-1),
        "levels",
    ),
    ("ssim empty", lambda: M.ssim(jnp.zeros((0, 8, 8)), jnp.zeros((0, 8, 8))), "empty"),
    ("sparseness empty", lambda: M.sparseness(jnp.zeros((0, 4, 4))), "empty"),
    ("complexity list", lambda: M.complexity([[1.0]]), "maps"),
    ("ssim shapes", lambda: M.ssim(jnp.zeros((2, 8, 8)), jnp.zeros((2, 8, 9))), "one shape"),
    (
        "bounds alpha_steps",
        lambda: B.bounds(lambda p, x: x, method="alpha_crown", alpha_steps=0),
        "alpha_steps",
    ),
    (
        "bounds lipschitz_constant",
        lambda: B.bounds(lambda p, x: x, method="lipschitz", lipschitz_constant=-1.0),
        "lipschitz_constant",
    ),
    ("ica tol message", lambda: C.ica(3, tol=-1.0), ">= 0.0"),
]


@pytest.mark.parametrize("label,make,names", CASES, ids=[c[0] for c in CASES])
def test_malformed_argument_is_refused_by_name(label, make, names):
    with pytest.raises((ValueError, TypeError)) as e:
        make()
    assert names in str(e.value), str(e.value)


def test_featviz_objective_checked_against_the_model_before_tracing():
    """Before: ``logit(99)`` on a 10-class model ran (an index clipped under jit)."""
    m = xjax.models.small_cnn(pretrained="fashion_mnist")
    p = F.fourier((28, 28, 1))
    for obj, match in (
        (F.logit(99), "index 99 is out of range for a layer of 10"),
        (F.channel(500, layer=m.features_fn), "channel objective: index 500"),
        (F.direction(np.ones((1, 3), np.float32), layer=m.features_fn), "vectors of width 3"),
    ):
        with pytest.raises(ValueError, match=match):
            F.optimize(m.model_fn, m.params, obj, p, steps=2, key=jax.random.key(0))


def test_concept_factorizations_refuse_empty_and_non_finite_activations():
    from xjax._internal.validate import check_images

    with pytest.raises(ValueError, match="empty batch"):
        check_images(np.zeros((0, 4, 4, 3), np.float32), nonempty=True)
    craft = C.craft(lambda p, x: x, lambda p, a: a.mean((1, 2)), nb_concepts=2, patch_size=4)
    with pytest.raises(ValueError, match="craft.fit: x is an empty batch"):
        craft.fit(None, jnp.zeros((0, 8, 8, 3)))
    with pytest.raises(ValueError, match="NaN or infinite pixels in 1"):
        craft.fit(None, jnp.zeros((3, 8, 8, 3)).at[1, 0, 0, 0].set(jnp.inf))


def test_unit_range_tolerance_and_tracers():
    from xjax._internal.validate import UNIT_RANGE_TOLERANCE, check_images

    x = np.full((2, 4, 4, 3), 0.5, np.float32)
    # a resize's overshoot stays accepted; beyond the tolerance is another convention
    check_images(x.copy() + 0.5 + UNIT_RANGE_TOLERANCE / 2, unit_range=True)
    check_images(x.copy() - 0.5 - UNIT_RANGE_TOLERANCE / 2, unit_range=True)
    with pytest.raises(ValueError, match=r"x holds values in \[0.5, 1.2\].*x / 255"):
        check_images(x.copy().clip(0, 1) + np.eye(4, dtype=np.float32)[None, :, :, None] * 0.7,
                     unit_range=True)
    with pytest.raises(ValueError, match=r"\[-0.2, 0.5\].*mean/std"):
        check_images(np.concatenate([x, x * 0 - 0.2]), unit_range=True)
    # an empty batch has no range to refuse (check_inputs refuses it by name with nonempty)
    check_images(np.zeros((0, 4, 4, 3), np.float32), unit_range=True)
    # under jit the values cannot be read: checked on concrete arrays only
    jax.jit(lambda a: check_images(a, unit_range=True) or a)(x * 255)
    # a host array closed over inside someone's jit is concrete, and checked
    with pytest.raises(ValueError, match="x / 255"):
        jax.jit(lambda: check_images(x * 255, unit_range=True) or 0)()
