"""ImageNet-1k: the class table, and image folders in the layouts people keep ImageNet in.

The table (``imagenet_classes.tsv``, shipped) gives, for each of the 1000 classes in the
standard index order: its WordNet ID (the sorted synset list of ILSVRC-2012, as in
tensorflow-datasets' ``imagenet2012/labels.txt``), its display name (torchvision's list, which
disambiguates the two "crane" and the two "maillot"), every WordNet lemma of the synset and its
gloss (timm's ``imagenet_synset_to_lemma.txt`` and ``imagenet_synset_to_definition.txt``,
Apache-2.0, from WordNet).

:func:`image_folder` lists the images of a folder without decoding them, in any of:

* class folders named by WordNet ID (``n01440764/``), by any name of the class (any case:
  ``Tench/``, ``tinca tinca/``) or by class index; the standard ``train/`` and ``val/`` layouts
  are such trees, and a root holding ``train/`` and ``val/`` is read by ``split``;
* the raw validation folder (``ILSVRC2012_val_00000001.JPEG`` ..., flat), labelled by
  tensorflow-datasets' ``validation_labels.txt``;
* a tensorflow-datasets ``imagenet2012`` manual directory (``ILSVRC2012_img_val.tar``,
  ``ILSVRC2012_img_train.tar`` of per-class tars), read inside the tars: nothing is extracted,
  only regular members of a bounded size are read, and every image goes through the validating
  decoder (:func:`~xjax.data.decode_image`).
"""

import functools
import importlib.resources
import os
import re
import tarfile
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from jaxtyping import UInt8

from xjax.data._photos import IMAGE_EXTENSIONS, decode_image

__all__ = ["IMAGENET_URL", "ImageFolder", "ImageNetClass", "class_index", "image_folder",
           "imagenet_classes"]

IMAGENET_URL = "https://image-net.org/download-images.php"
VAL_TAR, TRAIN_TAR = "ILSVRC2012_img_val.tar", "ILSVRC2012_img_train.tar"
_MAX_IMAGE_BYTES = 64 << 20               # far above any ImageNet JPEG (the largest is ~15 MB)
_WNID = re.compile(r"^n\d{8}$")
_VAL_NAME = re.compile(r"^ILSVRC2012_val_(\d{8})\.(jpe?g|png)$", re.IGNORECASE)


class ImageNetClass(NamedTuple):
    """One ImageNet-1k class: ``index``, ``wnid`` (``"n01440764"``), display ``name``, every
    WordNet lemma in ``names``, and the synset's ``definition``."""

    index: int
    wnid: str
    name: str
    names: tuple[str, ...]
    definition: str


@functools.cache
def imagenet_classes() -> tuple[ImageNetClass, ...]:
    """The 1000 ImageNet classes in index order (the shipped table, checked as it is read)."""
    text = importlib.resources.files("xjax.data").joinpath("imagenet_classes.tsv").read_text(
        encoding="utf-8")
    rows = [line.split("\t") for line in text.splitlines()[1:]]
    table = tuple(ImageNetClass(int(r[0]), r[1], r[2], tuple(r[3].split("|")), r[4])
                  for r in rows)
    wnids = [c.wnid for c in table]
    if (len(table) != 1000 or [c.index for c in table] != list(range(1000))
            or wnids != sorted(wnids) or not all(_WNID.match(w) for w in wnids)):
        raise RuntimeError("xjax/data/imagenet_classes.tsv is damaged; reinstall xjax")
    return table


def _is_imagenet(class_names: Sequence[str]) -> bool:
    return len(class_names) == 1000 and _imagenet_names(tuple(class_names))


@functools.lru_cache(maxsize=8)
def _imagenet_names(names: tuple[str, ...]) -> bool:
    return names == tuple(c.name for c in imagenet_classes())


@functools.cache
def _wnid_index() -> dict[str, int]:
    return {c.wnid: c.index for c in imagenet_classes()}


def class_index(label: str, class_names: Sequence[str], *, where: str = "class") -> int:
    """The index in ``class_names`` of a folder's or user's ``label``.

    ``label`` may be a class index, a class name in any case, or, when ``class_names`` are
    ImageNet's 1000 classes, a WordNet ID or any WordNet name of the class.

    Raises:
      ValueError: no class or several classes have that name (the message lists candidates).
    """
    names = list(class_names)
    text = label.strip()
    if text.isdigit():
        if int(text) < len(names):
            return int(text)
        raise ValueError(f"{where} {label!r}: index outside [0, {len(names)})")
    key = text.lower()
    exact = [i for i, n in enumerate(names) if n.lower() == key]
    if len(exact) == 1 and not _is_imagenet(names):
        return exact[0]
    if _is_imagenet(names):
        table = imagenet_classes()
        if _WNID.match(key):
            if key in _wnid_index():
                return _wnid_index()[key]
            raise ValueError(f"{where} {label!r}: not one of the 1000 ImageNet-1k WordNet IDs")
        # display names and WordNet lemmas together: "crane" is a bird and a machine
        hits = sorted(set(exact) | {c.index for c in table for n in c.names if n.lower() == key})
        if len(hits) == 1:
            return hits[0]
        if hits:
            raise ValueError(f"{where} {label!r} names {len(hits)} ImageNet classes: "
                             + ", ".join(f"{table[i].wnid} ({table[i].name})" for i in hits)
                             + "; name the folder by its WordNet ID")
    import difflib

    lower = [n.lower() for n in names]
    close = difflib.get_close_matches(key, lower, n=3)
    hint = (f"; did you mean {', '.join(repr(names[lower.index(c)]) for c in close)}?"
            if close else "")
    ids = ", a WordNet ID" if _is_imagenet(names) else ""
    raise ValueError(f"{where} {label!r} is not a class of the model (expected a class name"
                     f"{ids} or a class index){hint}")


