"""Bridges from Flax modules to xjax's pure ``model_fn(params, x)`` contract."""

from collections.abc import Callable
from typing import Any

import jax
from flax import nnx

from xjax.typing import Model, ModelFn, Params

__all__ = ["from_linen", "from_nnx", "init_module", "model_from_nnx"]


def from_nnx(module: nnx.Module, *, method: str = "__call__") -> tuple[ModelFn, Params]:
    """Split a Flax nnx module into a pure function and its state.

    .. math:: \\text{model\\_fn}(\\theta, x) = \\text{merge}(g, \\theta).\\text{method}(x)

    The whole ``nnx.state`` (parameters and batch statistics) is the ``params`` pytree, so one
    compiled function serves new weights, ``jax.grad`` flows to it and ``jax.vmap`` stacks it.
    Put the module in inference mode first (``module.eval()``) when it has batch norm or dropout:
    ``model_fn`` never updates state.

    Args:
      module: any ``nnx.Module``.
      method: name of the method ``model_fn`` calls (``"__call__"``; ``"features"`` and
        ``"head"`` for the zoo's splits).

    Returns:
      ``(model_fn, params)`` with ``model_fn(params, x) -> out``.

    Example:
      >>> from flax import nnx
      >>> import jax.numpy as jnp
      >>> model_fn, params = from_nnx(nnx.Linear(3, 2, rngs=nnx.Rngs(0)))
      >>> model_fn(params, jnp.ones((4, 3))).shape
      (4, 2)
    """
    if not isinstance(module, nnx.Module):
        raise TypeError(f"from_nnx: module must be a flax.nnx.Module, got {type(module).__name__}")
    if not callable(getattr(module, method, None)):
        raise ValueError(f"from_nnx: module {type(module).__name__} has no method {method!r}")
    graphdef, state = nnx.split(module)

    def model_fn(params: Params, x: Any) -> Any:
        return getattr(nnx.merge(graphdef, params), method)(x)

    return model_fn, state


def from_linen(module: Any, variables: Params, *, method: str | Callable | None = None
               ) -> tuple[ModelFn, Params]:
    """Wrap a Flax linen module and its variables as ``(model_fn, params)``.

    ``params`` is the whole variables dict (``{"params": ..., "batch_stats": ...}``); the module
    is applied without mutable collections, so batch norm must use its running averages.

    Args:
      module: a ``flax.linen.Module``.
      variables: the dict returned by ``module.init``.
      method: optional method (name or function) passed to ``module.apply``.

    Returns:
      ``(model_fn, params)`` with ``model_fn(params, x) = module.apply(params, x)``.

    Example:
      >>> import flax.linen as nn, jax, jax.numpy as jnp
      >>> m = nn.Dense(2)
      >>> model_fn, params = from_linen(m, m.init(jax.random.key(0), jnp.ones((1, 3))))
      >>> model_fn(params, jnp.ones((4, 3))).shape
      (4, 2)
    """
    import flax.linen as nn

    if not isinstance(module, nn.Module):
        raise TypeError(f"from_linen: module must be a flax.linen.Module, got {type(module).__name__}")
    if not isinstance(variables, dict) and not hasattr(variables, "keys"):
        raise TypeError("from_linen: variables must be the dict returned by module.init, got "
                        f"{type(variables).__name__}")

    def model_fn(params: Params, x: Any) -> Any:
        return module.apply(params, x, method=method)

    return model_fn, variables


def init_module(ctor: Callable[[nnx.Rngs], nnx.Module], key: Any, *, abstract: bool = False
                ) -> nnx.Module:
    """Build ``ctor(rngs)`` with its random initialization compiled as one XLA computation.

    Eager initialization of a deep network runs (and compiles) one small op per layer, which
    takes seconds; jitting the whole init takes a fraction of that. With ``abstract=True`` no
    array is materialized (``jax.ShapeDtypeStruct`` leaves), for modules whose weights are
    loaded from a file right after.
    """
    graphdef, abstract_state = nnx.split(nnx.eval_shape(lambda: ctor(nnx.Rngs(key))))
    if abstract:
        return nnx.merge(graphdef, abstract_state)
    state = jax.jit(lambda k: nnx.split(ctor(nnx.Rngs(k)))[1])(key)
    return nnx.merge(graphdef, state)


def model_from_nnx(module: nnx.Module, *, input_shape: tuple[int, int, int],
                   class_names: tuple[str, ...] | None = None) -> Model:
    """A :class:`~xjax.typing.Model` from an nnx module with ``features`` and ``head`` methods.

    The module is switched to inference mode (batch norm uses its running statistics).
    """
    module.eval()
    model_fn, params = from_nnx(module)
    features_fn, _ = from_nnx(module, method="features")
    head_fn, _ = from_nnx(module, method="head")
    return Model(model_fn, params, features_fn, head_fn, tuple(input_shape), class_names)
