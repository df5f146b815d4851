"""xjax.plots: closed-form scaling per sign, rendered pixels against matplotlib's own colour maps,
layouts and colour bars, inline display, and no global matplotlib state."""

import io
import os
import subprocess
import sys

import matplotlib
import numpy as np
import pytest
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from PIL import Image

from xjax import plots

SIGNED = np.array([[-2.0, -1.0], [0.0, 4.0]])


@pytest.mark.parametrize("sign, expected", [
    ("all", [[-0.5, -0.25], [0.0, 1.0]]),
    ("positive", [[0.0, 0.0], [0.0, 1.0]]),
    ("negative", [[1.0, 0.5], [0.0, 0.0]]),
    ("absolute", [[0.5, 0.25], [0.0, 1.0]]),
])
def test_scale_map_closed_form(sign, expected):
    np.testing.assert_array_equal(plots.scale_map(SIGNED, sign=sign, percentile=100), expected)


def test_scale_map_degenerate_and_bad_input():
    for sign in plots.SIGNS:
        np.testing.assert_array_equal(plots.scale_map(np.zeros((3, 3)), sign=sign), 0.0)
        np.testing.assert_array_equal(plots.scale_map(np.full((3, 3), 2.0), sign=sign),
                                      0.0 if sign == "negative" else 1.0)
    # a map with only positive values has nothing to show on the negative side
    np.testing.assert_array_equal(plots.scale_map(np.ones((2, 2)), sign="negative"), 0.0)
    with pytest.raises(ValueError, match="sign: expected one of"):
        plots.scale_map(SIGNED, sign="abs")
    with pytest.raises(ValueError, match="percentile"):
        plots.scale_map(SIGNED, percentile=0)
    with pytest.raises(ValueError, match="NaN or infinite"):
        plots.scale_map(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="2-D"):
        plots.scale_map(np.ones((2, 2, 1)))
    with pytest.raises(ValueError, match="image: expected"):
        plots.attribution(np.ones((4, 4, 2)), np.ones((4, 4)))


def test_normalize_map_is_robust_to_a_peak():
    m = np.zeros((10, 10))
    m[0, 0] = 100.0
    m[1:, :] = 1.0
    out = plots.normalize_map(m, percentile=90)
    assert out.max() == 1.0 and out.min() == 0.0
    assert out[5, 5] == 1.0  # the 90th percentile is 1, so the single peak does not flatten the rest


def _render(image, amap, **kw):
    """Pixels of one attribution drawn on axes filling a 1 x 1 inch figure at 64 dpi."""
    fig = plots.figure(1.0, 1.0)
    ax = fig.add_axes((0, 0, 1, 1))
    plots.attribution(image, amap, ax=ax, colorbar=False, **kw)
    canvas = FigureCanvasAgg(fig)
    fig.set_dpi(64)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].astype(np.float64)


def _colour(cmap, value):
    return 255.0 * np.asarray(colormaps[cmap](value)[:3])


