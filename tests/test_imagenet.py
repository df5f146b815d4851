"""ImageNet input: the shipped 1000-class table, name resolution, and the folder layouts (WordNet-ID
trees, train/ and val/, the raw validation folder, tensorflow-datasets' manual tars)."""

import importlib.resources
import io
import os
import tarfile

import numpy as np
import pytest
from PIL import Image

import xjax
from xjax.data import class_index, image_folder, imagenet_classes

NAMES = xjax.models.imagenet_class_names()
TFDS = importlib.resources.files("tensorflow_datasets").joinpath("datasets", "imagenet2012")


def test_the_table_agrees_with_tensorflow_datasets_and_torchvision_names():
    table = imagenet_classes()
    assert len(table) == 1000 and [c.index for c in table] == list(range(1000))
    # an independent source installed with tensorflow-datasets: the sorted ILSVRC-2012 synsets
    assert [c.wnid for c in table] == TFDS.joinpath("labels.txt").read_text().split()
    assert tuple(c.name for c in table) == tuple(NAMES)
    assert table[0].names == ("tench", "Tinca tinca") and table[0].wnid == "n01440764"
    assert "coffee" in table[967].definition and table[967].name == "espresso"
    assert all(c.names and c.definition for c in table)


@pytest.mark.parametrize("label, index", [
    ("n01440764", 0), ("N01440764", 0), ("Tench", 0), ("tinca tinca", 0), ("Espresso", 967),
    ("crane bird", 134), ("5", 5), ("  goldfish ", 1), ("Carassius auratus", 1),
])
def test_class_names_resolve(label, index):
    assert class_index(label, NAMES) == index


@pytest.mark.parametrize("label, match", [
    ("crane", r"names 2 ImageNet classes: n02012849 \(crane bird\), n03126707 \(crane\)"),
    ("n99999999", "not one of the 1000 ImageNet-1k WordNet IDs"),
    ("1000", r"index outside \[0, 1000\)"),
    ("expresso", "did you mean 'espresso'"),
])
def test_unknown_or_ambiguous_names_are_errors_naming_the_candidates(label, match):
    with pytest.raises(ValueError, match=match):
        class_index(label, NAMES)


def test_other_models_match_names_case_insensitively_and_never_by_wordnet():
    names = xjax.models.FASHION_MNIST_CLASSES
    assert class_index("ankle BOOT", names) == 9
    with pytest.raises(ValueError, match="expected a class name or a class index"):
        class_index("n01440764", names)


def _jpeg(seed: int, side: int = 40) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _photo_crops(n):
    """Crops of the bundled photos: real image content, small files."""
    photos = xjax.data.sample_photos()
    out = []
    for i in range(n):
        im = photos[i % len(photos)].image
        y, x = (17 * i) % (im.shape[0] - 64), (29 * i) % (im.shape[1] - 64)
        buf = io.BytesIO()
        Image.fromarray(im[y:y + 64, x:x + 64]).save(buf, "JPEG")
        out.append(buf.getvalue())
    return out


def write_wnid_tree(root, wnids, per_class):
    crops = iter(_photo_crops(len(wnids) * per_class))
    for w in wnids:
        os.makedirs(os.path.join(root, w))
        for i in range(per_class):
            with open(os.path.join(root, w, f"{w}_{i}.JPEG"), "wb") as f:
                f.write(next(crops))


def test_wordnet_id_tree_names_and_the_train_val_layout(tmp_path):
    write_wnid_tree(tmp_path / "val", ["n01440764", "n07920052"], 3)       # tench, espresso
    os.makedirs(tmp_path / "val" / ".ipynb_checkpoints")                  # hidden: not a class
    folder = image_folder(str(tmp_path / "val"), NAMES, max_per_class=2)
    assert folder.layout == "class folders" and folder.labels.tolist() == [0, 0, 967, 967]
    assert folder.read(0).shape == (64, 64, 3) and folder.read(0).dtype == np.uint8
    write_wnid_tree(tmp_path / "train", ["n01443537"], 2)                  # goldfish
    assert image_folder(str(tmp_path), NAMES).labels.tolist() == [0, 0, 0, 967, 967, 967]
    assert image_folder(str(tmp_path), NAMES, split="train").labels.tolist() == [1, 1]
    (tmp_path / "named").mkdir()
    os.rename(tmp_path / "train" / "n01443537", tmp_path / "named" / "Goldfish")
    assert image_folder(str(tmp_path / "named"), NAMES).labels.tolist() == [1, 1]
    os.makedirs(tmp_path / "named" / "carassius auratus")          # the same class twice
    with pytest.raises(ValueError, match="are the same class"):
        image_folder(str(tmp_path / "named"), NAMES)


