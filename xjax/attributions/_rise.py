"""RISE (Petsiuk et al., 2018): randomized input sampling for explanation."""

import math

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from xjax._internal.batching import add_items
from xjax._internal.validate import check_positive_int
from xjax.attributions._common import (
    accumulator_rows,
    check_batch_size,
    check_key,
    guarded,
    perturbation_accumulate,
)
from xjax.attributions._score import logit
from xjax.typing import Explainer, ModelFn, ScoreFn

__all__ = ["rise", "rise_mask"]


def rise_mask(key: jax.Array, h: int, w: int, *, grid_size: int, preservation_probability: float
              ) -> Float[Array, "H W"]:
    """One RISE mask: a Bernoulli ``grid_size x grid_size`` grid, bilinearly upsampled to
    ``(grid_size + 1) * cell`` (``cell = ceil(H / grid_size)``) and cropped at a random shift in
    ``[0, cell)``, so the mask is smooth and not aligned to the grid."""
    k_grid, k_dy, k_dx = jax.random.split(key, 3)
    grid = jax.random.bernoulli(k_grid, preservation_probability, (grid_size, grid_size))
    ch, cw = math.ceil(h / grid_size), math.ceil(w / grid_size)
    up = jax.image.resize(grid.astype(jnp.float32), ((grid_size + 1) * ch, (grid_size + 1) * cw),
                          "bilinear")
    dy = jax.random.randint(k_dy, (), 0, ch)
    dx = jax.random.randint(k_dx, (), 0, cw)
    return jax.lax.dynamic_slice(up, (dy, dx), (h, w))


def rise(model_fn: ModelFn, *, nb_samples: int = 4000, grid_size: int = 7,
         preservation_probability: float = 0.5, mask_value: float = 0.0,
         score_fn: ScoreFn = logit, batch_size: int | None = 64) -> Explainer:
    r"""RISE: the score-weighted average of random smooth masks.

    .. math:: \phi(x) = \frac{1}{P \, p} \sum_{i=1}^{P} s\big(f(x \odot M_i + v (1 - M_i))\big)
       \, M_i

    with ``p`` the preservation probability (``E[M] = p``). The same P masks (drawn from ``key``)
    serve every input, so each input's map depends only on itself and the key; masks are
    generated chunk by chunk inside the scan, never all at once.

    Args:
      model_fn, score_fn: as :func:`saliency`.
      nb_samples: P (4000, Xplique's default).
      grid_size: side of the Bernoulli grid (7).
      preservation_probability: p (0.5).
      mask_value: v, the value of hidden pixels (0).
      batch_size: most images per model call, over inputs and masks together.

    Returns:
      ``explainer(params, x, y, *, key) -> f32[N, H, W]``; ``key`` is required.

    References:
      V. Petsiuk, A. Das, K. Saenko, "RISE: Randomized Input Sampling for Explanation of
      Black-box Models", BMVC 2018, arXiv:1806.07421.
    """
    nb_samples = check_positive_int(nb_samples, "nb_samples", where="rise")
    grid_size = check_positive_int(grid_size, "grid_size", where="rise")
    batch_size = check_batch_size(batch_size, "rise")
    if not 0.0 < preservation_probability <= 1.0:
        raise ValueError(f"rise: preservation_probability must be in (0, 1], got "
                         f"{preservation_probability}")

    @guarded("rise", model_fn, score_fn)
    def explainer(params, x: Float[Array, "N H W C"], y, *, key=None):
        check_key(key, "rise")
        n, h, w = x.shape[:3]
        if grid_size > min(h, w):
            raise ValueError(f"rise: grid_size={grid_size} is larger than the images ({h}, {w})")

        def sample(p):
            return rise_mask(jax.random.fold_in(key, p), h, w, grid_size=grid_size,
                             preservation_probability=preservation_probability)

        def apply(xi, m):
            m = m.astype(xi.dtype)[..., None]
            return xi * m + mask_value * (1.0 - m)

        span, rows = accumulator_rows(n, nb_samples, batch_size)

        def contribution(acc, first, idx, p, s, masks, valid):
            s = jnp.where(valid, s, 0.0)
            return add_items(acc, first, idx - first, s[:, None, None] * masks, span)

        acc = perturbation_accumulate(model_fn, score_fn, params, x, y, nb_samples, sample,
                                      apply, contribution, jnp.zeros((rows, h, w), jnp.float32),
                                      batch_size=batch_size)
        return acc[:n] / (nb_samples * preservation_probability)

    return explainer
