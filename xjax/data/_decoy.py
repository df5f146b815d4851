"""Fashion-MNIST tasks with a label-correlated decoy: known shortcuts (a two-class corner patch,
and a ten-class gray swatch in the manner of Decoy MNIST)."""

import numpy as np
from jaxtyping import Float, Int

__all__ = ["decoy_patch", "decoy_swatch"]


def decoy_patch(x: Float[np.ndarray, "N H W C"], y: Int[np.ndarray, " N"], *,
                classes: tuple[int, int] = (2, 4), correlation: float = 0.95, patch_size: int = 4,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keep the images of two classes and stamp a white ``patch_size`` square in a top corner:
    top-left for the first class, top-right for the second, with probability ``correlation``
    (else the other corner). A model trained on it can take the corner as a shortcut; with
    ``correlation=0.5`` the corner says nothing about the garment, so the model's mistakes reveal
    the shortcut, which is what an explanation should convey to a meta-predictor.

    Args:
      x, y: images in [0, 1] and their labels (e.g. from :func:`fashion_mnist_arrays`).
      classes: the two labels kept (Pullover and Coat by default: hard to tell apart, so the
        shortcut is attractive); they become 0 and 1.
      correlation: probability that the corner matches the label (0.95).
      patch_size: side of the square in pixels (4).
      seed: numpy seed of the corner draws.

    Returns:
      ``(x_decoy: f32[M, H, W, C], y_binary: i32[M], corner: i32[M])`` with ``corner`` 0 (left)
      or 1 (right).
    """
    if len(classes) != 2 or classes[0] == classes[1]:
        raise ValueError(f"decoy_patch: classes must be two different labels, got {classes}")
    if not 0.0 <= correlation <= 1.0:
        raise ValueError(f"decoy_patch: correlation must be in [0, 1], got {correlation}")
    if not 0 < patch_size <= min(x.shape[1:3]) // 2:
        raise ValueError(f"decoy_patch: patch_size must be in [1, {min(x.shape[1:3]) // 2}], got "
                         f"{patch_size}")
    keep = (y == classes[0]) | (y == classes[1])
    xs = np.array(x[keep], np.float32, copy=True)
    yb = (y[keep] == classes[1]).astype(np.int32)
    rng = np.random.default_rng(seed)
    flip = rng.random(len(yb)) >= correlation
    corner = np.where(flip, 1 - yb, yb).astype(np.int32)
    w = xs.shape[2]
    xs[corner == 0, :patch_size, :patch_size] = 1.0
    xs[corner == 1, :patch_size, w - patch_size:] = 1.0
    return xs, yb, corner


def decoy_swatch(x: Float[np.ndarray, "N H W C"], y: Int[np.ndarray, " N"], *,
                 num_classes: int = 10, correlation: float = 1.0, patch_size: int = 4,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All classes, with a gray ``patch_size`` swatch in a corner drawn at random (one of four)
    whose *shade* encodes a class: ``1 - 0.08 * code`` (1.0 for class 0 down to 0.28 for class 9),
    where ``code`` is the label with probability ``correlation`` and a uniformly drawn class
    otherwise. In the manner of Decoy MNIST (Ross, Hughes, Doshi-Velez, IJCAI 2017): with
    ``correlation=1`` in training the shade is a perfect shortcut; with ``correlation=0`` at test
    time it is random, so a model's agreement with ``code`` measures its reliance on it (chance:
    ``1 / num_classes``). Unlike :func:`decoy_patch`, the swatch is present in every image and
    reading it takes a graded response to its gray level.

    Returns:
      ``(x_decoy: f32[N, H, W, C], code: i32[N], corner: i32[N])``; corner 0..3 = top-left,
      top-right, bottom-left, bottom-right.
    """
    if not 0.0 <= correlation <= 1.0:
        raise ValueError(f"decoy_swatch: correlation must be in [0, 1], got {correlation}")
    if not 2 <= num_classes <= 12:
        raise ValueError(f"decoy_swatch: num_classes must be in [2, 12] (shades 0.08 apart), got "
                         f"{num_classes}")
    if not 0 < patch_size <= min(x.shape[1:3]) // 2:
        raise ValueError(f"decoy_swatch: patch_size must be in [1, {min(x.shape[1:3]) // 2}], got "
                         f"{patch_size}")
    y = np.asarray(y)
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"decoy_swatch: labels must be in [0, {num_classes}), got "
                         f"[{y.min()}, {y.max()}]")
    rng = np.random.default_rng(seed)
    xs = np.array(x, np.float32, copy=True)
    code = np.where(rng.random(len(y)) < correlation, y,
                    rng.integers(0, num_classes, len(y))).astype(np.int32)
    corner = rng.integers(0, 4, len(y)).astype(np.int32)
    shade = (1.0 - 0.08 * code).astype(np.float32)
    h, w, p = xs.shape[1], xs.shape[2], patch_size
    for c, (rows, cols) in enumerate([(slice(0, p), slice(0, p)), (slice(0, p), slice(w - p, w)),
                                      (slice(h - p, h), slice(0, p)),
                                      (slice(h - p, h), slice(w - p, w))]):
        sel = corner == c
        xs[sel, rows, cols] = shade[sel, None, None, None]
    return xs, code, corner
