"""Score functions: which scalar of the model output an explainer explains.

A ``score_fn(out, y) -> f32[B]`` receives the model output for a batch and the per-example
targets ``y`` (any pytree with leading axis B), so the same explainers serve classification,
regression, segmentation and detection.

Class indices outside ``[0, K)``: the explainers refuse them eagerly (``ValueError``), but under
``jax.jit`` labels are traced and cannot be checked before compilation. The class-index scores
(:func:`logit`, :func:`probability`, :func:`log_probability`) therefore return NaN for such a row,
with a NaN gradient, so every explainer's map row for it is NaN, never a plausible all-zero map
(and a negative index never wraps around to the last classes).
"""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

__all__ = ["log_probability", "logit", "object_detection", "probability", "regression",
           "semantic_segmentation"]


def logit(out: Float[Array, "B K"], y: Int[Array, " B"]) -> Float[Array, " B"]:
    """The output (logit) of class ``y``: ``out[b, y[b]]``, NaN where ``y[b]`` is not in
    ``[0, K)``. The default ``score_fn``."""
    k = out.shape[-1]
    y = jnp.asarray(y).astype(jnp.int32)
    picked = jnp.take_along_axis(out, jnp.clip(y, 0, k - 1)[:, None], axis=1)[:, 0]
    # times 1 or NaN: the value and the gradient of an out-of-range row are both NaN
    return picked * jnp.where((y >= 0) & (y < k), 1.0, jnp.nan).astype(picked.dtype)


def probability(out: Float[Array, "B K"], y: Int[Array, " B"]) -> Float[Array, " B"]:
    """The softmax probability of class ``y``."""
    return logit(jax.nn.softmax(out.astype(jnp.float32), axis=-1), y)


def log_probability(out: Float[Array, "B K"], y: Int[Array, " B"]) -> Float[Array, " B"]:
    """The log-softmax of class ``y``."""
    return logit(jax.nn.log_softmax(out.astype(jnp.float32), axis=-1), y)


CLASS_INDEX_SCORES = frozenset({logit, probability, log_probability})
"""The scores whose ``y`` are class indices (integer arrays, checked eagerly)."""


def regression(out: Float[Array, "B K"], y: Float[Array, "B K"]) -> Float[Array, " B"]:
    """A weighted sum of regression outputs, ``sum_k out[b, k] y[b, k]``: ``y`` one-hot picks one
    output, other weights explain a combination (Xplique's regression operator)."""
    return jnp.sum(out * y.astype(out.dtype), axis=-1)


def semantic_segmentation(out: Float[Array, "B H W K"], y: Float[Array, "B H W K"]
                          ) -> Float[Array, " B"]:
    """Mean output over a target region: ``sum(out * y) / sum(y)`` per example, where ``y`` is a
    (soft) mask per class, e.g. ``one_hot(class) * region`` to explain one class in one area."""
    y = y.astype(out.dtype)
    axes = tuple(range(1, out.ndim))
    return jnp.sum(out * y, axis=axes) / jnp.maximum(jnp.sum(y, axis=axes), 1.0)


def _iou(a: Float[Array, "... 4"], b: Float[Array, "... 4"]) -> Float[Array, "..."]:
    x1, y1 = jnp.maximum(a[..., 0], b[..., 0]), jnp.maximum(a[..., 1], b[..., 1])
    x2, y2 = jnp.minimum(a[..., 2], b[..., 2]), jnp.minimum(a[..., 3], b[..., 3])
    inter = jnp.maximum(x2 - x1, 0.0) * jnp.maximum(y2 - y1, 0.0)
    area = lambda r: (r[..., 2] - r[..., 0]) * (r[..., 3] - r[..., 1])
    return inter / jnp.maximum(area(a) + area(b) - inter, 1e-12)


def object_detection(out: Float[Array, "B D 5+K"], y: Float[Array, "B 5+K"]
                     ) -> Float[Array, " B"]:
    """Detection score of a target box (the D-RISE similarity, Petsiuk et al. CVPR 2021).

    ``out[b, i] = (x1, y1, x2, y2, objectness, class probabilities...)`` for D predicted boxes and
    ``y[b]`` the target in the same layout (objectness ignored, one-hot class). Score:
    ``max_i IoU(box_i, target) * objectness_i * cos(classes_i, target classes)``.
    """
    y = y.astype(out.dtype)
    iou = _iou(out[..., :4], y[:, None, :4])
    cls, tcls = out[..., 5:], y[:, None, 5:]
    cos = jnp.sum(cls * tcls, -1) / jnp.maximum(
        jnp.linalg.norm(cls, axis=-1) * jnp.linalg.norm(tcls, axis=-1), 1e-12)
    return jnp.max(iou * out[..., 4] * cos, axis=-1)
