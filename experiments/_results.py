"""Resumable experiment results: one JSON file updated after every finished unit of work, and a
markdown table written from it. A run that is interrupted and started again skips the units
already in the JSON (nothing lost, nothing done twice)."""

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def provenance() -> dict:
    """What produced a row: the command, the xjax commit (``+dirty`` with uncommitted changes to
    tracked files), the machine and the UTC date."""
    def git(*args):
        try:
            return subprocess.run(["git", "-C", _ROOT, *args], capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "--short=12", "HEAD") or "unknown"
    # results files (and the README generated from them) change while experiments run: only code
    # and data count as dirty
    if git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!experiments/results",
           ":!benchmarks/results", ":!README.md"):
        commit += "+dirty"
    script = os.path.relpath(os.path.abspath(sys.argv[0]), _ROOT) if sys.argv[0] else "python"
    import jax

    devices = jax.devices()
    machine = (f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores, "
               f"{len(devices)} x {devices[0].device_kind}")
    return {"command": "python " + shlex.join([script, *sys.argv[1:]]), "commit": commit,
            "machine": machine,
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}


class Results:
    """Rows of one results file, and ``meta``: the run's settings, and under
    ``meta["provenance"]`` what produced each row (:func:`provenance`)."""

    def __init__(self, path_json: str):
        self.path = path_json
        self.rows: dict[str, dict] = {}
        self.meta: dict = {}
        self._run = provenance()          # at the start of the run, before any edit can follow
        if os.path.exists(path_json):
            with open(path_json) as f:
                data = json.load(f)
            self.rows, self.meta = data["rows"], data.get("meta", {})

    def done(self, key: str) -> bool:
        return key in self.rows

    def drop(self, keys) -> None:
        """Forget finished rows so that the run computes them again (``--redo``: rows whose code
        changed); the file is rewritten when the next row is added."""
        unknown = [k for k in keys if k not in self.rows]
        if unknown:
            raise ValueError(f"--redo: no rows {unknown} in {self.path}; rows: {list(self.rows)}")
        for k in keys:
            del self.rows[k]
            self.meta.get("provenance", {}).pop(k, None)

    def add(self, key: str, row: dict, meta: dict | None = None) -> None:
        """Store a finished row (with this run's provenance) and rewrite the file atomically;
        ``meta`` updates the file's settings."""
        self.rows[key] = row
        self.meta.update(meta or {})
        self.meta.setdefault("provenance", {})[key] = self._run
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"meta": self.meta, "rows": self.rows}, f, indent=1)
        os.replace(tmp, self.path)

    def markdown(self, columns: list[str], title: str, command: str) -> str:
        lines = [f"## {title}", "", f"`{command}`", "",
                 "| " + " | ".join(["run"] + columns) + " |",
                 "|" + "---|" * (len(columns) + 1)]
        for key, row in self.rows.items():
            cells = [f"{row[c]:.4f}" if isinstance(row.get(c), float) else str(row.get(c, ""))
                     for c in columns]
            lines.append("| " + " | ".join([key] + cells) + " |")
        return "\n".join(lines) + "\n"

    def subset(self, rows: dict) -> "Results":
        """A read-only view with other rows (a filtered or summarized table), same path."""
        view = Results.__new__(Results)
        view.path, view.rows, view.meta, view._run = self.path, rows, self.meta, None
        return view

    def write_markdown(self, path: str, columns: list[str], title: str, command: str) -> None:
        with open(path, "w") as f:
            f.write(self.markdown(columns, title, command))


def run_timed(fn, *args):
    """``jax.jit(fn)`` compiled ahead of time, then executed once: ``(output, compile seconds,
    execution seconds)``, so the execution time excludes compilation."""
    import time

    import jax

    t = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_seconds = time.perf_counter() - t
    t = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    return out, compile_seconds, time.perf_counter() - t


def write_report(path: str, text: str) -> None:
    """Write a markdown report and print it."""
    with open(path, "w") as f:
        f.write(text)
    print(text)


def fashion_mnist_args(doc: str, argv=None, targets=None) -> argparse.Namespace:
    """The arguments every Fashion-MNIST experiment takes: ``--quick``, ``--out``,
    ``--source-dir``, ``--redo`` (and ``--target`` when the script has several)."""
    from xjax.data import FASHION_MNIST_DIR

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    if targets:
        parser.add_argument("--target", choices=targets, default=targets[0])
    parser.add_argument("--quick", action="store_true", help="the small run the tests use")
    parser.add_argument("--out", default="experiments/results")
    parser.add_argument("--source-dir", default=FASHION_MNIST_DIR,
                        help="directory of the Fashion-MNIST IDX files")
    parser.add_argument("--redo", default="", type=lambda v: [k for k in v.split(",") if k],
                        help="comma-separated finished rows to compute again (the others are kept)")
    args = parser.parse_args(argv)
    start_devices()
    return args


def start_devices() -> None:
    """Join the cluster when one is configured (``xjax.runs.initialize``: SLURM, Open MPI, a TPU
    slice or ``JAX_COORDINATOR_ADDRESS``) and say which devices the run is data parallel over;
    the experiments place their evaluation sets with ``xjax.runs.shard_rows``."""
    import jax

    import xjax

    xjax.runs.initialize()
    if jax.device_count() > 1:
        print(f"data parallel over {jax.device_count()} devices on {jax.process_count()} host(s)",
              flush=True)
