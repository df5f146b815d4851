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
    for name in (*_relax.NAMED_CALLS, *_relax.REBUILT):
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


def test_vit_depth_table_reads_every_stage_from_the_file(tmp_path):
    """The ViT table's verdicts come from the file's lines: one column per stage named in the
    header (``# stage K:``, ``# now:``), the header's ``#K  depth`` lines for stage K and the data
    lines for now, those tagged ``sound_float`` in a last column (``# sound_float:``); a finite
    bound is certified only when its lower end is above 0."""
    path = tmp_path / "depth.txt"
    path.write_text(
        "# header\n"
        "# stage 1: old\n"
        "# stage 2: newer\n"
        "# now: newest\n"
        "# sound_float: newest, float32\n"
        "#1  depth 2 crown: compile 1 s run 1 s lo -inf hi inf width inf margin 0.5\n"
        "#1  depth 3 crown+eager: first call 9 s (no second call) lo -2 hi 3 width 5 margin 0.25\n"
        "#2  depth 3 crown+eager: first call 9 s (no second call) lo -1 hi 2 width 3 margin 0.25\n"
        "#   depth 3 crown: an unnumbered comment line is no stage lo 0 hi 0 width 0 margin 0.25\n"
        "depth 2 crown: compile 1 s run 1 s lo 0.1 hi 0.9 width 0.8 margin 0.5\n"
        "depth 3 crown+eager: first call 9 s (no second call) lo -1 hi 1 width 2 margin 0.25\n"
        "depth 3 ibp: compile 1 s run 1 s lo 0.2 hi 0.3 width 0.1 margin 0.25\n"
        "depth 5 crown: compile 1 s run 1 s lo 0.01 hi 0.02 width 0.01 margin 0.015\n"
        "depth 5 crown+eager sound_float: first call 9 s (no second call) lo 0.005 hi 0.03 "
        "width 0.025 margin 0.015\n")
    rows = _report().vit_depth_rows(str(path))
    assert rows[0] == "| blocks | margin | old | newer | newest | newest, float32 |"
    assert rows[2:] == [
        "| 2 | 0.5 | infinite | not run | [0.1, 0.9]: certified | not run |",
        "| 3 | 0.25 | [-2, 3]: vacuous | [-1, 2]: vacuous | [-1, 1]: vacuous | not run |",
        "| 5 | 0.015 | not run | not run | [0.01, 0.02]: certified | [0.005, 0.03]: certified |"]


def test_vit_widths_table_reads_each_block_from_the_file(tmp_path):
    """Per block: the two layer norms' ``var + eps`` (rsqrt inputs, "reaches 0" at the epsilon),
    the widest exponential input and reciprocal input between them; the last lone norm is the
    final one."""
    line = "eqn {e:5d} {p:12s} node {e:5d} shape 1x4         width {w} lo {lo} hi 9 t 1 s\n"
    rows = [("rsqrt", "0.5", "2"), ("exp", "0.25", "-1"), ("exp", "0.75", "-1"),
            ("integer_pow", "3", "1"), ("rsqrt", "4", "1e-06"), ("square", "99", "0"),
            ("rsqrt", "inf", "1e-06")]
    path = tmp_path / "widths.txt"
    path.write_text("# header\n" + "".join(line.format(e=i, p=p, w=w, lo=lo)
                                            for i, (p, w, lo) in enumerate(rows)))
    assert _report().vit_widths_rows(str(path))[2:] == [
        "| 1 | 0.5 | 0.75 | 3 | 4 (reaches 0) |", "| final norm | inf (reaches 0) | | | |"]


def test_vit_widths_table_puts_the_sampled_spread_beside_each_norm(tmp_path):
    """With a ``bounds_vit_spread.py`` file, every norm's bound is followed by the spread read for
    the same ``rsqrt`` (in order)."""
    line = "eqn {e:5d} {p:12s} node {e:5d} shape 1x4         width {w} lo {lo} hi 9 t 1 s\n"
    rows = [("rsqrt", "0.5", "2"), ("exp", "0.25", "-1"), ("rsqrt", "4", "1"), ("rsqrt", "7", "1")]
    widths, spread = tmp_path / "widths.txt", tmp_path / "spread.txt"
    widths.write_text("# header\n" + "".join(line.format(e=i, p=p, w=w, lo=lo)
                                              for i, (p, w, lo) in enumerate(rows)))
    spread.write_text("# header\nmargin 1 spread 0.01\n"
                      "rsqrt   0 (block 1) var+eps in [0.1, 0.3] spread 0.002\n"
                      "rsqrt   1 (block 1) var+eps in [0.9, 1] spread 0.003\n"
                      "rsqrt   2 (block final) var+eps in [1, 2] spread 0.004\n")
    mod = _report()
    assert mod.vit_spreads(str(spread)) == [0.002, 0.003, 0.004]
    assert mod.vit_widths_rows(str(widths), mod.vit_spreads(str(spread)))[2:] == [
        "| 1 | 0.5 (sampled 0.002) | 0.25 |  | 4 (sampled 0.003) |",
        "| final norm | 7 (sampled 0.004) | | | |"]


def test_skip_table_reads_both_lines(tmp_path):
    path = tmp_path / "skip.txt"
    path.write_text("# header\n"
                    "lite0 crown+eager skip=True: first call 2.5 s second call 1 s lo -0.5 hi 2 "
                    "margin 0.75\n"
                    "lite0 crown+eager skip=False: first call 5 s second call 3 s lo -0.5 hi 2 "
                    "margin 0.75\n")
    assert _report().skip_rows(str(path))[2:] == ["| skipped | 2.5 | 1 | [-0.5, 2] | 0.75 |",
                                                 "| every one | 5 | 3 | [-0.5, 2] | 0.75 |"]
