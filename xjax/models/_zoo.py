"""The model zoo by name, for the command line and experiments."""

from collections.abc import Callable

from xjax.typing import Model

__all__ = ["ZOO", "get_model"]


def _efficientnet_lite0(**kw):
    from xjax.models._efficientnet import efficientnet_lite0
    return efficientnet_lite0(**kw)


def _efficientnet_lite1(**kw):
    from xjax.models._efficientnet import efficientnet_lite1
    return efficientnet_lite1(**kw)


def _efficientnet_lite2(**kw):
    from xjax.models._efficientnet import efficientnet_lite2
    return efficientnet_lite2(**kw)


def _small_cnn(**kw):
    from xjax.models._small_cnn import small_cnn
    return small_cnn(**kw)


def _resnet18(**kw):
    from xjax.models._resnet import resnet18
    return resnet18(**kw)


def _resnet50(**kw):
    from xjax.models._resnet import resnet50
    return resnet50(**kw)


def _vit_tiny(**kw):
    from xjax.models._vit import vit_tiny
    return vit_tiny(**kw)


# name -> (constructor, keyword arguments of its default, pretrained form)
ZOO: dict[str, tuple[Callable[..., Model], dict]] = {
    "efficientnet_lite0": (_efficientnet_lite0, {"pretrained": True}),
    "efficientnet_lite1": (_efficientnet_lite1, {"pretrained": True}),
    "efficientnet_lite2": (_efficientnet_lite2, {"pretrained": True}),
    "small_cnn": (_small_cnn, {"pretrained": "fashion_mnist"}),
    "resnet18": (_resnet18, {}),
    "resnet50": (_resnet50, {}),
    "vit_tiny": (_vit_tiny, {}),
}


def get_model(name: str, **kwargs) -> Model:
    """Build a zoo model by name with its default (pretrained where weights ship) settings;
    ``kwargs`` override them."""
    if name not in ZOO:
        raise ValueError(f"model: unknown zoo model {name!r}; available: {sorted(ZOO)}")
    ctor, defaults = ZOO[name]
    return ctor(**{**defaults, **kwargs})
