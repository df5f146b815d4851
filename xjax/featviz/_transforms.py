r"""Random transforms for transformation-robust feature visualization.

A transform is a pure function ``t(key, x: f32[n, H, W, C], progress) -> f32[n', h, w, C]``
(``progress`` in [0, 1] is the share of the optimization done, for schedules). All are keyed
and jit-able; :func:`compose` chains them.

- :func:`pad`, :func:`jitter`, :func:`scale`, :func:`rotate`, :func:`noise`, :func:`resize`.
- :func:`lucid` (Lucid's ``standard_transforms``: pad 12, jitter 8, scale 0.9-1.1, rotate
  +-10 degrees, jitter 4, then resize to the model input).
- :func:`random_crops` (MACO, Xplique defaults): ``nb_crops`` square crops per step, centres
  0.5 + N(0, 0.15), side N(box, 0.05) clipped to [0.05, 1], the box shrinking linearly from 0.5
  to 0.05 over the optimization, resized to the model input, plus noise N(0, 0.08) and
  U(-0.04, 0.04).
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from xjax._internal.validate import check_positive_int

__all__ = ["Transform", "compose", "jitter", "lucid", "noise", "pad", "random_crops", "resize",
           "rotate", "scale"]

Transform = Callable[[jax.Array, Float[Array, "n H W C"], Float[Array, ""]],
                     Float[Array, "m h w C"]]


def compose(*transforms: Transform) -> Transform:
    """Apply ``transforms`` in order, each with its own key."""
    def t(key, x, progress):
        for k, f in zip(jax.random.split(key, max(len(transforms), 1)), transforms, strict=False):
            x = f(k, x, progress)
        return x
    return t


def pad(width: int, value: float = 0.5) -> Transform:
    """Constant padding of ``width`` pixels on each side."""
    return lambda key, x, progress: jnp.pad(x, ((0, 0), (width, width), (width, width), (0, 0)),
                                            constant_values=value)


def jitter(d: int) -> Transform:
    """A random shift of up to ``d - 1`` pixels, cropping ``d - 1`` pixels (Lucid's jitter)."""
    check_positive_int(d, "d", where="jitter")

    def t(key, x, progress):
        n, h, w, c = x.shape
        off = jax.random.randint(key, (2,), 0, d)
        return jax.lax.dynamic_slice(x, (0, off[0], off[1], 0), (n, h - d + 1, w - d + 1, c))
    return t


def _affine(x, matrix):
    """Resample every image of ``x`` at ``matrix @ (i, j) + offset`` about the centre
    (bilinear, edge values outside)."""
    n, h, w, c = x.shape
    ii, jj = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32),
                          indexing="ij")
    ci, cj = (h - 1) / 2.0, (w - 1) / 2.0
    src = jnp.einsum("ab,bhw->ahw", matrix, jnp.stack([ii - ci, jj - cj]))
    coords = [src[0] + ci, src[1] + cj]

    def one(img):
        return jnp.stack([jax.scipy.ndimage.map_coordinates(img[..., k], coords, order=1,
                                                            mode="nearest")
                          for k in range(c)], -1)
    return jax.vmap(one)(x)


def scale(factors=tuple(1 + (i - 5) / 50 for i in range(11))) -> Transform:
    """Zoom by a factor drawn uniformly from ``factors`` (Lucid: 0.9 to 1.1)."""
    f = jnp.asarray(factors, jnp.float32)
    def t(key, x, progress):
        s = jax.random.choice(key, f)
        return _affine(x, jnp.eye(2) / s)
    return t


def rotate(degrees=tuple(range(-10, 11))) -> Transform:
    """Rotate by an angle drawn uniformly from ``degrees``."""
    a = jnp.deg2rad(jnp.asarray(degrees, jnp.float32))
    def t(key, x, progress):
        th = jax.random.choice(key, a)
        return _affine(x, jnp.asarray([[jnp.cos(th), -jnp.sin(th)], [jnp.sin(th), jnp.cos(th)]]))
    return t


def noise(std: float = 0.08, uniform: float = 0.04) -> Transform:
    """Additive Gaussian ``N(0, std^2)`` plus uniform ``U(-uniform, uniform)`` noise."""
    def t(key, x, progress):
        kg, ku = jax.random.split(key)
        return (x + std * jax.random.normal(kg, x.shape)
                + jax.random.uniform(ku, x.shape, minval=-uniform, maxval=uniform))
    return t


def resize(size: tuple[int, int], method: str = "bilinear") -> Transform:
    """Resize every image to ``size``."""
    return lambda key, x, progress: jax.image.resize(x, (x.shape[0],) + tuple(size) + x.shape[3:],
                                                     method)


def lucid(size: tuple[int, int]) -> Transform:
    """Lucid's standard transforms, then a resize to the model input ``size``."""
    return compose(pad(12), jitter(8), scale(), rotate(), jitter(4), resize(size))


def random_crops(size: tuple[int, int], *, nb_crops: int = 32, box_start: float = 0.5,
                 box_end: float = 0.05, center_std: float = 0.15, side_std: float = 0.05,
                 noise_std: float = 0.08) -> Transform:
    """MACO's crops (Xplique defaults): ``nb_crops`` square crops of one image, resized to
    ``size``, with the box side shrinking from ``box_start`` to ``box_end`` of the image."""
    if not (isinstance(size, (tuple, list)) and len(size) == 2 and
            all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in size)):
        raise ValueError(f"random_crops: size must be (height, width) positive ints, got {size!r}")
    check_positive_int(nb_crops, "nb_crops", where="random_crops")
    out_h, out_w = size
    add_noise = noise(noise_std, noise_std / 2)

    def t(key, x, progress):
        img = x[0]
        h, w, _ = img.shape
        kc, ks, kn = jax.random.split(key, 3)
        box = box_start + (box_end - box_start) * progress
        centers = 0.5 + center_std * jax.random.normal(kc, (nb_crops, 2))
        sides = jnp.clip(box + side_std * jax.random.normal(ks, (nb_crops,)), 0.05, 1.0)

        def crop(cen, side):
            s = jnp.stack([out_h / (side * h), out_w / (side * w)])
            top = (cen - side / 2) * jnp.asarray([h, w], jnp.float32)
            return jax.image.scale_and_translate(img, (out_h, out_w, img.shape[-1]), (0, 1), s,
                                                 -top * s, "linear")
        return add_noise(kn, jax.vmap(crop)(centers, sides), progress)
    return t

