"""ResNet-18 and ResNet-50 (He et al., 2016) in Flax nnx, torchvision layout.

Submodules carry torchvision's names (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer2.0.downsample.0``, ``fc``) so torchvision state dicts load with
:func:`xjax.models.load_state_dict`; ResNet-50 is the v1.5 variant (stride in the 3x3 conv).
Batch norm epsilon 1e-5, symmetric ``k // 2`` padding as in PyTorch.

``features`` returns the last stage's activations ``f32[B, H/32, W/32, 512 or 2048]``; ``head``
average-pools and classifies.

Reference: K. He, X. Zhang, S. Ren, J. Sun, "Deep Residual Learning for Image Recognition",
CVPR 2016, arXiv:1512.03385.
"""

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

from xjax._internal.validate import check_images
from xjax.models._bridge import init_module, model_from_nnx
from xjax.models._layers import Conv2d, batch_norm, max_pool
from xjax.typing import Model

__all__ = ["ResNet", "resnet18", "resnet50"]

# torchvision's ImageNet normalization
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class BasicBlock(nnx.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int, *, rngs: nnx.Rngs):
        self.conv1 = Conv2d(cin, planes, 3, stride=stride, padding=1, rngs=rngs)
        self.bn1 = batch_norm(planes, rngs=rngs)
        self.conv2 = Conv2d(planes, planes, 3, padding=1, rngs=rngs)
        self.bn2 = batch_norm(planes, rngs=rngs)
        self.downsample = (nnx.List([Conv2d(cin, planes, 1, stride=stride, padding=0, rngs=rngs),
                                     batch_norm(planes, rngs=rngs)])
                           if stride != 1 or cin != planes else None)

    def __call__(self, x):
        h = jax.nn.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        skip = x if self.downsample is None else self.downsample[1](self.downsample[0](x))
        return jax.nn.relu(h + skip)


class Bottleneck(nnx.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int, *, rngs: nnx.Rngs):
        out = planes * 4
        self.conv1 = Conv2d(cin, planes, 1, padding=0, rngs=rngs)
        self.bn1 = batch_norm(planes, rngs=rngs)
        self.conv2 = Conv2d(planes, planes, 3, stride=stride, padding=1, rngs=rngs)
        self.bn2 = batch_norm(planes, rngs=rngs)
        self.conv3 = Conv2d(planes, out, 1, padding=0, rngs=rngs)
        self.bn3 = batch_norm(out, rngs=rngs)
        self.downsample = (nnx.List([Conv2d(cin, out, 1, stride=stride, padding=0, rngs=rngs),
                                     batch_norm(out, rngs=rngs)])
                           if stride != 1 or cin != out else None)

    def __call__(self, x):
        h = jax.nn.relu(self.bn1(self.conv1(x)))
        h = jax.nn.relu(self.bn2(self.conv2(h)))
        h = self.bn3(self.conv3(h))
        skip = x if self.downsample is None else self.downsample[1](self.downsample[0](x))
        return jax.nn.relu(h + skip)


class ResNet(nnx.Module):
    """ResNet on images in [0, 1] (ImageNet mean/std normalization applied inside)."""

    def __init__(self, block: type, layers: tuple[int, ...], *, num_classes: int = 1000,
                 in_channels: int = 3, rngs: nnx.Rngs):
        self.in_channels = in_channels
        self.conv1 = Conv2d(in_channels, 64, 7, stride=2, padding=3, space_to_depth_gradient=True,
                            rngs=rngs)
        self.bn1 = batch_norm(64, rngs=rngs)
        cin = 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers, strict=True)):
            blocks = []
            for j in range(n):
                blocks.append(block(cin, planes, (1 if i == 0 or j > 0 else 2), rngs=rngs))
                cin = planes * block.expansion
            setattr(self, f"layer{i + 1}", nnx.List(blocks))
        self.fc = nnx.Linear(cin, num_classes, rngs=rngs)

    def features(self, x: Float[Array, "B H W C"]) -> Float[Array, "B h w F"]:
        check_images(x, "x", channels=self.in_channels, where="resnet")
        if self.in_channels == 3:
            mean = jnp.asarray(IMAGENET_MEAN, x.dtype).reshape(1, 1, 1, 3)
            std = jnp.asarray(IMAGENET_STD, x.dtype).reshape(1, 1, 1, 3)
            x = (x - mean) / std
        h = jax.nn.relu(self.bn1(self.conv1(x)))
        h = max_pool(h, 3, 2, padding=1)
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in stage:
                h = block(h)
        return h

    def head(self, a: Float[Array, "B h w F"]) -> Float[Array, "B K"]:
        return self.fc(a.mean(axis=(1, 2)))

    def __call__(self, x: Float[Array, "B H W C"]) -> Float[Array, "B K"]:
        return self.head(self.features(x))


def _resnet(block, layers, num_classes, key, state_dict, input_shape) -> Model:
    key = jax.random.key(0) if key is None else key
    module = init_module(lambda rngs: ResNet(block, layers, num_classes=num_classes, rngs=rngs),
                         key, abstract=state_dict is not None)
    if state_dict is not None:
        from xjax.models._weights import load_state_dict

        load_state_dict(module, state_dict)
    from xjax.models._efficientnet import imagenet_class_names

    names = imagenet_class_names() if num_classes == 1000 else None   # torchvision's order
    return model_from_nnx(module, input_shape=input_shape, class_names=names)


def resnet18(*, num_classes: int = 1000, key: jax.Array | None = None,
             state_dict: dict | None = None, input_shape=(224, 224, 3)) -> Model:
    """ResNet-18 as a :class:`~xjax.typing.Model`: random init, or a torchvision state dict.

    Args:
      num_classes: K.
      key: PRNG key of the random init (default ``jax.random.key(0)``).
      state_dict: torchvision-layout weights, e.g.
        ``load_torch_checkpoint("resnet18-f37072fd.pth")`` from a file you have (never fetched).
      input_shape: nominal ``(H, W, C)``; any size works.
    """
    return _resnet(BasicBlock, (2, 2, 2, 2), num_classes, key, state_dict, input_shape)


def resnet50(*, num_classes: int = 1000, key: jax.Array | None = None,
             state_dict: dict | None = None, input_shape=(224, 224, 3)) -> Model:
    """ResNet-50 (v1.5) as a :class:`~xjax.typing.Model`; arguments as :func:`resnet18`."""
    return _resnet(Bottleneck, (3, 4, 6, 3), num_classes, key, state_dict, input_shape)
