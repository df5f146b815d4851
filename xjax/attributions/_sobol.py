"""Sobol attribution (Fel et al., NeurIPS 2021) and HSIC attribution (Novello et al., 2022)."""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from xjax._internal.validate import check_positive_int
from xjax.attributions._common import check_batch_size, guarded, score_table
from xjax.attributions._score import logit
from xjax.gsa._hsic import KERNELS, hsic_scores
from xjax.gsa._sobol import ESTIMATORS, SAMPLERS, replicated_design, sample, sobol_indices
from xjax.typing import Explainer, ModelFn, ScoreFn

__all__ = ["PERTURBATIONS", "hsic", "sobol"]

PERTURBATIONS = ("inpainting", "blurring", "amplitude")
_INTERPOLATIONS = ("nearest", "bilinear")


def _box_blur(x: Float[Array, "H W C"], size: int) -> Float[Array, "H W C"]:
    """Mean over a ``size x size`` window as OpenCV's ``blur(x, (size, size))`` with its default
    anchor and border: the window of pixel i covers ``[i - size // 2, i + size - 1 - size // 2]``
    (for size 10: ``[i - 5, i + 4]``) and indices past an edge are mirrored without repeating it
    (``BORDER_REFLECT_101``: ``-1 -> 1``)."""
    lo, hi = size // 2, size - 1 - size // 2
    padded = jnp.pad(x, ((lo, hi), (lo, hi), (0, 0)), mode="reflect")
    s = jax.lax.reduce_window(padded, 0.0, jax.lax.add, (size, size, 1), (1, 1, 1), "VALID")
    return s / (size * size)


def _perturbation(perturbation, sigma):
    """``tau(x, m)`` with ``m: f32[H, W, 1 or C]`` in [0, 1]."""
    if callable(perturbation):
        return perturbation
    if perturbation == "inpainting":
        return lambda x, m: x * m                           # baseline 0: x m + (1 - m) 0
    if perturbation == "blurring":
        size = int(sigma)
        return lambda x, m: x * m + (1.0 - m) * _box_blur(x, size)
    if perturbation == "amplitude":
        return lambda x, m: x + (m - 0.5) * sigma
    raise ValueError(f"perturbation must be one of {PERTURBATIONS} or a callable, got "
                     f"{perturbation!r}")


def _check_common(name, grid_size, nb_design, batch_size, perturbation, mask_interpolation,
                  nb_channels):
    grid_size = check_positive_int(grid_size, "grid_size", where=name)
    nb_design = check_positive_int(nb_design, "nb_design", where=name)
    nb_channels = check_positive_int(nb_channels, "nb_channels", where=name)
    batch_size = check_batch_size(batch_size, name)
    if mask_interpolation not in _INTERPOLATIONS:
        raise ValueError(f"{name}: mask_interpolation must be one of {_INTERPOLATIONS}, got "
                         f"{mask_interpolation!r}")
    if not callable(perturbation) and perturbation not in PERTURBATIONS:
        raise ValueError(f"{name}: perturbation must be one of {PERTURBATIONS} or a callable, "
                         f"got {perturbation!r}")
    return grid_size, nb_design, batch_size, nb_channels


def _masked_scores(name, model_fn, score_fn, params, x, y, masks, *, grid_size, nb_channels,
                   perturb, mask_interpolation, batch_size) -> Float[Array, "N P"]:
    """Scores of every input under every low-resolution mask ``masks: f32[P, d]``."""
    n, h, w, c = x.shape
    if grid_size > min(h, w):
        raise ValueError(f"{name}: grid_size={grid_size} is larger than the images ({h}, {w})")
    if nb_channels not in (1, c):
        raise ValueError(f"{name}: nb_channels must be 1 or the image channels ({c}), got "
                         f"{nb_channels}")
    nb = masks.shape[0]

    def sample_mask(p):                                      # f32[H, W, nb_channels]
        low = masks[p].reshape(grid_size, grid_size, nb_channels)
        return jax.image.resize(low, (h, w, nb_channels), mask_interpolation)

    def apply(xi, m):
        return perturb(xi, m.astype(xi.dtype))

    return score_table(model_fn, score_fn, params, x, y, nb, sample_mask, apply,
                       batch_size=batch_size)


def _to_map(indices: Float[Array, "N d"], grid_size, nb_channels, hw, channel_reduction):
    n = indices.shape[0]
    grid = indices.reshape(n, grid_size, grid_size, nb_channels)
    if channel_reduction == "mean":
        grid = grid.mean(-1, keepdims=True)
    out = jax.image.resize(grid, (n,) + tuple(hw) + (grid.shape[-1],), "cubic")
    return out[..., 0] if channel_reduction == "mean" else out


