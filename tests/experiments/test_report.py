"""experiments/README.md is what the committed results give (issue 19: numbers come from files)."""

import glob
import json
import os
import sys

import pytest

HERE = os.path.join(os.path.dirname(__file__), "..", "..", "experiments")
sys.path.insert(0, HERE)

import report  # noqa: E402


@pytest.fixture(autouse=True)
def fresh_cache():
    report._cache.clear()
    yield
    report._cache.clear()


def template():
    with open(report.TEMPLATE) as f:
        return f.read()


def test_readme_is_the_rendered_template():
    with open(report.README) as f:
        readme = f.read()
    assert readme == report.render(template()), (
        "experiments/README.md differs from the results: run python experiments/report.py")


def test_no_number_is_typed_by_hand():
    assert report.bare_numbers(template()) == []
    # the check itself can fail: decimals and percentages outside placeholders and code
    assert report.bare_numbers("agrees 58% of the time, corner 0.92") == ["58%", "0.92"]
    assert report.bare_numbers("`--epsilon 0.02` and {{v:x#y:.3f}} and 4 seeds") == []


def test_a_changed_result_changes_the_page():
    before = report.render(template())
    report.load("utility_full")["meta"]["accuracy_vs_label"] = 0.5
    report.load("lipschitz_full")["rows"]["lipschitz_cnn/saliency"]["mu_fidelity"] = -0.75
    text = report.render(template())
    assert text != before
    # each changed value shows up where the template cites it
    assert text.count("50.0%") > before.count("50.0%")
    assert text.count("-0.750") > before.count("-0.750")


def test_every_results_row_says_what_produced_it():
    files = [f for f in glob.glob(os.path.join(report.RESULTS, "*.json")) if "_quick" not in f]
    assert files
    for path in files:
        with open(path) as f:
            data = json.load(f)
        prov = data["meta"].get("provenance", {})
        assert set(prov) == set(data["rows"]), path
        for p in prov.values():
            assert {"command", "commit", "machine", "date"} <= set(p), path
            assert p["command"].startswith("python experiments/") and p["commit"], path


def test_every_paper_number_carries_its_source():
    with open(os.path.join(HERE, "papers.json")) as f:
        papers = json.load(f)
    for entry in papers.values():
        assert len(entry["source"]) > 20 and entry["verified"] in (True, False)
        assert entry["rows"]


def test_unknown_placeholders_fail_loudly():
    with pytest.raises(KeyError, match="unknown table"):
        report.render("{{table:nope}}")
    with pytest.raises(KeyError, match="no key"):
        report.render("{{v:utility_full#meta#nope}}")
    with pytest.raises(KeyError, match="no results file"):
        report.render("{{v:missing_full#rows}}")
