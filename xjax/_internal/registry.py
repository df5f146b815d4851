"""The one table of attribution methods that the command line, Lens and the contract suite read.

Each entry names the factory (``module:function``, imported only when it is built, so that the
command line lists methods without importing JAX), whether it takes the model's features/head
split instead of ``model_fn`` and whether it needs a ``key``. The hyperparameters, with their
types and the papers' defaults, are read from the factory's keyword-only signature, so the table
cannot drift from the code: a keyword added to a factory is a hyperparameter here at once.

``noise_tunnel`` is not an entry: it wraps another explainer rather than a model.
"""

import ast
import importlib
import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

__all__ = ["METHODS", "REGISTRY", "STOCHASTIC", "Hyperparameter", "Method", "factory",
           "from_name", "hyperparameters", "parse_value"]


class Method(NamedTuple):
    """A registered attribution method.

    Attributes:
      target: ``"module:function"`` of its factory.
      split: the factory takes ``(features_fn, head_fn)`` (the CAMs), not ``model_fn``.
      stochastic: its explainer requires ``key``.
      summary: one line for listings.
      single_call: one model call (forward and backward) per image, whatever its settings.
      model_calls: what its model calls cost, the program :func:`xjax.tune.batch_size` times
        to choose its batch size: ``"forward"``, ``"gradient"`` (forward and backward to the
        input), or ``None`` (not a model call: EVA's bound passes keep the factory default).
    """

    target: str
    split: bool = False
    stochastic: bool = False
    summary: str = ""
    single_call: bool = False
    model_calls: str | None = "gradient"


class Hyperparameter(NamedTuple):
    """A keyword of a factory that a user may set by value (command line, settings files)."""

    name: str
    annotation: str
    default: Any


_A = "xjax.attributions."
REGISTRY: dict[str, Method] = {
    "saliency": Method(_A + "_saliency:saliency", single_call=True,
                       summary="|gradient| (Simonyan et al. 2014)"),
    "gradient_input": Method(_A + "_saliency:gradient_input", single_call=True,
                             summary="gradient x input"),
    "integrated_gradients": Method(_A + "_integrated_gradients:integrated_gradients",
                                   summary="path integral of the gradient (Sundararajan 2017)"),
    "smoothgrad": Method(_A + "_smoothgrad:smoothgrad", stochastic=True,
                         summary="mean gradient under noise (Smilkov et al. 2017)"),
    "vargrad": Method(_A + "_smoothgrad:vargrad", stochastic=True,
                      summary="variance of the gradient under noise"),
    "squaregrad": Method(_A + "_smoothgrad:squaregrad", stochastic=True,
                         summary="mean squared gradient under noise"),
    "guided_backprop": Method(_A + "_guided:guided_backprop", single_call=True,
                              summary="ReLU gradients gated forward and backward"),
    "deconvnet": Method(_A + "_guided:deconvnet", single_call=True,
                        summary="ReLU gradients gated backward"),
    "grad_cam": Method(_A + "_grad_cam:grad_cam", split=True, single_call=True,
                       summary="class activation map (Selvaraju et al. 2017)"),
    "grad_cam_pp": Method(_A + "_grad_cam:grad_cam_pp", split=True, single_call=True,
                          summary="Grad-CAM++"),
    "occlusion": Method(_A + "_occlusion:occlusion", model_calls="forward",
                        summary="sliding-patch score drop"),
    "rise": Method(_A + "_rise:rise", model_calls="forward", stochastic=True,
                   summary="random masks (Petsiuk et al. 2018)"),
    "lime": Method(_A + "_lime:lime", model_calls="forward", stochastic=True,
                   summary="local linear surrogate (Ribeiro et al. 2016)"),
    "kernel_shap": Method(_A + "_lime:kernel_shap", model_calls="forward", stochastic=True,
                          summary="Shapley kernel regression (Lundberg and Lee 2017)"),
    "sobol": Method(_A + "_sobol:sobol", model_calls="forward",
                    summary="total Sobol indices (Fel et al. 2021)"),
    "hsic": Method(_A + "_sobol:hsic", model_calls="forward",
                   summary="HSIC dependence (Novello et al. 2022)"),
    "eva": Method(_A + "_eva:eva", model_calls=None,
                  summary="verified perturbation analysis (Fel et al. 2023)"),
    "greedy_as": Method(_A + "_greedy_as:greedy_as", stochastic=True,
                        summary="robustness-optimal ranking (Hsieh et al. 2021); costly"),
}
METHODS: tuple[str, ...] = tuple(REGISTRY)
STOCHASTIC: tuple[str, ...] = tuple(n for n, m in REGISTRY.items() if m.stochastic)
# keywords that are functions or arrays, never set by value
_NOT_BY_VALUE = {"score_fn", "features_fn", "head_fn", "design_key"}


def _check_name(name: str) -> Method:
    if name not in REGISTRY:
        raise ValueError(f"method: unknown attribution method {name!r}; choose from "
                         f"{', '.join(METHODS)}")
    return REGISTRY[name]


def factory(name: str) -> Callable:
    """The factory registered under ``name`` (imports its module).

    Raises:
      ValueError: unknown method name.
    """
    module, attr = _check_name(name).target.split(":")
    return getattr(importlib.import_module(module), attr)


def _annotation(a: Any) -> str:
    if a is inspect.Parameter.empty:
        return "any"
    return a.__name__ if isinstance(a, type) else str(a).replace("typing.", "")


def hyperparameters(name: str) -> dict[str, Hyperparameter]:
    """The hyperparameters of method ``name``: its factory's keyword-only arguments set by value.

    Raises:
      ValueError: unknown method name.
    """
    sig = inspect.signature(factory(name))
    return {p.name: Hyperparameter(p.name, _annotation(p.annotation), p.default)
            for p in sig.parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in _NOT_BY_VALUE}


def parse_value(text: str) -> Any:
    """A hyperparameter value from text: a Python literal (``8``, ``0.5``, ``None``, ``(0, 1)``,
    ``True``) when it is one, else the text itself (``blur``, ``slic``)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def from_name(name: str, model, **kwargs):
    """``xjax.attributions.<name>`` built on a :class:`~xjax.typing.Model` (the CAMs use its
    features/head split).

    Args:
      name: a key of :data:`REGISTRY`.
      model: the model; ``features_fn`` and ``head_fn`` are required for split methods.
      **kwargs: hyperparameters; an unknown one is a ``ValueError`` listing the known ones.

    Raises:
      ValueError: unknown method, unknown hyperparameter, or a split method on a model without
        ``features_fn``/``head_fn``.
    """
    method = _check_name(name)
    known = hyperparameters(name)
    unknown = sorted(set(kwargs) - set(known) - _NOT_BY_VALUE)
    if unknown:
        raise ValueError(f"{name}: unknown hyperparameter(s) {unknown}; {name} takes "
                         f"{', '.join(known)}")
    build = factory(name)
    if method.split:
        if model.features_fn is None or model.head_fn is None:
            raise ValueError(f"{name}: model needs features_fn and head_fn (its features/head "
                             "split); build the Model with both")
        return build(model.features_fn, model.head_fn, **kwargs)
    return build(model.model_fn, **kwargs)
