"""Lens: build (resumable), dataset folders, and the site in headless Chromium (Playwright with
the system browser, against `xjax lens serve` on 127.0.0.1 and from the file system)."""

import json
import os
import shutil

import jax
import numpy as np
import pytest

import xjax
from tests.conftest import FASHION_MNIST_PRESENT
from xjax.lens._site import PALETTE

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = os.path.join(os.path.dirname(__file__), "..", "..", "out", "test-artifacts")
needs_fmnist = pytest.mark.skipif(not FASHION_MNIST_PRESENT, reason="Fashion-MNIST not installed "
                                  "(apt-get install dataset-fashion-mnist)")


@pytest.fixture(scope="module")
def atlas(tmp_path_factory, fmnist_cnn):
    if not FASHION_MNIST_PRESENT:
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    out = str(tmp_path_factory.mktemp("lens"))
    x, y = xjax.lens.dataset_arrays("fashion_mnist", fmnist_cnn)
    records = xjax.lens.build_lens(fmnist_cnn, x[:600], y[:600], out, classes=[0, 1, 7],
                                   nb_concepts=3, images_per_class=24, patch_size=12,
                                   viz_steps=4, viz_crops=2, examples=1, progress=False)
    return out, records


@pytest.fixture(scope="module")
def served(atlas):
    server = xjax.lens.serve(atlas[0], port=0, background=True)
    host, port = server.server_address[:2]
    yield f"http://{host}:{port}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("no system Chromium (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def _page(browser, width=1200):
    page = browser.new_page(viewport={"width": width, "height": 900})
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return page, errors


def _broken_images(page):
    """Every image of the page (lazy ones forced to load, folded ones included) that fails."""
    page.wait_for_load_state("load")
    page.evaluate("""() => Promise.all(Array.from(document.images).map(img => {
        img.loading = 'eager';
        return img.complete ? null : new Promise(ok => { img.onload = img.onerror = ok; });
    }))""")
    return page.eval_on_selector_all(
        "img", "els => els.filter(e => !(e.complete && e.naturalWidth > 0)).map(e => e.src)")


@needs_fmnist
def test_records_and_files(atlas):
    out, records = atlas
    assert [r["name"] for r in records] == ["T-shirt/top", "Trouser", "Sneaker"]
    for r in records:
        assert len(r["concepts"]) == 3
        shares = [c["importance"] for c in r["concepts"]]
        assert shares == sorted(shares, reverse=True)
        assert abs(sum(c["prevalence"] for c in r["concepts"]) - 1.0) < 1e-5
        assert [c["rank"] for c in r["concepts"]] == [1, 2, 3]
        assert os.path.exists(os.path.join(out, "classes", r["slug"], r["thumb"]))
        for c in r["concepts"]:
            for f in (c["crops"], c["viz"], c["maps"]):
                assert os.path.exists(os.path.join(out, "classes", r["slug"], f))
            assert set(c["flags"]) <= {"non-positive importance", "near-constant crops"}
            assert ("non-positive importance" in c["flags"]) == (not c["importance"] > 0)


@needs_fmnist
def test_index_search_and_screenshot(browser, served):
    page, errors = _page(browser)
    page.goto(served + "/index.html")
    assert page.locator("ul.classes li").count() == 3
    page.fill("#search", "trou")
    assert page.locator("ul.classes li:visible .n").all_inner_texts() == ["Trouser"]
    assert page.inner_text("#count") == "1 of 3 classes"
    assert _broken_images(page) == []                               # the thumbnails
    os.makedirs(ARTIFACTS, exist_ok=True)
    page.fill("#search", "")
    page.screenshot(path=os.path.join(ARTIFACTS, "lens_index.png"), full_page=True)
    assert errors == []
    page.close()


@needs_fmnist
def test_class_pages_show_concepts_with_loaded_images_and_navigate(browser, served):
    page, errors = _page(browser)
    page.goto(served + "/index.html")
    page.click("text=Trouser")
    assert page.inner_text("#class-name") == "Trouser"
    assert page.locator("section.concept").count() == 3           # folded ones included
    # each card: its visualization, its crops and its maps on the example images
    assert page.locator("section.concept img").count() == 9
    assert page.locator("section.concept h3").first.inner_text() == "Concept 1 of Trouser"
    assert _broken_images(page) == []
    page.screenshot(path=os.path.join(ARTIFACTS, "lens_class.png"), full_page=True)
    page.click("#next")
    assert page.inner_text("#class-name") == "Sneaker"
    page.click("#prev")
    page.click("#prev")
    assert page.inner_text("#class-name") == "T-shirt/top"
    page.goto(served + "/map.html")
    assert page.locator("svg circle").count() == 9
    assert page.locator("ul.legend li").all_inner_texts() == ["T-shirt/top", "Trouser", "Sneaker"]
    assert "principal component 1" in page.text_content("svg")
    colours = {page.locator("svg circle").nth(i).get_attribute("fill") for i in range(9)}
    assert len(colours) == 3
    page.locator("svg circle").first.click()
    assert "/classes/" in page.url and "#concept-" in page.url
    assert errors == []
    page.close()


@needs_fmnist
def test_keyboard_navigation(browser, served):
    page, errors = _page(browser)
    page.goto(served + "/index.html")
    page.keyboard.press("/")                                      # focuses the search box
    page.keyboard.type("sneak")
    for key, name in (("Enter", "Sneaker"),                       # opens the first match
                      ("ArrowLeft", "Trouser"), ("ArrowRight", "Sneaker")):
        with page.expect_navigation():                            # no race with the old page
            page.keyboard.press(key)
        assert page.inner_text("#class-name") == name
    page.keyboard.press("Tab")                                    # links take the focus
    assert page.evaluate("document.activeElement.tagName") == "A"
    assert errors == []
    page.close()


@needs_fmnist
def test_works_from_the_file_system_and_at_phone_width(browser, atlas):
    page, errors = _page(browser, width=390)
    page.goto("file://" + os.path.join(atlas[0], "index.html"))
    page.click("text=Sneaker")
    assert page.inner_text("#class-name") == "Sneaker"
    assert _broken_images(page) == []
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert errors == []
    page.close()


@needs_fmnist
def test_interrupted_build_resumes_without_recomputing(atlas, fmnist_cnn):
    out, records = atlas
    done = os.path.join(out, "classes", records[0]["slug"], "class.json")
    redo = os.path.join(out, "classes", records[1]["slug"], "class.json")
    stamp = os.path.getmtime(done)
    with open(redo) as f:
        before = json.load(f)
    os.remove(redo)                                       # as if killed during this class
    x, y = xjax.lens.dataset_arrays("fashion_mnist", fmnist_cnn)
    again = xjax.lens.build_lens(fmnist_cnn, x[:600], y[:600], out, classes=[0, 1, 7],
                                 nb_concepts=3, images_per_class=24, patch_size=12,
                                 viz_steps=4, viz_crops=2, examples=1, progress=False)
    assert os.path.getmtime(done) == stamp
    assert os.path.exists(redo)
    assert [r["name"] for r in again] == [r["name"] for r in records]
    np.testing.assert_allclose([c["importance"] for c in again[1]["concepts"]],
                               [c["importance"] for c in before["concepts"]], rtol=1e-4)


@needs_fmnist
def test_other_settings_refused_and_a_damaged_class_rebuilt(atlas, fmnist_cnn):
    """Before: a build with other settings resumed into the atlas (its classes mixed), and a
    class counted as done whenever its class.json existed."""
    from xjax._internal.rundir import SettingsMismatch

    out, records = atlas
    x, y = xjax.lens.dataset_arrays("fashion_mnist", fmnist_cnn)
    kw = {"classes": [0, 1, 7], "nb_concepts": 3, "images_per_class": 24, "patch_size": 12,
          "viz_steps": 4, "viz_crops": 2, "examples": 1, "progress": False}
    with pytest.raises(SettingsMismatch, match="nb_concepts: stored 3, requested 2"):
        xjax.lens.build_lens(fmnist_cnn, x[:600], y[:600], out, **{**kw, "nb_concepts": 2})
    with pytest.raises(SettingsMismatch, match="images_sha256"):
        xjax.lens.build_lens(fmnist_cnn, x[:600] * 0.5, y[:600], out, **kw)
    folders = [os.path.join(out, "classes", r["slug"]) for r in records]
    kept = os.path.getmtime(os.path.join(folders[0], "class.json"))
    damaged = os.path.join(folders[2], records[2]["concepts"][0]["crops"])
    with open(damaged, "r+b") as f:                       # a truncated crop strip
        f.truncate(10)
    xjax.lens.build_lens(fmnist_cnn, x[:600], y[:600], out, **kw)
    assert os.path.getmtime(os.path.join(folders[0], "class.json")) == kept
    assert os.path.getsize(damaged) > 10                  # rebuilt
    with open(os.path.join(out, "lens-manifest.json")) as f:
        files = json.load(f)["files"]
    assert sorted(files) == sorted(f"classes/{r['slug']}/class.json" for r in records)


def test_dataset_folders_are_matched_to_class_names(tmp_path, fmnist_cnn):
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in ("Trouser", "7"):
        os.makedirs(tmp_path / name)
        for i in range(2):
            Image.fromarray((rng.random((40, 40, 3)) * 255).astype(np.uint8)).save(
                tmp_path / name / f"{i}.png")
    x, y = xjax.lens.dataset_arrays(str(tmp_path), fmnist_cnn)
    assert x.shape == (4, 28, 28, 1) and sorted(y.tolist()) == [1, 1, 7, 7]
    os.makedirs(tmp_path / "Llama")
    with pytest.raises(ValueError, match="Llama"):
        xjax.lens.dataset_arrays(str(tmp_path), fmnist_cnn)
    with pytest.raises(FileNotFoundError, match="class folders"):
        xjax.lens.dataset_arrays(str(tmp_path / "missing"), fmnist_cnn)


def test_cli_errors(tmp_path, capsys):
    from xjax.cli import main

    with pytest.raises(SystemExit):
        main(["lens", "serve", str(tmp_path)])
    assert "no index.html" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["lens", "build", "--model", "nope", "--out", str(tmp_path)])
    assert "unknown zoo model" in capsys.readouterr().err
    import argparse

    from xjax.cli import _lens_devices

    assert _lens_devices(2, argparse.ArgumentParser()) == jax.local_devices()[:2]
    with pytest.raises(SystemExit):
        _lens_devices(99, argparse.ArgumentParser(prog="xjax lens build"))
    assert "--devices: expected a count in [1, 8]" in capsys.readouterr().err


