"""Sobol and HSIC attribution against closed forms on models linear in the mask."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xjax

A = xjax.attributions


def cell_model(weights):
    """Reads the mean of each 4x4 cell of an 8x8 grey image, weighted: linear in the mask."""
    w = jnp.asarray(weights, jnp.float32).reshape(2, 2)

    def model_fn(p, x):
        cells = x[..., 0].reshape(x.shape[0], 2, 4, 2, 4).mean((2, 4))
        return jnp.einsum("nij,ij->n", cells, w * p)[:, None]

    return model_fn


def test_total_indices_of_a_linear_model():
    """Inpainting x M with x = 1: Y = sum_i w_i M_i, so S_Ti = w_i^2 / sum w^2 (up to QMC error,
    which shrinks with nb_design)."""
    weights = np.array([3.0, 1.0, 0.0, 2.0])
    model_fn = cell_model(weights)
    x = jnp.ones((1, 8, 8, 1))
    y = jnp.zeros((1,), jnp.int32)
    exact = weights ** 2 / np.sum(weights ** 2)
    expected = jax.image.resize(jnp.asarray(exact, jnp.float32).reshape(1, 2, 2), (1, 8, 8),
                                "cubic")
    errors = []
    for n in (16, 256, 4096):
        maps = A.sobol(model_fn, grid_size=2, nb_design=n, design_key=jax.random.key(0))(
            jnp.float32(1.0), x, y)
        errors.append(float(jnp.abs(maps - expected).max()))
    assert errors[2] < errors[0] and errors[2] < 0.02, errors


@pytest.mark.parametrize("estimator", ["jansen", "homma", "janon", "glen", "saltelli"])
def test_ignored_cells_and_ranking(estimator):
    model_fn = cell_model([0.0, 0.0, 5.0, 0.0])          # only the bottom-left cell matters
    x = jnp.ones((1, 8, 8, 1))
    e = A.sobol(model_fn, grid_size=2, nb_design=64, estimator=estimator)
    maps = e(jnp.float32(1.0), x, jnp.zeros((1,), jnp.int32))[0]
    assert np.unravel_index(int(jnp.argmax(maps)), maps.shape)[0] >= 4
    assert int(jnp.argmax(maps)) % 8 < 4
    if estimator == "jansen":
        # C_i == A on ignored cells, so their index is exactly 0: the map is the bicubic image
        # of a grid that is zero but for the relevant cell (whose index is ~1 up to QMC error)
        values = jax.image.resize(jnp.array([[0.0, 0.0], [1.0, 0.0]]), (8, 8), "cubic")
        np.testing.assert_allclose(maps / maps.max(), values / values.max(), atol=1e-5)
        assert abs(float(maps.max() / values.max()) - 1.0) < 0.05


def test_perturbations_channels_and_interpolation():
    model_fn = cell_model([1.0, 2.0, 0.0, 0.5])
    x = jnp.asarray(np.random.default_rng(0).random((2, 8, 8, 1)), jnp.float32)
    y = jnp.zeros((2,), jnp.int32)
    for kw in ({"perturbation": "blurring", "sigma": 3}, {"perturbation": "amplitude"},
               {"perturbation": lambda xi, m: xi * m + 0.5 * (1 - m)},
               {"mask_interpolation": "bilinear"}, {"sampler": "halton"},
               {"sampler": "latin_hypercube", "design_key": jax.random.key(1)}):
        maps = A.sobol(model_fn, grid_size=2, nb_design=16, **kw)(jnp.float32(1.0), x, y)
        assert maps.shape == (2, 8, 8) and bool(jnp.isfinite(maps).all())
    x3 = jnp.repeat(x, 3, axis=-1)
    rgb = lambda p, xs: model_fn(p, xs[..., :1])        # reads the red channel only
    maps = A.sobol(rgb, grid_size=2, nb_design=16, nb_channels=3, channel_reduction=None)(
        jnp.float32(1.0), x3, y)
    assert maps.shape == (2, 8, 8, 3)
    assert float(jnp.abs(maps[..., 1:]).max()) < 1e-5 < float(maps[..., 0].max())


def test_hsic_finds_the_relevant_cell():
    model_fn = cell_model([0.0, 4.0, 0.0, 0.0])
    x = jnp.ones((1, 8, 8, 1))
    for kernel in ("binary", "rbf", "sobolev"):
        maps = A.hsic(model_fn, grid_size=2, nb_design=64, kernel=kernel,
                      estimator_batch_size=3)(jnp.float32(1.0), x, jnp.zeros((1,), jnp.int32))[0]
        top = np.unravel_index(int(jnp.argmax(maps)), maps.shape)
        assert top[0] < 4 and top[1] >= 4, (kernel, top)


def test_grid_larger_than_image():
    e = A.sobol(cell_model([1.0, 1.0, 1.0, 1.0]), grid_size=16, nb_design=4)
    with pytest.raises(ValueError, match="grid_size"):
        e(jnp.float32(1.0), jnp.ones((1, 8, 8, 1)), jnp.zeros((1,), jnp.int32))


def _reflect101(p, n):
    """OpenCV's BORDER_REFLECT_101 index rule (repeated until inside)."""
    while p < 0 or p >= n:
        p = -p if p < 0 else 2 * (n - 1) - p
    return p


def _numpy_cv_blur(x, k):
    """cv2.blur(x, (k, k)) with the default anchor (k // 2) and border, written out in float64."""
    h, w = x.shape[:2]
    out = np.zeros_like(x, np.float64)
    a = k // 2
    for i in range(h):
        for j in range(w):
            rows = [_reflect101(i + di, h) for di in range(-a, k - a)]
            cols = [_reflect101(j + dj, w) for dj in range(-a, k - a)]
            out[i, j] = x[np.ix_(rows, cols)].mean((0, 1))
    return out


@pytest.mark.parametrize("k", [10, 3, 4])
def test_box_blur_is_opencv_blur(k):
    from xjax.attributions._sobol import _box_blur

    x = np.random.default_rng(k).random((7, 9, 2))
    np.testing.assert_allclose(_box_blur(jnp.asarray(x, jnp.float32), k), _numpy_cv_blur(x, k),
                               rtol=1e-5, atol=1e-6)
