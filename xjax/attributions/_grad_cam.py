"""Grad-CAM and Grad-CAM++ on a model split into ``features_fn`` and ``head_fn``."""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from xjax._internal.batching import chunked
from xjax.attributions._common import check_batch_size, guarded, resize_maps
from xjax.attributions._score import logit
from xjax.typing import Explainer, FeaturesFn, HeadFn, ScoreFn

__all__ = ["grad_cam", "grad_cam_pp"]

_RESIZE = ("bilinear", "cubic", "nearest", "linear", "lanczos3")


def _cam_method(name, weights_fn, features_fn, head_fn, score_fn, batch_size, resize):
    batch_size = check_batch_size(batch_size, name)
    if resize not in _RESIZE:
        raise ValueError(f"{name}: resize must be one of {_RESIZE}, got {resize!r}")
    if not (callable(features_fn) and callable(head_fn)):
        raise TypeError(f"{name}: features_fn and head_fn must be callables "
                        "(a Model's features_fn and head_fn)")

    def model_fn(params, x):
        return head_fn(params, features_fn(params, x))

    @guarded(name, model_fn, score_fn)
    def explainer(params, x: Float[Array, "N H W C"], y, *, key=None):
        del key

        def cams(xb, yb):
            a = features_fn(params, xb)                                    # [B, h, w, F]
            g = jax.grad(lambda ab: score_fn(head_fn(params, ab), yb).astype(a.dtype).sum())(a)
            w = weights_fn(a, g)                                           # [B, F]
            return jax.nn.relu(jnp.einsum("bhwf,bf->bhw", a, w))

        maps = chunked(cams, batch_size)(x, y)
        return resize_maps(maps, x.shape[1:3], resize)

    return explainer


def _grad_cam_weights(a, g):
    return g.mean(axis=(1, 2))


def _grad_cam_pp_weights(a, g):
    g2, g3 = g * g, g * g * g
    denom = 2.0 * g2 + jnp.sum(a, axis=(1, 2), keepdims=True) * g3
    alpha = jnp.where(denom != 0, g2 / jnp.where(denom != 0, denom, 1.0), 0.0)
    return jnp.sum(alpha * jax.nn.relu(g), axis=(1, 2))


def grad_cam(features_fn: FeaturesFn, head_fn: HeadFn, *, score_fn: ScoreFn = logit,
             batch_size: int | None = 64, resize: str = "bilinear") -> Explainer:
    r"""Grad-CAM (Selvaraju et al., 2017) on the activations ``A = features_fn(x)``.

    .. math:: \alpha_k = \frac{1}{hw} \sum_{ij} \frac{\partial s}{\partial A_{ijk}}, \qquad
       L = \mathrm{ReLU}\Big(\sum_k \alpha_k A_{\cdot\cdot k}\Big)

    The ``h x w`` map is resized to the input's ``H x W``.

    Args:
      features_fn: ``(params, x) -> f32[B, h, w, F]`` (a zoo ``Model.features_fn``).
      head_fn: ``(params, a) -> out[B, K]`` with ``head_fn(features_fn(x)) == model_fn(x)``.
      score_fn, batch_size: as :func:`saliency`.
      resize: ``jax.image.resize`` method for the upsampling ("bilinear"; Xplique: bicubic).

    Returns:
      ``explainer(params, x, y, *, key=None) -> f32[N, H, W]`` (non-negative).

    References:
      R. R. Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
      Gradient-based Localization", ICCV 2017, arXiv:1610.02391.
    """
    return _cam_method("grad_cam", _grad_cam_weights, features_fn, head_fn, score_fn, batch_size,
                       resize)


def grad_cam_pp(features_fn: FeaturesFn, head_fn: HeadFn, *, score_fn: ScoreFn = logit,
                batch_size: int | None = 64, resize: str = "bilinear") -> Explainer:
    r"""Grad-CAM++ (Chattopadhay et al., 2018): pixel-weighted gradients.

    With :math:`g = \partial s / \partial A`,

    .. math:: \alpha_{ijk} = \frac{g_{ijk}^2}{2 g_{ijk}^2 + \sum_{ab} A_{abk} \, g_{ijk}^3},
       \quad w_k = \sum_{ij} \alpha_{ijk} \mathrm{ReLU}(g_{ijk}), \quad
       L = \mathrm{ReLU}\Big(\sum_k w_k A_{\cdot\cdot k}\Big)

    (the paper's closed form for an exponential score, as Xplique and Captum use it).
    Arguments as :func:`grad_cam`.

    References:
      A. Chattopadhay, A. Sarkar, P. Howlader, V. N. Balasubramanian, "Grad-CAM++: Improved
      Visual Explanations for Deep Convolutional Networks", WACV 2018, arXiv:1710.11063.
    """
    return _cam_method("grad_cam_pp", _grad_cam_pp_weights, features_fn, head_fn, score_fn,
                       batch_size, resize)