@pytest.mark.parametrize("sign, cmap, left, right", [
    ("positive", "Reds", 0.0, 1.0),
    ("negative", "Blues", 1.0, 0.0),
    ("all", "RdBu_r", -1.0, 1.0),
    ("absolute", "jet", 1.0, 1.0),
])
def test_rendered_colours_are_the_colour_map_of_the_scaled_map(sign, cmap, left, right):
    # a 2 x 2 map (stretched to the 16 x 16 image): -3 on the left, +3 on the right
    amap = np.array([[-3.0, 3.0], [-3.0, 3.0]])
    px = _render(np.zeros((16, 16, 3)), amap, sign=sign, alpha=1.0)
    h, w = px.shape[:2]
    vmin = -1.0 if sign == "all" else 0.0
    norm = lambda v: (v - vmin) / (1.0 - vmin)
    np.testing.assert_allclose(px[h // 2, w // 4], _colour(cmap, norm(left)), atol=2)
    np.testing.assert_allclose(px[h // 2, 3 * w // 4], _colour(cmap, norm(right)), atol=2)


def test_alpha_blends_the_map_over_the_image():
    amap = np.ones((4, 4))
    white = np.ones((16, 16, 3))
    px = _render(white, amap, sign="positive", alpha=0.25)
    expected = 0.25 * _colour("Reds", 1.0) + 0.75 * 255.0
    np.testing.assert_allclose(px[32, 32], expected, atol=2)


def test_attribution_figure_has_a_colour_bar_on_the_sign_scale():
    img = np.random.default_rng(0).random((8, 8, 3))
    fig = plots.attribution(img, SIGNED, sign="all")
    assert len(fig.axes) == 2
    assert fig.axes[1].get_ylim() == pytest.approx((-1.0, 1.0))
    fig = plots.attribution(img, SIGNED, sign="positive", colorbar=False)
    assert len(fig.axes) == 1
    fig = plots.attribution(None, SIGNED, sign="negative")          # the map alone
    assert fig.axes[1].get_ylim() == pytest.approx((0.0, 1.0))


def test_methods_layout_titles_and_errors():
    rng = np.random.default_rng(0)
    images = rng.random((2, 8, 8, 3))
    maps = {"saliency": rng.random((2, 8, 8)), "other": rng.random((2, 4, 4))}
    fig = plots.methods(images, maps, titles=["x", "y"])
    assert len(fig.axes) == 2 * 3
    assert fig.axes[1].get_title() == "saliency" and fig.axes[0].get_title() == "x"
    assert fig.axes[4].get_title() == ""                     # method names on the first row only
    assert len(plots.methods(images, maps, colorbar=True).axes) == 2 * 3 + 1
    assert len(plots.method_grid(images, maps).axes) == 6
    with pytest.raises(ValueError, match=r"maps_by_method\['other'\]: expected 2 maps"):
        plots.methods(images, {"saliency": maps["saliency"], "other": maps["other"][:1]})
    with pytest.raises(ValueError, match="at least one method"):
        plots.methods(images, {})
    with pytest.raises(ValueError, match="titles: expected 2"):
        plots.methods(images, maps, titles=["x"])


def test_concept_grid_layout():
    crops = np.random.default_rng(0).random((3, 4, 6, 6, 1))
    fig = plots.concept_grid(crops, titles=["a", "b", "c"])
    assert len(fig.axes) == 12 and fig.axes[4].get_title(loc="left") == "b"
    with pytest.raises(ValueError, match="titles: expected 3"):
        plots.concept_grid(crops, titles=["a"])


def test_figures_display_inline_and_save_atomically(tmp_path):
    fig = plots.attribution(np.zeros((8, 8, 3)), np.eye(8))
    png = fig._repr_png_()                       # what a notebook shows as the cell's value
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG" and min(image.size) > 100
    path = plots.save(fig, str(tmp_path / "a.png"), dpi=40)
    assert os.listdir(tmp_path) == ["a.png"]     # no temporary left behind
    with Image.open(path) as saved:
        assert saved.size == (int(3.2 * 1.25 * 40), int(3.2 * 40))


def test_no_global_matplotlib_state():
    backend = dict.__getitem__(matplotlib.rcParams, "backend")
    plots.methods(np.zeros((1, 8, 8, 3)), {"m": np.ones((1, 8, 8))}, colorbar=True)
    plots.attribution(np.zeros((8, 8, 3)), np.ones((8, 8)))._repr_png_()
    assert dict.__getitem__(matplotlib.rcParams, "backend") == backend
    # in a fresh interpreter, drawing and rendering never imports pyplot (no backend chosen,
    # nothing registered): a user's backend and figure list are theirs alone
    code = ("import sys, numpy as np\nfrom xjax import plots\n"
            "plots.methods(np.zeros((1, 8, 8, 3)), {'m': np.ones((1, 8, 8))})._repr_png_()\n"
            "plots.concept_grid(np.zeros((1, 2, 4, 4, 3)))._repr_png_()\n"
            "print('matplotlib.pyplot' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True)
    assert out.stdout.strip() == "False"
