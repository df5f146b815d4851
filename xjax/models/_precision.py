"""Run a model's calls under a mixed-precision policy (jmp)."""

import jax
import jmp

from xjax._internal.precision import policy
from xjax.typing import Model

__all__ = ["with_precision"]


def with_precision(model: Model, precision: str | jmp.Policy = "bfloat16") -> Model:
    """The same model with every call (``model_fn``, ``features_fn``, ``head_fn``) computed under
    a jmp policy: ``"bfloat16"`` casts the parameters and inputs to bfloat16 inside the call and
    the outputs back to float32, so ``params`` stay float32 and explainers, metrics and
    gradients see float32 values. ``"float32"`` returns the model unchanged.

    The difference from float32 is bounded by the tests on the zoo models (logits within a few
    percent of their range, same top-1 on the sample photos).
    """
    mp = policy(precision)
    if mp.compute_dtype == mp.param_dtype:
        return model

    def wrap(fn):
        if fn is None:
            return None

        def call(params, x):
            # some layers keep float32 internals (e.g. flax attention); under a bfloat16
            # policy those mixes are intended, so the call runs under standard promotion
            with jax.numpy_dtype_promotion("standard"):
                return mp.cast_to_output(fn(mp.cast_to_compute(params), mp.cast_to_compute(x)))
        return call

    return model._replace(model_fn=wrap(model.model_fn), features_fn=wrap(model.features_fn),
                          head_fn=wrap(model.head_fn))
