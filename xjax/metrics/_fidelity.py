"""Fidelity metrics: does the explanation point at what the model uses?"""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from xjax._internal.validate import check_positive_int
from xjax.attributions._common import check_batch_size, check_key, guarded, score_table, scores
from xjax.attributions._score import logit
from xjax.metrics._common import (
    check_baseline,
    check_maps,
    pearson,
    ranks,
    spatial,
    spearman,
    with_activation,
)
from xjax.typing import ModelFn, ScoreFn

__all__ = ["average_drop", "average_gain", "average_increase", "deletion", "insertion",
           "mu_fidelity"]


def _causal(name, insert, model_fn, steps, baseline, max_percentage_perturbed, activation,
            score_fn, batch_size):
    steps = check_positive_int(steps, "steps", where=name)
    batch_size = check_batch_size(batch_size, name)
    if not 0.0 < max_percentage_perturbed <= 1.0:
        raise ValueError(f"{name}: max_percentage_perturbed must be in (0, 1], got "
                         f"{max_percentage_perturbed}")
    fn = with_activation(model_fn, activation, name)

    @guarded(name, model_fn, score_fn)
    def metric(params, x: Float[Array, "N H W C"], y, maps) -> Float[Array, " N"]:
        check_maps(x, maps, name)
        x0 = check_baseline(baseline, x, name)
        n, h, w = x.shape[:3]
        k_max = int(h * w * max_percentage_perturbed)
        thresholds = jnp.floor(jnp.linspace(0.0, k_max, steps + 1)).astype(jnp.int32)
        # rank 0 = most important position (signed values, no absolute value: Petsiuk et al.)
        order = ranks(-spatial(maps).reshape(n, h * w)).reshape(n, h, w).astype(jnp.int32)

        def apply(x_rank, t):
            xi, r = x_rank
            chosen = (r < t)[..., None]
            return jnp.where(chosen, xi, x0) if insert else jnp.where(chosen, x0, xi)

        curve = score_table(fn, score_fn, params, (x, order), y, steps + 1,
                             lambda p: thresholds[p], apply, batch_size=batch_size)
        return jnp.mean((curve[:, 1:] + curve[:, :-1]) / 2.0, axis=1)

    return metric


def deletion(model_fn: ModelFn, *, steps: int = 10, baseline=0.0,
             max_percentage_perturbed: float = 1.0, activation: str | None = None,
             score_fn: ScoreFn = logit, batch_size: int | None = 64):
    r"""Deletion (Petsiuk et al., 2018): remove the most important pixels first; lower is better.

    Positions are ranked by the (channel-mean, signed) map; at step k the top
    ``t_k = floor(k K_max / steps)`` positions are set to the baseline on every channel, and the
    score is recorded. The metric is the trapezoid area under the score curve on a unit-width
    axis, :math:`\frac{1}{T}\sum_k \frac{s_k + s_{k+1}}{2}`, per image.

    Args:
      model_fn, score_fn: as the explainers (default: the logit of ``y``).
      steps: T (10, Xplique: 11 model calls per image).
      baseline: value of removed pixels, a scalar or ``f32[H, W, C]`` (0).
      max_percentage_perturbed: fraction of positions removed at the last step (1.0).
      activation: ``None`` (logits), ``"softmax"`` or ``"sigmoid"`` (the RISE paper used
        probabilities; the choice changes rankings).
      batch_size: most images per model call.

    Returns:
      ``metric(params, x: f32[N, H, W, C], y, maps: f32[N, H, W]) -> f32[N]``.

    References:
      V. Petsiuk, A. Das, K. Saenko, "RISE", BMVC 2018, arXiv:1806.07421.
    """
    return _causal("deletion", False, model_fn, steps, baseline, max_percentage_perturbed,
                   activation, score_fn, batch_size)


def insertion(model_fn: ModelFn, *, steps: int = 10, baseline=0.0,
              max_percentage_perturbed: float = 1.0, activation: str | None = None,
              score_fn: ScoreFn = logit, batch_size: int | None = 64):
    r"""Insertion (Petsiuk et al., 2018): start from the baseline and reveal the most important
    pixels first; higher is better. Same curve and area as :func:`deletion`."""
    return _causal("insertion", True, model_fn, steps, baseline, max_percentage_perturbed,
                   activation, score_fn, batch_size)


