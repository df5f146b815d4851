"""Occlusion (Zeiler & Fergus, 2014): the score drop when a patch is hidden."""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from xjax._internal.batching import add_items, per_input, slice_rows
from xjax._internal.validate import check_positive_int
from xjax.attributions._common import (
    accumulator_rows,
    check_batch_size,
    guarded,
    perturbation_accumulate,
)
from xjax.attributions._score import logit
from xjax.typing import Explainer, ModelFn, ScoreFn

__all__ = ["occlusion"]


def occlusion(model_fn: ModelFn, *, patch_size: int | tuple[int, int] = 3,
              patch_stride: int | tuple[int, int] = 3, occlusion_value: float = 0.0,
              score_fn: ScoreFn = logit, batch_size: int | None = 64) -> Explainer:
    r"""Occlusion sensitivity: slide a patch filled with ``occlusion_value`` over the image.

    .. math:: \phi(x)_{ij} = \frac{1}{|P_{ij}|} \sum_{p \ni (i, j)}
       \big(s(f(x)) - s(f(x \odot (1 - M_p) + v M_p))\big)

    where ``M_p`` is patch ``p`` and ``P_ij`` the patches covering pixel ``(i, j)`` (the map is
    averaged over overlapping patches, as Captum does; with ``patch_stride == patch_size``, the
    default, each pixel is covered once, as in Xplique). Patches start at multiples of the stride;
    when the stride does not divide ``H - size``, a last patch starts past ``H - size`` and is cut
    at the edge (Captum's windows), so every pixel is covered.

    Args:
      model_fn, score_fn: as :func:`saliency`.
      patch_size: patch side(s) (3, Xplique's default).
      patch_stride: step between patches (3).
      occlusion_value: the fill value (0: black).
      batch_size: most images per model call, over inputs and patches together.

    Returns:
      ``explainer(params, x, y, *, key=None) -> f32[N, H, W]``; the model runs
      ``1 + n_h n_w`` times per input (the unoccluded image in the same blocks as the
      patches), :math:`n_h = \lceil (H - size_h) / stride_h \rceil + 1`.

    References:
      M. D. Zeiler, R. Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014.
    """
    size = (patch_size, patch_size) if isinstance(patch_size, int) else tuple(patch_size)
    stride = (patch_stride, patch_stride) if isinstance(patch_stride, int) else tuple(patch_stride)
    for name, v in (("patch_size", size), ("patch_stride", stride)):
        if len(v) != 2:
            raise ValueError(f"occlusion: {name} must be an int or a pair, got {v}")
        for s in v:
            check_positive_int(s, name, where="occlusion")
    batch_size = check_batch_size(batch_size, "occlusion")

    @guarded("occlusion", model_fn, score_fn)
    def explainer(params, x: Float[Array, "N H W C"], y, *, key=None):
        del key
        h, w = x.shape[1:3]
        if size[0] > h or size[1] > w:
            raise ValueError(f"occlusion: patch_size {size} is larger than the images ({h}, {w})")
        # as Captum: ceil((H - size) / stride) + 1 windows per axis, the last one cut at the edge
        # when the stride does not divide H - size, so every pixel is covered
        nh, nw = -(-(h - size[0]) // stride[0]) + 1, -(-(w - size[1]) // stride[1]) + 1
        rows, cols = jnp.arange(h)[:, None], jnp.arange(w)[None, :]

        def patch_mask(p):
            """Perturbation 0 is the image itself (no patch), p >= 1 hides patch p - 1."""
            q = p - 1
            r0, c0 = (q // nw) * stride[0], (q % nw) * stride[1]
            return ((p > 0) & (rows >= r0) & (rows < r0 + size[0]) & (cols >= c0)
                    & (cols < c0 + size[1]))

        def apply(xi, m):
            return jnp.where(m[..., None], jnp.asarray(occlusion_value, xi.dtype), xi)

        # The unoccluded score runs in the same blocks as the patches (perturbation 0, no
        # separate small model call). Items visit each input's perturbations in order, so
        # perturbation 0 of an input comes first: its score is taken in its own block and kept
        # in ``base`` for that input's later blocks (when its patches span several).
        n = x.shape[0]
        span, n_rows = accumulator_rows(n, 1 + nh * nw, batch_size)

        def contribution(carry, first, idx, p, s, masks, valid):
            total, base = carry                 # s: [B], masks: [B, H, W]
            k = idx - first
            unoccluded = valid & (p == 0)
            here = per_input(k, jnp.where(unoccluded, s, 0.0), span)
            own = jnp.where(per_input(k, unoccluded.astype(jnp.float32), span) > 0, here,
                            slice_rows(base, first, span))
            drop = jnp.where(valid & (p > 0), jnp.take(own, k) - s, 0.0)
            return (add_items(total, first, k, drop[:, None, None] * masks.astype(jnp.float32),
                              span),
                    jax.lax.dynamic_update_slice_in_dim(base, own, first, axis=0))

        init = (jnp.zeros((n_rows, h, w), jnp.float32), jnp.zeros((n_rows,), jnp.float32))
        total, _ = perturbation_accumulate(model_fn, score_fn, params, x, y, 1 + nh * nw,
                                           patch_mask, apply, contribution, init,
                                           batch_size=batch_size)
        # patches covering each pixel: windows are row windows x column windows, so the count is
        # the outer product of the two axes' counts (the same for every input)
        def cover(n_pos, step, length, at):
            starts = jnp.arange(n_pos)[:, None] * step
            return ((at[None, :] >= starts) & (at[None, :] < starts + length)).sum(0)

        count = (cover(nh, stride[0], size[0], jnp.arange(h))[:, None]
                 * cover(nw, stride[1], size[1], jnp.arange(w))[None, :]).astype(jnp.float32)
        return total[:n] / jnp.maximum(count, 1.0)[None]

    return explainer
