"""Score functions: which scalar of the model output an explainer explains."""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

__all__ = ["logit", "probability"]


def logit(out: Float[Array, "B K"], y: Int[Array, " B"]) -> Float[Array, " B"]:
    """The output (logit) of class ``y``: ``out[b, y[b]]``. The default ``score_fn``."""
    return jnp.take_along_axis(out, y[:, None].astype(jnp.int32), axis=1)[:, 0]


def probability(out: Float[Array, "B K"], y: Int[Array, " B"]) -> Float[Array, " B"]:
    """The softmax probability of class ``y``."""
    return logit(jax.nn.softmax(out, axis=-1), y)
