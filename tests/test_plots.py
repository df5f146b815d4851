import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402

from xjax import plots  # noqa: E402


def test_normalize_map():
    m = np.zeros((10, 10))
    m[0, 0] = 100.0
    m[1:, :] = 1.0
    out = plots.normalize_map(m, percentile=90)
    assert out.max() == 1.0 and out.min() == 0.0
    assert out[5, 5] == 1.0  # the 90th percentile is 1, so the single peak does not flatten the rest
    assert plots.normalize_map(np.zeros((3, 3))).max() == 0.0


def test_method_grid_layout():
    import matplotlib.pyplot as plt

    images = np.random.default_rng(0).random((2, 8, 8, 3))
    maps = {"saliency": np.random.default_rng(1).random((2, 8, 8)),
            "other": np.random.default_rng(2).random((2, 8, 8))}
    fig = plots.method_grid(images, maps, titles=["x", "y"])
    assert len(fig.axes) == 2 * 3
    assert fig.axes[1].get_title() == "saliency" and fig.axes[0].get_title() == "x"
    plt.close(fig)
