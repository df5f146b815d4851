"""FRSign builder on synthetic releases in the public layout (folders and tar.gz; both h5 layouts)."""

import io
import os
import shutil
import sys
import tarfile
import warnings

import numpy as np
import pytest
from PIL import Image

import xjax.data as D
from xjax.data import _frsign as F

pytest.importorskip("pandas")
pytest.importorskip("tables")
pytest.importorskip("h5py")

SIZE = 24


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    root = tmp_path_factory.mktemp("frsign")
    out = {}
    for layout in ("folders", "tar"):
        for fmt in ("table", "fixed"):
            out[layout, fmt] = D.write_synthetic_frsign(root / f"{layout}-{fmt}", layout=layout,
                                                        h5_format=fmt, n_sequences=9, frames=2)
    return out


@pytest.fixture(scope="module")
def prepared(releases, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    return {key: {split: D.frsign(split, manual_dir=root, data_dir=str(data_dir), image_size=SIZE)
                  for split in F.SPLITS} for key, root in releases.items()}


def _items(ds):
    return [ds[i] for i in range(len(ds))]


def test_every_layout_gives_the_same_examples(prepared):
    ref = {s: _items(ds) for s, ds in prepared["folders", "table"].items()}
    assert sum(len(v) for v in ref.values()) == 9 * 2          # one box per sequence per frame
    for key, splits in prepared.items():
        for split, ds in splits.items():
            got = _items(ds)
            assert len(got) == len(ref[split]), key
            for a, b in zip(got, ref[split], strict=True):
                np.testing.assert_array_equal(a["image"], b["image"])
                for k in ("label", "state", "type", "on_track", "sequence", "image_id", "frame"):
                    assert a[k] == b[k], (key, k)


def test_crops_show_their_signal_and_labels_are_read_from_the_file(prepared, releases):
    ds = prepared["tar", "fixed"]["train"]
    names = ds.dataset_info.features["label"].names
    assert names == sorted(F.SYNTHETIC_STATES)                  # the values in the file, sorted
    for item in _items(ds):
        state = item["state"].decode()
        assert names[item["label"]] == state
        # The lit (middle) lamp is at the box centre, which is the crop centre: its colour is
        # the state's, and nearer to it than to any other state's.
        centre = item["image"][SIZE // 2, SIZE // 2].astype(float)
        dist = {s: np.abs(centre - c).sum() for s, c in F.SYNTHETIC_STATES.items()}
        assert min(dist, key=dist.get) == state and dist[state] < 60, (state, centre)
        x, y, w, h = item["box"]
        assert w > 0 and h > 0 and item["type"].decode() in F.CHASSIS
    # The frame named by an example holds the box: compare with an independent crop of the PNG.
    item = ds[0]
    png = os.path.join(releases["folders", "table"], item["frame"].decode())
    frame = np.asarray(Image.open(png).convert("RGB"))
    x, y, w, h = (float(v) for v in item["box"])
    assert frame[int(y + h / 2), int(x + w / 2)].tolist() == list(
        F.SYNTHETIC_STATES[item["state"].decode()])


def test_splits_are_by_sequence_seeded_and_recorded(prepared, releases, tmp_path):
    meta = prepared["folders", "table"]["train"].dataset_info.metadata
    seqs = meta["sequences"]
    all_seqs = [s for split in F.SPLITS for s in seqs[split]]
    assert sorted(all_seqs) == list(range(100, 109)) and len(set(all_seqs)) == len(all_seqs)
    for split, ds in prepared["folders", "table"].items():
        assert {int(it["sequence"]) for it in _items(ds)} == set(seqs[split])
    assert meta["settings"]["seed"] == 0 and meta["settings"]["image_size"] == SIZE
    assert meta["dropped"] == {"frames missing": 0, "frames unreadable": 0,
                               "boxes without a frame": 0}
    # Every state is in train (stratified), and another seed gives another assignment.
    ann = D.read_frsign_annotations(os.path.join(releases["folders", "table"], F.H5_NAME))
    per = F.split_sequences(ann.sequence, ann.state, (0.7, 0.15, 0.15), 0)
    assert per == {k: list(v) for k, v in seqs.items()}
    train_states = {ann.state[ann.sequence == s][0] for s in per["train"]}
    assert train_states == set(F.SYNTHETIC_STATES)
    assert F.split_sequences(ann.sequence, ann.state, (0.7, 0.15, 0.15), 1) != per


def test_split_counts_sum_exactly_and_respect_fractions():
    seq = np.arange(40)
    labels = np.array(["a"] * 23 + ["b"] * 17)
    out = F.split_sequences(seq, labels, (0.6, 0.2, 0.2), 3)
    assert sorted(sum(out.values(), [])) == list(range(40))
    # a: 13.8, 4.6, 4.6 -> 14, 5, 4; b: 10.2, 3.4, 3.4 -> 10, 4, 3 (ties go to the earlier split)
    assert [len(out[s]) for s in F.SPLITS] == [14 + 10, 5 + 4, 4 + 3]
    out = F.split_sequences(seq[:3], labels[:3], (0.98, 0.01, 0.01), 0)
    assert [len(out[s]) for s in F.SPLITS] == [1, 1, 1]          # every split gets one


def test_settings_are_separate_configs(releases, tmp_path):
    root = releases["folders", "table"]
    a = D.frsign("test", manual_dir=root, data_dir=str(tmp_path), image_size=16)
    b = D.frsign("test", manual_dir=root, data_dir=str(tmp_path), image_size=20, context=0.5)
    assert a[0]["image"].shape == (16, 16, 3) and b[0]["image"].shape == (20, 20, 3)
    c = D.frsign("train", manual_dir=root, data_dir=str(tmp_path), image_size=16, label="type")
    assert c.dataset_info.features["label"].names == sorted(
        {F.CHASSIS[s % len(F.CHASSIS)] for s in range(9)})


def test_crop_box_is_centred_square_and_zero_outside():
    frame = np.arange(40 * 50 * 3, dtype=np.uint32).reshape(40, 50, 3).astype(np.uint8)
    out = F.crop_box(frame, (10, 12, 8, 8), context=0.5, size=16)   # side 16, no resize
    np.testing.assert_array_equal(out, frame[8:24, 6:22])
    out = F.crop_box(frame, (0, 0, 4, 4), context=0.5, size=8)      # half outside: zeros
    np.testing.assert_array_equal(out[:2, :], 0)
    np.testing.assert_array_equal(out[:, :2], 0)
    np.testing.assert_array_equal(out[2:, 2:], frame[:6, :6])
    flat = np.full((30, 30, 3), 77, np.uint8)
    np.testing.assert_array_equal(F.crop_box(flat, (5, 5, 10, 20), context=0.0, size=7), 77)


def _copy_release(src, dst):
    shutil.copytree(src, dst)
    return str(dst)


def test_missing_directory_and_files_say_where_to_get_them(tmp_path, releases):
    for call in (lambda: D.frsign(manual_dir=str(tmp_path / "nowhere")),
                 lambda: D.frsign(manual_dir=str(tmp_path))):
        with pytest.raises(FileNotFoundError) as e:
            call()
        msg = str(e.value)
        assert "frsign.irt-systemx.fr" in msg and "frsign_v1.0.h5" in msg
        assert "FRSign.tar.gz" in msg and "manual_dir" in msg
    with pytest.raises(FileNotFoundError, match="no FRSign.tar.gz"):
        D.frsign(manual_dir=releases["folders", "table"], source="tar", data_dir=str(tmp_path))
    # an h5 without its frames
    only = tmp_path / "only-h5"
    only.mkdir()
    shutil.copy(os.path.join(releases["tar", "table"], F.H5_NAME), only / F.H5_NAME)
    with pytest.raises(FileNotFoundError, match="none of the 10 annotated frames"):
        D.frsign(manual_dir=str(only), data_dir=str(tmp_path / "t"))


@pytest.mark.parametrize("kwargs, match", [
    ({"split": "val"}, "split"), ({"label": "colour"}, "label"), ({"image_size": 0}, "image_size"),
    ({"image_size": True}, "image_size"), ({"context": -1.0}, "context"),
    ({"context": float("nan")}, "context"), ({"fractions": (0.5, 0.5)}, "fractions"),
    ({"fractions": (0.5, 0.6, -0.1)}, "fractions"), ({"source": "zip"}, "source")])
def test_bad_arguments_are_named(tmp_path, releases, kwargs, match):
    with pytest.raises(ValueError, match=match):
        D.frsign(manual_dir=releases["folders", "table"], data_dir=str(tmp_path), **kwargs)


def test_another_release_version_fails_with_what_was_expected(tmp_path):
    import pandas as pd

    path = tmp_path / F.H5_NAME
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pd.HDFStore(str(path), "w") as store:
            store.put("dataframe", pd.DataFrame({"kind": ["a"], "state": ["C"]},
                                                index=pd.Index([1], name="sequence")),
                      format="table")
            store.put("labels", pd.DataFrame({"x": [1]}), format="table")
    with pytest.raises(ValueError) as e:
        D.read_frsign_annotations(path)
    msg = str(e.value)
    assert "table 'images' is missing" in msg and "lacks ['type', 'on_track']" in msg
    assert "Expected dataframe: index ['sequence'], columns ['type', 'state', 'on_track']" in msg
    assert "Found tables ['dataframe']" in msg


def test_bad_boxes_are_dropped_and_counted(tmp_path):
    import pandas as pd

    seqs = pd.DataFrame({"type": ["T", "T"], "state": ["C", ""], "on_track": [1, 1]},
                        index=pd.Index([1, 2], name="sequence"))
    mi = pd.MultiIndex.from_tuples([(1, 1), (1, 2), (2, 3), (5, 4), (1, 5)],
                                   names=["sequence", "image"])
    boxes = pd.DataFrame({"fullpath": [f"/a/R/{i}.png" for i in range(5)],
                          "x": [0, 0, 0, 0, 0], "y": [0, 0, 0, 0, 0], "w": [4, 0, 4, 4, 4.0],
                          "h": [4, 4, 4, 4, np.nan]}, index=mi)
    path = tmp_path / F.H5_NAME
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pd.HDFStore(str(path), "w") as store:
            store.put("dataframe", seqs, format="fixed")
            store.put("images", boxes, format="fixed")
    ann = D.read_frsign_annotations(path)
    assert len(ann) == 1 and ann.frame.tolist() == ["R/0.png"]
    assert ann.dropped == {"sequence not in dataframe": 1,
                           "box of non-finite or non-positive size": 2, "empty state or type": 1}
    # a column of the wrong type
    bad = boxes.assign(x=["a"] * 5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pd.HDFStore(str(path), "w") as store:
            store.put("dataframe", seqs, format="fixed")
            store.put("images", bad, format="fixed")
    with pytest.raises(ValueError, match="images.x has dtype"):
        D.read_frsign_annotations(path)


def test_unreadable_and_missing_frames_are_skipped_with_a_warning(tmp_path, releases):
    root = _copy_release(releases["folders", "table"], tmp_path / "r")
    ann = D.read_frsign_annotations(os.path.join(root, F.H5_NAME))
    frames = sorted(set(ann.frame.tolist()))
    with open(os.path.join(root, frames[0]), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n broken")
    os.remove(os.path.join(root, frames[1]))
    with pytest.warns(UserWarning) as record:
        ds = D.frsign("train", manual_dir=root, data_dir=str(tmp_path / "t"), image_size=8)
    text = " ".join(str(w.message) for w in record)
    assert "1 unreadable frame(s) skipped" in text and frames[0] in text
    assert "1 of 10 annotated frames are not in" in text
    dropped = ds.dataset_info.metadata["dropped"]
    assert dropped["frames missing"] == 1 and dropped["frames unreadable"] == 1
    assert dropped["boxes without a frame"] == 4                     # two boxes per frame
    assert frames[0].encode() not in {it["frame"] for it in _items(ds)}


def test_tar_is_streamed_without_extracting(tmp_path, releases, monkeypatch):
    root = releases["tar", "table"]
    calls = []
    real = tarfile.open

    def spy(name=None, mode="r", *a, **k):
        calls.append(mode)
        return real(name, mode, *a, **k)

    monkeypatch.setattr(F.tarfile, "open", spy)
    monkeypatch.setattr(tarfile.TarFile, "extract", lambda *a, **k: pytest.fail("extracted"))
    monkeypatch.setattr(tarfile.TarFile, "extractall", lambda *a, **k: pytest.fail("extracted"))
    ds = D.frsign("validation", manual_dir=root, data_dir=str(tmp_path), image_size=8)
    assert len(ds) > 0 and calls == ["r|gz"]
    assert not any(n.startswith("RecFile") for n in os.listdir(root))


def test_tar_member_paths_cannot_escape_or_confuse(tmp_path, releases):
    # Names with '..' or absolute paths are only matched by their last two components, never
    # written anywhere; an oversized member is skipped.
    src = releases["tar", "table"]
    root = tmp_path / "r"
    root.mkdir()
    shutil.copy(os.path.join(src, F.H5_NAME), root / F.H5_NAME)
    with tarfile.open(os.path.join(src, F.TAR_NAME), "r:gz") as tin, \
            tarfile.open(root / F.TAR_NAME, "w:gz") as tout:
        for m in tin.getmembers():
            data = tin.extractfile(m).read()
            m.name = "../../etc/" + "/".join(m.name.split("/")[-2:])
            tout.addfile(m, io.BytesIO(data))
    ds = D.frsign("test", manual_dir=str(root), data_dir=str(tmp_path / "t"), image_size=8)
    assert len(ds) > 0 and sorted(os.listdir(root)) == sorted([F.H5_NAME, F.TAR_NAME])


def test_needs_h5py_with_a_clear_message(tmp_path, releases, monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match=r"xjax\[frsign\]"):
        D.frsign(manual_dir=releases["folders", "table"], data_dir=str(tmp_path))
