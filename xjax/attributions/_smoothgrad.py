"""Gradient statistics under Gaussian noise: SmoothGrad, SquareGrad, VarGrad."""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from xjax._internal.validate import check_positive_int
from xjax.attributions._common import (
    check_batch_size,
    check_key,
    check_reduction,
    gradient_moments,
    guarded,
    reduce_channels,
)
from xjax.attributions._score import logit
from xjax.typing import Explainer, ModelFn, ScoreFn

__all__ = ["smoothgrad", "squaregrad", "vargrad"]


def _noisy_gradient_method(name: str, statistic: str, model_fn: ModelFn, *, nb_samples: int,
                           noise: float, score_fn: ScoreFn, batch_size: int | None,
                           channel_reduction: str | None) -> Explainer:
    nb_samples = check_positive_int(nb_samples, "nb_samples", where=name)
    batch_size = check_batch_size(batch_size, name)
    check_reduction(channel_reduction, name)
    if isinstance(noise, (int, float)) and noise < 0:
        raise ValueError(f"{name}: noise must be >= 0, got {noise}")

    @guarded(name, model_fn, score_fn)
    def explainer(params, x: Float[Array, "N H W C"], y, *, key=None):
        check_key(key, name)

        # Sample s adds eps_s ~ N(0, noise^2 I); the same S draws serve every input, so each
        # input's map depends only on itself and the key (batch independence).
        def sample(s):
            return jax.random.normal(jax.random.fold_in(key, s), x.shape[1:], x.dtype)

        def make_input(xi, eps):
            return xi + noise * eps

        weights = jnp.full((nb_samples,), 1.0 / nb_samples, x.dtype)
        moments = gradient_moments(model_fn, score_fn, params, x, y, make_input, weights,
                                   batch_size=batch_size, second=statistic != "mean",
                                   sample=sample)
        if statistic == "mean":
            maps = moments[0]
        elif statistic == "square":
            maps = moments[1]
        else:  # variance: E[g^2] - E[g]^2
            maps = jnp.maximum(moments[1] - moments[0] ** 2, 0.0)
        return reduce_channels(maps, channel_reduction)

    return explainer


def smoothgrad(model_fn: ModelFn, *, nb_samples: int = 50, noise: float = 0.2,
               score_fn: ScoreFn = logit, batch_size: int | None = 64,
               channel_reduction: str | None = "mean") -> Explainer:
    r"""SmoothGrad (Smilkov et al., 2017): the gradient averaged over noisy copies.

    .. math:: \phi(x) = \frac{1}{S} \sum_{s=1}^S \nabla_x s(f(x + \varepsilon_s)),
       \quad \varepsilon_s \sim \mathcal{N}(0, \sigma^2 I)

    Args:
      model_fn, score_fn, batch_size: as :func:`saliency` (``batch_size`` bounds inputs x
        samples together).
      nb_samples: S (50, Xplique's default).
      noise: sigma of the Gaussian noise in input units (0.2 on [0, 1] images, Xplique).
      channel_reduction: ``"mean"`` (Xplique), ``"sum"``, ``"max"`` or ``None``.

    Returns:
      ``explainer(params, x, y, *, key) -> f32[N, H, W]``; ``key`` is required.

    References:
      D. Smilkov, N. Thorat, B. Kim, F. Viégas, M. Wattenberg, "SmoothGrad: removing noise by
      adding noise", arXiv:1706.03825.
    """
    return _noisy_gradient_method("smoothgrad", "mean", model_fn, nb_samples=nb_samples,
                                  noise=noise, score_fn=score_fn, batch_size=batch_size,
                                  channel_reduction=channel_reduction)


def squaregrad(model_fn: ModelFn, *, nb_samples: int = 50, noise: float = 0.2,
               score_fn: ScoreFn = logit, batch_size: int | None = 64,
               channel_reduction: str | None = "mean") -> Explainer:
    r"""SquareGrad (Hooker et al., 2019): the mean squared gradient over noisy copies.

    .. math:: \phi(x) = \frac{1}{S} \sum_s \left(\nabla_x s(f(x + \varepsilon_s))\right)^2

    Arguments as :func:`smoothgrad`.

    References:
      S. Hooker, D. Erhan, P.-J. Kindermans, B. Kim, "A Benchmark for Interpretability Methods
      in Deep Neural Networks", NeurIPS 2019, arXiv:1806.10758.
    """
    return _noisy_gradient_method("squaregrad", "square", model_fn, nb_samples=nb_samples,
                                  noise=noise, score_fn=score_fn, batch_size=batch_size,
                                  channel_reduction=channel_reduction)


def vargrad(model_fn: ModelFn, *, nb_samples: int = 50, noise: float = 0.2,
            score_fn: ScoreFn = logit, batch_size: int | None = 64,
            channel_reduction: str | None = "mean") -> Explainer:
    r"""VarGrad (Adebayo et al., 2018): the variance of the gradient over noisy copies.

    .. math:: \phi(x) = \frac{1}{S} \sum_s g_s^2 - \Big(\frac{1}{S} \sum_s g_s\Big)^2,
       \quad g_s = \nabla_x s(f(x + \varepsilon_s))

    Arguments as :func:`smoothgrad`.

    References:
      J. Adebayo, J. Gilmer, I. Goodfellow, B. Kim, "Local Explanation Methods for Deep Neural
      Networks Lack Sensitivity to Parameter Values", ICLR workshop 2018, arXiv:1810.03307.
    """
    return _noisy_gradient_method("vargrad", "variance", model_fn, nb_samples=nb_samples,
                                  noise=noise, score_fn=score_fn, batch_size=batch_size,
                                  channel_reduction=channel_reduction)
