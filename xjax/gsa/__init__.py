"""Global sensitivity analysis on the unit hypercube: samplers, replicated designs, Sobol'
index estimators and HSIC. Generic: they work on any function of ``[0, 1]^d``, not only images.
"""

from xjax.gsa._hsic import KERNELS as KERNELS
from xjax.gsa._hsic import hsic_scores as hsic_scores
from xjax.gsa._sequences import MAX_SOBOL_DIMS as MAX_SOBOL_DIMS
from xjax.gsa._sequences import halton as halton
from xjax.gsa._sequences import latin_hypercube as latin_hypercube
from xjax.gsa._sequences import sobol_sequence as sobol_sequence
from xjax.gsa._sobol import ESTIMATORS as ESTIMATORS
from xjax.gsa._sobol import SAMPLERS as SAMPLERS
from xjax.gsa._sobol import SobolIndices as SobolIndices
from xjax.gsa._sobol import replicated_design as replicated_design
from xjax.gsa._sobol import sobol_indices as sobol_indices

__all__ = [
    "ESTIMATORS",
    "KERNELS",
    "MAX_SOBOL_DIMS",
    "SAMPLERS",
    "SobolIndices",
    "halton",
    "hsic_scores",
    "latin_hypercube",
    "replicated_design",
    "sobol_indices",
    "sobol_sequence",
]
