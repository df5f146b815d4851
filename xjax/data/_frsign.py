"""FRSign (Harb et al., 2020, arXiv:2002.05665): French railway signals, as crops of every
annotated box, through a tensorflow-datasets builder with a manual directory.

The public release (https://frsign.irt-systemx.fr/, after registration) has two files:

* ``FRSign.tar.gz`` (over 250 GB): PNG frames, one folder per recording, for example
  ``RecFile_1_20181011_153137_pointgrey_flycapture2_1_ipl_image/33734_rgb.png`` (mostly
  1920x1200);
* ``frsign_v1.0.h5``: a pandas HDFStore with ``dataframe`` (one row per sequence, index
  ``sequence``; columns include ``type``, ``state``, ``on_track``) and ``images`` (one row per
  box, index ``(sequence, image)``; columns ``fullpath``, ``x``, ``y``, ``w``, ``h`` in pixels).

This layout is the one third-party code that reads the release relies on (the public repository
``maxxxmo/train_scanner``, ``src/data_scripts``); the label values are read from the file, never
assumed. The h5 is read by :func:`xjax.data.read_frame` (h5py and a restricted unpickler: pandas
and PyTables are not used to read it, since they unpickle without restriction). The frames are read
from the extracted folders or streamed from the ``.tar.gz`` (one sequential pass, nothing
extracted to disk). A frame is matched to its boxes by the last two components of ``fullpath``
(recording folder and file name), so the absolute paths of the machine the h5 was written on do
not matter.

Each box becomes one example: a square crop centred on the box, of side
``max(w, h) * (1 + 2 * context)`` (zero outside the frame), resized to ``image_size``. Splits are
by sequence (no sequence in two splits), stratified by label and seeded; the assignment and every
dropped box or frame are recorded in the dataset's metadata.
"""

import dataclasses
import functools
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
import warnings
from collections.abc import Iterator

import numpy as np

from xjax._internal.rundir import sha256_file
from xjax.data._hdfstore import Frame, read_frame, store_keys

__all__ = ["FRSIGN_URL", "FRSignAnnotations", "frsign", "read_frsign_annotations",
           "write_synthetic_frsign"]

FRSIGN_URL = "https://frsign.irt-systemx.fr/"
H5_NAME = "frsign_v1.0.h5"
TAR_NAME = "FRSign.tar.gz"
SPLITS = ("train", "validation", "test")
_DEFAULT_DATA_DIR = os.path.join(os.path.expanduser("~"), ".cache", "xjax", "tensorflow_datasets")
_IMAGE_EXTS = (".png", ".jpg", ".jpeg")
_MAX_MEMBER_BYTES = 256 << 20                         # a 1920x1200 PNG is a few MB
# What the builder reads from each table: index levels, then columns.
EXPECTED = {"dataframe": (("sequence",), ("type", "state", "on_track")),
            "images": (("sequence", "image"), ("fullpath", "x", "y", "w", "h"))}


def _where_to_get(manual_dir: str) -> str:
    return (f"Register at {FRSIGN_URL} and download {H5_NAME} (the annotations) and {TAR_NAME} "
            f"(the frames, over 250 GB; it can stay compressed or be extracted), then put both in "
            f"{manual_dir!r} (the tar.gz, or its extracted RecFile_* folders, beside the h5) and "
            "pass that directory as manual_dir.")


@dataclasses.dataclass(frozen=True)
class FRSignAnnotations:
    """One entry per box (arrays of equal length) and the labels found in the file."""

    sequence: np.ndarray          # int64
    image: np.ndarray             # int64, the frame id within its sequence
    frame: np.ndarray             # str, "<recording folder>/<file name>"
    fullpath: np.ndarray          # str, as recorded
    box: np.ndarray               # f32[n, 4]: x, y, w, h in pixels
    type: np.ndarray              # str
    state: np.ndarray             # str
    on_track: np.ndarray          # int64
    dropped: dict                 # reason -> count

    def __len__(self) -> int:
        return len(self.sequence)


def _frame_key(path: str) -> str:
    parts = [p for p in str(path).replace("\\", "/").split("/") if p not in ("", ".")]
    return "/".join(parts[-2:])


