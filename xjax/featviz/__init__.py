"""Feature visualization: Fourier and MACO parameterizations, random transforms, composable
objectives and one jitted optimization loop (with MACO's transparency maps)."""

from xjax.featviz._objectives import Objective as Objective
from xjax.featviz._objectives import channel as channel
from xjax.featviz._objectives import direction as direction
from xjax.featviz._objectives import layer as layer
from xjax.featviz._objectives import logit as logit
from xjax.featviz._objectives import neuron as neuron
from xjax.featviz._optimize import OptimizeResult as OptimizeResult
from xjax.featviz._optimize import concept_objective as concept_objective
from xjax.featviz._optimize import optimize as optimize
from xjax.featviz._optimize import transparency_alpha as transparency_alpha
from xjax.featviz._parameterizations import Parameterization as Parameterization
from xjax.featviz._parameterizations import fourier as fourier
from xjax.featviz._parameterizations import maco as maco
from xjax.featviz._parameterizations import maco_standardized as maco_standardized
from xjax.featviz._spectrum import COLOR_CORRELATION as COLOR_CORRELATION
from xjax.featviz._spectrum import directory_magnitude as directory_magnitude
from xjax.featviz._spectrum import natural_magnitude as natural_magnitude
from xjax.featviz._spectrum import radial_profile as radial_profile
from xjax.featviz._spectrum import sample_photo_magnitude as sample_photo_magnitude
from xjax.featviz._transforms import compose as compose
from xjax.featviz._transforms import jitter as jitter
from xjax.featviz._transforms import lucid as lucid
from xjax.featviz._transforms import noise as noise
from xjax.featviz._transforms import pad as pad
from xjax.featviz._transforms import random_crops as random_crops
from xjax.featviz._transforms import resize as resize
from xjax.featviz._transforms import rotate as rotate
from xjax.featviz._transforms import scale as scale

__all__ = [
    "COLOR_CORRELATION",
    "Objective",
    "OptimizeResult",
    "Parameterization",
    "channel",
    "compose",
    "concept_objective",
    "direction",
    "directory_magnitude",
    "fourier",
    "jitter",
    "layer",
    "logit",
    "lucid",
    "maco",
    "maco_standardized",
    "natural_magnitude",
    "neuron",
    "noise",
    "optimize",
    "pad",
    "radial_profile",
    "random_crops",
    "resize",
    "rotate",
    "sample_photo_magnitude",
    "scale",
    "transparency_alpha",
]