class ImageFolder(NamedTuple):
    """Images listed (not decoded) from a folder; :meth:`read` decodes one.

    Attributes:
      sources: per image, ``(file, None, None)`` for an image file, or ``(tar file, byte
        offset, size)`` for a member of a tar (of a per-class tar inside the training tar),
        read by seeking: no extraction, no rescan of the tar.
      labels: ``i32[N]`` class indices.
      names: per image, its file or member name.
      layout: ``"class folders"``, ``"flat validation"``, ``"tfds manual (validation)"`` or
        ``"tfds manual (train)"``.
    """

    sources: tuple[tuple[str, int | None, int | None], ...]
    labels: np.ndarray
    names: tuple[str, ...]
    layout: str

    def read(self, i: int) -> UInt8[np.ndarray, "H W 3"]:
        """Image ``i`` decoded as ``u8[H, W, 3]`` (a ``ValueError`` names an unreadable one)."""
        path, offset, size = self.sources[i]
        with open(path, "rb") as f:
            if offset is None:
                return decode_image(f.read(), path)
            f.seek(offset)
            data = f.read(size)
        if len(data) != size:
            raise ValueError(f"{path}: {self.names[i]!r} is truncated")
        return decode_image(data, f"{path}:{self.names[i]}")


def _member(member: tarfile.TarInfo, where: str, base: int = 0) -> tuple[int, int] | None:
    """``(absolute offset, size)`` of a regular, plain, bounded member; None to skip it."""
    if not member.isfile() or member.issparse():
        return None
    if member.size > _MAX_IMAGE_BYTES:
        raise ValueError(f"{where}: {member.name!r} is {member.size} bytes, larger than any "
                         f"image ({_MAX_IMAGE_BYTES} bytes)")
    return base + member.offset_data, member.size


@functools.cache
def _validation_labels() -> tuple[str, ...]:
    """The WordNet ID of each of the 50 000 validation images, in file-number order, from
    tensorflow-datasets' ``imagenet2012/validation_labels.txt``."""
    try:
        ref = importlib.resources.files("tensorflow_datasets").joinpath(
            "datasets", "imagenet2012", "validation_labels.txt")
        labels = tuple(ref.read_text(encoding="utf-8").split())
    except (ModuleNotFoundError, FileNotFoundError, OSError) as e:
        raise FileNotFoundError("the ImageNet validation labels come from tensorflow-datasets "
                                f"(pip install tensorflow-datasets): {e}") from None
    if len(labels) != 50000 or not all(_WNID.match(w) for w in labels):
        raise RuntimeError("tensorflow-datasets' imagenet2012/validation_labels.txt is damaged")
    return labels


def _where_to_get(root: str, class_names: Sequence[str] = ()) -> str:
    if not _is_imagenet(class_names):
        example = class_names[0] if class_names else "class name"
        return (f"Put the images of each class in a folder named after the class (any case) or "
                f"its index: {os.path.join(root, example)}/*.png, one of the class folders")
    return (f"ImageNet cannot be downloaded for you: get ILSVRC-2012 from {IMAGENET_URL} (after "
            f"registering) and put either the tars {VAL_TAR} / {TRAIN_TAR} in {root!r} (the "
            f"tensorflow-datasets manual layout), or folders of images per class named by "
            f"WordNet ID ({os.path.join(root, 'n01440764')}/*.JPEG)")