def _check_tables(path: str, frames: dict[str, Frame | None]) -> None:
    problems = []
    for key, (index, columns) in EXPECTED.items():
        frame = frames.get(key)
        if frame is None:
            problems.append(f"table {key!r} is missing")
            continue
        names = set(frame.names())
        missing = [c for c in (*index, *columns) if c not in names]
        if missing:
            problems.append(f"table {key!r} lacks {missing} (it has {sorted(names)})")
    if problems:
        expected = "; ".join(f"{k}: index {list(i)}, columns {list(c)}"
                             for k, (i, c) in EXPECTED.items())
        raise ValueError(f"manual_dir: {path!r} is not an FRSign v1.0 annotation file: "
                         f"{'; '.join(problems)}. Expected {expected}. Found tables "
                         f"{sorted(k for k, v in frames.items() if v is not None)}.")


def read_frsign_annotations(path) -> FRSignAnnotations:
    """Read and validate ``frsign_v1.0.h5``: one entry per box with its sequence's labels.

    Boxes without a finite positive size, of a sequence absent from ``dataframe`` or with an empty
    ``state``/``type`` are dropped and counted in ``dropped``.

    Raises:
      ValueError: a table, index level or column is missing (one message listing what was
        expected and what was found), or a value has the wrong type.
      xjax.data.UnsafeStoreError: a pickle in the file names a global it does not need.
    """
    path = os.fspath(path)
    keys = store_keys(path)
    frames = {k: (read_frame(path, k) if k in keys else None) for k in EXPECTED}
    _check_tables(path, frames)
    seqs, boxes = frames["dataframe"], frames["images"]
    for name, frame, kinds in (("dataframe.sequence", seqs, "iu"), ("images.sequence", boxes, "iu"),
                               ("images.image", boxes, "iu"), ("images.x", boxes, "iuf"),
                               ("images.y", boxes, "iuf"), ("images.w", boxes, "iuf"),
                               ("images.h", boxes, "iuf"), ("images.fullpath", boxes, "U"),
                               ("dataframe.on_track", seqs, "iub")):
        column = frame[name.split(".")[1]]
        if column.dtype.kind not in kinds:
            raise ValueError(f"manual_dir: {path!r}: column {name} has dtype {column.dtype}, "
                             f"expected one of kinds {list(kinds)}")
    seq_ids = seqs["sequence"].astype(np.int64)
    if len(np.unique(seq_ids)) != len(seq_ids):
        raise ValueError(f"manual_dir: {path!r}: dataframe.sequence has repeated values")
    row = {int(s): i for i, s in enumerate(seq_ids)}
    box = np.stack([boxes[c].astype(np.float64) for c in "xywh"], axis=1)
    sequence = boxes["sequence"].astype(np.int64)
    where = np.array([row.get(int(s), -1) for s in sequence], np.int64)
    state = np.where(where >= 0, seqs["state"].astype(str)[np.clip(where, 0, None)], "")
    kind = np.where(where >= 0, seqs["type"].astype(str)[np.clip(where, 0, None)], "")
    reasons = {"sequence not in dataframe": where < 0,
               "box of non-finite or non-positive size": ~(np.isfinite(box).all(1)
                                                            & (box[:, 2] > 0) & (box[:, 3] > 0)),
               "empty state or type": (where >= 0) & ((state == "") | (kind == ""))}
    drop = np.zeros(len(sequence), bool)
    dropped = {}
    for reason, mask in reasons.items():
        new = mask & ~drop
        if new.any():
            dropped[reason] = int(new.sum())
        drop |= mask
    keep = ~drop
    fullpath = boxes["fullpath"].astype(str)
    return FRSignAnnotations(
        sequence=sequence[keep], image=boxes["image"].astype(np.int64)[keep],
        frame=np.array([_frame_key(p) for p in fullpath[keep]], dtype=str),
        fullpath=fullpath[keep], box=box[keep].astype(np.float32), type=kind[keep],
        state=state[keep],
        on_track=seqs["on_track"].astype(np.int64)[np.clip(where, 0, None)][keep],
        dropped=dropped)


