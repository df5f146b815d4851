"""The bounds section of docs/bounds.md is generated: it lists every supported primitive with its
CROWN treatment from the code's tables, and its numbers from the committed benchmark results."""

import os

import xjax
from tests.helpers import load_script

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _report():
    return load_script("benchmarks/bounds_report.py")


def test_readme_bounds_block_is_up_to_date():
    assert _report().main(["--check"]) == 0, "run python benchmarks/bounds_report.py"


def test_block_names_every_primitive_and_every_named_call():
    text = _report().render()
    summary = _report().render_summary()          # the README's short form
    for name in xjax.bounds.supported_primitives():
        assert f"| `{name}` |" in text
        assert f"`{name}`, " in summary or f"`{name}`; " in summary or f"`{name}`. " in summary, \
            name
    from xjax.bounds import _relax
    for name in _relax.NAMED_CALLS:
        assert f"`{name}` (" in text and f"`{name}` (" in summary


def test_block_numbers_come_from_the_results_files(tmp_path, monkeypatch):
    """Changing a result changes the page (the block is rendered from the file)."""
    import json
    mod = _report()
    src = os.path.join(ROOT, "benchmarks", "results", "bounds_relaxations_cpu.json")
    with open(src) as f:
        data = json.load(f)
    data["rows"][0]["crown_ibp/ibp"] = 0.123456
    os.makedirs(tmp_path / "benchmarks" / "results")
    with open(tmp_path / "benchmarks" / "results" / "bounds_relaxations_cpu.json", "w") as f:
        json.dump(data, f)
    monkeypatch.setattr(mod, "ROOT", str(tmp_path))
    assert "| 0.123 |" in mod.render()
