"""Certified EVA's compile time and time per image on a zoo model around a real photo.

    python benchmarks/eva_compile.py [--model efficientnet_lite0] [--size 16] [--bound crown_ibp]

Prints one JSON line: ahead-of-time compile seconds, the best of two runs, the compiled
temporary memory, and the provenance. Run it at two commits to compare (the results file
``benchmarks/results/eva_compile_cpu.json`` holds such a pair).
"""
import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp

import xjax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from experiments._results import provenance  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--bound", default="crown_ibp")
    parser.add_argument("--grid", type=int, default=7)
    parser.add_argument("--epsilon", type=float, default=1e-4)
    args = parser.parse_args(argv)
    m = xjax.models.get_model(args.model)
    photo = xjax.data.sample_photos(["chelsea"])[0].image
    x = jnp.asarray(xjax.data.resize_center_crop(photo, args.size)[None])
    y = jnp.argmax(m.model_fn(m.params, x), -1).astype(jnp.int32)
    explain = xjax.attributions.eva(m.model_fn, epsilon=args.epsilon, grid_size=args.grid,
                                    bound=args.bound, top_k_rivals=3, batch_size=16)
    t = time.perf_counter()
    compiled = jax.jit(explain).lower(m.params, x, y).compile()
    compile_s = time.perf_counter() - t
    mem = compiled.memory_analysis()
    runs = []
    for _ in range(2):
        t = time.perf_counter()
        maps = jax.block_until_ready(compiled(m.params, x, y))
        runs.append(time.perf_counter() - t)
    print(json.dumps({"model": args.model, "size": args.size, "bound": args.bound,
                      "grid": args.grid, "compile_s": compile_s, "s_per_image": min(runs),
                      "temp_bytes": None if mem is None else int(mem.temp_size_in_bytes),
                      "finite_map": bool(jnp.isfinite(maps).all()),
                      "provenance": provenance()}))


if __name__ == "__main__":
    main()