def split_sequences(sequences: np.ndarray, labels: np.ndarray, fractions, seed: int
                    ) -> dict[str, list[int]]:
    """Assign whole sequences to splits: per label, a seeded permutation cut by ``fractions``.

    A sequence's label is its most frequent box label. Largest-remainder rounding is used per label
    so the counts sum exactly; every split that receives a nonzero share gets at least one sequence
    of a label with at least as many sequences as splits.
    """
    rng = np.random.default_rng(seed)
    per_seq: dict[int, str] = {}
    for s in np.unique(sequences):
        values, counts = np.unique(labels[sequences == s], return_counts=True)
        per_seq[int(s)] = str(values[np.argmax(counts)])
    out: dict[str, list[int]] = {name: [] for name in SPLITS}
    fractions = np.asarray(fractions, np.float64)
    for label in sorted(set(per_seq.values())):
        members = np.array(sorted(s for s, v in per_seq.items() if v == label))
        members = members[rng.permutation(len(members))]
        exact = fractions * len(members)
        counts = np.floor(exact).astype(int)
        for i in np.argsort(-(exact - counts), kind="stable")[: len(members) - counts.sum()]:
            counts[i] += 1
        if len(members) >= len(SPLITS):
            for i in np.flatnonzero((counts == 0) & (fractions > 0)):
                counts[i] += 1
                counts[np.argmax(counts)] -= 1
        start = 0
        for name, c in zip(SPLITS, counts, strict=True):
            out[name] += sorted(int(s) for s in members[start:start + c])
            start += c
    return {k: sorted(v) for k, v in out.items()}


def crop_box(frame: np.ndarray, box, *, context: float, size: int) -> np.ndarray:
    """The square crop around ``box = (x, y, w, h)`` of side ``max(w, h) * (1 + 2 * context)``,
    zero outside the frame, resized (bilinear, antialiased) to ``size x size``: u8[size, size, 3]."""
    from PIL import Image

    x, y, w, h = (float(v) for v in box)
    side = max(w, h) * (1.0 + 2.0 * context)
    cx, cy = x + w / 2.0, y + h / 2.0
    x0, y0 = int(np.floor(cx - side / 2.0)), int(np.floor(cy - side / 2.0))
    n = max(int(np.ceil(side)), 1)
    out = np.zeros((n, n, 3), np.uint8)
    fh, fw = frame.shape[:2]
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + n, fw), min(y0 + n, fh)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = frame[sy0:sy1, sx0:sx1]
    return np.asarray(Image.fromarray(out).resize((size, size), Image.BILINEAR))


