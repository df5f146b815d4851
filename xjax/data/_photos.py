"""Real photographs that ship inside installed wheels (scikit-image, scikit-learn, matplotlib).

Nothing here touches the network: every loader reads a file inside an installed package.
Each photo carries the ImageNet class indices a good classifier should put it in (a *group*,
because several ImageNet classes fit one photo: the cat in ``chelsea`` is a tabby, tiger or
Egyptian cat).
"""

import os
from typing import NamedTuple

import numpy as np
from jaxtyping import Float, UInt8

from xjax._internal.validate import check_positive_int

__all__ = ["IMAGE_EXTENSIONS", "Photo", "SAMPLE_PHOTOS", "decode_image", "image_files",
           "load_images", "read_image", "resize_center_crop", "sample_photos"]


class Photo(NamedTuple):
    """A sample photo: ``image: u8[H, W, 3]``, its source, licence and ImageNet class group."""

    name: str
    image: UInt8[np.ndarray, "H W 3"]
    source: str
    licence: str
    imagenet_classes: tuple[int, ...]


def _skimage(name):
    import skimage.data

    img = getattr(skimage.data, name)()
    return np.stack([img] * 3, axis=-1) if img.ndim == 2 else img[..., :3]


def _sklearn(name):
    from sklearn.datasets import load_sample_image

    return load_sample_image(name)


def _matplotlib(name):
    import matplotlib.cbook
    from PIL import Image

    with matplotlib.cbook.get_sample_data(name) as f:
        return np.asarray(Image.open(f).convert("RGB"))


# name: (loader, argument, source, licence, ImageNet class indices)
SAMPLE_PHOTOS = {
    "coffee": (_skimage, "coffee", "scikit-image", "CC0", (967,)),            # espresso
    "chelsea": (_skimage, "chelsea", "scikit-image", "CC0", (281, 282, 283, 284, 285)),  # cats
    # ImageNet-1k has no astronaut or space-suit class: an empty group (no expectation).
    "astronaut": (_skimage, "astronaut", "scikit-image", "public domain (NASA)", ()),
    "rocket": (_skimage, "rocket", "scikit-image", "public domain (SpaceX)", (657, 744, 812)),
    "camera": (_skimage, "camera", "scikit-image", "CC0", (872, 759, 732)),  # tripod, reflex camera
    "china": (_sklearn, "china.jpg", "scikit-learn", "CC BY 2.0", (698, 668, 832, 483)),  # palace...
    "flower": (_sklearn, "flower.jpg", "scikit-learn", "CC BY 2.0", (985,)),  # daisy
    "grace_hopper": (_matplotlib, "grace_hopper.jpg", "matplotlib", "public domain (US Navy)",
                     (400, 652, 457, 667, 834)),  # academic gown, military uniform, bow tie...
}


def sample_photos(names: tuple[str, ...] | list[str] | None = None) -> list[Photo]:
    """Load real photos bundled with installed packages.

    Args:
      names: subset of :data:`SAMPLE_PHOTOS` keys (default: all, in that order).

    Returns:
      A list of :class:`Photo` with ``u8[H, W, 3]`` RGB images (grey photos are repeated on 3
      channels).

    Raises:
      ValueError: an unknown name.
    """
    names = list(SAMPLE_PHOTOS) if names is None else list(names)
    unknown = [n for n in names if n not in SAMPLE_PHOTOS]
    if unknown:
        raise ValueError(f"sample_photos: unknown names {unknown}; available: {list(SAMPLE_PHOTOS)}")
    out = []
    for n in names:
        loader, arg, source, licence, classes = SAMPLE_PHOTOS[n]
        out.append(Photo(n, np.ascontiguousarray(loader(arg), dtype=np.uint8), source, licence,
                         classes))
    return out


def resize_center_crop(image: UInt8[np.ndarray, "H W C"] | Float[np.ndarray, "H W C"],
                       size: int = 224, *, crop_fraction: float = 0.875
                       ) -> Float[np.ndarray, "size size C"]:
    """ImageNet evaluation preprocessing: bicubic resize of the short side to
    ``size / crop_fraction``, then a centre ``size x size`` crop; returns ``f32`` in [0, 1].

    Args:
      image: ``u8[H, W, C]`` (0..255) or float in [0, 1], C = 1 or 3.
      size: output side (224 for EfficientNet-Lite0).
      crop_fraction: fraction of the resized short side kept (0.875, the usual eval crop).
    """
    from PIL import Image

    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise ValueError(f"resize_center_crop: image must be (H, W, 1 or 3), got {image.shape}")
    check_positive_int(size, "size", where="resize_center_crop")
    if not 0 < crop_fraction <= 1:
        raise ValueError(f"resize_center_crop: crop_fraction must be in (0, 1], got {crop_fraction}")
    if image.dtype != np.uint8:
        image = np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)
    pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    w, h = pil.size
    scale = size / crop_fraction / min(w, h)
    pil = pil.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
    w, h = pil.size
    left, top = (w - size) // 2, (h - size) // 2
    out = np.asarray(pil.crop((left, top, left + size, top + size)), np.float32) / 255.0
    return out[..., None] if out.ndim == 2 else out


IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def read_image(path: str) -> UInt8[np.ndarray, "H W 3"]:
    """One image file decoded as ``u8[H, W, 3]`` (grey and palette images are converted).

    Raises:
      ValueError: the file is not a readable image (truncated, corrupt, not an image, or larger
        than Pillow's decompression-bomb limit), with the file's path and the decoder's reason.
    """
    return _decode(path, path)


def decode_image(data: bytes, name: str = "image") -> UInt8[np.ndarray, "H W 3"]:
    """Encoded image bytes (JPEG, PNG, ...) decoded as ``u8[H, W, 3]``, as :func:`read_image`.

    Raises:
      ValueError: not a readable image (named by ``name``), as :func:`read_image`.
    """
    import io

    return _decode(io.BytesIO(data), name)


def _decode(source, name: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(source) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ValueError(f"image {name!r} is unreadable ({type(e).__name__}: {e})") from None


def image_files(directory: str) -> list[str]:
    """The image files (by extension) directly in ``directory``, sorted by name."""
    return sorted(os.path.join(directory, f) for f in os.listdir(directory)
                  if f.lower().endswith(IMAGE_EXTENSIONS))


def load_images(directory: str) -> list[tuple[str, UInt8[np.ndarray, "H W 3"]]]:
    """Read every image file in ``directory`` (sorted by name) as ``(name, u8[H, W, 3])``.

    Raises:
      FileNotFoundError: ``directory`` is not a directory.
      ValueError: it holds no image files, or one is unreadable (named).
    """
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"images: {directory!r} is not a directory")
    files = image_files(directory)
    if not files:
        raise ValueError(f"images: no image files ({', '.join(IMAGE_EXTENSIONS)}) in {directory!r}")
    return [(os.path.splitext(os.path.basename(f))[0], read_image(f)) for f in files]
