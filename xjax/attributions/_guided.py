"""Guided Backpropagation and DeconvNet on any ``model_fn``, by rewriting ReLU backward rules.

The model is traced to a jaxpr and re-evaluated by a small interpreter that replaces every
rectifier ``max(v, 0)`` (``jax.nn.relu``, the lower clip of ``relu6``, ``jnp.maximum(v, 0)``)
by a function with the same forward value and a modified backward rule: a two-entry table of
rewritten rules (`max` against a zero, and the shape ops that keep a zero a zero) driving the
shared walker `xjax._internal.jaxpr.walk`, which
recurses into ``jit`` / ``pjit`` sub-jaxprs and ``custom_jvp`` / ``custom_vjp`` calls (which is
how ``jax.nn.relu`` is traced); rectifiers inside control flow (``scan``, ``cond``, ``while``)
keep their ordinary gradient.

* Guided Backpropagation: ``R_in = R_out * 1[v > 0] * 1[R_out > 0]``.
* DeconvNet: ``R_in = max(R_out, 0)`` (the forward mask is ignored).
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jcore
from jaxtyping import Array, Float

from xjax._internal.jaxpr import bind, walk
from xjax.attributions._common import (
    check_batch_size,
    check_reduction,
    gradient_moments,
    guarded,
    reduce_channels,
)
from xjax.attributions._score import logit
from xjax.typing import Explainer, ModelFn, ScoreFn

__all__ = ["deconvnet", "guided_backprop", "rewrite_relu_gradients"]


def _rectifier(policy: str):
    @jax.custom_vjp
    def rect(v):
        return jnp.maximum(v, jnp.zeros((), v.dtype))

    def fwd(v):
        return rect(v), v

    def bwd(v, ct):
        # a NaN gradient (an out-of-range label under jit) passes: it must reach the map
        keep = (ct > 0) & (v > 0) if policy == "guided" else ct > 0
        keep = keep | jnp.isnan(ct)
        return (jnp.where(keep, ct, jnp.zeros((), ct.dtype)),)

    rect.defvjp(fwd, bwd)
    return rect


# primitives whose output is all zeros when their first operand is (a broadcast or reshaped 0 is
# still the rectifier's 0)
_ZERO_PRESERVING = ("broadcast_in_dim", "convert_element_type", "reshape", "squeeze",
                    "expand_dims", "transpose")


def _is_zero_literal(v) -> bool:
    return isinstance(v, jcore.Literal) and np.all(np.asarray(v.val) == 0)


def _rewrite_max(rect, is_zero, eqn, invals):
    """``max(v, 0)`` or ``max(0, v)``: the rectifier with the rewritten backward rule."""
    for i in (0, 1):
        if is_zero(eqn.invars[1 - i]):
            return [rect(jnp.broadcast_to(invals[i], eqn.outvars[0].aval.shape))]
    return None


def _keep_zero(rect, is_zero, eqn, invals, zeros):
    outs = bind(eqn.primitive, eqn.params, invals)
    if is_zero(eqn.invars[0]):
        zeros.update(eqn.outvars)
    return outs


def _visitor(rect, consts_of):
    """The walker's ``visit``: a table of rewritten rules keyed by primitive name."""
    zeros = {v for v, c in consts_of if isinstance(c, np.ndarray) and c.size and not np.any(c)}

    def is_zero(v):
        return _is_zero_literal(v) or (not isinstance(v, jcore.Literal) and v in zeros)

    rules = {"max": lambda eqn, invals: _rewrite_max(rect, is_zero, eqn, invals),
             **dict.fromkeys(_ZERO_PRESERVING,
                             lambda eqn, invals: _keep_zero(rect, is_zero, eqn, invals, zeros))}

    def visit(eqn, invals):
        rule = rules.get(eqn.primitive.name)
        return None if rule is None or not eqn.invars else rule(eqn, invals)

    return visit


def rewrite_relu_gradients(model_fn: ModelFn, policy: str = "guided") -> ModelFn:
    """``model_fn`` with the same outputs and rectifier gradients rewritten by ``policy``
    (``"guided"`` or ``"deconvnet"``). Works on any traceable ``model_fn``."""
    if policy not in ("guided", "deconvnet"):
        raise ValueError(f"policy must be 'guided' or 'deconvnet', got {policy!r}")
    rect = _rectifier(policy)

    def rewritten(params, x):
        closed = jax.make_jaxpr(model_fn, return_shape=True)(params, x)
        closed, out_shape = closed
        flat = jax.tree.leaves((params, x))
        visit = _visitor(rect, zip(closed.jaxpr.constvars, closed.consts, strict=True))
        outs = walk(closed.jaxpr, closed.consts, flat, visit)
        return jax.tree.unflatten(jax.tree.structure(out_shape), outs)

    return rewritten


def _modified_backprop(name, policy, model_fn, score_fn, batch_size, channel_reduction):
    batch_size = check_batch_size(batch_size, name)
    check_reduction(channel_reduction, name)
    rewritten = rewrite_relu_gradients(model_fn, policy)

    @guarded(name, model_fn, score_fn)
    def explainer(params, x: Float[Array, "N H W C"], y, *, key=None):
        del key
        (g,) = gradient_moments(rewritten, score_fn, params, x, y, lambda xi, s: xi,
                                jnp.ones((1,), x.dtype), batch_size=batch_size)
        return reduce_channels(g, channel_reduction)

    return explainer


def guided_backprop(model_fn: ModelFn, *, score_fn: ScoreFn = logit, batch_size: int | None = 64,
                    channel_reduction: str | None = "mean") -> Explainer:
    r"""Guided Backpropagation (Springenberg et al., 2015) on any ReLU network.

    Gradients pass a rectifier only where both its input and the incoming gradient are positive:

    .. math:: R^{(l)} = R^{(l+1)} \cdot \mathbb{1}[a^{(l)} > 0] \cdot \mathbb{1}[R^{(l+1)} > 0]

    Args:
      model_fn, score_fn, batch_size: as :func:`saliency`.
      channel_reduction: ``"mean"`` (Xplique), ``"sum"``, ``"max"`` or ``None``.

    Returns:
      ``explainer(params, x, y, *, key=None) -> f32[N, H, W]``.

    References:
      J. T. Springenberg, A. Dosovitskiy, T. Brox, M. Riedmiller, "Striving for Simplicity: The
      All Convolutional Net", ICLR workshop 2015, arXiv:1412.6806.
    """
    return _modified_backprop("guided_backprop", "guided", model_fn, score_fn, batch_size,
                              channel_reduction)


def deconvnet(model_fn: ModelFn, *, score_fn: ScoreFn = logit, batch_size: int | None = 64,
              channel_reduction: str | None = "mean") -> Explainer:
    r"""DeconvNet (Zeiler & Fergus, 2014): gradients rectified on the way back.

    .. math:: R^{(l)} = \max(R^{(l+1)}, 0)

    Arguments as :func:`guided_backprop`.

    References:
      M. D. Zeiler, R. Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014,
      arXiv:1311.2901.
    """
    return _modified_backprop("deconvnet", "deconvnet", model_fn, score_fn, batch_size,
                              channel_reduction)
