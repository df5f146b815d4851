"""xjax: explain vision models in JAX.

Subpackages are imported on first use (``xjax.attributions``, ``xjax.models``, ...), so that
``import xjax`` and the ``xjax`` command start without importing JAX.
"""

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["attributions", "bounds", "concepts", "data", "featviz", "gsa", "harmonization", "lens",
           "lipschitz", "metrics", "models", "plots", "runs", "train", "tune", "typing"]
_SUBPACKAGES = frozenset(__all__)

if TYPE_CHECKING:
    from xjax import (
        attributions,
        bounds,
        concepts,
        data,
        featviz,
        gsa,
        harmonization,
        lens,
        lipschitz,
        metrics,
        models,
        plots,
        runs,
        train,
        tune,
        typing,
    )


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"xjax.{name}")
    raise AttributeError(f"module 'xjax' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_SUBPACKAGES])