def mu_fidelity(model_fn: ModelFn, *, grid_size: int = 9, subset_percent: float = 0.2,
                nb_samples: int = 200, baseline=0.0, correlation: str = "spearman",
                activation: str | None = None, score_fn: ScoreFn = logit,
                batch_size: int | None = 64):
    r"""MuFidelity (Bhatt et al., 2020): correlation between the attribution mass of random
    subsets and the score drop when those subsets are removed.

    .. math:: \mu F = \mathrm{Corr}_{S}\Big(\sum_{i \in S} \phi_i,\;
       f(x) - f(x_{[x_S = x_0]})\Big)

    Subsets: each cell of a ``grid_size`` grid is removed independently with probability
    ``subset_percent`` (Xplique), nearest-upsampled; attribution mass summed at full resolution.
    Constant predictions give 0. Range [-1, 1], higher is better.

    Args:
      grid_size: 9; subset_percent: 0.2; nb_samples: 200 subsets per image (shared by every
        image of a call, drawn from ``key``); baseline: 0.
      correlation: ``"spearman"`` (Xplique's code) or ``"pearson"`` (Bhatt et al.).

    Returns:
      ``metric(params, x, y, maps, *, key) -> f32[N]``.

    References:
      U. Bhatt, A. Weller, J. M. F. Moura, "Evaluating and Aggregating Feature-based Model
      Explanations", IJCAI 2020, arXiv:2005.00631.
    """
    name = "mu_fidelity"
    grid_size = check_positive_int(grid_size, "grid_size", where=name)
    nb_samples = check_positive_int(nb_samples, "nb_samples", where=name, minimum=2)
    batch_size = check_batch_size(batch_size, name)
    if correlation not in ("spearman", "pearson"):
        raise ValueError(f"{name}: correlation must be 'spearman' or 'pearson', got "
                         f"{correlation!r}")
    if not 0.0 < subset_percent < 1.0:
        raise ValueError(f"{name}: subset_percent must be in (0, 1), got {subset_percent}")
    fn = with_activation(model_fn, activation, name)
    corr = spearman if correlation == "spearman" else pearson

    @guarded(name, model_fn, score_fn)
    def metric(params, x: Float[Array, "N H W C"], y, maps, *, key=None) -> Float[Array, " N"]:
        check_maps(x, maps, name)
        check_key(key, name)
        x0 = check_baseline(baseline, x, name)
        n, h, w = x.shape[:3]
        if grid_size > min(h, w):
            raise ValueError(f"{name}: grid_size={grid_size} is larger than the images ({h}, {w})")

        def removed(p):                                       # f32[H, W], 1 = removed
            cells = jax.random.bernoulli(jax.random.fold_in(key, p), subset_percent,
                                         (grid_size, grid_size)).astype(jnp.float32)
            return jax.image.resize(cells, (h, w), "nearest")

        def apply(xi, r):
            return xi * (1.0 - r[..., None]) + x0 * r[..., None]

        base = scores(fn, score_fn, params, x, y, batch_size=batch_size)
        after = score_table(fn, score_fn, params, x, y, nb_samples, removed, apply,
                            batch_size=batch_size)
        masks = jax.vmap(removed)(jnp.arange(nb_samples))             # [P, H, W]
        mass = jnp.einsum("nhw,phw->np", spatial(maps).astype(jnp.float32), masks)
        return corr(mass, base[:, None] - after)

    return metric


def _average_x(name, kind, model_fn, activation, score_fn, batch_size):
    batch_size = check_batch_size(batch_size, name)
    fn = with_activation(model_fn, activation, name)

    @guarded(name, model_fn, score_fn)
    def metric(params, x: Float[Array, "N H W C"], y, maps) -> Float[Array, " N"]:
        check_maps(x, maps, name)
        m = jnp.abs(spatial(maps).astype(jnp.float32))
        lo = m.min(axis=(1, 2), keepdims=True)
        hi = m.max(axis=(1, 2), keepdims=True)
        m = (m - lo) / jnp.maximum(hi - lo, 1e-12)
        b = scores(fn, score_fn, params, x, y, batch_size=batch_size)
        a = scores(fn, score_fn, params, x * m[..., None].astype(x.dtype), y,
                   batch_size=batch_size)
        eps = 1e-8
        if kind == "drop":
            return jax.nn.relu(b - a) / (b + eps)
        if kind == "increase":
            return (a > b).astype(jnp.float32)
        return jax.nn.relu(a - b) / (1.0 - b + eps)

    return metric


def average_drop(model_fn: ModelFn, *, activation: str | None = "softmax",
                 score_fn: ScoreFn = logit, batch_size: int | None = 64):
    r"""Average Drop (Chattopadhay et al., 2018): relative score lost when the image is masked
    by its min-max normalized absolute map, :math:`\mathrm{ReLU}(b - a) / b`; lower is better.
    With the default softmax activation the value is in [0, 1]. Returns
    ``metric(params, x, y, maps) -> f32[N]`` (average over N yourself)."""
    return _average_x("average_drop", "drop", model_fn, activation, score_fn, batch_size)


def average_increase(model_fn: ModelFn, *, activation: str | None = "softmax",
                     score_fn: ScoreFn = logit, batch_size: int | None = 64):
    r"""Average Increase in confidence: :math:`\mathbb{1}[a > b]` per image (in {0, 1}); higher
    is better. Arguments as :func:`average_drop`."""
    return _average_x("average_increase", "increase", model_fn, activation, score_fn, batch_size)


def average_gain(model_fn: ModelFn, *, activation: str | None = "softmax",
                 score_fn: ScoreFn = logit, batch_size: int | None = 64):
    r"""Average Gain (Zhang et al., Opti-CAM 2023): :math:`\mathrm{ReLU}(a - b) / (1 - b)`;
    higher is better, in [0, 1] with probabilities. Arguments as :func:`average_drop`."""
    return _average_x("average_gain", "gain", model_fn, activation, score_fn, batch_size)
