"""Certified EVA with full CROWN on a 1000-class model: the cost of bounding the ball's rivals
row by row (k at a time) against all at once.

    python benchmarks/eva_rivals.py --json benchmarks/results/eva_rivals_cpu.json

A 4-layer ReLU MLP on 16x16x3 images with 1000 classes (random weights), two images, a 4x4
grid, epsilon 0.01, ``top_k_rivals=9``: the ball's 999 rivals are 111 rows of 9. Reports the
compile time and the best of three runs of the jitted explainer, and the map, for the xjax
found on ``sys.path`` (``--xjax DIR`` puts another checkout first, to measure an earlier
commit with the same script); each run appends one row to the results file.
"""

import argparse
import json
import os
import subprocess
import sys
import time

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--json", default=None)
parser.add_argument("--xjax", default=None, help="a checkout whose xjax is measured")
args = parser.parse_args()
if args.xjax:
    sys.path.insert(0, args.xjax)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from _common import provenance  # noqa: E402

import xjax  # noqa: E402


def main() -> None:
    rng = np.random.default_rng(0)
    dims = [3 * 16 * 16, 128, 128, 128, 1000]
    params = [(jnp.asarray(rng.normal(size=(a, b)) / np.sqrt(a), jnp.float32),
               jnp.asarray(rng.normal(size=b) * 0.1, jnp.float32))
              for a, b in zip(dims[:-1], dims[1:], strict=True)]

    def model(p, x):
        h = x.reshape(x.shape[0], -1)
        for w, b in p[:-1]:
            h = jax.nn.relu(h @ w + b)
        return h @ p[-1][0] + p[-1][1]

    x = jax.random.uniform(jax.random.key(0), (2, 16, 16, 3))
    y = model(params, x).argmax(1).astype(jnp.int32)
    e = jax.jit(xjax.attributions.eva(model, epsilon=0.01, grid_size=4, bound="crown",
                                      top_k_rivals=9))
    t = time.perf_counter()
    compiled = e.lower(params, x, y).compile()
    compile_s = time.perf_counter() - t
    jax.block_until_ready(compiled(params, x, y))
    runs = []
    for _ in range(3):
        t = time.perf_counter()
        maps = jax.block_until_ready(compiled(params, x, y))
        runs.append(time.perf_counter() - t)
    where = os.path.dirname(os.path.dirname(os.path.abspath(xjax.__file__)))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=where, text=True,
                            capture_output=True).stdout.strip() or "unknown"
    row = {"provenance": provenance(), "xjax_commit": commit, "compile_s": compile_s,
           "s_per_image": min(runs) / 2, "map": np.asarray(maps).round(7).tolist()}
    print(f"xjax {commit}: compile {compile_s:.1f} s, {row['s_per_image']:.3f} s per image",
          flush=True)
    if args.json:
        rows = []
        if os.path.exists(args.json):
            with open(args.json) as f:
                rows = json.load(f)["rows"]
        with open(args.json, "w") as f:
            json.dump({"rows": rows + [row]}, f, indent=1)


if __name__ == "__main__":
    main()
