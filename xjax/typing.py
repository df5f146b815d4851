"""Shape letters, array aliases and the protocols every part of xjax agrees on.

Shape letters (used in jaxtyping annotations and in docstrings):

====  =====================================================================
N     inputs explained (the batch a user passes to an explainer or metric)
B     images in one call of ``model_fn`` (bounded by ``batch_size``)
H, W  image height and width; images are channels-last (NHWC)
C     image channels
K     model outputs (classes)
h, w  spatial size of a feature map (``features_fn`` output)
F     feature width (channels of a feature map, concept activations)
G     grid side of a perturbation mask
D     QMC design size (``nb_design``)
P     perturbed copies of one input
S     noise samples
R     concepts (dictionary size)
E     ensemble members (stacked parameter sets)
====  =====================================================================

Images given to a zoo model's ``model_fn`` are ``f32[B, H, W, C]`` in ``[0, 1]``: the model's own
normalization (for example EfficientNet's ``(255 x - 127) / 128``) happens inside ``model_fn``, so
perturbations such as a black baseline (0) mean the same thing for every model.
"""

from typing import Any, NamedTuple, Protocol, TypeAlias

import jax
from jaxtyping import Array, Float, Int, PyTree

__all__ = [
    "Explainer",
    "FeaturesFn",
    "HeadFn",
    "Images",
    "Labels",
    "Maps",
    "Model",
    "ModelFn",
    "Params",
    "ScoreFn",
]

Params: TypeAlias = PyTree
Images: TypeAlias = Float[Array, "N H W C"]
Labels: TypeAlias = Int[Array, " N"] | PyTree
Maps: TypeAlias = Float[Array, "N H W"]


class ModelFn(Protocol):
    """``model_fn(params, x: f32[B, H, W, C]) -> out[B, K]``, pure."""

    def __call__(self, params: Params, x: Float[Array, "B H W C"]) -> Float[Array, "B K"]: ...


class FeaturesFn(Protocol):
    """``features_fn(params, x: f32[B, H, W, C]) -> f32[B, h, w, F]``, the first part of a model."""

    def __call__(self, params: Params, x: Float[Array, "B H W C"]) -> Float[Array, "B h w F"]: ...


class HeadFn(Protocol):
    """``head_fn(params, a: f32[B, h, w, F]) -> out[B, K]``, the rest of the model.

    ``head_fn(params, features_fn(params, x)) == model_fn(params, x)``.
    """

    def __call__(self, params: Params, a: Float[Array, "B h w F"]) -> Float[Array, "B K"]: ...


class ScoreFn(Protocol):
    """``score_fn(out: out[B, K], y[B]) -> f32[B]``: the scalar explained per example."""

    def __call__(self, out: Float[Array, "B K"], y: Any) -> Float[Array, " B"]: ...


class Explainer(Protocol):
    """``explainer(params, x: f32[N, H, W, C], y, *, key=None) -> f32[N, H, W]``."""

    def __call__(self, params: Params, x: Images, y: Labels, *,
                 key: jax.Array | None = None) -> Maps: ...


class Model(NamedTuple):
    """A model split the way xjax uses it: pure functions plus their parameters.

    Attributes:
      model_fn: ``(params, x: f32[B, H, W, C] in [0, 1]) -> f32[B, K]`` logits.
      params: the parameter pytree (for Flax nnx models, the whole ``nnx.state``, batch
        statistics included); an argument of every function, never closed over.
      features_fn: ``(params, x) -> f32[B, h, w, F]``, the activations CAMs and concepts use.
      head_fn: ``(params, a: f32[B, h, w, F]) -> f32[B, K]``, with
        ``head_fn(params, features_fn(params, x)) == model_fn(params, x)``.
      input_shape: ``(H, W, C)`` the model was built for.
      class_names: names of the K outputs, or ``None``.
    """

    model_fn: ModelFn
    params: Params
    features_fn: FeaturesFn
    head_fn: HeadFn
    input_shape: tuple[int, int, int]
    class_names: tuple[str, ...] | None = None