def _decode(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        if img.format not in ("PNG", "JPEG"):
            raise ValueError(f"not a PNG or JPEG frame ({img.format})")
        return np.asarray(img.convert("RGB"))


def _frames_in_folders(root: str, wanted: set[str]) -> Iterator[tuple[str, bytes]]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if not name.lower().endswith(_IMAGE_EXTS):
                continue
            key = _frame_key(os.path.join(os.path.relpath(dirpath, root), name))
            if key in wanted:
                with open(os.path.join(dirpath, name), "rb") as f:
                    yield key, f.read()


def _frames_in_tar(path: str, wanted: set[str]) -> Iterator[tuple[str, bytes]]:
    with tarfile.open(path, "r|gz") as tar:          # streaming: one pass, no seeks
        for member in tar:
            if not member.isfile():
                continue
            key = _frame_key(member.name)
            if key not in wanted:
                continue
            if member.size > _MAX_MEMBER_BYTES:
                warnings.warn(f"frsign: skipping {member.name!r} ({member.size} bytes, larger "
                              "than any frame)", stacklevel=3)
                continue
            f = tar.extractfile(member)
            if f is not None:
                yield key, f.read()


def _source(manual_dir: str, source: str) -> tuple[str, str]:
    tar = os.path.join(manual_dir, TAR_NAME)
    if source == "auto":
        source = "tar" if os.path.isfile(tar) else "folders"
    if source == "tar" and not os.path.isfile(tar):
        raise FileNotFoundError(f"manual_dir: no {TAR_NAME} in {manual_dir!r}. "
                                + _where_to_get(manual_dir))
    return source, tar if source == "tar" else manual_dir


def _crop_all(ann: FRSignAnnotations, kind: str, where: str, *, context: float, size: int,
              out: np.ndarray) -> tuple[np.ndarray, dict]:
    """One pass over the frames: every box's crop into ``out``; returns the done mask and counts."""
    by_frame: dict[str, list[int]] = {}
    for i, key in enumerate(ann.frame):
        by_frame.setdefault(str(key), []).append(i)
    done = np.zeros(len(ann), bool)
    unreadable: list[str] = []
    frames = _frames_in_tar(where, set(by_frame)) if kind == "tar" else \
        _frames_in_folders(where, set(by_frame))
    seen = set()
    for key, data in frames:
        if key in seen:
            continue
        seen.add(key)
        try:
            frame = _decode(data)
        except Exception as e:  # noqa: BLE001 - an unreadable frame is skipped and reported
            unreadable.append(f"{key} ({type(e).__name__})")
            continue
        for i in by_frame[key]:
            out[i] = crop_box(frame, ann.box[i], context=context, size=size)
            done[i] = True
    missing = sorted(set(by_frame) - seen)
    if not seen:
        raise FileNotFoundError(
            f"manual_dir: none of the {len(by_frame)} annotated frames was found in {where!r} "
            f"(looked for '<recording folder>/<file>' such as {next(iter(by_frame), '?')!r}). "
            + _where_to_get(os.path.dirname(where) if kind == "tar" else where))
    if unreadable:
        warnings.warn(f"frsign: {len(unreadable)} unreadable frame(s) skipped, e.g. "
                      f"{unreadable[:3]}", stacklevel=2)
    if missing:
        warnings.warn(f"frsign: {len(missing)} of {len(by_frame)} annotated frames are not in "
                      f"{where!r} (e.g. {missing[:3]}); their boxes are left out", stacklevel=2)
    return done, {"frames missing": len(missing), "frames unreadable": len(unreadable),
                  "boxes without a frame": int((~done).sum())}


@functools.cache
def _builder_class():
    import tensorflow_datasets as tfds

    class FrsignCrops(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        """Crops of every FRSign box, from a manual directory (no download, no TensorFlow)."""

        VERSION = tfds.core.Version("1.0.0")
        MANUAL_DOWNLOAD_INSTRUCTIONS = _where_to_get("<manual_dir>")

        def __init__(self, *, prepared, **kwargs):
            self._p = prepared
            super().__init__(config=tfds.core.BuilderConfig(name=prepared["config"]), **kwargs)

        def _info(self):
            s = self._p["settings"]["image_size"]
            return tfds.core.DatasetInfo(
                builder=self,
                features=tfds.features.FeaturesDict({
                    "image": tfds.features.Tensor(shape=(s, s, 3), dtype=np.uint8),
                    "label": tfds.features.ClassLabel(names=self._p["label_names"]),
                    "state": tfds.features.Text(), "type": tfds.features.Text(),
                    "on_track": tfds.features.Scalar(dtype=np.int64),
                    "sequence": tfds.features.Scalar(dtype=np.int64),
                    "image_id": tfds.features.Scalar(dtype=np.int64),
                    "frame": tfds.features.Text(),
                    "box": tfds.features.Tensor(shape=(4,), dtype=np.float32)}),
                supervised_keys=("image", "label"),
                disable_shuffling=True,
                metadata=tfds.core.MetadataDict(settings=self._p["settings"],
                                                sequences=self._p["splits"]),
                homepage=FRSIGN_URL)

        def _split_generators(self, dl_manager):
            del dl_manager
            p = self._p
            ann = p["annotations"]
            s = p["settings"]["image_size"]
            tmp = tempfile.mkdtemp(prefix=".frsign-crops-", dir=p["data_dir"])
            self._tmp = tmp
            crops = np.lib.format.open_memmap(os.path.join(tmp, "crops.npy"), mode="w+",
                                              dtype=np.uint8, shape=(max(len(ann), 1), s, s, 3))
            done, counts = _crop_all(ann, p["source"], p["where"],
                                     context=p["settings"]["context"], size=s, out=crops)
            self.info.metadata["dropped"] = {**ann.dropped, **counts}
            return {name: self._generate_examples(crops, done, set(p["splits"][name]))
                    for name in SPLITS if p["splits"][name]}

        def _generate_examples(self, crops, done, sequences):
            ann, label = self._p["annotations"], self._p["settings"]["label"]
            for i in range(len(ann)):
                if not done[i] or int(ann.sequence[i]) not in sequences:
                    continue
                yield i, {"image": np.asarray(crops[i]), "label": str(getattr(ann, label)[i]),
                          "state": str(ann.state[i]), "type": str(ann.type[i]),
                          "on_track": int(ann.on_track[i]), "sequence": int(ann.sequence[i]),
                          "image_id": int(ann.image[i]), "frame": str(ann.frame[i]),
                          "box": ann.box[i]}

    return FrsignCrops


def frsign(split: str = "train", *, manual_dir: str, label: str = "state", image_size: int = 64,
           context: float = 0.25, fractions=(0.7, 0.15, 0.15), seed: int = 0,
           source: str = "auto", data_dir: str | None = None):
    """FRSign box crops as a random-access ``data_source`` (prepared once, as ``array_record``).

    Args:
      split: ``"train"``, ``"validation"`` or ``"test"`` (disjoint sets of sequences).
      manual_dir: the directory holding ``frsign_v1.0.h5`` and ``FRSign.tar.gz`` (or its extracted
        recording folders).
      label: the column the ``label`` feature encodes: ``"state"`` (the signal's aspect) or
        ``"type"`` (the signal's chassis); its class names are the values found in the file,
        sorted.
      image_size: side of the stored crops.
      context: margin around the box, as a fraction of its larger side, on each side.
      fractions: shares of the sequences in train / validation / test (per label).
      seed: seed of the sequence assignment.
      source: ``"auto"`` (the tar.gz when present, else folders), ``"tar"`` or ``"folders"``.
      data_dir: where the prepared dataset lives (default ``~/.cache/xjax/tensorflow_datasets``).
        Each combination of settings (and of annotation file) is prepared in its own config.

    Returns:
      A sequence of ``{"image": u8[S, S, 3], "label": int, "state": bytes, "type": bytes,
      "on_track": int, "sequence": int, "image_id": int, "frame": bytes, "box": f32[4]}``. Its
      ``dataset_info.metadata`` holds the settings, the sequences of every split and the counts
      of what was dropped.

    Raises:
      FileNotFoundError: ``manual_dir`` or the h5 is missing, or no annotated frame is found (the
        message names the site, the two files and where to put them).
      ValueError: a bad argument, or an annotation file of another layout (the message lists the
        expected and the found tables and columns).
      ImportError: h5py is absent (``pip install 'xjax[frsign]'``).
    """
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {list(SPLITS)}, got {split!r}")
    if label not in ("state", "type"):
        raise ValueError(f"label: expected 'state' or 'type', got {label!r}")
    if source not in ("auto", "tar", "folders"):
        raise ValueError(f"source: expected 'auto', 'tar' or 'folders', got {source!r}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size: expected a positive int, got {image_size!r}")
    if not (isinstance(context, (int, float)) and np.isfinite(context) and context >= 0):
        raise ValueError(f"context: expected a finite number >= 0, got {context!r}")
    fr = np.asarray(fractions, np.float64)
    if fr.shape != (3,) or not np.isfinite(fr).all() or (fr < 0).any() or abs(fr.sum() - 1) > 1e-6:
        raise ValueError(f"fractions: expected three shares >= 0 summing to 1, got {fractions!r}")
    manual_dir = os.fspath(manual_dir)
    if not os.path.isdir(manual_dir):
        raise FileNotFoundError(f"manual_dir: {manual_dir!r} does not exist. "
                                + _where_to_get(manual_dir))
    h5 = os.path.join(manual_dir, H5_NAME)
    if not os.path.isfile(h5):
        raise FileNotFoundError(f"manual_dir: no {H5_NAME} in {manual_dir!r}. "
                                + _where_to_get(manual_dir))
    kind, where = _source(manual_dir, source)
    ann = read_frsign_annotations(h5)
    if not len(ann):
        raise ValueError(f"manual_dir: {h5!r} has no usable box (dropped: {ann.dropped})")
    labels = getattr(ann, label)
    settings = {"label": label, "image_size": image_size, "context": float(context),
                "fractions": [float(f) for f in fr], "seed": int(seed), "source": kind,
                "annotations_sha256": sha256_file(h5)}
    config = "c" + hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    data_dir = os.path.abspath(data_dir or _DEFAULT_DATA_DIR)
    os.makedirs(data_dir, exist_ok=True)
    prepared = {"annotations": ann, "settings": settings, "config": config, "source": kind,
                "where": where, "data_dir": data_dir,
                "label_names": sorted(set(labels.tolist())),
                "splits": split_sequences(ann.sequence, labels, fr, seed)}
    builder = _builder_class()(prepared=prepared, data_dir=data_dir, file_format="array_record")
    try:
        builder.download_and_prepare()
    finally:
        tmp = getattr(builder, "_tmp", None)
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    if not prepared["splits"][split]:
        raise ValueError(f"split: {split!r} holds no sequence at fractions {list(fr)}")
    return builder.as_data_source(split=split)


# ----------------------------------------------------------------------------- synthetic release

# The chassis names of the release (as listed by train_scanner's data.yaml).
CHASSIS = ("Chassis A (3 feux verticaux)", "Chassis C (5 feux verticaux)",
           "Chassis F (6 & 1 feux en L inverse)", "Chassis H (6 & 3 feux en S)",
           "Chassis ID2 (2 feux horizontaux)", "Chassis ID3 (3 feux horizontaux)",
           "Chassis R (6 feux dans un disque)")
# Synthetic aspects: the same lamp position, told apart only by colour.
SYNTHETIC_STATES = {"C": (230, 30, 30), "VL": (30, 220, 60), "A": (240, 200, 20)}


def write_synthetic_frsign(root, *, n_sequences: int = 12, frames: int = 2,
                           frame_size=(160, 100), layout: str = "folders",
                           h5_format: str = "table", seed: int = 0) -> str:
    """Write a small release in FRSign's layout (for tests and the experiment's quick mode).

    Each sequence is one signal (a dark panel with three lamps, the middle one lit in its state's
    colour, so states look alike in position and differ in colour); two sequences share each
    recording, so every frame of a noisy background holds two boxes. Needs pandas and PyTables
    (``pip install 'xjax[dev]'``) to write the HDFStore exactly as pandas does for the release.

    Args:
      root: directory to create; receives ``frsign_v1.0.h5`` and either the recording folders
        (``layout="folders"``) or ``FRSign.tar.gz`` (``layout="tar"``).
      n_sequences: how many sequences (signals); states cycle through ``SYNTHETIC_STATES``.
      frames: frames per recording.
      frame_size: ``(W, H)`` of a frame.
      h5_format: pandas' ``"table"`` or ``"fixed"`` layout.
      seed: the random seed.

    Returns:
      ``root``.
    """
    import pandas as pd
    from PIL import Image

    if layout not in ("folders", "tar"):
        raise ValueError(f"layout: expected 'folders' or 'tar', got {layout!r}")
    root = os.fspath(root)
    os.makedirs(root, exist_ok=True)
    rng = np.random.default_rng(seed)
    width, height = frame_size
    states = list(SYNTHETIC_STATES)
    seq_rows, box_rows, files = [], [], {}
    for r in range((n_sequences + 1) // 2):
        folder = f"RecFile_{r + 1}_20181011_1531{r:02d}_pointgrey_flycapture2_1_ipl_image"
        members = [s for s in (2 * r, 2 * r + 1) if s < n_sequences]
        for s in members:
            seq_rows.append({"sequence": 100 + s, "type": CHASSIS[s % len(CHASSIS)],
                             "state": states[s % len(states)], "on_track": int(s % 4 != 3),
                             "fps": 25.0, "video": folder, "sensor_type": "pointgrey"})
        for f in range(frames):
            image_id = 1000 * (r + 1) + f
            frame = rng.normal(70, 25, (height, width, 3)).clip(0, 255).astype(np.uint8)
            for k, s in enumerate(members):
                w, h = int(rng.integers(10, 16)), int(rng.integers(26, 38))
                x = int(rng.integers(k * width // 2 + 4, (k + 1) * width // 2 - w - 4))
                y = int(rng.integers(2, height - h - 2))
                frame[y:y + h, x:x + w] = 25
                for lamp in range(3):
                    cy = y + h * (2 * lamp + 1) // 6
                    colour = SYNTHETIC_STATES[states[s % len(states)]] if lamp == 1 else (55,) * 3
                    frame[cy - h // 10:cy + h // 10 + 1, x + w // 4:x + w - w // 4] = colour
                box_rows.append({"sequence": 100 + s, "image": image_id,
                                 "fullpath": f"/data/FRSign/{folder}/{image_id}_rgb.png",
                                 "x": x, "y": y, "w": w, "h": h})
            buf = io.BytesIO()
            Image.fromarray(frame).save(buf, format="PNG")
            files[f"{folder}/{image_id}_rgb.png"] = buf.getvalue()
    if layout == "folders":
        for name, data in files.items():
            os.makedirs(os.path.join(root, os.path.dirname(name)), exist_ok=True)
            with open(os.path.join(root, name), "wb") as fh:
                fh.write(data)
    else:
        with tarfile.open(os.path.join(root, TAR_NAME), "w:gz") as tar:
            for name, data in files.items():
                info = tarfile.TarInfo(f"FRSign/{name}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    seqs = pd.DataFrame(seq_rows).set_index("sequence")
    boxes = pd.DataFrame(box_rows).set_index(["sequence", "image"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")               # PyTables' object-column performance note
        with pd.HDFStore(os.path.join(root, H5_NAME), "w") as store:
            store.put("dataframe", seqs, format=h5_format)
            store.put("images", boxes, format=h5_format)
    return root
