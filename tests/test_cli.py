import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from xjax import cli


def test_help():
    out = subprocess.run([sys.executable, "-m", "xjax.cli", "--help"], capture_output=True,
                         text=True, check=True)
    assert "explain" in out.stdout


def test_explain_writes_figures_and_resumes(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        Image.fromarray(rng.integers(0, 255, (40, 36, 3), dtype=np.uint8)).save(images / f"{name}.png")
    out = tmp_path / "out"
    args = ["explain", "--model", "small_cnn", "--method", "saliency", "--images", str(images),
            "--out", str(out), "--batch-size", "2", "--images-per-step", "2"]
    assert cli.main(args) == 0
    written = sorted(os.listdir(out))
    assert written == ["a_saliency.png", "b_saliency.png", "c_saliency.png"]
    with Image.open(out / "a_saliency.png") as im:
        assert im.size[0] > 300
    # an interrupted run loses a figure; the rerun redoes only that one
    os.remove(out / "b_saliency.png")
    mtime = os.path.getmtime(out / "a_saliency.png")
    capsys.readouterr()
    assert cli.main(args) == 0
    assert os.path.getmtime(out / "a_saliency.png") == mtime
    assert sorted(os.listdir(out)) == written
    assert "skipping 2" in capsys.readouterr().err


def test_every_method_and_the_grid(tmp_path):
    from xjax.attributions import METHODS

    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (28, 28), dtype=np.uint8)).save(
        images / "x.png")
    out = tmp_path / "out"
    # small sample counts keep this fast; every method goes through the command line
    assert cli.main(["explain", "--model", "small_cnn", "--method", ",".join(METHODS),
                     "--images", str(images), "--out", str(out), "--batch-size", "64"]) == 0
    files = set(os.listdir(out))
    assert {f"x_{m}.png" for m in METHODS} <= files and "grid.png" in files


def test_bad_arguments(tmp_path):
    with pytest.raises(SystemExit):
        cli.main(["explain", "--model", "alexnet"])
    with pytest.raises(SystemExit):
        cli.main(["explain", "--images", str(tmp_path / "missing")])
    with pytest.raises(SystemExit):
        cli.main(["explain", "--method", "magic"])


def test_train_harmonize_writes_metrics_and_resumes(tmp_path, capsys):
    from tests.conftest import FASHION_MNIST_PRESENT

    if not FASHION_MNIST_PRESENT:
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    import json

    out = str(tmp_path / "h")
    args = ["train", "harmonize", "--lambda", "5", "--epochs", "1", "--n-train", "128",
            "--n-test", "256", "--gradient", "absolute", "--out", out]
    assert cli.main(args) == 0
    with open(os.path.join(out, "metrics.json")) as f:
        first = json.load(f)
    assert first["lambda"] == 5.0 and 0.0 <= first["accuracy"] <= 1.0
    assert first["decoy"] == "swatch" and first["gradient"] == "absolute"
    assert len(first["history"]) == 1
    # a second run finds the finished checkpoint: no epoch is trained again, same result
    assert cli.main(args) == 0
    with open(os.path.join(out, "metrics.json")) as f:
        again = json.load(f)
    assert again["history"] == [] and again["accuracy"] == first["accuracy"]
    with pytest.raises(SystemExit):
        cli.main(["train", "harmonize", "--epochs", "0", "--out", out])


def test_explain_dataset_folder_sharded_bf16(tmp_path):
    import xjax

    data = tmp_path / "data"
    rng = np.random.default_rng(1)
    for name in ("Trouser", "Bag"):
        (data / name).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(rng.integers(0, 255, (28, 28, 3), dtype=np.uint8)).save(
                data / name / f"{i}.png")
    out = tmp_path / "maps"
    args = ["explain", "--model", "small_cnn", "--method", "saliency", "--dataset", str(data),
            "--out", str(out), "--batch-size", "8", "--precision", "bfloat16"]
    assert cli.main(args) == 0
    maps = xjax.runs.load_maps(str(out), n=10)
    assert maps.shape == (10, 28, 28) and maps.dtype == np.float32
    m = xjax.models.small_cnn(pretrained="fashion_mnist")
    x, _ = xjax.lens.dataset_arrays(str(data), m)
    ref = xjax.attributions.saliency(m.model_fn)(m.params, x, m.model_fn(m.params, x).argmax(-1))
    for a, b in zip(maps, np.asarray(ref), strict=True):       # bf16 model, f32 reference
        ra, rb = np.argsort(np.argsort(a.ravel())), np.argsort(np.argsort(b.ravel()))
        assert np.corrcoef(ra, rb)[0, 1] > 0.9
    assert cli.main(args) == 0                                 # resumed: nothing recomputed
    assert sorted(os.listdir(out)) == ["manifest-h000.json", "maps-h000-s000000.npz",
                                       "maps-h000-s000001.npz"]
    with open(out / "manifest-h000.json") as f:
        user = json.load(f)["settings"]["user"]
    assert user == {"model": "small_cnn", "method": "saliency", "hyperparameters": "defaults",
                    "seed": None, "precision": "bfloat16", "dataset": str(data), "split": None}
    with pytest.raises(SystemExit, match="precision: stored 'bfloat16', requested 'float32'"):
        cli.main(args[:-2])
