"""Matplotlib figures of explanations: one attribution with a colour bar, a method x image grid,
concept crops.

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot: nothing here
selects a backend, changes ``rcParams`` or registers the figure with pyplot. In a notebook the
returned figure displays inline as the cell's value (it renders itself as a PNG); in a script,
``fig.savefig(path)``. Each function also draws into axes you pass (``ax=`` / ``axes=``) so that
it composes with your own layouts.

Sign conventions follow Captum's ``visualize_image_attr`` (Kokhlikyan et al., 2020): ``"all"``
shows positive and negative attribution on a diverging scale around 0, ``"positive"`` and
``"negative"`` one side each, ``"absolute"`` the magnitude. A map is scaled by a high percentile
of its magnitude (99 by default, robust to a few peaks), so colours mean the same share of the
map's scale in every panel.
"""

import functools
import io

import numpy as np
from jaxtyping import Float

__all__ = ["SIGNS", "attribution", "concept_grid", "figure", "heatmap_overlay", "method_grid",
           "methods", "normalize_map", "save", "scale_map"]

# sign -> (how the signed map is folded, the value range after scaling, default colour map)
SIGNS = {
    "all": (lambda m: m, (-1.0, 1.0), "RdBu_r"),
    "positive": (lambda m: np.maximum(m, 0.0), (0.0, 1.0), "Reds"),
    "negative": (lambda m: np.maximum(-m, 0.0), (0.0, 1.0), "Blues"),
    "absolute": (np.abs, (0.0, 1.0), "jet"),
}


@functools.cache
def _figure_class():
    from matplotlib.figure import Figure

    class InlineFigure(Figure):
        """A figure that renders itself as a PNG when a notebook displays it."""

        def _repr_png_(self):
            buf = io.BytesIO()
            self.savefig(buf, format="png", bbox_inches="tight")
            return buf.getvalue()

    return InlineFigure


def figure(width: float, height: float):
    """A matplotlib ``Figure`` of ``width x height`` inches that displays inline in a notebook.

    It never touches pyplot: no backend is chosen and nothing is registered, so it is
    garbage-collected like any object. Draw on it with ``fig.subplots()``; show it by making it
    the last expression of a cell; write it with :func:`save`.
    """
    return _figure_class()(figsize=(width, height))


def save(fig, path: str, *, dpi: int = 100) -> str:
    """Write ``fig`` to ``path`` atomically (a hidden temporary file, then a rename), so an
    interrupted run never leaves a truncated image under the final name. Returns ``path``."""
    import os

    from xjax._internal.rundir import atomic_write

    fmt = os.path.splitext(path)[1].lstrip(".").lower() or "png"
    return atomic_write(path, lambda f: fig.savefig(f, dpi=dpi, format=fmt))


def _check_sign(sign):
    if sign not in SIGNS:
        raise ValueError(f"sign: expected one of {tuple(SIGNS)}, got {sign!r}")


def scale_map(m: Float[np.ndarray, "H W"], *, sign: str = "absolute",
              percentile: float = 99.0) -> Float[np.ndarray, "H W"]:
    """Fold a signed map by ``sign`` and scale it by the ``percentile`` of its folded values'
    magnitude, clipped to ``[-1, 1]`` (``sign="all"``) or ``[0, 1]``. An all-zero map stays zero;
    a non-finite map raises.

    Raises:
      ValueError: unknown sign, a percentile outside (0, 100], a map that is not 2-D or holds
        NaN or infinite values.
    """
    _check_sign(sign)
    if not 0.0 < percentile <= 100.0:
        raise ValueError(f"percentile: expected a value in (0, 100], got {percentile!r}")
    m = np.asarray(m, np.float64)
    if m.ndim != 2:
        raise ValueError(f"attribution map: expected a 2-D map [H, W], got shape {m.shape}")
    if not np.isfinite(m).all():
        raise ValueError("attribution map: holds NaN or infinite values (an input the explainer "
                         "flagged as invalid: see docs/reliability.md)")
    fold, (lo, hi), _ = SIGNS[sign]
    m = fold(m)
    top = np.percentile(np.abs(m), percentile)
    return np.clip(m / top, lo, hi) if top > 0 else np.zeros_like(m)


def normalize_map(m: Float[np.ndarray, "H W"], *, percentile: float = 99.0
                  ) -> Float[np.ndarray, "H W"]:
    """The magnitude of a map in [0, 1]: :func:`scale_map` with ``sign="absolute"``."""
    return scale_map(m, sign="absolute", percentile=percentile)


def _as_rgb(image):
    image = np.asarray(image, np.float32)
    if image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise ValueError(f"image: expected [H, W, 1] or [H, W, 3], got shape {image.shape}")
    if image.max() > 1.0:
        image = image / 255.0
    return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image


def heatmap_overlay(ax, image: Float[np.ndarray, "H W C"] | None,
                    attribution_map: Float[np.ndarray, "h w"], *, sign: str = "absolute",
                    cmap: str | None = None, alpha: float = 0.45, percentile: float = 99.0,
                    title: str | None = None):
    """Draw ``image`` (greyed when a signed scale is shown) with the scaled map on top, stretched
    to the image, on a matplotlib axis. Returns the map's ``AxesImage`` (for a colour bar).

    ``image=None`` draws the map alone (``alpha`` is then ignored).
    """
    heat = scale_map(attribution_map, sign=sign, percentile=percentile)
    _, (lo, hi), default_cmap = SIGNS[sign]
    if image is None:
        shown = ax.imshow(heat, cmap=cmap or default_cmap, vmin=lo, vmax=hi)
    else:
        rgb = _as_rgb(image)
        if sign == "all":                     # a diverging scale reads best over a grey image
            rgb = np.repeat(rgb.mean(-1, keepdims=True), 3, -1)
        ax.imshow(rgb)
        shown = ax.imshow(heat, cmap=cmap or default_cmap, alpha=alpha, vmin=lo, vmax=hi,
                          extent=(-0.5, rgb.shape[1] - 0.5, rgb.shape[0] - 0.5, -0.5))
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=8)
    return shown


