"""Integrated Gradients (Sundararajan et al., 2017)."""

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from xjax._internal.validate import check_positive_int
from xjax.attributions._common import (
    check_batch_size,
    check_reduction,
    gradient_moments,
    guarded,
    reduce_channels,
)
from xjax.attributions._score import logit
from xjax.typing import Explainer, ModelFn, ScoreFn

__all__ = ["integrated_gradients"]


def _quadrature(steps: int, rule: str) -> tuple[np.ndarray, np.ndarray]:
    """Nodes alpha in [0, 1] and weights summing to 1 for the path integral."""
    if rule == "trapezoid":
        if steps < 2:
            raise ValueError(f"integrated_gradients: steps must be >= 2 for the trapezoid rule, "
                             f"got {steps}")
        alphas = np.linspace(0.0, 1.0, steps)
        w = np.full(steps, 1.0 / (steps - 1))
        w[0] = w[-1] = 0.5 / (steps - 1)
        return alphas, w
    if rule == "riemann_left":
        return np.arange(steps) / steps, np.full(steps, 1.0 / steps)
    if rule == "riemann_right":
        return (np.arange(steps) + 1) / steps, np.full(steps, 1.0 / steps)
    if rule == "riemann_middle":
        return (np.arange(steps) + 0.5) / steps, np.full(steps, 1.0 / steps)
    raise ValueError(f"integrated_gradients: rule must be 'trapezoid', 'riemann_left', "
                     f"'riemann_right' or 'riemann_middle', got {rule!r}")


def integrated_gradients(model_fn: ModelFn, *, steps: int = 50,
                         baseline: float | Float[Array, "H W C"] = 0.0,
                         rule: str = "trapezoid", score_fn: ScoreFn = logit,
                         batch_size: int | None = 64, channel_reduction: str | None = "mean"
                         ) -> Explainer:
    r"""Integrated Gradients: the path integral of gradients from a baseline to the input.

    .. math:: \phi(x)_{ijc} = (x - x_0)_{ijc} \int_0^1
       \frac{\partial s(f(x_0 + \alpha (x - x_0)))}{\partial x_{ijc}} \, d\alpha
       \approx (x - x_0) \sum_k w_k \nabla s(x_0 + \alpha_k (x - x_0))

    Completeness: summed over pixels and channels the map equals ``s(x) - s(x_0)`` up to the
    quadrature error (``channel_reduction="sum"`` keeps that identity per pixel).

    Args:
      model_fn, score_fn, batch_size: as :func:`saliency`; ``batch_size`` bounds inputs x steps
        together.
      steps: quadrature nodes (50, Xplique's default; with the trapezoid rule the nodes include
        both ends, as Xplique's ``linspace(0, 1)``).
      baseline: a scalar fill value (0: a black image) or an array ``f32[H, W, C]``.
      rule: ``"trapezoid"`` or ``"riemann_left"`` / ``"riemann_right"`` / ``"riemann_middle"``.
      channel_reduction: ``"mean"`` (Xplique), ``"sum"``, ``"max"`` or ``None``.

    Returns:
      ``explainer(params, x, y, *, key=None) -> f32[N, H, W]`` (signed).

    References:
      M. Sundararajan, A. Taly, Q. Yan, "Axiomatic Attribution for Deep Networks", ICML 2017,
      arXiv:1703.01365.
    """
    steps = check_positive_int(steps, "steps", where="integrated_gradients")
    batch_size = check_batch_size(batch_size, "integrated_gradients")
    check_reduction(channel_reduction, "integrated_gradients")
    alphas, weights = _quadrature(steps, rule)
    baseline_arr = np.asarray(baseline, np.float32)
    if baseline_arr.ndim not in (0, 3):
        raise ValueError(f"integrated_gradients: baseline must be a scalar or an array "
                         f"(H, W, C), got shape {baseline_arr.shape}")

    @guarded("integrated_gradients", model_fn, score_fn)
    def explainer(params, x: Float[Array, "N H W C"], y, *, key=None):
        del key
        if baseline_arr.ndim == 3 and baseline_arr.shape != tuple(x.shape[1:]):
            raise ValueError(f"integrated_gradients: baseline has shape {baseline_arr.shape}, "
                             f"the images are {tuple(x.shape[1:])}")
        x0 = jnp.broadcast_to(jnp.asarray(baseline_arr, x.dtype), x.shape[1:])
        a = jnp.asarray(alphas, x.dtype)

        def make_input(xi, s):
            return x0 + a[s] * (xi - x0)

        (g,) = gradient_moments(model_fn, score_fn, params, x, y, make_input,
                                jnp.asarray(weights, x.dtype), batch_size=batch_size)
        return reduce_channels((x - x0[None]) * g, channel_reduction)

    return explainer
