"""Greedy-AS: the ranking it builds on models whose robustness is known in closed form."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xjax
from xjax.attributions._greedy_as import _least_squares

CELL_WEIGHTS = np.array([[1.0, 4.0], [2.0, 3.0]])       # per cell of a 2 x 2 grid on 8 x 8


def linear_model(p, x):
    """Two classes, logit 0 = 1 + sum(w x) over pixels, logit 1 = 0. Under an l_inf attack on
    a set S of pixels the decision flips at exactly eps* = (1 + w.x) / sum_S |w|."""
    w = jnp.kron(jnp.asarray(CELL_WEIGHTS), jnp.ones((4, 4))) * p
    s = 1.0 + jnp.einsum("hw,nhw->n", w, x[..., 0])
    return jnp.stack([s, jnp.zeros_like(s)], axis=1)


def test_least_squares_matches_numpy_minimum_norm_solution():
    rng = np.random.default_rng(0)
    z = (rng.random((40, 6)) < 0.3).astype(np.float64)
    z[:, 2] = 0.0                                        # a feature never sampled
    r = rng.normal(size=40)
    expected = np.linalg.lstsq(z, r, rcond=None)[0]
    got = np.asarray(_least_squares(jnp.asarray(z, jnp.float32), jnp.asarray(r, jnp.float32)))
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)
    assert abs(got[2]) < 1e-5


@pytest.mark.parametrize("objective", ["sr", "sr_bar"])
def test_ranks_cells_by_their_weight(objective):
    """sr: perturbing the heaviest cell flips the decision soonest; sr_bar: anchoring it keeps
    the decision longest. Either way the order of selection is the order of the weights."""
    x = jnp.full((2, 8, 8, 1), 0.1)
    e = xjax.attributions.greedy_as(linear_model, grid_size=2, nb_samples=2048,
                                    fraction_per_step=0.25, max_fraction=1.0,
                                    objective=objective, epsilon_max=4.0, search_steps=12,
                                    pgd_steps=4, clip=None, batch_size=512)
    maps = e(1.0, x, jnp.zeros(2, jnp.int32), key=jax.random.key(0))
    cells = np.asarray(maps[:, ::4, ::4])
    expected = np.argsort(np.argsort(CELL_WEIGHTS.ravel())).reshape(2, 2) + 1.0   # 4 = first
    np.testing.assert_array_equal(cells, np.broadcast_to(expected, cells.shape))


def test_stops_at_max_fraction_and_leaves_the_rest_at_zero():
    x = jnp.full((1, 8, 8, 1), 0.1)
    e = xjax.attributions.greedy_as(linear_model, grid_size=2, nb_samples=2048,
                                    fraction_per_step=0.25, max_fraction=0.5, epsilon_max=4.0,
                                    search_steps=10, pgd_steps=4, clip=None)
    cells = np.asarray(e(1.0, x, jnp.zeros(1, jnp.int32), key=jax.random.key(1))[0, ::4, ::4])
    np.testing.assert_array_equal(cells, [[0.0, 2.0], [0.0, 1.0]])


@pytest.mark.parametrize("kwargs,match", [
    ({"objective": "deletion"}, "objective"), ({"fraction_per_step": 0.0}, "fraction_per_step"),
    ({"max_fraction": 1.5}, "max_fraction"), ({"nb_samples": 0}, "nb_samples"),
    ({"norm": "l1"}, "norm"), ({"inclusion_probability": -0.1}, "inclusion_probability"),
])
def test_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        xjax.attributions.greedy_as(linear_model, **kwargs)


def test_grid_larger_than_image_is_refused():
    e = xjax.attributions.greedy_as(linear_model, grid_size=9, nb_samples=2)
    with pytest.raises(ValueError, match="grid_size=9"):
        e(1.0, jnp.zeros((1, 8, 8, 1)), jnp.zeros(1, jnp.int32), key=jax.random.key(0))
