"""ViT-Tiny (Dosovitskiy et al., 2021; DeiT-Ti sizes) in Flax nnx, with a pooled-token head.

Patch 16, width 192, depth 12, 3 heads, MLP 768, pre-norm blocks, learned position embeddings.
The classifier reads the *mean of the patch tokens* (the paper's global-average-pooling variant,
Dosovitskiy et al. App. D.3) rather than a class token, so the model splits exactly into
``features`` (final-normed patch tokens as a grid ``f32[B, H/16, W/16, 192]``, usable by CAMs
and concept extraction) and ``head`` (mean + linear).

Reference: A. Dosovitskiy et al., "An Image is Worth 16x16 Words", ICLR 2021, arXiv:2010.11929.
"""

import jax
from flax import nnx
from jaxtyping import Array, Float

from xjax._internal.validate import check_images
from xjax.models._bridge import init_module, model_from_nnx
from xjax.models._layers import Conv2d
from xjax.typing import Model

__all__ = ["VisionTransformer", "vit_tiny"]


class EncoderBlock(nnx.Module):
    def __init__(self, dim: int, heads: int, mlp: int, *, rngs: nnx.Rngs):
        self.norm1 = nnx.LayerNorm(dim, epsilon=1e-6, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(num_heads=heads, in_features=dim, decode=False,
                                           rngs=rngs)
        self.norm2 = nnx.LayerNorm(dim, epsilon=1e-6, rngs=rngs)
        self.mlp1 = nnx.Linear(dim, mlp, rngs=rngs)
        self.mlp2 = nnx.Linear(mlp, dim, rngs=rngs)

    def __call__(self, t):
        h = self.norm1(t)
        t = t + self.attn(h, h, h)
        return t + self.mlp2(jax.nn.gelu(self.mlp1(self.norm2(t)), approximate=False))


class VisionTransformer(nnx.Module):
    """ViT on images in [0, 1] (normalized to [-1, 1] inside)."""

    def __init__(self, *, image_size: int = 224, patch_size: int = 16, dim: int = 192,
                 depth: int = 12, heads: int = 3, mlp: int = 768, num_classes: int = 1000,
                 in_channels: int = 3, rngs: nnx.Rngs):
        if image_size % patch_size:
            raise ValueError(f"vit: image_size={image_size} must be a multiple of "
                             f"patch_size={patch_size}")
        self.image_size, self.patch_size, self.in_channels = image_size, patch_size, in_channels
        self.patch_embed = Conv2d(in_channels, dim, patch_size, stride=patch_size, padding="valid",
                                  use_bias=True, rngs=rngs)
        n = (image_size // patch_size) ** 2
        self.pos_embed = nnx.Param(0.02 * jax.random.normal(rngs.params(), (1, n, dim)))
        self.blocks = nnx.List([EncoderBlock(dim, heads, mlp, rngs=rngs) for _ in range(depth)])
        self.norm = nnx.LayerNorm(dim, epsilon=1e-6, rngs=rngs)
        self.fc = nnx.Linear(dim, num_classes, rngs=rngs)

    def features(self, x: Float[Array, "B H W C"]) -> Float[Array, "B h w F"]:
        check_images(x, "x", channels=self.in_channels, where="vit")
        if x.shape[1] != self.image_size or x.shape[2] != self.image_size:
            raise ValueError(f"vit: x must be {self.image_size}x{self.image_size} (position "
                             f"embeddings are fixed), got shape {tuple(x.shape)}")
        p = self.patch_embed(x * 2.0 - 1.0)                   # [B, h, w, F]
        b, h, w, f = p.shape
        t = p.reshape(b, h * w, f) + self.pos_embed[...].astype(p.dtype)
        for block in self.blocks:
            t = block(t)
        return self.norm(t).reshape(b, h, w, f)

    def head(self, a: Float[Array, "B h w F"]) -> Float[Array, "B K"]:
        return self.fc(a.mean(axis=(1, 2)))

    def __call__(self, x: Float[Array, "B H W C"]) -> Float[Array, "B K"]:
        return self.head(self.features(x))


def vit_tiny(*, num_classes: int = 1000, image_size: int = 224, patch_size: int = 16,
             key: jax.Array | None = None) -> Model:
    """ViT-Tiny (5.7M parameters at 224 px) as a :class:`~xjax.typing.Model`, random init.

    Args:
      num_classes: K.
      image_size: side of the square input (position embeddings are learned for it).
      patch_size: patch side.
      key: PRNG key of the random init (default ``jax.random.key(0)``).
    """
    key = jax.random.key(0) if key is None else key
    module = init_module(lambda rngs: VisionTransformer(
        image_size=image_size, patch_size=patch_size, num_classes=num_classes, rngs=rngs), key)
    return model_from_nnx(module, input_shape=(image_size, image_size, 3))