def sobol(model_fn: ModelFn, *, grid_size: int = 8, nb_design: int = 32, sampler: str = "sobol",
          skip: int = 1, estimator: str = "jansen", perturbation: str | Callable = "inpainting",
          sigma: float | None = None, mask_interpolation: str = "nearest", nb_channels: int = 1,
          design_key: jax.Array | None = None, score_fn: ScoreFn = logit,
          batch_size: int | None = 256, channel_reduction: str | None = "mean") -> Explainer:
    r"""Sobol attribution: total-order Sobol' indices of the score w.r.t. random grid masks.

    Each of the ``d = grid_size^2 nb_channels`` mask cells is a variable
    :math:`M_i \sim U[0, 1]`; the explained quantity is :math:`Y = s(f(\tau(x, \uparrow M)), y)`
    with ``tau`` the perturbation and the up arrow the mask upsampling. The map is

    .. math:: S_{T_i} = \frac{E_{M_{\sim i}}[\mathrm{Var}_{M_i}(Y \mid M_{\sim i})]}{\mathrm{Var}(Y)}

    estimated on the replicated design ``[A; B; C_1..C_d]`` (``nb_design (d + 2)`` model calls per
    input; 2112 at the defaults), then upsampled to the image with bicubic interpolation
    (unsigned; cubic overshoot can leave [0, 1] slightly). The design is built once at
    construction and shared by every input.

    Args:
      model_fn, score_fn: as :func:`saliency`.
      grid_size: g, the mask grid side (8, Xplique; the paper's ImageNet runs use 11).
      nb_design: N, a power of two (32, Xplique).
      sampler: ``"sobol"`` (default, unscrambled as Xplique's), ``"halton"``,
        ``"latin_hypercube"``, ``"uniform"``.
      skip: Sobol points left out (1: the reference code's ``tf.math.sobol_sample``, which starts
        at the first non-zero point, so no row of A, B or C_i is an all-zero mask; 0: scipy's
        sequence from the origin). Only with ``sampler="sobol"``.
      estimator: ``"jansen"`` (default), ``"homma"``, ``"janon"``, ``"glen"``, ``"saltelli"``.
      perturbation: ``"inpainting"`` (``x M``: baseline 0), ``"blurring"`` (mix with a
        ``sigma x sigma`` box blur, sigma=10), ``"amplitude"`` (``x + (M - 1/2) sigma``, sigma=1,
        the documented additive form) or a callable ``tau(x: f32[H, W, C], m: f32[H, W, c])``.
      sigma: parameter of blurring/amplitude (defaults 10 and 1).
      mask_interpolation: ``"nearest"`` (Xplique: square cells) or ``"bilinear"`` (original TF
        code: smooth masks).
      nb_channels: 1 (one mask for all channels) or C (one variable per cell and channel).
      design_key: Owen-scrambles the Sobol design / rotates Halton / draws the random samplers.
      batch_size: most images per model call, inputs and masks together (256, Xplique).
      channel_reduction: with ``nb_channels = C``: ``"mean"`` gives ``f32[N, H, W]``, ``None``
        keeps ``f32[N, H, W, C]``.

    Returns:
      ``explainer(params, x, y, *, key=None) -> f32[N, H, W]`` (``key`` unused: the design is
      fixed at construction).

    Raises:
      ValueError: ``nb_design`` not a power of two (Sobol sampler), unknown sampler, estimator or
        perturbation, ``grid_size`` larger than the image (at call).

    References:
      T. Fel, R. Cadène, M. Chalvidal, M. Cord, D. Vigouroux, T. Serre, "Look at the Variance!
      Efficient Black-box Explanations with Sobol-based Sensitivity Analysis", NeurIPS 2021,
      arXiv:2111.04138.
    """
    grid_size, nb_design, batch_size, nb_channels = _check_common(
        "sobol", grid_size, nb_design, batch_size, perturbation, mask_interpolation, nb_channels)
    if sampler not in SAMPLERS:
        raise ValueError(f"sobol: sampler must be one of {SAMPLERS}, got {sampler!r}")
    if sampler == "sobol" and nb_design & (nb_design - 1):
        raise ValueError(f"sobol: nb_design must be a power of two, got {nb_design}")
    if estimator not in ESTIMATORS:
        raise ValueError(f"sobol: estimator must be one of {ESTIMATORS}, got {estimator!r}")
    if channel_reduction not in ("mean", None):
        raise ValueError(f"sobol: channel_reduction must be 'mean' or None, got "
                         f"{channel_reduction!r}")
    sigma = (10.0 if perturbation == "blurring" else 1.0) if sigma is None else sigma
    perturb = _perturbation(perturbation, sigma)
    d = grid_size * grid_size * nb_channels
    design = np.asarray(replicated_design(nb_design, d, sampler=sampler, key=design_key,
                                          skip=skip if sampler == "sobol" else 0))

    @guarded("sobol", model_fn, score_fn)
    def explainer(params, x: Float[Array, "N H W C"], y, *, key=None):
        del key
        values = _masked_scores("sobol", model_fn, score_fn, params, x, y, jnp.asarray(design),
                                grid_size=grid_size, nb_channels=nb_channels, perturb=perturb,
                                mask_interpolation=mask_interpolation, batch_size=batch_size)
        total = sobol_indices(values, nb_design, d, estimator=estimator).total
        return _to_map(total, grid_size, nb_channels, x.shape[1:3], channel_reduction)

    return explainer


