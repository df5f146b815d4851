"""A two-class Fashion-MNIST task with a label-correlated decoy patch: a known shortcut."""

import numpy as np
from jaxtyping import Float, Int

__all__ = ["decoy_patch"]


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