def test_flat_validation_folder_is_labelled_by_tensorflow_datasets(tmp_path):
    truth = TFDS.joinpath("validation_labels.txt").read_text().split()
    for k in (1, 2, 3):
        (tmp_path / f"ILSVRC2012_val_{k:08d}.JPEG").write_bytes(_jpeg(k))
    folder = image_folder(str(tmp_path), NAMES)
    wnids = [imagenet_classes()[i].wnid for i in folder.labels]
    assert folder.layout == "flat validation" and sorted(wnids) == sorted(truth[:3])


def _add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def test_tfds_manual_tars_are_read_in_place(tmp_path):
    truth = TFDS.joinpath("validation_labels.txt").read_text().split()
    images = {k: _jpeg(k) for k in (1, 2, 5)}
    with tarfile.open(tmp_path / "ILSVRC2012_img_val.tar", "w") as tar:
        for k, data in images.items():
            _add(tar, f"ILSVRC2012_val_{k:08d}.JPEG", data)
        link = tarfile.TarInfo("ILSVRC2012_val_00000009.JPEG")      # a link: never followed
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    val = image_folder(str(tmp_path), NAMES)
    assert val.layout == "tfds manual (validation)" and len(val.labels) == 3
    for i, name in enumerate(val.names):
        k = int(name[15:23])
        assert imagenet_classes()[val.labels[i]].wnid == truth[k - 1]
        np.testing.assert_array_equal(val.read(i), _decoded(images[k]))
    inner = {}
    for w, seeds in (("n01440764", (7, 8)), ("n01443537", (9,))):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as sub:
            for s in seeds:
                _add(sub, f"{w}_{s}.JPEG", _jpeg(s))
        inner[w] = buf.getvalue()
    with tarfile.open(tmp_path / "ILSVRC2012_img_train.tar", "w") as tar:
        for w, data in inner.items():
            _add(tar, f"{w}.tar", data)
    train = image_folder(str(tmp_path), NAMES, split="train")
    assert train.layout == "tfds manual (train)" and train.labels.tolist() == [0, 0, 1]
    assert train.names[2] == "n01443537.tar/n01443537_9.JPEG"
    for i, s in enumerate((7, 8, 9)):
        np.testing.assert_array_equal(train.read(i), _decoded(_jpeg(s)))


def test_hostile_tar_members(tmp_path, monkeypatch):
    from xjax.data import _imagenet

    with tarfile.open(tmp_path / "ILSVRC2012_img_val.tar", "w") as tar:
        _add(tar, "ILSVRC2012_val_00000001.JPEG", b"not an image at all")
        _add(tar, "../../ILSVRC2012_val_00000002.JPEG", _jpeg(2))   # never extracted
    folder = image_folder(str(tmp_path), NAMES)
    assert len(folder.labels) == 2 and not (tmp_path.parent / "ILSVRC2012_val_00000002.JPEG"
                                            ).exists()
    bad = folder.names.index("ILSVRC2012_val_00000001.JPEG")
    with pytest.raises(ValueError, match="ILSVRC2012_val_00000001.JPEG' is unreadable"):
        folder.read(bad)
    monkeypatch.setattr(_imagenet, "_MAX_IMAGE_BYTES", 100)
    with pytest.raises(ValueError, match="larger than any image"):
        image_folder(str(tmp_path), NAMES)


def test_missing_imagenet_says_where_to_get_it_and_where_to_put_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="image-net.org.*ILSVRC2012_img_val.tar"):
        image_folder(str(tmp_path / "nowhere"), NAMES)
    with pytest.raises(FileNotFoundError, match="no class folders"):
        image_folder(str(tmp_path), NAMES)
    (tmp_path / "n01440764").mkdir()
    (tmp_path / "unicorn").mkdir()
    with pytest.raises(ValueError, match="'unicorn' is not a class of the model.*WordNet ID"):
        image_folder(str(tmp_path), NAMES)


def test_sample_crops_are_a_small_imagenet_dataset():
    m = xjax.models.small_cnn(input_shape=(32, 32, 3), num_classes=1000)
    x, y = xjax.lens.sample_crops(m._replace(class_names=tuple(NAMES)))
    groups = [p.imagenet_classes for p in xjax.data.sample_photos() if p.imagenet_classes]
    assert x.shape == (8 * len(groups), 32, 32, 3) and x.dtype == np.float32
    assert y.tolist() == [g[0] for g in groups for _ in range(8)]
    assert 0 <= x.min() and x.max() <= 1 and len({a.tobytes() for a in x}) == len(x)
    with pytest.raises(ValueError, match="needs an ImageNet-1k model"):
        xjax.lens.sample_crops(m)