def hsic(model_fn: ModelFn, *, grid_size: int = 8, nb_design: int = 500, sampler: str = "sobol",
         kernel: str = "binary", perturbation: str | Callable = "inpainting",
         sigma: float | None = None, mask_interpolation: str = "nearest", nb_channels: int = 1,
         estimator_batch_size: int | None = None, design_key: jax.Array | None = None,
         score_fn: ScoreFn = logit, batch_size: int | None = 256,
         channel_reduction: str | None = "mean") -> Explainer:
    r"""HSIC attribution: the dependence between each mask cell and the score.

    Binary masks :math:`M \in \{0, 1\}^d` (rounded QMC points), one model call each; per cell,

    .. math:: \mathrm{HSIC}_i = \frac{1}{n} \operatorname{tr}(K^{(i)} H L H), \quad
       H = I - \tfrac{1}{n} 1 1^\top, \quad L_{kl} = e^{-(y_k - y_l)^2 / (2 w^2)}, \;
       w = \mathrm{median}(y)

    with the input kernel ``kernel`` on cell i (see :func:`xjax.gsa.hsic_scores`). The
    estimator runs over cells in chunks of ``estimator_batch_size`` so its memory is
    ``O(chunk n^2)``.

    Args:
      model_fn: as :func:`sobol`, and so are ``score_fn``, ``grid_size``, ``perturbation``,
        ``sigma``, ``mask_interpolation``, ``nb_channels``, ``design_key``, ``batch_size`` and
        ``channel_reduction``.
      nb_design: n, the number of masks (500, Xplique; the paper advises 1500 at grid 7).
      sampler: ``"sobol"`` (default), ``"halton"``, ``"latin_hypercube"`` (the paper's),
        ``"uniform"``; points are rounded to {0, 1}.
      kernel: input kernel ``"binary"`` (default), ``"rbf"`` or ``"sobolev"``.
      estimator_batch_size: cells per estimator chunk (``None``: all at once).

    Returns:
      ``explainer(params, x, y, *, key=None) -> f32[N, H, W]``.

    References:
      P. Novello, T. Fel, D. Vigouroux, "Making Sense of Dependence: Efficient Black-box
      Explanations Using Dependence Measure", NeurIPS 2022, arXiv:2206.06219.
    """
    grid_size, nb_design, batch_size, nb_channels = _check_common(
        "hsic", grid_size, nb_design, batch_size, perturbation, mask_interpolation, nb_channels)
    if sampler not in SAMPLERS:
        raise ValueError(f"hsic: sampler must be one of {SAMPLERS}, got {sampler!r}")
    if kernel not in KERNELS:
        raise ValueError(f"hsic: kernel must be one of {KERNELS}, got {kernel!r}")
    if estimator_batch_size is not None:
        check_positive_int(estimator_batch_size, "estimator_batch_size", where="hsic")
    sigma = (10.0 if perturbation == "blurring" else 1.0) if sigma is None else sigma
    perturb = _perturbation(perturbation, sigma)
    d = grid_size * grid_size * nb_channels
    design = np.round(np.asarray(sample(sampler, nb_design, d, design_key))).astype(np.float32)

    @guarded("hsic", model_fn, score_fn)
    def explainer(params, x: Float[Array, "N H W C"], y, *, key=None):
        del key
        m = jnp.asarray(design)
        values = _masked_scores("hsic", model_fn, score_fn, params, x, y, m,
                                grid_size=grid_size, nb_channels=nb_channels, perturb=perturb,
                                mask_interpolation=mask_interpolation, batch_size=batch_size)
        scores = jax.vmap(lambda v: hsic_scores(m, v, kernel=kernel,
                                                batch_size=estimator_batch_size))(values)
        return _to_map(scores, grid_size, nb_channels, x.shape[1:3], channel_reduction)

    return explainer
