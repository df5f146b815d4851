"""More experiment scripts in --quick mode (split from test_experiments.py so that the two
halves run on both pytest-xdist workers)."""

import json
import os
import sys

import pytest

from tests.conftest import FASHION_MNIST_PRESENT

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "experiments"))

def test_eva_table_photos_quick(tmp_path):
    import eva_table

    rows = eva_table.main(["--quick", "--target", "photos", "--out", str(tmp_path)]).rows
    assert set(rows) == {"eva_empirical", "saliency"}
    for row in rows.values():
        assert 0.0 <= row["deletion"] <= 1.0 and 0.0 <= row["insertion"] <= 1.0
        assert row["compile_seconds"] > 0 and row["seconds_per_image"] > 0


@pytest.mark.skipif(not FASHION_MNIST_PRESENT, reason="Fashion-MNIST not installed "
                    "(apt-get install dataset-fashion-mnist)")
def test_eva_table_quick(tmp_path):
    import eva_table

    rows = eva_table.main(["--quick", "--out", str(tmp_path)]).rows
    for net in ("mlp", "small_cnn", "lipschitz_cnn"):
        assert {f"{net}/eva", f"{net}/greedy_as", f"{net}/saliency", f"{net}/bounds"} <= set(rows)
        b = rows[f"{net}/bounds"]
        assert b["epsilon"] in eva_table.EPSILONS and 0.0 <= b["certified"] <= 1.0
        # the chosen radius is the largest certifying half of the balls (or the smallest tried)
        ok = [float(e) for e, s in b["sweep"].items() if s["certified"] >= 0.5]
        assert b["epsilon"] == (max(ok) if ok else min(eva_table.EPSILONS))
        assert set(b["sweep"]) == {str(e) for e in eva_table.EPSILONS}
    for key, row in rows.items():
        if key.endswith("/bounds"):
            continue
        assert 0.0 <= row["deletion"] <= 1.0 and 0.0 <= row["insertion"] <= 1.0
        assert -1.0 <= row["mu_fidelity"] <= 1.0 and 0.0 <= row["robustness_sr"] <= 0.5


@pytest.mark.skipif(not FASHION_MNIST_PRESENT, reason="Fashion-MNIST not installed "
                    "(apt-get install dataset-fashion-mnist)")
def test_harmonization_quick(tmp_path):
    import harmonization

    rows = harmonization.main(["--quick", "--out", str(tmp_path)]).rows
    assert set(rows) == {"lambda=0/seed=0", "lambda=10/seed=0", "abs lambda=10/seed=0",
                         "swatch/lambda=0/seed=0", "swatch/abs lambda=10/seed=0"}
    plain, harm = rows["lambda=0/seed=0"], rows["abs lambda=10/seed=0"]
    # even one short epoch moves |saliency| onto the garment maps (the absolute variant; the
    # full run shows the reference loss does it for the signed positive part only)
    assert harm["alignment_spearman"] > plain["alignment_spearman"] + 0.3
    for row in rows.values():
        assert 0.0 <= row["accuracy"] <= 1.0 and 0.0 <= row["decoy_agreement"] <= 1.0
    swatch = rows["swatch/abs lambda=10/seed=0"]
    assert swatch["alignment_spearman"] > rows["swatch/lambda=0/seed=0"]["alignment_spearman"] + 0.3
    assert "± " in (tmp_path / "harmonization_quick.md").read_text()
    assert (tmp_path / "harmonization_quick_swatch.png").exists()


@pytest.mark.skipif(not FASHION_MNIST_PRESENT, reason="Fashion-MNIST not installed "
                    "(apt-get install dataset-fashion-mnist)")
def test_craft_quick_and_resume(tmp_path):
    import craft

    rows = craft.main(["--quick", "--out", str(tmp_path)]).rows
    assert set(rows) == {"fmnist/T-shirt/top", "fmnist/Trouser", "holistic/T-shirt/top",
                         "holistic/Trouser", "lite0/photos"}
    for name in ("T-shirt/top", "Trouser"):
        row = rows[f"fmnist/{name}"]
        assert abs(sum(row["prevalence"]) - 1.0) < 1e-2
        assert row["c_mufidelity_gi"] > 0.0
        hol = rows[f"holistic/{name}"]
        assert set(hol) == set(craft.METHODS)
        # PCA reconstructs best at equal rank; k-means codes are one-hot
        assert hol["pca"]["relative_l2"] <= min(h["relative_l2"] for h in hol.values()) + 1e-6
        assert abs(hol["kmeans"]["sparsity"] - 0.75) < 1e-6
    lite = rows["lite0/photos"]
    assert lite["gi_equals_occlusion_max_abs"] < 1e-3      # exact at the last layer
    for f in ("craft_quick.md", "craft_quick_fmnist_concepts.png", "craft_quick_lite0_cams.png"):
        assert (tmp_path / f).exists()
    # resume: a finished class is not recomputed
    with open(tmp_path / "craft_quick.json") as f:
        saved = json.load(f)["rows"]
    del saved["holistic/Trouser"]
    with open(tmp_path / "craft_quick.json", "w") as f:
        json.dump({"meta": {}, "rows": saved}, f)
    again = craft.main(["--quick", "--out", str(tmp_path)]).rows
    assert again["fmnist/Trouser"] == saved["fmnist/Trouser"]
    assert again["lite0/photos"] == saved["lite0/photos"]
    assert set(again) == set(rows)


def test_featviz_maco_quick_and_resume(tmp_path):
    import featviz_maco

    rows = featviz_maco.main(["--quick", "--out", str(tmp_path)]).rows
    assert set(rows) == {f"{m}/{c}" for m in ("maco", "fourier") for c in ("goldfish", "ostrich")}
    for row in rows.values():
        for k in ("lite0_prob", "lite1_prob", "lite2_prob", "lite0_crop_prob"):
            assert 0.0 <= row[k] <= 1.0
    for f in ("featviz_quick.md", "featviz_quick.png", "featviz_quick_maco.npz"):
        assert (tmp_path / f).exists()
    # resume: saved images are scored again without a new optimization
    stamp = os.path.getmtime(tmp_path / "featviz_quick_maco.npz")
    os.remove(tmp_path / "featviz_quick.json")
    again = featviz_maco.main(["--quick", "--out", str(tmp_path)]).rows
    assert os.path.getmtime(tmp_path / "featviz_quick_maco.npz") == stamp
    assert again == rows