def test_no_class_built_is_an_error_naming_the_cause(tmp_path, fmnist_cnn, capsys):
    """Before: ``--images-per-class 3`` said "only 3 images are predicted as it (need 4)" when
    more were, then wrote an empty atlas and exited 0."""
    from PIL import Image

    from xjax.cli import main

    rng = np.random.default_rng(0)
    os.makedirs(tmp_path / "data" / "Trouser")
    for i in range(2):
        Image.fromarray((rng.random((28, 28)) * 255).astype(np.uint8)).save(
            tmp_path / "data" / "Trouser" / f"{i}.png")
    x, y = xjax.lens.dataset_arrays(str(tmp_path / "data"), fmnist_cnn)
    with pytest.raises(ValueError, match="images_per_class must be at least 4"):
        xjax.lens.build_lens(fmnist_cnn, x, y, str(tmp_path / "a"), images_per_class=3,
                             nb_concepts=3)
    with pytest.raises(ValueError, match="no class was built: every requested class"):
        xjax.lens.build_lens(fmnist_cnn, x, y, str(tmp_path / "a"), classes=[1, 2],
                             images_per_class=4, nb_concepts=3, viz_steps=0, progress=False)
    err = capsys.readouterr().err
    assert "skipped 2 of 2 classes" in err and "'Trouser' (" in err
    assert "fewer images predicted as them than the 4 a class needs" in err
    with pytest.raises(SystemExit, match="xjax lens build: no class was built") as info:
        main(["lens", "build", "--dataset", str(tmp_path / "data"), "--viz-steps", "0",
              "--out", str(tmp_path / "b"), "--images-per-class", "4", "--concepts", "3"])
    assert info.value.code != 0
    with pytest.raises(SystemExit, match="images_per_class must be at least 6"):
        main(["lens", "build", "--dataset", str(tmp_path / "data"), "--out", str(tmp_path / "c"),
              "--images-per-class", "5"])


