"""xjax: explain vision models in JAX."""

from xjax import attributions as attributions
from xjax import bounds as bounds
from xjax import concepts as concepts
from xjax import data as data
from xjax import featviz as featviz
from xjax import gsa as gsa
from xjax import harmonization as harmonization
from xjax import lens as lens
from xjax import lipschitz as lipschitz
from xjax import metrics as metrics
from xjax import models as models
from xjax import plots as plots
from xjax import runs as runs
from xjax import train as train
from xjax import typing as typing

__version__ = "0.1.0"
