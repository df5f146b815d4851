"""Attribution methods: factories returning pure ``explainer(params, x, y, *, key=None)``."""

from xjax.attributions._saliency import saliency as saliency
from xjax.attributions._score import logit as logit
from xjax.attributions._score import probability as probability

__all__ = ["logit", "probability", "saliency"]
