"""Robustness-S_r: how small an attack restricted to an explanation's top features can be."""

import math

import jax.numpy as jnp
from jaxtyping import Array, Float

from xjax._internal.attack import check_attack, minimal_radius
from xjax._internal.batching import chunked
from xjax._internal.validate import check_positive_int
from xjax.attributions._common import check_batch_size, guarded
from xjax.attributions._score import logit
from xjax.metrics._common import check_maps, ranks, spatial
from xjax.typing import ModelFn

__all__ = ["robustness_sr"]


def robustness_sr(model_fn: ModelFn, *, fractions=(0.05, 0.1, 0.15, 0.2, 0.25), norm: str = "linf",
                  epsilon_max: float = 1.0, search_steps: int = 10, pgd_steps: int = 20,
                  step_scale: float = 2.5, clip: tuple[float, float] | None = (0.0, 1.0),
                  batch_size: int | None = 64):
    r"""Robustness-S_r (Hsieh et al., ICLR 2021), as used to evaluate EVA; lower is better.

    For a fraction r, :math:`S_r` is the set of the :math:`\lceil r H W \rceil` spatial positions
    with the largest (signed, channel-mean) attribution, all channels included. The metric is the
    smallest radius of a perturbation supported on :math:`S_r` that changes the decision,

    .. math:: \epsilon^*_{S_r}(x) = \min \|\delta\|_p \;\; \text{s.t.}\;\;
       \arg\max_c f_c(x + \delta) \ne y, \;\; \delta_{\bar S_r} = 0,

    averaged over the fractions. An explanation that found the features the decision is sensitive
    to gets a small value. :math:`\epsilon^*` is estimated by a binary search over
    :math:`[0, \epsilon_{max}]`; each candidate radius runs a projected gradient attack
    (Madry et al.) on the margin :math:`\max_{c \ne y} f_c - f_y`, masked to :math:`S_r`, starting
    at ``x`` (deterministic), with step :math:`\alpha = \text{step\_scale}\cdot\epsilon / T`
    (sign steps for ``linf``, normalized gradient steps for ``l2``), projected on the ball and on
    ``clip``. When even :math:`\epsilon_{max}` fails the value is :math:`\epsilon_{max}` (a cap,
    so the metric lies in :math:`[0, \epsilon_{max}]`); an input the model already misclassifies
    gets 0. Attacks are heuristics: the value is an
    upper bound of the true minimal radius.

    Every (image, fraction) pair is an independent row; rows are attacked ``batch_size`` at a time
    in one ``lax.map`` (search and attack are ``fori_loop`` s), so the whole metric is one jitted
    computation.

    Args:
      model_fn: ``(params, x) -> f32[B, K]`` logits (the decision is their argmax).
      fractions: the r values (5%..25%; Hsieh et al. report the curve over |S_r|, the EVA paper
        averages several r).
      norm: ``"linf"`` (default) or ``"l2"``.
      epsilon_max: upper end of the search, in input units (1.0 for [0, 1] images).
      search_steps: binary search halvings (10: resolution ``epsilon_max / 1024``).
      pgd_steps: T, attack steps per candidate radius (20).
      step_scale: attack step as a multiple of ``epsilon / T`` (2.5, Madry et al.).
      clip: valid input range the attack stays in, or ``None``.
      batch_size: most attacked images per model call.

    Returns:
      ``metric(params, x: f32[N, H, W, C], y: i32[N], maps: f32[N, H, W]) -> f32[N]``.

    References:
      C.-Y. Hsieh et al., "Evaluations and Methods for Explanation through Robustness Analysis",
      ICLR 2021, arXiv:2006.00442. T. Fel et al., "Don't Lie to Me! Robust and Efficient
      Explainability with Verified Perturbation Analysis" (EVA), CVPR 2023, arXiv:2202.07728.
    """
    name = "robustness_sr"
    search_steps = check_positive_int(search_steps, "search_steps", where=name)
    pgd_steps = check_positive_int(pgd_steps, "pgd_steps", where=name)
    batch_size = check_batch_size(batch_size, name)
    fractions = tuple(float(r) for r in fractions)
    if not fractions or any(not 0.0 < r <= 1.0 for r in fractions):
        raise ValueError(f"{name}: fractions must be a non-empty sequence of values in (0, 1], got "
                         f"{fractions}")
    check_attack(name, norm=norm, epsilon_max=epsilon_max, step_scale=step_scale, clip=clip)
    radius = minimal_radius(model_fn, norm=norm, epsilon_max=epsilon_max,
                            search_steps=search_steps, pgd_steps=pgd_steps,
                            step_scale=step_scale, clip=clip)

    @guarded(name, model_fn, logit)
    def metric(params, x: Float[Array, "N H W C"], y, maps) -> Float[Array, " N"]:
        check_maps(x, maps, name)
        n, h, w = x.shape[:3]
        r = len(fractions)
        order = ranks(-spatial(maps).astype(jnp.float32).reshape(n, h * w)).reshape(n, 1, h, w)
        sizes = jnp.asarray([math.ceil(f * h * w - 1e-9) for f in fractions], jnp.float32)
        mask = (order < sizes[None, :, None, None]).astype(x.dtype)[..., None]    # [N, R, H, W, 1]
        xs = jnp.repeat(x, r, axis=0)
        ys = jnp.repeat(jnp.asarray(y, jnp.int32), r, axis=0)
        eps = chunked(lambda a, b_, m: radius(params, a, b_, m), batch_size)(
            xs, ys, mask.reshape((n * r, h, w, 1)))
        return eps.reshape(n, r).mean(axis=1)

    return metric
