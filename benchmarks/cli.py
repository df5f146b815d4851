"""Cold and warm wall times of ``xjax explain`` on one photo (issue 25, item 4).

    python benchmarks/cli.py [--json benchmarks/results/cli_cpu.json]

Each command runs twice in fresh processes against an empty compilation cache and an empty
batch-size cache (temporary ``XJAX_COMPILE_CACHE`` and ``XJAX_TUNE_CACHE``): the first run
measures the batch size (``--batch-size auto``), compiles and fills both caches, the second
reads them. Wall time includes start-up (imports, model loading) and the figure. Beside it, the
explanation's own compute time (jitted, after compilation, at the batch size the command chose)
in this process, so that the overhead of the command is ``warm / compute``; and the start-up
floor: a fresh process that only imports the command's modules and loads the model.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from experiments._results import provenance  # noqa: E402

CASES = [("saliency", []), ("sobol", ["--param", "grid_size=4", "--param", "nb_design=8"]),
         ("sobol", [])]                                       # the factory's defaults: 8 x 32
MODEL = "efficientnet_lite0"


def wall(cmd, env) -> tuple[float, str]:
    t = time.perf_counter()
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return time.perf_counter() - t, out.stderr


def startup_seconds() -> float:
    """A fresh process importing what ``xjax explain`` imports and loading the model."""
    code = ("import jax, tqdm, numpy, xjax, xjax.plots, xjax.cli\n"
            f"xjax.models.get_model({MODEL!r})")
    return min(wall([sys.executable, "-c", code], os.environ)[0] for _ in range(2))


def compute_seconds(method, params, batch_size) -> float:
    import jax
    import numpy as np

    import xjax

    m = xjax.models.get_model(MODEL)
    x = xjax.data.resize_center_crop(xjax.data.sample_photos(["coffee"])[0].image, 224)[None]
    y = m.model_fn(m.params, x).argmax(-1)
    kw = dict(p.split("=") for p in params[1::2])
    e = xjax.attributions.from_name(method, m, batch_size=batch_size,
                                    **{k: int(v) for k, v in kw.items()})
    f = jax.jit(lambda p, a, b: e(p, a, b))
    f(m.params, x, y).block_until_ready()
    times = []
    for _ in range(3):
        t = time.perf_counter()
        f(m.params, x, y).block_until_ready()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    import xjax

    photo = os.path.join(tempfile.mkdtemp(), "coffee.png")
    from PIL import Image

    Image.fromarray(xjax.data.sample_photos(["coffee"])[0].image).save(photo)
    rows, floor = [], startup_seconds()
    for method, params in CASES:
        with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as out:
            env = {**os.environ, "XJAX_COMPILE_CACHE": cache,
                   "XJAX_TUNE_CACHE": os.path.join(cache, "batch_sizes.json")}
            cmd = [sys.executable, "-m", "xjax.cli", "explain", "--model", MODEL, "--method",
                   method, *params, "--images", photo, "--out", out, "--overwrite"]
            (cold, log), (warm, _) = wall(cmd, env), wall(cmd, env)
        # the batch size the command measured; one model call per image: the step's images (4)
        chosen = re.search(r"--batch-size auto: (\d+)", log)
        batch_size = int(chosen.group(1)) if chosen else 4
        compute = compute_seconds(method, params, batch_size)
        rows.append({"method": method, "params": " ".join(params[1::2]) or "defaults",
                     "batch_size": batch_size, "cold_s": cold, "warm_s": warm,
                     "compute_s": compute, "warm_over_compute": warm / compute,
                     "startup_s": floor})
        print(json.dumps(rows[-1]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": {"provenance": provenance(), "model": MODEL}, "rows": rows}, f,
                      indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
