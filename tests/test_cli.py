import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from xjax import cli


def test_help_does_not_import_jax():
    # `xjax --help` answers without importing JAX (the registry names methods lazily)
    code = ("import sys\nfrom xjax import cli\ntry:\n    cli.main(['--help'])\n"
            "except SystemExit:\n    pass\nprint('jax' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "explain" in out.stdout and out.stdout.strip().endswith("False")


def test_method_help_lists_hyperparameters(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["explain", "--method", "sobol", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for line in ("sobol hyperparameters", "nb_design: int = 32", "grid_size: int = 8",
                 "estimator: str = 'jansen'", "batch_size: int | None = --batch-size"):
        assert line in text
    assert "score_fn" not in text                         # functions are not set by value


def _photos(folder, names, size=(40, 36)):
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(folder / name)
    return folder


def _prepared(path, side=28):
    import xjax

    x = xjax.data.resize_center_crop(xjax.data.read_image(str(path)), side)
    return x.mean(-1, keepdims=True)[None]


def test_params_target_and_saved_maps_match_the_api(tmp_path, capsys):
    import xjax

    images = _photos(tmp_path / "im", ["a.png", "b.png"])
    maps_file = tmp_path / "maps.npz"
    assert cli.main(["explain", "--model", "small_cnn", "--method", "saliency,sobol",
                     "--param", "nb_design=8", "--param", "sobol.grid_size=4",
                     "--target", "trouser", "--images", str(images / "*.png"),
                     "--out", str(tmp_path / "out"), "--save-maps", str(maps_file),
                     "--images-per-step", "1"]) == 0
    saved = xjax.runs.load_maps_file(str(maps_file))
    assert saved.names == ("a", "b") and set(saved.maps) == {"saliency", "sobol"}
    assert saved.settings["target"] == 1                  # "trouser": case-insensitive name
    assert saved.settings["hyperparameters"]["sobol"] == {"batch_size": 32, "grid_size": 4,
                                                          "nb_design": 8}
    m = xjax.models.small_cnn(pretrained="fashion_mnist")
    x = np.concatenate([_prepared(images / "a.png"), _prepared(images / "b.png")])
    y = np.array([1, 1], np.int32)
    ref = {"saliency": xjax.attributions.saliency(m.model_fn, batch_size=32)(m.params, x, y),
           "sobol": xjax.attributions.sobol(m.model_fn, nb_design=8, grid_size=4,
                                            batch_size=32)(m.params, x, y)}
    for name, r in ref.items():
        np.testing.assert_allclose(saved.maps[name], r, rtol=1e-5, atol=1e-6)
    # and not what the defaults give: the settings reached the factory
    default = xjax.attributions.sobol(m.model_fn, batch_size=32)(m.params, x, y)
    assert np.abs(np.asarray(default) - saved.maps["sobol"]).max() > 1e-3


def test_unreadable_images_are_skipped_with_a_warning(tmp_path, capsys):
    images = _photos(tmp_path / "im", ["good.png"])
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    _photos(tmp_path / "other", ["good.png"])              # same name in another folder
    out = tmp_path / "out"
    assert cli.main(["explain", "--model", "small_cnn", "--images", str(images),
                     str(tmp_path / "other" / "good.png"), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert err.count("warning: skipping") == 1 and "broken.jpg" in err
    assert "skipped 1 unreadable image(s) of 3" in err
    assert sorted(os.listdir(out)) == ["good_2_saliency.png", "good_saliency.png"]
    (images / "good.png").unlink()
    with pytest.raises(SystemExit, match="none of the images could be read"):
        cli.main(["explain", "--model", "small_cnn", "--images", str(images), "--out", str(out)])


def test_your_own_model_by_import_path(tmp_path, monkeypatch):
    (tmp_path / "mymodels.py").write_text(
        "import xjax\n"
        "def tiny():\n    return xjax.models.small_cnn(pretrained='fashion_mnist')\n"
        "def wrong():\n    return 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    images = _photos(tmp_path / "im", ["p.png"])
    assert cli.main(["explain", "--model", "mymodels:tiny", "--images", str(images),
                     "--out", str(tmp_path / "out")]) == 0
    assert os.listdir(tmp_path / "out") == ["p_saliency.png"]
    with pytest.raises(SystemExit, match=r"--model: mymodels:wrong must return an xjax"):
        cli.main(["explain", "--model", "mymodels:wrong", "--images", str(images)])
    with pytest.raises(SystemExit, match=r"--model: cannot load 'nomodule:f'"):
        cli.main(["explain", "--model", "nomodule:f", "--images", str(images)])


@pytest.mark.parametrize("argv,message", [
    (["--model", "alexnet"], "--model: unknown zoo model 'alexnet'"),
    (["--images", "{tmp}/missing"], "--images: '{tmp}/missing' does not exist"),
    (["--images", "{tmp}/empty"], "--images: no image files"),
    (["--images", "{tmp}/*.jpg"], "--images: no file matches"),
    (["--dataset", "{tmp}/missing"], "--dataset: '{tmp}/missing' is neither 'fashion_mnist'"),
    (["--model", "efficientnet_lite0", "--dataset", "fashion_mnist"],
     "--dataset: fashion_mnist images are 28x28x1 but --model efficientnet_lite0 takes 224x224x3"),
    (["--method", "magic"], "--method: unknown magic"),
    (["--target", "Trousr"], "did you mean 'Trouser'"),
    (["--target", "10"], "--target: class index 10 is outside [0, 10)"),
    (["--method", "sobol", "--param", "grid_size=-1"], "--param: sobol: grid_size must be >= 1"),
    (["--method", "sobol", "--param", "steps=3"], "no chosen method has the hyperparameter 'steps'"),
    (["--method", "sobol", "--param", "nb_design"], "expected name=value"),
    (["--method", "sobol", "--param", "rise.grid_size=2"], "'rise' in 'rise.grid_size=2' is not"),
])
def test_bad_arguments_end_in_one_line(tmp_path, argv, message):
    (tmp_path / "empty").mkdir()
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if "--model" not in argv:
        argv = ["--model", "small_cnn", *argv]
    with pytest.raises(SystemExit) as exc:
        cli.main(["explain", *argv, "--out", str(tmp_path / "out")])
    text = str(exc.value.code)
    assert text.startswith("xjax explain: ") and "\n" not in text
    assert message.replace("{tmp}", str(tmp_path)) in text


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
    # small settings keep this fast; every registered method goes through the command line
    cheap = ["nb_samples=4", "nb_design=8", "grid_size=4", "steps=4", "greedy_as.search_steps=2",
             "greedy_as.pgd_steps=2", "greedy_as.fraction_per_step=0.25"]
    assert cli.main(["explain", "--model", "small_cnn", "--method", ",".join(METHODS),
                     *[a for p in cheap for a in ("--param", p)],
                     "--images", str(images), "--out", str(out), "--batch-size", "64"]) == 0
    files = set(os.listdir(out))
    assert {f"x_{m}.png" for m in METHODS} <= files and "grid.png" in files


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


_COUNT_COMPILES = """
import sys
from jax._src import compiler
from xjax import cli

real = compiler.backend_compile_and_load


def counted(backend, module, *args, **kwargs):     # every XLA compilation, cached or not
    print("COMPILED", module.operation.attributes["sym_name"], flush=True)
    return real(backend, module, *args, **kwargs)


compiler.backend_compile_and_load = counted
sys.exit(cli.main(sys.argv[1:]))
"""


def test_a_second_run_compiles_nothing(tmp_path):
    """The command line turns JAX's persistent compilation cache on (issue 25): the second run of
    the same command compiles nothing, a multi-call method (Sobol) included. A step shown block
    by block carries host callbacks, which JAX never caches: with --block-progress on its
    program is compiled on every run, and only it."""
    images = _photos(tmp_path / "im", ["a.png"])
    cache = tmp_path / "cache"
    # small_cnn's programs compile in well under the 0.2 s worth caching by default
    env = {**os.environ, "XJAX_COMPILE_CACHE": str(cache), "XJAX_COMPILE_CACHE_MIN_SECONDS": "0"}
    cmd = [sys.executable, "-c", _COUNT_COMPILES, "explain", "--model", "small_cnn", "--method",
           "saliency,sobol", "--param", "nb_design=8", "--param", "grid_size=2", "--images",
           str(images), "--out", str(tmp_path / "out"), "--overwrite"]

    def compiled(*extra):
        out = subprocess.run(cmd + list(extra), env=env, check=True, capture_output=True,
                             text=True).stdout
        return [line.split()[1].strip('"') for line in out.splitlines()
                if line.startswith("COMPILED")]

    first = compiled()
    assert "jit_run" in first and sorted(os.listdir(cache))
    assert compiled() == []
    assert compiled("--block-progress", "on") == ["jit_run"]
    assert compiled("--block-progress", "on") == ["jit_run"]


def test_no_compile_cache_flag(tmp_path, monkeypatch):
    import jax

    images = _photos(tmp_path / "im", ["a.png"])
    monkeypatch.setenv("XJAX_COMPILE_CACHE", str(tmp_path / "cache"))
    before = jax.config.jax_compilation_cache_dir
    assert cli.main(["--no-compile-cache", "explain", "--model", "small_cnn", "--images",
                     str(images), "--out", str(tmp_path / "out")]) == 0
    assert not (tmp_path / "cache").exists() and jax.config.jax_compilation_cache_dir == before


def test_block_progress_is_shown_only_for_a_long_step():
    """--block-progress auto: blocks x batch size / measured images per second against 30 s;
    with no measurement, the number of model calls against 64; on and off as said."""
    def counts(**blocks):
        out = {}
        for m, b in blocks.items():
            out[m] = cli._BlockCount()
            out[m].planned(b)
        return out

    params = {"sobol": {"batch_size": 8}, "saliency": {"batch_size": 4}}
    show = cli._show_blocks
    assert show("auto", counts(sobol=264), params, {"sobol": 91.0}) is False   # 23.2 s
    assert show("auto", counts(sobol=400), params, {"sobol": 91.0}) is True    # 35.2 s
    assert show("auto", counts(sobol=200, saliency=1), params,
                {"sobol": 91.0, "saliency": 0.1}) is True                   # 17.6 s + 40 s
    assert show("auto", counts(sobol=64), params, {}) is False              # unmeasured: calls
    assert show("auto", counts(sobol=65), params, {}) is True
    assert show("auto", counts(sobol=65), params, {"sobol": 1e6}) is False  # measured: fast
    assert show("auto", counts(sobol=264, saliency=1), params,              # 23.2 s, and one
                {"sobol": 91.0}) is False                                    # unmeasured call
    assert show("auto", counts(sobol=1, saliency=65), params, {"sobol": 91.0}) is True
    assert show("on", counts(sobol=1), params, {}) is True
    assert show("on", counts(saliency=0), params, {}) is False              # nothing to show
    assert show("off", counts(sobol=10 ** 6), params, {}) is False