def test_a_wordnet_id_tree_builds_an_atlas(tmp_path):
    """Issue 24's acceptance: sample-photo crops under WordNet-ID folders build an atlas (here
    with a small 1000-class ImageNet-named CNN whose head favours 'espresso', so that every
    image is predicted as one class; make demo builds the EfficientNet-Lite0 one)."""
    from tests.test_imagenet import write_wnid_tree

    names = xjax.models.imagenet_class_names()
    m = xjax.models.small_cnn(input_shape=(32, 32, 3), num_classes=1000)
    params = jax.tree.map(lambda a: a, m.params)
    params["fc2"]["bias"] = params["fc2"]["bias"].at[967].set(50.0)
    model = m._replace(params=params, class_names=tuple(names))
    write_wnid_tree(tmp_path / "val", ["n07920052", "n01440764"], 4)       # espresso, tench
    x, y = xjax.lens.dataset_arrays(str(tmp_path), model)
    assert x.shape == (8, 32, 32, 3) and sorted(y.tolist()) == [0] * 4 + [967] * 4
    (rec,) = xjax.lens.build_lens(model, x, y, str(tmp_path / "atlas"), nb_concepts=3,
                                  patch_size=12, viz_steps=0, examples=1, progress=False,
                                  batch_size=16)
    assert (rec["name"], rec["wnid"], rec["images"], rec["accuracy"]) == (
        "espresso", "n07920052", 8, 0.5)
    assert os.path.exists(tmp_path / "atlas" / "classes" / rec["slug"] / "index.html")


