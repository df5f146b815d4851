"""Saliency and gradient x input: single-gradient attributions."""

import jax.numpy as jnp
from jaxtyping import Array, Float

from xjax.attributions._common import (
    check_batch_size,
    check_reduction,
    gradient_moments,
    guarded,
    reduce_channels,
)
from xjax.attributions._score import logit
from xjax.typing import Explainer, ModelFn, ScoreFn

__all__ = ["gradient_input", "saliency"]


def _input_gradient(model_fn, score_fn, params, x, y, batch_size):
    (g,) = gradient_moments(model_fn, score_fn, params, x, y, lambda xi, s: xi,
                            jnp.ones((1,), x.dtype), batch_size=batch_size)
    return g


def saliency(model_fn: ModelFn, *, score_fn: ScoreFn = logit, batch_size: int | None = 64,
             absolute: bool = True, channel_reduction: str | None = "max") -> Explainer:
    r"""Saliency map (Simonyan et al., 2014): the input gradient of the explained score.

    .. math:: \phi(x)_{ij} = \max_c \left| \frac{\partial s(f(x), y)}{\partial x_{ijc}} \right|

    Args:
      model_fn: ``(params, x: f32[B, H, W, C]) -> out[B, K]``.
      score_fn: ``(out[B, K], y[B]) -> f32[B]``; default the logit of class ``y``.
      batch_size: most images per ``model_fn`` call (``None``: all N at once).
      absolute: take the absolute value of the gradient (the paper's map).
      channel_reduction: ``"max"`` over channels (the paper and Xplique), ``"mean"``,
        ``"sum"``, or ``None`` to keep ``f32[N, H, W, C]``.

    Returns:
      ``explainer(params, x: f32[N, H, W, C], y: i32[N], *, key=None) -> f32[N, H, W]``
      (non-negative when ``absolute``). ``key`` is accepted and unused (deterministic).

    Raises:
      ValueError: bad ``batch_size`` / ``channel_reduction`` (at construction), or bad ``x`` /
        ``y`` (at call, before tracing).

    Example:
      >>> import jax.numpy as jnp
      >>> w = jnp.arange(2 * 2 * 1 * 3, dtype=jnp.float32).reshape(2, 2, 1, 3) - 5.0
      >>> model_fn = lambda p, x: jnp.einsum("nhwc,hwck->nk", x, p)
      >>> saliency(model_fn)(w, jnp.ones((1, 2, 2, 1)), jnp.array([0]))[0]
      Array([[5., 2.],
             [1., 4.]], dtype=float32)

    References:
      K. Simonyan, A. Vedaldi, A. Zisserman, "Deep Inside Convolutional Networks: Visualising
      Image Classification Models and Saliency Maps", ICLR workshop 2014, arXiv:1312.6034.
    """
    batch_size = check_batch_size(batch_size, "saliency")
    check_reduction(channel_reduction, "saliency")

    @guarded("saliency", model_fn, score_fn)
    def explainer(params, x: Float[Array, "N H W C"], y, *, key=None):
        del key  # deterministic
        g = _input_gradient(model_fn, score_fn, params, x, y, batch_size)
        return reduce_channels(jnp.abs(g) if absolute else g, channel_reduction)

    return explainer


def gradient_input(model_fn: ModelFn, *, score_fn: ScoreFn = logit, batch_size: int | None = 64,
                   channel_reduction: str | None = "mean") -> Explainer:
    r"""Gradient x Input (Shrikumar et al., 2016).

    .. math:: \phi(x)_{ij} = \operatorname{mean}_c \; x_{ijc} \,
       \frac{\partial s(f(x), y)}{\partial x_{ijc}}

    For a linear model this is each pixel's exact contribution ``W_y * x``.

    Args:
      model_fn, score_fn, batch_size: as :func:`saliency`.
      channel_reduction: ``"mean"`` (Xplique's reducer), ``"sum"``, ``"max"`` or ``None``.

    Returns:
      ``explainer(params, x, y, *, key=None) -> f32[N, H, W]`` (signed).

    References:
      A. Shrikumar, P. Greenside, A. Shcherbina, A. Kundaje, "Not Just a Black Box: Learning
      Important Features Through Propagating Activation Differences", arXiv:1605.01713.
    """
    batch_size = check_batch_size(batch_size, "gradient_input")
    check_reduction(channel_reduction, "gradient_input")

    @guarded("gradient_input", model_fn, score_fn)
    def explainer(params, x: Float[Array, "N H W C"], y, *, key=None):
        del key
        g = _input_gradient(model_fn, score_fn, params, x, y, batch_size)
        return reduce_channels(g * x, channel_reduction)

    return explainer
