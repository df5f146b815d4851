"""What xjax.tune.batch_size chooses, and what the choice is worth on an explainer.

    python benchmarks/tune.py --json benchmarks/results/tune_cpu.json

For each model: images/s of the forward and of forward+backward at every candidate size (the
measurement ``batch_size`` makes, compile excluded), the chosen sizes, and the seconds per image
of one perturbation explainer (Sobol, grid 8 x 32 designs; 8 designs at 224 px) and one
gradient explainer (integrated gradients, 50 steps; 16 at 224 px) at the factory's default batch
size and at the chosen one.
"""

import argparse
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from _common import provenance, timed

import xjax

A = xjax.attributions
HERE = os.path.dirname(os.path.abspath(__file__))


def explainer_seconds(model, method, batch_size, x, y, repeats, **kw):
    e = A.from_name(method, model, batch_size=batch_size, **kw)
    run = jax.jit(lambda p, xs, ys: e(p, xs, ys))
    return timed(run, model.params, x, y, repeats=repeats) / len(x)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="small_cnn_32,resnet18")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    rows = {}
    for name in args.models.split(","):
        model = (xjax.models.small_cnn(input_shape=(32, 32, 3)) if name == "small_cnn_32"
                 else xjax.models.get_model(name))
        h, w, c = model.input_shape
        example = np.full((1, h, w, c), 0.5, np.float32)
        row = {"input_shape": [h, w, c], "modes": {}}
        for mode in ("forward", "gradient"):
            choice = xjax.tune.choose(model.model_fn, model.params, example, mode=mode,
                                      cache=None, repeats=args.repeats)
            row["modes"][mode] = {"chosen": choice.batch_size, "images_per_second": {
                str(b): r for b, r in choice.images_per_second.items()}}
            print(f"{name} {mode}: chosen {choice.batch_size}; " + ", ".join(
                f"{b}: {r:.0f}" for b, r in choice.images_per_second.items() if r), flush=True)
        n = 8 if h <= 64 else 1
        x = jnp.asarray(np.random.default_rng(0).random((n, h, w, c)), jnp.float32)
        y = jnp.asarray(np.asarray(model.model_fn(model.params, x)).argmax(-1), jnp.int32)
        row["explainers"] = {}
        big = h > 64                   # 224 px: fewer samples, the ratio is per model call
        for method, mode, kw in (("sobol", "forward", {"grid_size": 8,
                                                       "nb_design": 8 if big else 32}),
                                 ("integrated_gradients", "gradient", {"steps": 16 if big
                                                                       else 50})):
            default = xjax._internal.registry.hyperparameters(method)["batch_size"].default
            tuned = row["modes"][mode]["chosen"]
            sec = {str(b): explainer_seconds(model, method, b, x, y, args.repeats, **kw)
                   for b in sorted({default, tuned})}
            row["explainers"][method] = {"kwargs": kw, "default_batch_size": default,
                                         "tuned_batch_size": tuned, "seconds_per_image": sec,
                                         "speedup": sec[str(default)] / sec[str(tuned)]}
            print(f"{name} {method}: default {default}: {sec[str(default)]:.4f} s/img, tuned "
                  f"{tuned}: {sec[str(tuned)]:.4f} s/img", flush=True)
        rows[name] = row
    result = {**provenance(), "candidates": list(xjax.tune.CANDIDATES[jax.default_backend()]),
              "models": rows}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