@pytest.fixture(scope="module")
def big_atlas(tmp_path_factory):
    import time

    from tests.lens.synthetic import write_synthetic_atlas

    out = str(tmp_path_factory.mktemp("lens1000"))
    t0 = time.perf_counter()
    records = write_synthetic_atlas(out)
    return out, records, time.perf_counter() - t0


def test_a_1000_class_atlas_loads_fast_and_searches_by_wordnet_id(browser, big_atlas):
    """1000 classes x 10 concepts: the index (1000 lazy thumbnails, search) and a class page
    load within seconds from the file system; search by WordNet ID and by any WordNet name."""
    import time

    out, records, write_seconds = big_atlas
    assert len(records) == 1000
    page, errors = _page(browser)
    t0 = time.perf_counter()
    page.goto("file://" + os.path.join(out, "index.html"))
    page.wait_for_load_state("load")
    index_seconds = time.perf_counter() - t0
    assert page.locator("#by-name ul.classes li").count() == 1000
    loaded = page.evaluate("Array.from(document.images).filter(i => i.complete && "
                           "i.naturalWidth > 0).length")
    assert loaded < 1000                                   # thumbnails are lazy
    page.fill("#search", "n07920052")
    assert page.locator("#by-name li:visible .n").all_inner_texts() == ["espresso"]
    page.fill("#search", "tinca")                          # a WordNet lemma of 'tench'
    assert page.locator("#by-name li:visible .n").all_inner_texts() == ["tench"]
    page.check("#grouped")                                 # grouped by shared concepts
    assert page.locator("#by-group .group:visible").count() >= 1
    assert page.locator("#by-group li:visible .n").all_inner_texts() == ["tench"]
    page.fill("#search", "")
    groups = page.locator("#by-group .group").count()
    assert 20 <= groups <= 40                              # round(sqrt(1000)) k-means groups
    t0 = time.perf_counter()
    page.goto("file://" + os.path.join(out, "classes", records[967]["slug"], "index.html"))
    page.wait_for_load_state("load")
    class_seconds = time.perf_counter() - t0
    assert page.inner_text("#class-name") == "espresso"
    assert page.locator("section.concept").count() == 10
    assert page.locator("details.folded section.concept").count() == 1
    assert page.locator("p.related").count() == 10
    assert _broken_images(page) == []
    page.goto("file://" + os.path.join(out, "map.html"))
    assert page.locator("svg circle").count() == 10000
    assert page.locator("ul.legend li").count() == len(PALETTE)   # 16 groups and "other"
    assert errors == []
    page.close()
    os.makedirs(ARTIFACTS, exist_ok=True)
    with open(os.path.join(ARTIFACTS, "lens_1000_classes.json"), "w") as f:
        json.dump({"write_seconds": write_seconds, "index_load_seconds": index_seconds,
                   "class_page_load_seconds": class_seconds}, f)
    print(f"1000-class atlas: written in {write_seconds:.1f} s; index loads in "
          f"{index_seconds:.2f} s, a class page in {class_seconds:.2f} s")
    assert index_seconds < 5 and class_seconds < 2


