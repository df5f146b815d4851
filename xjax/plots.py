"""Matplotlib figures of explanations: heatmap overlays, a method x image grid, concept crops."""

import numpy as np
from jaxtyping import Float

__all__ = ["concept_grid", "heatmap_overlay", "method_grid", "normalize_map"]


def normalize_map(m: Float[np.ndarray, "H W"], *, percentile: float = 99.0
                  ) -> Float[np.ndarray, "H W"]:
    """Scale a map to [0, 1] by its ``percentile`` of absolute values (robust to a few peaks)."""
    m = np.abs(np.asarray(m, np.float64))
    top = np.percentile(m, percentile)
    return np.clip(m / top, 0.0, 1.0) if top > 0 else np.zeros_like(m)


def _as_rgb(image):
    image = np.asarray(image, np.float32)
    if image.max() > 1.0:
        image = image / 255.0
    return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image


def heatmap_overlay(ax, image: Float[np.ndarray, "H W C"], attribution: Float[np.ndarray, "h w"],
                    *, cmap: str = "jet", alpha: float = 0.45, title: str | None = None):
    """Draw ``image`` with ``attribution`` (resized to the image) on top, on a matplotlib axis."""
    image = _as_rgb(image)
    heat = normalize_map(attribution)
    ax.imshow(image)
    ax.imshow(heat, cmap=cmap, alpha=alpha, vmin=0, vmax=1,
              extent=(-0.5, image.shape[1] - 0.5, image.shape[0] - 0.5, -0.5))
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=8)
    return ax


def method_grid(images: Float[np.ndarray, "N H W C"], maps: dict[str, Float[np.ndarray, "N H W"]],
                *, titles: list[str] | None = None, size: float = 2.2):
    """A figure with one row per image: the image, then one overlay per method (columns).

    Args:
      images: ``f32[N, H, W, C]`` in [0, 1].
      maps: ``{method name: f32[N, H, W]}``.
      titles: optional row titles (e.g. the predicted class).

    Returns:
      The matplotlib ``Figure``.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    n = len(images)
    cols = 1 + len(maps)
    fig, axes = plt.subplots(n, cols, figsize=(size * cols, size * n), squeeze=False)
    for i in range(n):
        axes[i, 0].imshow(_as_rgb(images[i]))
        axes[i, 0].set_axis_off()
        if titles:
            axes[i, 0].set_title(titles[i], fontsize=8)
        for j, (name, m) in enumerate(maps.items(), start=1):
            heatmap_overlay(axes[i, j], images[i], np.asarray(m[i]), title=name if i == 0 else None)
    fig.tight_layout()
    return fig


def concept_grid(crops: Float[np.ndarray, "R K P P C"], *, titles: list[str] | None = None,
                 size: float = 1.1):
    """A figure with one row per concept showing its ``K`` example crops (e.g. the crops with
    the largest code on that concept).

    Args:
      crops: ``f32[R, K, P, P, C]`` in [0, 1] (or uint8).
      titles: optional row labels (e.g. "concept 3 (importance 0.21)").

    Returns:
      The matplotlib ``Figure``.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    crops = np.asarray(crops)
    r, k = crops.shape[:2]
    fig, axes = plt.subplots(r, k, figsize=(size * k, size * r + 0.3), squeeze=False)
    for i in range(r):
        for j in range(k):
            axes[i, j].imshow(_as_rgb(crops[i, j]), cmap="gray")
            axes[i, j].set_axis_off()
        if titles:
            axes[i, 0].set_title(titles[i], fontsize=7, loc="left")
    fig.tight_layout()
    return fig
