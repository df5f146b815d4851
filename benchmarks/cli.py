"""Cold and warm wall times of ``xjax explain`` on one photo (issue 25, item 4).

    python benchmarks/cli.py [--json benchmarks/results/cli_cpu.json]

Each command runs twice in fresh processes against an empty compilation cache and an empty
batch-size cache (temporary ``XJAX_COMPILE_CACHE`` and ``XJAX_TUNE_CACHE``): the first run
measures the batch size (``--batch-size auto``), compiles and fills both caches, the second
reads them. Wall
time includes start-up (imports, model loading) and the figure. Beside it, the explanation's own
compute time (jitted, after compilation) in this process, so that the overhead of the command
is ``warm / compute``.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from experiments._results import provenance  # noqa: E402

CASES = {"saliency": [], "sobol": ["--param", "grid_size=4", "--param", "nb_design=8"]}
MODEL = "efficientnet_lite0"


def wall(cmd, env) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    return time.perf_counter() - t


def compute_seconds(method, params) -> float:
    import jax
    import numpy as np

    import xjax

    m = xjax.models.get_model(MODEL)
    x = xjax.data.resize_center_crop(xjax.data.sample_photos(["coffee"])[0].image, 224)[None]
    y = m.model_fn(m.params, x).argmax(-1)
    kw = dict(p.split("=") for p in params[1::2])
    e = xjax.attributions.from_name(method, m, batch_size=32,
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
    rows = []
    for method, params in CASES.items():
        with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as out:
            env = {**os.environ, "XJAX_COMPILE_CACHE": cache,
                   "XJAX_TUNE_CACHE": os.path.join(cache, "batch_sizes.json")}
            cmd = [sys.executable, "-m", "xjax.cli", "explain", "--model", MODEL, "--method",
                   method, *params, "--images", photo, "--out", out, "--overwrite"]
            cold, warm = wall(cmd, env), wall(cmd, env)
        compute = compute_seconds(method, params)
        rows.append({"method": method, "params": " ".join(params[1::2]), "cold_s": cold,
                     "warm_s": warm, "compute_s": compute, "warm_over_compute": warm / compute})
        print(json.dumps(rows[-1]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": {"provenance": provenance(), "model": MODEL}, "rows": rows}, f,
                      indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