@needs_fmnist
def test_classes_of_one_bucket_compile_once(tmp_path, fmnist_cnn, monkeypatch):
    """Issue 24: the builder rebuilt CRAFT for every class and CRAFT jitted inside, so every
    class compiled again, and so did MACO (a new objective, parameterization and transforms per
    class). Now CRAFT is built once, classes are padded to bucket sizes and the visualization is
    one jitted program with the concept directions as inputs: a second and third class of the
    same bucket compile nothing, MACO included."""
    from xjax.lens import _build

    assert [_build.bucket(n, minimum=4, maximum=24) for n in (1, 4, 5, 9, 17, 24, 30)] == [
        4, 4, 8, 16, 24, 24, 30]
    compiles, per_class = [0], []

    def listen(name, secs, **kw):
        compiles[0] += name == "/jax/core/compile/backend_compile_duration"

    jax.monitoring.register_event_duration_secs_listener(listen)
    real = _build._build_class

    def counted(*args, **kw):
        before = compiles[0]
        out = real(*args, **kw)
        per_class.append(compiles[0] - before)
        return out

    monkeypatch.setattr(_build, "_build_class", counted)
    x, y = xjax.lens.dataset_arrays("fashion_mnist", fmnist_cnn)
    try:
        records = xjax.lens.build_lens(fmnist_cnn, x[:600], y[:600], str(tmp_path),
                                       classes=[0, 1, 7], nb_concepts=3, images_per_class=24,
                                       patch_size=12, viz_steps=3, viz_crops=2, examples=2,
                                       progress=False, batch_size=32)
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert [r["images"] for r in records] == [24, 24, 24]
    assert per_class[0] > 0 and per_class[1:] == [0, 0], per_class
    assert all(r["seconds"] > 0 for r in records)


@needs_fmnist
def test_classes_spread_over_devices_build_the_same_atlas(atlas, tmp_path, fmnist_cnn,
                                                          monkeypatch):
    """Classes spread over two devices (one worker thread each) give the same class records and
    byte-identical images as the one-device build, and both devices take classes."""
    from xjax.lens import _build

    used, real = [], _build._build_class

    def where(*args, **kw):
        used.append(next(iter(jax.numpy.zeros(()).devices())))
        return real(*args, **kw)

    monkeypatch.setattr(_build, "_build_class", where)
    out, records = atlas
    x, y = xjax.lens.dataset_arrays("fashion_mnist", fmnist_cnn)
    two = jax.local_devices()[:2]
    spread = xjax.lens.build_lens(fmnist_cnn, x[:600], y[:600], str(tmp_path), classes=[0, 1, 7],
                                  nb_concepts=3, images_per_class=24, patch_size=12, viz_steps=4,
                                  viz_crops=2, examples=1, progress=False, devices=two)
    assert len(used) == 3 and set(used) == set(two)         # both devices built classes

    def timeless(r):
        return {k: v for k, v in r.items() if k not in ("seconds", "phase_seconds")}

    assert [timeless(r) for r in spread] == [timeless(r) for r in records]
    for r in records:
        here = os.path.join(out, "classes", r["slug"])
        there = os.path.join(str(tmp_path), "classes", r["slug"])
        for f in sorted(os.listdir(here)):
            if f.endswith(".png"):
                with open(os.path.join(here, f), "rb") as a, open(os.path.join(there, f), "rb") as b:
                    assert a.read() == b.read(), (r["slug"], f)
    assert set(records[0]["phase_seconds"]) == {"fit", "importance", "visualization",
                                                "concept maps", "crops", "examples"}
    with pytest.raises(TypeError, match="devices must be None or a non-empty sequence"):
        xjax.lens.build_lens(fmnist_cnn, x[:600], y[:600], str(tmp_path / "b"), classes=[0],
                             devices=[two[0], two[0]])
