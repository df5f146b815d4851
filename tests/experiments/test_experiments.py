"""The experiment scripts run in --quick mode, write markdown + JSON, and resume."""

import json
import os
import sys

import pytest

from tests.conftest import FASHION_MNIST_PRESENT

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "experiments"))


@pytest.mark.skipif(not FASHION_MNIST_PRESENT, reason="Fashion-MNIST not installed "
                    "(apt-get install dataset-fashion-mnist)")
def test_sobol_fidelity_quick_and_resume(tmp_path):
    import sobol_fidelity

    sobol_fidelity.main(["--quick", "--out", str(tmp_path)])
    with open(tmp_path / "sobol_fidelity_fmnist_quick.json") as f:
        rows = json.load(f)["rows"]
    budgets = {f"{m}/{b}" for m in ("sobol", "hsic", "rise") for b in (264, 528)}
    assert budgets <= set(rows) and "occlusion/k14s7" in rows
    assert {"ablation/sampler=halton", "ablation/estimator=homma"} <= set(rows)
    for key, row in rows.items():
        if key == "forward":
            continue
        assert 0.0 <= row["deletion"] <= 1.0 and 0.0 <= row["insertion"] <= 1.0
        assert row["seconds_per_image"] > 0 and row["compile_seconds"] > 0
    # matched budgets: Sobol's design has exactly nb_design (d + 2) rows
    assert rows["sobol/528"]["settings"] == str({"grid_size": 8, "nb_design": 8})
    assert rows["occlusion/k14s7"]["forward_passes"] == 1 + 3 * 3
    assert (tmp_path / "sobol_fidelity_fmnist_quick.png").stat().st_size > 0
    # an interrupted run: drop one finished row, rerun, only that one is recomputed
    del rows["rise/264"]
    with open(tmp_path / "sobol_fidelity_fmnist_quick.json", "w") as f:
        json.dump({"meta": {}, "rows": rows}, f)
    before = {k: v["seconds_per_image"] for k, v in rows.items()}
    again = sobol_fidelity.main(["--quick", "--out", str(tmp_path)]).rows
    assert set(again) == set(before) | {"rise/264"}
    assert all(again[k]["seconds_per_image"] == v for k, v in before.items())


def test_sobol_fidelity_photos_quick(tmp_path):
    import sobol_fidelity

    rows = sobol_fidelity.main(["--quick", "--target", "photos", "--out", str(tmp_path)]).rows
    assert set(rows) == {"forward", "sobol/264", "rise/264"}
    assert all(0.0 <= r["insertion"] <= 1.0 for k, r in rows.items() if k != "forward")


@pytest.mark.skipif(not FASHION_MNIST_PRESENT, reason="Fashion-MNIST not installed "
                    "(apt-get install dataset-fashion-mnist)")
def test_mege_reco_quick(tmp_path):
    import mege_reco

    rows = mege_reco.main(["--quick", "--out", str(tmp_path)]).rows
    assert set(rows) == set(mege_reco.METHODS) | {
        f"random_labels/{m}" for m in mege_reco.RANDOM_LABEL_METHODS}
    for row in rows.values():
        assert 0.0 < row["mege"] <= 1.0 and 0.0 <= row["reco"] <= 1.0
        assert row["pairs_same"] + row["pairs_diff"] > 0


@pytest.mark.skipif(not FASHION_MNIST_PRESENT, reason="Fashion-MNIST not installed "
                    "(apt-get install dataset-fashion-mnist)")
def test_utility_quick_and_resume(tmp_path):
    import utility

    rows = utility.main(["--quick", "--out", str(tmp_path)]).rows
    conditions = ["baseline", "control", "saliency", "grad_cam", "occlusion"]
    assert set(rows) == {f"{m}/{c}" for m in ("similarity", "cnn") for c in conditions}
    for key, row in rows.items():
        assert row["low"] <= row["utility"] <= row["high"]
        if key.endswith("/baseline"):
            assert row["utility"] == 1.0
    # the similarity learner shown saliency maps predicts the shortcut model better
    assert rows["similarity/saliency"]["utility"] > 1.0
    # resuming: a finished meta-predictor is not run again
    del rows["cnn/baseline"]
    with open(tmp_path / "utility_quick.json", "w") as f:
        json.dump({"meta": {}, "rows": rows}, f)
    before = dict(rows)
    again = utility.main(["--quick", "--out", str(tmp_path)]).rows
    assert all(again[k] == v for k, v in before.items() if k.startswith("similarity/"))


@pytest.mark.skipif(not FASHION_MNIST_PRESENT, reason="Fashion-MNIST not installed "
                    "(apt-get install dataset-fashion-mnist)")
def test_lipschitz_quick(tmp_path):
    import lipschitz_fashion_mnist as lip

    rows = lip.main(["--quick", "--out", str(tmp_path)]).rows
    assert set(rows) == {f"{a}/{u}" for a in ("small_cnn", "lipschitz_cnn")
                         for u in ("robustness", "saliency", "mege:saliency")} | {
        "small_cnn_matched/mege:saliency"}
    # the matched standard models: trained for the epochs whose accuracy is closest to the
    # Lipschitz folds' (quick mode trains up to 2 epochs)
    matched = rows["small_cnn_matched/mege:saliency"]
    assert matched["epochs"] in (1, 2) and 0.0 < matched["mege"] <= 1.0
    r = rows["lipschitz_cnn/robustness"]
    assert r["lipschitz_bound"] == 1.0
    # certified accuracy can only fall as the radius grows
    certified = [r["clean_accuracy"]] + [r[f"certified@{e}"] for e in lip.RADII]
    assert certified == sorted(certified, reverse=True)
    assert rows["small_cnn/robustness"]["lipschitz_bound"] > 1.0
    assert (tmp_path / "lipschitz_quick.md").read_text().count("\n| ") >= 6


