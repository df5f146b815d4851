"""Noise tunnel: run any explainer on noisy copies of the inputs and aggregate the maps."""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from xjax._internal.validate import check_positive_int
from xjax.attributions._common import check_key, guarded
from xjax.typing import Explainer

__all__ = ["noise_tunnel"]

_REDUCTIONS = ("mean", "square", "variance")


def noise_tunnel(explainer: Explainer, *, nb_samples: int = 50, noise: float = 0.2,
                 reduction: str = "mean") -> Explainer:
    r"""Wrap ``explainer`` so that it explains ``x + eps_s`` for S noise draws and aggregates.

    .. math:: \phi_{NT}(x) = \operatorname{agg}_{s=1..S} \phi(x + \varepsilon_s),
       \quad \varepsilon_s \sim \mathcal{N}(0, \sigma^2 I)

    ``reduction="mean"`` applied to saliency without the absolute value is SmoothGrad;
    ``"square"`` is SquareGrad; ``"variance"`` is VarGrad (Captum's ``NoiseTunnel``). The S runs
    go one after the other in a ``lax.scan``, so the wrapped explainer's ``batch_size`` still
    bounds every model call.

    Args:
      explainer: any xjax explainer.
      nb_samples: S.
      noise: sigma in input units.
      reduction: ``"mean"``, ``"square"`` (mean of squared maps) or ``"variance"``.

    Returns:
      ``explainer(params, x, y, *, key) -> maps`` with the wrapped explainer's map shape;
      ``key`` is required (it is split between the noise and the wrapped explainer).
    """
    nb_samples = check_positive_int(nb_samples, "nb_samples", where="noise_tunnel")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"noise_tunnel: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if not callable(explainer):
        raise TypeError("noise_tunnel: explainer must be an xjax explainer (a callable)")

    @guarded("noise_tunnel", None, None)     # labels: checked by the wrapped explainer
    def wrapped(params, x: Float[Array, "N H W C"], y, *, key=None):
        check_key(key, "noise_tunnel")

        def one(s):
            k_noise, k_inner = jax.random.split(jax.random.fold_in(key, s))
            eps = jax.random.normal(k_noise, x.shape[1:], x.dtype)  # shared by every input
            return explainer(params, x + noise * eps[None], y, key=k_inner)

        first = jax.eval_shape(lambda: one(0))
        init = (jnp.zeros(first.shape, jnp.float32), jnp.zeros(first.shape, jnp.float32))

        def body(carry, s):
            m = one(s).astype(jnp.float32)
            return (carry[0] + m / nb_samples, carry[1] + m * m / nb_samples), None

        (m1, m2), _ = jax.lax.scan(body, init, jnp.arange(nb_samples))
        if reduction == "mean":
            return m1
        if reduction == "square":
            return m2
        return jnp.maximum(m2 - m1 * m1, 0.0)

    return wrapped
