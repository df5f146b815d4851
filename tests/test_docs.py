"""`make docs` (mkdocs --strict, the API reference from the docstrings) builds without a warning,
and the README stays a short user page whose examples run."""

import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_docs_build_strict(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                          str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "WARNING" not in out.stderr, out.stderr[-3000:]
    # every nav page was rendered, and the API pages hold the docstrings
    with open(tmp_path / "site" / "api" / "attributions" / "index.html", encoding="utf-8") as f:
        api = f.read()
    assert "Look at the Variance" in api and "nb_design" in api      # sobol's reference and args
    for page in ("cli", "bounds", "reliability", "tutorials"):
        assert (tmp_path / "site" / page / "index.html").exists()


def test_every_docs_page_is_in_the_nav():
    with open(os.path.join(ROOT, "mkdocs.yml")) as f:
        nav = f.read()
    pages = [os.path.relpath(os.path.join(d, f), os.path.join(ROOT, "docs"))
             for d, _, fs in os.walk(os.path.join(ROOT, "docs")) for f in fs if f.endswith(".md")]
    assert pages and all(p in nav for p in pages), [p for p in pages if p not in nav]


def test_readme_is_short_and_its_examples_run(tmp_path, monkeypatch):
    from tests.conftest import FASHION_MNIST_PRESENT

    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    assert len(text.splitlines()) <= 200
    assert "<this repository>" not in text
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 2
    if not FASHION_MNIST_PRESENT:
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(compile(blocks[0], "README example 1", "exec"), scope)       # noqa: S102
    assert os.path.getsize(tmp_path / "coffee_saliency.png") > 1000
    assert scope["maps"].shape == (1, 224, 224)
    exec(compile(blocks[1].replace("x[:8], labels[:8]", "x[:2], labels[:2]"),   # noqa: S102
                 "README example 2", "exec"), scope)
    assert scope["maps"].shape == (2, 28, 28) and scope["scores"].shape == (2,)


def test_block_loop_numbers_in_the_benchmarks_page_come_from_results_files():
    # The paragraph "Backward passes inside block loops" quotes three results files.
    with open(os.path.join(ROOT, "docs", "benchmarks.md")) as f:
        text = f.read()
    text = " ".join(text[text.index("**Backward passes inside block loops"):
                         text.index("Raw rows:")].split())
    results = os.path.join(ROOT, "benchmarks", "results")

    def load(name):
        with open(os.path.join(results, name)) as f:
            return json.load(f)

    quoted = []
    loops = load("loop_convs_cpu.json")["models"]
    quoted += [f"{m['scan_over_one_call']:.2f}x" for m in loops.values()]
    quoted += [f"{m['canonical_over_one_call']:.2f}x" for m in loops.values()]
    for rows in load("grad_scan_before_after_cpu.json")["rows"].values():
        for row in rows.values():
            for seconds, ratio in (row["before"], row["after"]):
                quoted += [f"{seconds:.4f}", f"{ratio:.2f}"]
    for row in load("attributions_resnet18_grad_cpu.json")["rows"]:
        quoted += [f"{row['seconds_per_image']:.2f}", f"(ratio {row['overhead_ratio']:.2f})"]
    missing = [q for q in quoted if q not in text]
    assert not missing, f"docs/benchmarks.md quotes numbers its results files do not give: {missing}"


def test_generated_blocks_come_from_their_results_files():
    """README's Captum/Xplique table and Lens build time, and docs/benchmarks.md's batch-size
    table, are benchmarks/report.py's output of the committed results files (regenerate them
    after a new run)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "report", os.path.join(ROOT, "benchmarks", "report.py"))
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    assert set(report.blocks()) == {"peers", "lens", "tune", "layers", "cli", "stem",
                                    "xla_flags"}
    assert report.main(["--check"]) == 0, "run python benchmarks/report.py"
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    block = text[text.index(report.markers("peers")[0]):text.index(report.markers("peers")[1])]
    assert "| integrated_gradients |" in block and "Reference: issue 25" in block
    with open(os.path.join(ROOT, "benchmarks", "results", "xla_flags_cpu.json")) as f:
        flags = json.load(f)
    cnn = flags["variants"]["default"]["networks"]["cnn"]["64"]["forward_ms_per_img"]
    with open(os.path.join(ROOT, "docs", "benchmarks.md")) as f:
        assert f"| cnn | 64 | {cnn:.3g} -> " in f.read()   # a row read back from its file
