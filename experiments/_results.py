"""Resumable experiment results: one JSON file updated after every finished unit of work, and a
markdown table written from it. A run that is interrupted and started again skips the units
already in the JSON (nothing lost, nothing done twice).

The file records the run's settings (``meta["settings"]``: the script and its arguments that
change results); a run with other settings on an existing file refuses with the differences
(``--overwrite`` starts the file afresh), and a lock file beside it (``.<name>.lock``) keeps two
runs from writing one file (the mechanism of ``xjax._internal.rundir``)."""

import argparse
import atexit
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


# arguments that do not change a result: where it goes, which rows to redo, where data lies
NOT_SETTINGS = ("out", "redo", "source_dir", "overwrite", "manual_dir", "data_dir")


def run_settings(args) -> dict:
    """The settings of a script's run: its name and its arguments except :data:`NOT_SETTINGS`."""
    script = os.path.basename(sys.argv[0]) if sys.argv[0] else "python"
    return {"script": script, **{k: v for k, v in sorted(vars(args).items())
                                 if k not in NOT_SETTINGS}}


class Results:
    """Rows of one results file, and ``meta``: the run's settings (``meta["settings"]``), and
    under ``meta["provenance"]`` what produced each row (:func:`provenance`).

    Args:
      path_json: the results file.
      settings: what the rows depend on (:func:`run_settings`); ``None`` for a reader.
      overwrite: discard a file written with other settings instead of refusing.
    """

    def __init__(self, path_json: str, settings: dict | None = None, *, overwrite: bool = False):
        from xjax._internal.rundir import Lock, SettingsMismatch, settings_diff

        self.path = path_json
        self.rows: dict[str, dict] = {}
        self.meta: dict = {}
        self._run = provenance()          # at the start of the run, before any edit can follow
        self._lock = None
        if settings is not None:
            folder, name = os.path.split(os.path.abspath(path_json))
            os.makedirs(folder, exist_ok=True)
            self._lock = Lock(os.path.join(folder, f".{name}.lock"), where=name)
            self._lock.acquire()
            atexit.register(self._lock.release)
        if os.path.exists(path_json):
            with open(path_json) as f:
                data = json.load(f)
            self.rows, self.meta = data["rows"], data.get("meta", {})
        if settings is None:
            return
        settings = json.loads(json.dumps(settings, default=str))
        stored = self.meta.get("settings")
        if stored is None and self.rows:
            print(f"{path_json}: no settings recorded with its {len(self.rows)} rows (an older "
                  f"file); recording {settings}", file=sys.stderr)
        elif stored is not None and settings_diff(stored, settings):
            diff = settings_diff(stored, settings)
            if not overwrite:
                raise SettingsMismatch(
                    f"{path_json} holds rows of other settings:\n"
                    + "\n".join(f"  {k}: stored {a!r}, requested {b!r}" for k, a, b in diff)
                    + "\nuse another --out, or --overwrite to start the file afresh")
            self.rows, self.meta = {}, {}
        self.meta["settings"] = settings

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
        view._lock = None
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
    parser.add_argument("--overwrite", action="store_true",
                        help="start a results file written with other settings afresh")
    args = parser.parse_args(argv)
    start_devices()
    return args


def start_devices() -> None:
    """Join the cluster when one is configured (``xjax.runs.initialize``: SLURM, Open MPI, a TPU
    slice or ``JAX_COORDINATOR_ADDRESS``) and say which devices the run is data parallel over;
    the experiments place their evaluation sets with ``xjax.runs.shard_rows``."""
    import jax

    import xjax
    from xjax._internal import compile_cache

    compile_cache.enable()               # reruns and resumed runs do not compile again
    xjax.runs.initialize()
    if jax.device_count() > 1:
        print(f"data parallel over {jax.device_count()} devices on {jax.process_count()} host(s)",
              flush=True)
