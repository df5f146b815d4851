"""The decoy-patch shortcut dataset."""

import numpy as np
import pytest

import xjax


def test_decoy_patch_corner_follows_the_label():
    rng = np.random.default_rng(0)
    x = rng.random((4000, 28, 28, 1)).astype(np.float32) * 0.5
    y = rng.integers(0, 10, 4000).astype(np.int32)
    xd, yb, corner = xjax.data.decoy_patch(x, y, classes=(2, 4), correlation=0.9, seed=3)
    keep = (y == 2) | (y == 4)
    assert len(xd) == keep.sum()
    np.testing.assert_array_equal(yb, (y[keep] == 4).astype(np.int32))
    # the agreement rate is a binomial draw around the correlation (n ~ 800: sd ~ 0.011)
    assert abs(np.mean(corner == yb) - 0.9) < 0.045
    left, right = xd[:, :4, :4, 0], xd[:, :4, -4:, 0]
    assert np.all(left[corner == 0] == 1.0) and np.all(right[corner == 1] == 1.0)
    assert np.all(right[corner == 0] <= 0.5) and np.all(left[corner == 1] <= 0.5)
    np.testing.assert_array_equal(xd[:, 4:], x[keep][:, 4:])         # the rest is untouched
    for kwargs, match in [({"classes": (1, 1)}, "classes"), ({"correlation": 1.5}, "correlation"),
                          ({"patch_size": 20}, "patch_size")]:
        with pytest.raises(ValueError, match=match):
            xjax.data.decoy_patch(x, y, **kwargs)


def test_decoy_swatch_shade_encodes_the_label_in_a_random_corner():
    rng = np.random.default_rng(1)
    x = rng.random((4000, 28, 28, 1)).astype(np.float32) * 0.2
    y = rng.integers(0, 10, 4000).astype(np.int32)
    xd, code, corner = xjax.data.decoy_swatch(x, y, correlation=1.0, seed=2)
    np.testing.assert_array_equal(code, y)                       # a perfect shortcut in training
    squares = {0: xd[:, :4, :4, 0], 1: xd[:, :4, -4:, 0], 2: xd[:, -4:, :4, 0],
               3: xd[:, -4:, -4:, 0]}
    for c, sq in squares.items():
        sel = corner == c
        assert 0.2 < sel.mean() < 0.3                            # four corners, uniformly drawn
        np.testing.assert_allclose(sq[sel], np.broadcast_to((1.0 - 0.08 * y[sel])[:, None, None],
                                                            sq[sel].shape), rtol=1e-6)
        np.testing.assert_array_equal(sq[~sel], {0: x[:, :4, :4, 0], 1: x[:, :4, -4:, 0],
                                                 2: x[:, -4:, :4, 0], 3: x[:, -4:, -4:, 0]}[c][~sel])
    np.testing.assert_array_equal(xd[:, 4:-4], x[:, 4:-4])
    _, code0, _ = xjax.data.decoy_swatch(x, y, correlation=0.0, seed=3)
    # random at test: agreement with the label is chance (1/10; n = 4000: sd ~ 0.005)
    assert abs(np.mean(code0 == y) - 0.1) < 0.025
    for kwargs, match in [({"correlation": -0.1}, "correlation"), ({"num_classes": 20}, "num_classes"),
                          ({"patch_size": 15}, "patch_size"), ({"num_classes": 5}, "labels")]:
        with pytest.raises(ValueError, match=match):
            xjax.data.decoy_swatch(x, y, **kwargs)