def attribution(image: Float[np.ndarray, "H W C"] | None,
                attribution_map: Float[np.ndarray, "h w"], *, sign: str = "absolute",
                alpha: float = 0.45, cmap: str | None = None, colorbar: bool = True,
                percentile: float = 99.0, title: str | None = None, size: float = 3.2,
                ax=None):
    """One attribution map over its image, with a colour bar.

    Args:
      image: ``f32[H, W, C]`` in [0, 1] (C = 1 or 3), or ``None`` for the map alone.
      attribution_map: ``f32[h, w]``, any resolution (stretched to the image).
      sign: ``"all"`` (diverging, around 0), ``"positive"``, ``"negative"`` or ``"absolute"``.
      alpha: the map's opacity over the image.
      cmap: a matplotlib colour map name; by default one per sign (``SIGNS``).
      colorbar: draw a colour bar in units of the map's scale (its ``percentile``).
      percentile: the percentile of the magnitude that maps to the end of the scale.
      title: the axis title.
      size: the figure's height in inches (when no ``ax`` is given).
      ax: draw into this axis instead of a new figure.

    Returns:
      The ``Figure`` (``ax.figure`` when ``ax`` is given).
    """
    if ax is None:
        fig = figure(size * (1.25 if colorbar else 1.0), size)
        ax = fig.subplots()
    shown = heatmap_overlay(ax, image, attribution_map, sign=sign, cmap=cmap, alpha=alpha,
                            percentile=percentile, title=title)
    if colorbar:
        bar = ax.figure.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
        bar.set_label(f"share of the map's {percentile:g}th percentile", fontsize=7)
        bar.ax.tick_params(labelsize=7)
    return ax.figure


def methods(images: Float[np.ndarray, "N H W C"],
            maps_by_method: dict[str, Float[np.ndarray, "N h w"]], *, sign: str = "absolute",
            alpha: float = 0.45, cmap: str | None = None, colorbar: bool = False,
            percentile: float = 99.0, titles: list[str] | None = None, size: float = 2.2):
    """A figure with one row per image: the image, then one overlay per method (columns).

    Args:
      images: ``f32[N, H, W, C]`` in [0, 1].
      maps_by_method: ``{method name: f32[N, h, w]}``, each with one map per image.
      sign, alpha, cmap, percentile: as in :func:`attribution`, for every panel.
      colorbar: one colour bar for the whole grid (every panel uses the same scale).
      titles: optional row titles (for example the predicted class).
      size: the side of one panel in inches.

    Returns:
      The ``Figure``.

    Raises:
      ValueError: no method, a method whose maps do not number the images, titles of the wrong
        length.
    """
    images = np.asarray(images)
    n = len(images)
    if not maps_by_method:
        raise ValueError("maps_by_method: expected at least one method's maps, got none")
    for name, m in maps_by_method.items():
        if len(m) != n:
            raise ValueError(f"maps_by_method[{name!r}]: expected {n} maps (one per image), "
                             f"got {len(m)}")
    if titles is not None and len(titles) != n:
        raise ValueError(f"titles: expected {n} titles (one per image), got {len(titles)}")
    cols = 1 + len(maps_by_method)
    fig = figure(size * cols + (0.6 if colorbar else 0.0), size * n)
    axes = fig.subplots(n, cols, squeeze=False)
    shown = None
    for i in range(n):
        axes[i, 0].imshow(_as_rgb(images[i]))
        axes[i, 0].set_axis_off()
        if titles:
            axes[i, 0].set_title(titles[i], fontsize=8)
        for j, (name, m) in enumerate(maps_by_method.items(), start=1):
            shown = heatmap_overlay(axes[i, j], images[i], np.asarray(m[i]), sign=sign,
                                    cmap=cmap, alpha=alpha, percentile=percentile,
                                    title=name if i == 0 else None)
    if colorbar:
        fig.colorbar(shown, ax=axes.ravel().tolist(), fraction=0.02, pad=0.02)
    else:
        fig.tight_layout()
    return fig


def method_grid(images, maps, *, titles=None, size: float = 2.2):
    """:func:`methods` with its defaults (the name of the first release)."""
    return methods(images, maps, titles=titles, size=size)


def concept_grid(crops: Float[np.ndarray, "R K P P C"], *, titles: list[str] | None = None,
                 size: float = 1.1):
    """A figure with one row per concept showing its ``K`` example crops (e.g. the crops with
    the largest code on that concept).

    Args:
      crops: ``f32[R, K, P, P, C]`` in [0, 1] (or uint8).
      titles: optional row labels (e.g. "concept 3 (importance 0.21)").
      size: the side of one crop in inches.

    Returns:
      The ``Figure``.
    """
    crops = np.asarray(crops)
    r, k = crops.shape[:2]
    if titles is not None and len(titles) != r:
        raise ValueError(f"titles: expected {r} titles (one per concept), got {len(titles)}")
    fig = figure(size * k, size * r + 0.3)
    axes = fig.subplots(r, k, squeeze=False)
    for i in range(r):
        for j in range(k):
            axes[i, j].imshow(_as_rgb(crops[i, j]))
            axes[i, j].set_axis_off()
        if titles:
            axes[i, 0].set_title(titles[i], fontsize=7, loc="left")
    fig.tight_layout()
    return fig