def image_folder(root: str, class_names: Sequence[str], *, split: str | None = None,
                 max_per_class: int | None = None) -> ImageFolder:
    """The images under ``root`` and their class indices in ``class_names``, listed lazily.

    Args:
      root: the folder (see the module docstring for the layouts read).
      class_names: the model's classes; folder names are matched to them by
        :func:`class_index`.
      split: ``"train"`` or ``"val"`` where ``root`` holds both (default: ``"val"``).
      max_per_class: keep the first images of each class (in name order).

    Raises:
      FileNotFoundError: ``root`` is missing, or holds none of the layouts (the message says
        where to get ImageNet and where to put it).
      ValueError: a folder names no class (or several), a bad ``split``, an unsafe tar member.
    """
    if split not in (None, "train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{root!r} is not a directory. " + _where_to_get(root, class_names))
    entries = sorted(os.listdir(root))
    tars = {t for t in (VAL_TAR, TRAIN_TAR) if t in entries}
    if tars:
        use = TRAIN_TAR if split == "train" or VAL_TAR not in tars else VAL_TAR
        if split == "train" and TRAIN_TAR not in tars:
            raise FileNotFoundError(f"no {TRAIN_TAR} in {root!r}. " + _where_to_get(root, class_names))
        return _from_tar(os.path.join(root, use), class_names, use == TRAIN_TAR, max_per_class)
    subdirs = [e for e in entries if os.path.isdir(os.path.join(root, e))
               and not e.startswith(".")]              # .ipynb_checkpoints, .git, ...
    if {"train", "val"} & set(subdirs) and not _classes_here(subdirs, class_names):
        which = split or ("val" if "val" in subdirs else "train")
        if which not in subdirs:
            raise FileNotFoundError(f"no {which}/ folder in {root!r}")
        return image_folder(os.path.join(root, which), class_names, max_per_class=max_per_class)
    if subdirs:
        return _from_class_folders(root, subdirs, class_names, max_per_class)
    flat = [e for e in entries if _VAL_NAME.match(e)]
    if flat and _is_imagenet(class_names):
        by_class: dict[int, list] = {}
        for name in flat:
            label = _validation_label(name, root, class_names)
            by_class.setdefault(label, []).append((name, (os.path.join(root, name), None, None)))
        return _gather(by_class, max_per_class, "flat validation")
    raise FileNotFoundError(f"{root!r} holds no class folders, no {VAL_TAR} and no validation "
                            f"images. " + _where_to_get(root, class_names))


def _classes_here(subdirs, class_names) -> bool:
    try:
        for d in subdirs:
            class_index(d, class_names)
    except ValueError:
        return False
    return True


def _gather(by_class: dict[int, list], max_per_class, layout: str) -> ImageFolder:
    """``by_class``: label -> sorted ``[(name, source)]``."""
    sources, labels, names = [], [], []
    for label in sorted(by_class):
        kept = sorted(by_class[label])[:max_per_class]
        names += [n for n, _ in kept]
        sources += [src for _, src in kept]
        labels += [label] * len(kept)
    return ImageFolder(tuple(sources), np.asarray(labels, np.int32), tuple(names), layout)


def _from_class_folders(root, subdirs, class_names, max_per_class) -> ImageFolder:
    by_class: dict[int, list] = {}
    owner: dict[int, str] = {}
    for d in subdirs:
        label = class_index(d, class_names, where=f"class folder {os.path.join(root, d)!r}:")
        if label in owner:
            raise ValueError(f"class folders {owner[label]!r} and {d!r} in {root!r} are the same "
                             f"class ({class_names[label]!r})")
        owner[label] = d
        files = [f for f in os.listdir(os.path.join(root, d))
                 if f.lower().endswith(IMAGE_EXTENSIONS)]
        by_class[label] = [(os.path.join(d, f), (os.path.join(root, d, f), None, None))
                           for f in files]
    return _gather(by_class, max_per_class, "class folders")


def _validation_label(name: str, where: str, class_names) -> int | None:
    match = _VAL_NAME.match(os.path.basename(name))
    if not match:
        return None
    labels, k = _validation_labels(), int(match.group(1))
    if not 1 <= k <= len(labels):
        raise ValueError(f"{where}: {name!r} is not one of the 50 000 validation images")
    return class_index(labels[k - 1], class_names)


def _from_tar(path: str, class_names, train: bool, max_per_class) -> ImageFolder:
    by_class: dict[int, list] = {}
    with tarfile.open(path, "r:") as tar:          # uncompressed, as ImageNet ships it
        for member in tar:
            at = _member(member, path)
            if at is None:
                continue
            if not train:
                label = _validation_label(member.name, path, class_names)
                if label is not None:
                    by_class.setdefault(label, []).append((member.name, (path, *at)))
                continue
            wnid = os.path.basename(member.name).removesuffix(".tar")
            if not member.name.endswith(".tar") or not _WNID.match(wnid):
                continue
            label = class_index(wnid, class_names, where=f"{path}: {member.name!r}:")
            with tarfile.open(fileobj=tar.extractfile(member), mode="r:") as sub:
                for m in sub:
                    inner = _member(m, f"{path}:{member.name}", base=at[0])
                    if inner is not None and m.name.lower().endswith(IMAGE_EXTENSIONS):
                        by_class.setdefault(label, []).append(
                            (f"{member.name}/{m.name}", (path, *inner)))
    if not by_class:
        raise FileNotFoundError(f"{path} holds no ImageNet images. " + _where_to_get(
            os.path.dirname(path), class_names))
    return _gather(by_class, max_per_class,
                   "tfds manual (train)" if train else "tfds manual (validation)")
