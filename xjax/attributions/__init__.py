"""Attribution methods: factories returning pure ``explainer(params, x, y, *, key=None)``.

Every explainer maps images ``f32[N, H, W, C]`` and targets ``y`` to maps ``f32[N, H, W]``,
bounds the images in any single model call by ``batch_size`` (inputs and perturbations
together), validates its inputs before tracing, and composes with ``jit``, ``vmap`` over
parameters, ``grad`` and sharding. Stochastic methods require ``key``.
"""

from xjax._internal.registry import METHODS as METHODS
from xjax._internal.registry import REGISTRY as REGISTRY
from xjax._internal.registry import STOCHASTIC as STOCHASTIC
from xjax._internal.registry import from_name as from_name
from xjax._internal.registry import hyperparameters as hyperparameters
from xjax.attributions._eva import eva as eva
from xjax.attributions._grad_cam import grad_cam as grad_cam
from xjax.attributions._grad_cam import grad_cam_pp as grad_cam_pp
from xjax.attributions._greedy_as import greedy_as as greedy_as
from xjax.attributions._guided import deconvnet as deconvnet
from xjax.attributions._guided import guided_backprop as guided_backprop
from xjax.attributions._guided import rewrite_relu_gradients as rewrite_relu_gradients
from xjax.attributions._integrated_gradients import integrated_gradients as integrated_gradients
from xjax.attributions._lime import grid_segments as grid_segments
from xjax.attributions._lime import kernel_shap as kernel_shap
from xjax.attributions._lime import lime as lime
from xjax.attributions._lime import slic_segments as slic_segments
from xjax.attributions._noise_tunnel import noise_tunnel as noise_tunnel
from xjax.attributions._occlusion import occlusion as occlusion
from xjax.attributions._rise import rise as rise
from xjax.attributions._saliency import gradient_input as gradient_input
from xjax.attributions._saliency import saliency as saliency
from xjax.attributions._score import log_probability as log_probability
from xjax.attributions._score import logit as logit
from xjax.attributions._score import object_detection as object_detection
from xjax.attributions._score import probability as probability
from xjax.attributions._score import regression as regression
from xjax.attributions._score import semantic_segmentation as semantic_segmentation
from xjax.attributions._smoothgrad import smoothgrad as smoothgrad
from xjax.attributions._smoothgrad import squaregrad as squaregrad
from xjax.attributions._smoothgrad import vargrad as vargrad
from xjax.attributions._sobol import hsic as hsic
from xjax.attributions._sobol import sobol as sobol

__all__ = [
    "METHODS",
    "REGISTRY",
    "STOCHASTIC",
    "deconvnet",
    "from_name",
    "grad_cam",
    "grad_cam_pp",
    "gradient_input",
    "greedy_as",
    "grid_segments",
    "eva",
    "hsic",
    "guided_backprop",
    "hyperparameters",
    "integrated_gradients",
    "kernel_shap",
    "lime",
    "log_probability",
    "logit",
    "noise_tunnel",
    "object_detection",
    "occlusion",
    "probability",
    "regression",
    "rewrite_relu_gradients",
    "rise",
    "saliency",
    "semantic_segmentation",
    "slic_segments",
    "smoothgrad",
    "sobol",
    "squaregrad",
    "vargrad",
]
