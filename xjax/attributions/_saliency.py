"""Saliency: the gradient of the explained score with respect to the input."""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from xjax._internal.batching import chunked
from xjax.attributions._common import check_batch_size, check_inputs
from xjax.attributions._score import logit
from xjax.typing import Explainer, ModelFn, ScoreFn

__all__ = ["saliency"]

_REDUCTIONS = ("max", "mean", "sum", None)


def reduce_channels(maps: Float[Array, "N H W C"], reduction: str | None
                    ) -> Float[Array, "N H W"] | Float[Array, "N H W C"]:
    if reduction == "max":
        return maps.max(axis=-1)
    if reduction == "mean":
        return maps.mean(axis=-1)
    if reduction == "sum":
        return maps.sum(axis=-1)
    return maps


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
    if channel_reduction not in _REDUCTIONS:
        raise ValueError(f"saliency: channel_reduction must be one of {_REDUCTIONS}, got "
                         f"{channel_reduction!r}")

    def explainer(params, x: Float[Array, "N H W C"], y, *, key=None):
        del key  # deterministic
        check_inputs(x, y, "saliency", model_fn, params)

        def grads(xb, yb):  # examples are independent, so grad of the sum is per-example
            return jax.grad(lambda xs: score_fn(model_fn(params, xs), yb).sum())(xb)

        g = chunked(grads, batch_size)(x, y)
        g = jnp.abs(g) if absolute else g
        return reduce_channels(g, channel_reduction)

    return explainer