RESULTS_HOLDER = """
import sys, time
sys.path.insert(0, sys.argv[2])
from _results import Results
r = Results(sys.argv[1], {"script": "x.py", "quick": True})
r.add("a", {"v": 1.0})
print("ready", flush=True)
time.sleep(60)
"""


def test_results_file_refuses_other_settings_and_a_concurrent_run(tmp_path, capsys):
    """A results file records its settings: a run with other settings refuses with the
    difference (``--overwrite`` starts afresh), and a second live run is kept out by the lock."""
    import subprocess

    from _results import Results

    from xjax._internal.rundir import LockedError, SettingsMismatch

    path = str(tmp_path / "r.json")
    here = os.path.join(os.path.dirname(__file__), "..", "..", "experiments")
    proc = subprocess.Popen([sys.executable, "-c", RESULTS_HOLDER, path, here],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        with pytest.raises(LockedError, match=f"process {proc.pid}"):
            Results(path, {"script": "x.py", "quick": True})
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    with pytest.raises(SettingsMismatch, match="quick: stored True, requested False"):
        Results(path, {"script": "x.py", "quick": False})
    r = Results(path, {"script": "x.py", "quick": True})            # same settings: resumes
    assert r.done("a")
    fresh = Results(path, {"script": "x.py", "quick": False}, overwrite=True)
    assert fresh.rows == {}
    fresh.add("b", {"v": 2.0})
    with open(path) as f:
        data = json.load(f)
    assert list(data["rows"]) == ["b"] and data["meta"]["settings"]["quick"] is False
    # a file from before settings were recorded is adopted, with a message
    legacy = str(tmp_path / "old.json")
    with open(legacy, "w") as f:
        json.dump({"meta": {}, "rows": {"a": {}}}, f)
    assert Results(legacy, {"script": "x.py"}).done("a")
    assert "no settings recorded" in capsys.readouterr().err


def test_frsign_quick_and_resume(tmp_path):
    pytest.importorskip("pandas")
    pytest.importorskip("tables")
    import frsign

    rows = frsign.main(["--quick", "--out", str(tmp_path)]).rows
    assert set(rows) == {"model", *frsign.METHODS, *frsign.CONCEPT_ROWS}
    model = rows["model"]
    assert model["states"] == 3 and model["test_crops"] > 0
    assert 0.0 <= model["test_accuracy"] <= 1.0
    for name in (*frsign.METHODS, *frsign.CONCEPT_ROWS):
        row = rows[name]
        assert 0.0 <= row["predictability"] <= 1.0 and 0.0 < row["majority"] <= 1.0
        assert row["seconds_per_image"] >= 0.0
        if row["kind"] == "attribution":
            assert 0.0 <= row["mass_in_box"] <= 1.0 and 0.0 < row["box_area_share"] < 1.0
    for f in ("frsign_synthetic_quick.md", "frsign_synthetic_quick.png"):
        assert (tmp_path / f).stat().st_size > 0
    again = frsign.main(["--quick", "--out", str(tmp_path)]).rows
    assert again == rows                                   # a finished file is not recomputed


def test_frsign_measures():
    import frsign
    import numpy as np

    # Two well separated clusters: every held-out vector is nearest its own centroid.
    v = np.array([[1.0, 0.0], [0.9, 0.1], [0.95, 0.05], [0.0, 1.0], [0.1, 0.9], [0.05, 0.95]])
    labels = np.array([0, 0, 0, 1, 1, 1])
    out = frsign.predictability(v, labels)
    assert out["predictability"] == 1.0 and out["majority"] == 0.5
    assert out["same_state_cosine"] > 0.98 and out["other_state_cosine"] < 0.25
    # Identical explanations carry nothing: the gap is zero.
    flat = frsign.predictability(np.ones((6, 4)), labels)
    assert abs(flat["state_gap"]) < 1e-12
    # Leave-one-out: a vector nearer the other class's centroid once it is held out is an error.
    v = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.2, 1.0]])
    assert frsign.predictability(v, np.array([0, 0, 1, 1, 0]))["predictability"] == 0.8
    # box mass: a uniform map gets the box's area share, a map inside the box gets 1.
    share, area = frsign.box_mass(np.ones((2, 12, 12)), 0.25)        # inner square 8 of 12
    assert abs(area - 64 / 144) < 1e-12 and abs(share - area) < 1e-6
    inside = np.zeros((1, 12, 12))
    inside[0, 4:8, 4:8] = 1.0
    assert frsign.box_mass(inside, 0.25)[0] == 1.0
    cos = frsign.mean_cosines(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 1]), 3)
    assert cos[0, 1] == 0.0 and cos[0, 0] == 1.0 and np.isnan(cos[2]).all()
