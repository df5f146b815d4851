"""Greedy-AS (Hsieh et al., ICLR 2021): the explanation that optimizes the robustness criteria."""

import math

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from xjax._internal.attack import check_attack, minimal_radius
from xjax._internal.batching import chunked
from xjax._internal.validate import check_positive_int
from xjax.attributions._common import check_batch_size, check_key, guarded
from xjax.attributions._lime import grid_segments
from xjax.attributions._score import logit
from xjax.typing import Explainer, ModelFn

__all__ = ["greedy_as"]

_OBJECTIVES = ("sr", "sr_bar")


def _least_squares(z: Float[Array, "S F"], r: Float[Array, " S"]) -> Float[Array, " F"]:
    """Unweighted least squares without intercept, ``pinv(Z^T Z) Z^T r`` (features never sampled
    get 0)."""
    return jnp.linalg.pinv(z.T @ z, hermitian=True) @ (z.T @ r)


def greedy_as(model_fn: ModelFn, *, grid_size: int | None = None, nb_samples: int = 5000,
              inclusion_probability: float = 0.2, fraction_per_step: float = 0.05,
              max_fraction: float = 0.5, objective: str = "sr", norm: str = "linf",
              epsilon_max: float = 1.0, search_steps: int = 10, pgd_steps: int = 20,
              step_scale: float = 2.5, clip: tuple[float, float] | None = (0.0, 1.0),
              batch_size: int | None = 64) -> Explainer:
    r"""Greedy-AS: a ranking of features built greedily to optimize Robustness-S_r.

    Features are the cells of a ``grid_size x grid_size`` grid (``None``: every pixel, as in the
    paper on MNIST). Starting from the empty set :math:`S`, each step draws ``nb_samples`` random
    sets :math:`S \cup Z_j` (every unselected feature in :math:`Z_j` with probability
    ``inclusion_probability``), measures the robustness :math:`\epsilon^*` of each (the smallest
    radius of a masked PGD attack that changes the decision: the same search as
    :func:`xjax.metrics.robustness_sr`), regresses :math:`\epsilon^*` on the indicators of
    :math:`Z_j` by least squares, and adds to :math:`S` the ``fraction_per_step`` of features
    with the best coefficients, until ``max_fraction`` of them are selected. For
    ``objective="sr"`` the attack may only change :math:`S \cup Z_j` and the smallest
    coefficients win (features whose perturbation fools the model soonest: Robustness-S_r,
    lower is better); for ``"sr_bar"`` the attack may only change the complement and the largest
    coefficients win (features whose anchoring keeps the decision: Robustness-:math:`S_{\bar r}`,
    higher is better). The map is the selection order: features selected at step ``t`` of
    ``T`` get ``T - t``, unselected ones 0.

    The random sets are shared by every image of a call (each map depends only on its image and
    the key); the whole search is one jitted computation (``fori_loop`` over greedy steps, the
    attacks ``batch_size`` rows at a time). Its cost is ``T * nb_samples`` attacks of
    ``(search_steps + 1) * pgd_steps`` gradient calls per image: this is the expensive baseline
    of the EVA paper (335.8 s per MNIST image there). The map is piecewise constant in the model
    parameters, so its gradient with respect to them is zero.

    Args:
      model_fn: ``(params, x) -> f32[B, K]`` logits (the decision is their argmax; ``y`` is
        the class whose decision is attacked).
      grid_size: side of the feature grid, or ``None`` for pixels.
      nb_samples: random sets per greedy step (5000 in the authors' code).
      inclusion_probability: probability that a free feature joins a random set (0.2).
      fraction_per_step: share of all features added per step (0.05).
      max_fraction: share of features ranked before stopping (0.5).
      objective: ``"sr"`` or ``"sr_bar"``.
      norm, epsilon_max, search_steps, pgd_steps, step_scale, clip: the robustness search, as
        :func:`xjax.metrics.robustness_sr`.
      batch_size: most attacked images per model call.

    Returns:
      ``explainer(params, x, y, *, key) -> f32[N, H, W]``; ``key`` is required.

    References:
      C.-Y. Hsieh, C.-K. Yeh, X. Liu, P. Ravikumar, S. Kim, S. Kumar, C.-J. Hsieh, "Evaluations
      and Methods for Explanation through Robustness Analysis", ICLR 2021, arXiv:2006.00442.
    """
    name = "greedy_as"
    if grid_size is not None:
        grid_size = check_positive_int(grid_size, "grid_size", where=name)
    nb_samples = check_positive_int(nb_samples, "nb_samples", where=name)
    search_steps = check_positive_int(search_steps, "search_steps", where=name)
    pgd_steps = check_positive_int(pgd_steps, "pgd_steps", where=name)
    batch_size = check_batch_size(batch_size, name)
    if objective not in _OBJECTIVES:
        raise ValueError(f"{name}: objective must be one of {_OBJECTIVES}, got {objective!r}")
    for arg, value in (("inclusion_probability", inclusion_probability),
                       ("fraction_per_step", fraction_per_step), ("max_fraction", max_fraction)):
        if not 0.0 < value <= 1.0:
            raise ValueError(f"{name}: {arg} must be in (0, 1], got {value}")
    check_attack(name, norm=norm, epsilon_max=epsilon_max, step_scale=step_scale, clip=clip)
    radius = minimal_radius(model_fn, norm=norm, epsilon_max=epsilon_max,
                            search_steps=search_steps, pgd_steps=pgd_steps,
                            step_scale=step_scale, clip=clip)

    @guarded(name, model_fn, logit)          # y: class indices (margins against rivals)
    def explainer(params, x: Float[Array, "N H W C"], y, *, key=None):
        check_key(key, name)
        n, h, w = x.shape[:3]
        if grid_size is not None and grid_size > min(h, w):
            raise ValueError(f"{name}: grid_size={grid_size} is larger than the images ({h}, {w})")
        cells = (jnp.arange(h * w).reshape(h, w) if grid_size is None
                 else grid_segments(h, w, grid_size))
        f = h * w if grid_size is None else grid_size * grid_size
        per_step = max(1, round(fraction_per_step * f))
        steps = math.ceil(max(1, round(max_fraction * f)) / per_step)
        y = jnp.asarray(y, jnp.int32)

        def pixels(sets):                                  # bool[B, F] -> x.dtype[B, H, W, 1]
            return sets[:, cells].astype(x.dtype)[..., None]

        def step(t, state):
            selected, order, bad = state                   # bool[N, F], f32[N, F], bool[N]
            z = jax.random.bernoulli(jax.random.fold_in(key, t), inclusion_probability,
                                     (nb_samples, f))

            def rows(index):                               # one (image, random set) per row
                i, j = index // nb_samples, index % nb_samples
                sets = selected[i] | z[j]
                free = sets if objective == "sr" else ~sets
                return radius(params, x[i], y[i], pixels(free))

            r = chunked(rows, batch_size)(jnp.arange(n * nb_samples)).reshape(n, nb_samples)
            new = z[None] & ~selected[:, None, :]          # [N, S, F]: the regressors
            coef = jax.vmap(_least_squares)(new.astype(jnp.float32), r)
            gain = -coef if objective == "sr" else coef
            gain = jnp.where(selected, -jnp.inf, gain)
            _, pick = jax.lax.top_k(gain, per_step)        # [N, per_step]
            chosen = jax.nn.one_hot(pick, f, dtype=jnp.bool_).any(axis=1) & ~selected
            order = jnp.where(chosen, jnp.float32(steps - t), order)
            return selected | chosen, order, bad | jnp.isnan(r).any(axis=1)

        init = (jnp.zeros((n, f), jnp.bool_), jnp.zeros((n, f), jnp.float32),
                jnp.zeros((n,), jnp.bool_))
        _, order, bad = jax.lax.fori_loop(0, steps, step, init)
        # a label outside [0, K) makes every radius NaN: its map is NaN, not a plausible ranking
        return jnp.where(bad[:, None, None], jnp.nan, order[:, cells])

    return explainer
