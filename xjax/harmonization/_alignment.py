"""Alignment of explanations with human feature importance (the ClickMe evaluation)."""

from typing import NamedTuple

import jax.numpy as jnp
from jaxtyping import Array, Float

from xjax.metrics._common import spatial, spearman

__all__ = ["HUMAN_SPEARMAN_CEILING", "Alignment", "alignment"]

HUMAN_SPEARMAN_CEILING = 0.65753   # inter-human split-half Spearman of ClickMe maps


class Alignment(NamedTuple):
    """Per image: ``spearman`` normalized by the human ceiling, ``dice`` and ``iou`` of the
    top-k% pixels (``f32[N]`` each)."""

    spearman: Float[Array, " N"]
    dice: Float[Array, " N"]
    iou: Float[Array, " N"]


def alignment(maps: Float[Array, "N H W ..."], human_maps: Float[Array, "N H W"], *,
              ceiling: float = HUMAN_SPEARMAN_CEILING, percentile: float = 10.0) -> Alignment:
    """ClickMe alignment (Fel et al., NeurIPS 2022): per image, the Spearman correlation of the
    flattened maps divided by the human ceiling (0.65753), and Dice / IoU after keeping each map's
    top ``percentile`` % pixels (at or above its ``100 - percentile`` percentile). Channel maps are
    averaged; pass ``|saliency|`` max over channels as the reference evaluation does."""
    a = spatial(jnp.asarray(maps, jnp.float32))
    h = spatial(jnp.asarray(human_maps, jnp.float32))
    if a.shape != h.shape:
        raise ValueError(f"alignment: maps and human_maps must have the same (N, H, W) shape, got "
                         f"{a.shape} and {h.shape}")
    if not 0.0 < percentile < 100.0:
        raise ValueError(f"alignment: percentile must be in (0, 100), got {percentile}")
    n = a.shape[0]
    fa, fh = a.reshape(n, -1), h.reshape(n, -1)
    rho = spearman(fa, fh) / ceiling
    ta = fa >= jnp.percentile(fa, 100.0 - percentile, axis=1, keepdims=True)
    th = fh >= jnp.percentile(fh, 100.0 - percentile, axis=1, keepdims=True)
    inter = jnp.sum(ta & th, axis=1).astype(jnp.float32)
    sa, sh = jnp.sum(ta, axis=1).astype(jnp.float32), jnp.sum(th, axis=1).astype(jnp.float32)
    eps = 1e-9
    return Alignment(rho, 2.0 * inter / (sa + sh + eps), inter / (sa + sh - inter + eps))
