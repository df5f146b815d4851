"""A small CNN for 28x28 / 32x32 images (Fashion-MNIST, CIFAR size), with shipped weights.

``conv3x3(32) - ReLU - maxpool2 - conv3x3(64) - ReLU - maxpool2 | flatten - dense(64) - ReLU -
dense(K)``; the split ``features | head`` sits after the second block (``f32[B, H/4, W/4, 64]``),
the usual Grad-CAM layer. ``pretrained="fashion_mnist"`` loads the weights trained by
``experiments/train_fashion_mnist.py`` (stored as float16, 0.2 MB, read back as float32).
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float

from xjax._internal.validate import check_images
from xjax.models._bridge import init_module, model_from_nnx
from xjax.typing import Model

__all__ = ["FASHION_MNIST_CLASSES", "SmallCNN", "small_cnn"]

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot")
_WEIGHTS_DIR = os.path.join(os.path.dirname(__file__), "weights")


class SmallCNN(nnx.Module):
    """Two conv blocks and a two-layer classifier; images in [0, 1], NHWC."""

    def __init__(self, *, input_shape: tuple[int, int, int] = (28, 28, 1), num_classes: int = 10,
                 width: int = 32, hidden: int = 64, rngs: nnx.Rngs):
        h, w, c = input_shape
        if h % 4 or w % 4:
            raise ValueError(f"small_cnn: input_shape height and width must be multiples of 4, "
                             f"got {input_shape}")
        self.input_shape = tuple(input_shape)
        self.conv1 = nnx.Conv(c, width, (3, 3), padding="SAME", rngs=rngs)
        self.conv2 = nnx.Conv(width, 2 * width, (3, 3), padding="SAME", rngs=rngs)
        self.fc1 = nnx.Linear(h // 4 * w // 4 * 2 * width, hidden, rngs=rngs)
        self.fc2 = nnx.Linear(hidden, num_classes, rngs=rngs)

    @staticmethod
    def _pool(x):  # 2x2 max pool as reshape + max (fast gradient on XLA:CPU)
        b, h, w, c = x.shape
        return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))

    def features(self, x: Float[Array, "B H W C"]) -> Float[Array, "B h w F"]:
        check_images(x, "x", channels=self.input_shape[2], where="small_cnn")
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"small_cnn: x must have shape (N, {', '.join(map(str, self.input_shape))}),"
                             f" got {tuple(x.shape)}")
        h = self._pool(jax.nn.relu(self.conv1(x)))
        return self._pool(jax.nn.relu(self.conv2(h)))

    def head(self, a: Float[Array, "B h w F"]) -> Float[Array, "B K"]:
        return self.fc2(jax.nn.relu(self.fc1(a.reshape(a.shape[0], -1))))

    def __call__(self, x: Float[Array, "B H W C"]) -> Float[Array, "B K"]:
        return self.head(self.features(x))


def small_cnn(*, pretrained: str | None = None, input_shape: tuple[int, int, int] = (28, 28, 1),
              num_classes: int = 10, key: jax.Array | None = None) -> Model:
    """The small CNN as a :class:`~xjax.typing.Model`, randomly initialized or pretrained.

    Args:
      pretrained: ``None`` (random init from ``key``) or ``"fashion_mnist"``: the shipped weights,
        trained with :func:`xjax.train.fit` by ``experiments/train_fashion_mnist.py``; their test
        accuracy is in ``small_cnn_fashion_mnist.json`` next to them.
      input_shape: ``(H, W, C)``, H and W multiples of 4 (fixed to (28, 28, 1) when pretrained).
      num_classes: K (10 when pretrained).
      key: PRNG key for the random init (default ``jax.random.key(0)``).

    Returns:
      ``Model``; ``model_fn(params, x: f32[B, H, W, C] in [0, 1]) -> f32[B, K]`` logits,
      ``features_fn -> f32[B, H/4, W/4, 64]``.
    """
    if pretrained not in (None, "fashion_mnist"):
        raise ValueError(f"small_cnn: pretrained must be None or 'fashion_mnist', got {pretrained!r}")
    if pretrained and (tuple(input_shape) != (28, 28, 1) or num_classes != 10):
        raise ValueError("small_cnn: pretrained='fashion_mnist' needs input_shape=(28, 28, 1) and "
                         "num_classes=10")
    key = jax.random.key(0) if key is None else key
    module = init_module(lambda rngs: SmallCNN(input_shape=input_shape, num_classes=num_classes,
                                               rngs=rngs), key, abstract=pretrained is not None)
    names = FASHION_MNIST_CLASSES if pretrained else None
    if pretrained:
        path = os.path.join(_WEIGHTS_DIR, "small_cnn_fashion_mnist.npz")
        with np.load(path) as f:
            weights = {k: f[k].astype(np.float32) for k in f.files}
        set_flat_params(module, weights)
    return model_from_nnx(module, input_shape=tuple(input_shape), class_names=names)


def pretrained_info(name: str = "fashion_mnist") -> dict:
    """What the shipped weights reached (accuracy, epochs, seed), as recorded by the script."""
    with open(os.path.join(_WEIGHTS_DIR, f"small_cnn_{name}.json")) as f:
        return json.load(f)


def flat_params(module_or_state) -> dict[str, np.ndarray]:
    """``{"conv1.kernel": array, ...}`` for saving with ``np.savez``."""
    state = module_or_state if isinstance(module_or_state, nnx.State) else nnx.state(module_or_state)
    return {".".join(map(str, path)): np.asarray(v) for path, v in nnx.to_flat_state(state)}


def set_flat_params(module: nnx.Module, weights: dict[str, np.ndarray]) -> None:
    """Inverse of :func:`flat_params`, checking names and shapes."""
    for path, var in nnx.iter_graph(module):
        if isinstance(var, nnx.Variable):
            name = ".".join(map(str, path))
            if name not in weights:
                raise ValueError(f"weights: missing {name!r}")
            if tuple(weights[name].shape) != tuple(var.get_value().shape):
                raise ValueError(f"weights: {name!r} has shape {weights[name].shape}, expected "
                                 f"{tuple(var.get_value().shape)}")
            var.set_value(jnp.asarray(weights[name]))
