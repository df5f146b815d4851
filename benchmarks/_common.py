"""What every benchmark script shares: the timer and the provenance of a results file."""

import datetime
import os
import platform
import statistics
import subprocess
import sys
import time

import jax

HERE = os.path.dirname(os.path.abspath(__file__))


def timed(fn, *args, repeats: int, reduce=statistics.median) -> float:
    """Median (or ``reduce``) seconds of ``fn(*args)`` over ``repeats`` runs, after one untimed
    run (which compiles); results are waited for."""
    jax.block_until_ready(fn(*args))
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        out.append(time.perf_counter() - t)
    return reduce(out)


def provenance() -> dict:
    """The command, commit, date, machine and JAX version a results file records."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, text=True,
                                capture_output=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    dev = jax.devices()[0]
    kind = getattr(dev, "device_kind", "")
    return {"command": "python " + " ".join(sys.argv), "commit": commit,
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {dev.platform}"
                       + (f" {kind}" if kind and kind != dev.platform else ""),
            "jax": jax.__version__}
