"""Build any attribution method by name from a :class:`~xjax.typing.Model` (CLI, experiments)."""

from xjax.typing import Explainer, Model

__all__ = ["METHODS", "STOCHASTIC", "from_name"]

METHODS = ("saliency", "gradient_input", "integrated_gradients", "smoothgrad", "vargrad",
           "squaregrad", "guided_backprop", "deconvnet", "grad_cam", "grad_cam_pp", "occlusion",
           "rise", "lime", "kernel_shap", "sobol", "hsic", "eva")
# Greedy-AS is built directly (``xjax.attributions.greedy_as``), not by name: at its defaults one
# 28 x 28 image costs about 10^7 gradient calls, too many for the command line's defaults.
STOCHASTIC = ("smoothgrad", "vargrad", "squaregrad", "rise", "lime", "kernel_shap",
              "greedy_as")


def from_name(name: str, model: Model, **kwargs) -> Explainer:
    """``xjax.attributions.<name>`` built on ``model`` (CAMs use its features/head split).

    Raises:
      ValueError: unknown method name.
    """
    import xjax.attributions as attributions

    if name not in METHODS:
        raise ValueError(f"method: unknown attribution method {name!r}; choose from {METHODS}")
    factory = getattr(attributions, name)
    if name in ("grad_cam", "grad_cam_pp"):
        return factory(model.features_fn, model.head_fn, **kwargs)
    return factory(model.model_fn, **kwargs)
