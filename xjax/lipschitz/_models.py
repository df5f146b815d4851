"""A 1-Lipschitz CNN for small images (Fashion-MNIST size)."""

import jax
from flax import nnx
from jaxtyping import Array, Float

from xjax._internal.validate import check_images
from xjax.lipschitz._layers import (
    SpectralConv,
    SpectralDense,
    group_sort2,
    invertible_downsampling,
)

__all__ = ["LipschitzCNN", "lipschitz_cnn"]


class LipschitzCNN(nnx.Module):
    """1-Lipschitz (l2) CNN: ``SpectralConv(w) - GroupSort2 - space-to-depth(2) -
    SpectralConv(2w) - GroupSort2 - space-to-depth(2) - SpectralConv(4w) - GroupSort2 | flatten -
    SpectralDense(hidden) - GroupSort2 - SpectralDense(K)``. Every block is 1-Lipschitz, so the
    whole map is, for images in [0, 1] without normalization (certificates in pixel units); the
    split ``features | head`` is after the last convolution (``f32[B, H/4, W/4, 4w]``)."""

    def __init__(self, *, input_shape=(28, 28, 1), num_classes: int = 10, width: int = 16,
                 hidden: int = 64, rngs: nnx.Rngs):
        h, w, c = input_shape
        if h % 4 or w % 4:
            raise ValueError(f"LipschitzCNN: input height and width must be multiples of 4, got "
                             f"{input_shape}")
        self.input_shape = tuple(input_shape)
        self.conv1 = SpectralConv(c, width, rngs=rngs)
        self.conv2 = SpectralConv(4 * width, 2 * width, rngs=rngs)
        self.conv3 = SpectralConv(8 * width, 4 * width, rngs=rngs)
        self.fc1 = SpectralDense(h // 4 * w // 4 * 4 * width, hidden, rngs=rngs)
        self.fc2 = SpectralDense(hidden, num_classes, rngs=rngs)

    def features(self, x: Float[Array, "B H W C"]) -> Float[Array, "B h w F"]:
        check_images(x, "x", channels=self.input_shape[2], where="LipschitzCNN")
        a = invertible_downsampling(group_sort2(self.conv1(x)))
        a = invertible_downsampling(group_sort2(self.conv2(a)))
        return group_sort2(self.conv3(a))

    def head(self, a: Float[Array, "B h w F"]) -> Float[Array, "B K"]:
        return self.fc2(group_sort2(self.fc1(a.reshape(a.shape[0], -1))))

    def __call__(self, x: Float[Array, "B H W C"]) -> Float[Array, "B K"]:
        return self.head(self.features(x))


def lipschitz_cnn(*, input_shape=(28, 28, 1), num_classes: int = 10, width: int = 16,
                  hidden: int = 64, key: jax.Array | None = None) -> LipschitzCNN:
    """A randomly initialized :class:`LipschitzCNN` (initialization jitted). Train it through
    ``xjax.models.from_nnx`` with ``xjax.train.fit(..., post_update=power_update(module))``,
    then :func:`~xjax.lipschitz.export` it."""
    from xjax.models._bridge import init_module

    key = jax.random.key(0) if key is None else key
    return init_module(lambda rngs: LipschitzCNN(input_shape=input_shape, num_classes=num_classes,
                                                 width=width, hidden=hidden, rngs=rngs), key)
