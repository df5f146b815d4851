"""GPU check: attribution cost on EfficientNet-Lite0 and ResNet-50 at 224x224, float32 and bf16.

    python benchmarks/gpu.py [--json out.json] [--budget 270]
    python benchmarks/gpu.py --allow-cpu --models small_cnn --n 2   # smoke run without a GPU

Times saliency, integrated gradients (50 steps), RISE (4000 masks), Sobol (8x8 grid,
nb_design 32: 2112 model calls) and EVA (grid 8, crown_ibp, top-9 rivals; only on the first
model and precision, last, because its bound computation compiles for about two minutes) on N
images per call (batch_size 256), next to the model's own forward and forward+backward
throughput at batch 64, and prints one table with seconds per explained image and the overhead
ratio (method time / (model calls x the model's time per image at batch 64); below 1 where the
method's batch of 256 uses the GPU better than the batch-64 reference). bf16 runs the model in bfloat16
(``xjax.models.with_precision``: parameters and activations cast inside each call, float32
outputs); the explanation arithmetic stays float32. The H100 numbers in docs/benchmarks.md were taken
with an earlier version that stored the parameters in bfloat16 instead of casting per call.
Exits with an error if no GPU is visible (unless ``--allow-cpu``); stops starting new cells
once ``--budget`` seconds have passed. Measured on an H100 (benchmarks/results/gpu_h100.json):
every cell compiles for 3-30 s, so all cells take about 8 minutes; the default budget keeps one
call under 5 minutes and reports the cells it skipped.
"""

import argparse
import json
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import xjax

A = xjax.attributions

# name: (kwargs, unit ("grad" = forward+backward, "fwd" = forward), model calls per image)
METHODS = {
    "saliency": ({}, "grad", 1),
    "integrated_gradients": ({"steps": 50}, "grad", 50),
    "rise": ({"nb_samples": 4000}, "fwd", 4000),
    "sobol": ({"nb_design": 32}, "fwd", 32 * (8 * 8 + 2)),
    "eva": ({"grid_size": 8}, "bound", None),
}


def _timed(fn, *args, repeats=2):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    compile_s = time.perf_counter() - t0
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        out.append(time.perf_counter() - t)
    return statistics.median(out), compile_s


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="efficientnet_lite0,resnet50")
    parser.add_argument("--precisions", default="float32,bfloat16")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--n", type=int, default=4, help="images explained per call")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--budget", type=float, default=270.0)
    parser.add_argument("--allow-cpu", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    dev = jax.devices()[0]
    if dev.platform != "gpu" and not args.allow_cpu:
        sys.exit(f"benchmarks/gpu.py: no GPU visible to JAX (devices: {jax.devices()}); install "
                 f"jax[cuda12] on a GPU machine, or pass --allow-cpu for a smoke run")
    print(f"# {getattr(dev, 'device_kind', dev.platform)}, jax {jax.__version__}, N={args.n}, "
          f"batch_size={args.batch_size}", flush=True)
    start = time.perf_counter()
    rows = []
    b = args.batch_size
    first = (args.models.split(",")[0], args.precisions.split(",")[0])
    methods = [m for m in args.methods.split(",") if m != "eva"]
    if "eva" in args.methods.split(","):
        methods.append("eva")
    args.methods = ",".join(methods)
    for name in args.models.split(","):
        base = xjax.models.get_model(name)
        h, w, c = base.input_shape
        x = jnp.asarray(np.random.default_rng(0).random((args.n, h, w, c)), jnp.float32)
        xb = jnp.asarray(np.random.default_rng(1).random((min(b, 64), h, w, c)), jnp.float32)
        for precision in args.precisions.split(","):
            if time.perf_counter() - start > args.budget:
                print(f"budget spent: skipping {name} {precision}", flush=True)
                continue
            model = xjax.models.with_precision(base, precision)
            fwd = jax.jit(model.model_fn)
            grad = jax.jit(jax.grad(lambda p, z, m=model: m.model_fn(p, z).max(-1).sum(),
                                    argnums=1))
            unit = {"fwd": _timed(fwd, model.params, xb)[0] / len(xb),
                    "grad": _timed(grad, model.params, xb)[0] / len(xb)}
            y = jnp.asarray(np.asarray(fwd(model.params, x)).argmax(-1), jnp.int32)
            rows.append({"model": name, "precision": precision, "method": "(model)",
                         "forward_img_s": 1 / unit["fwd"], "forward_backward_img_s":
                         1 / unit["grad"]})
            print(f"{name:18s} {precision:8s} forward {1 / unit['fwd']:9.1f} img/s  "
                  f"forward+backward {1 / unit['grad']:9.1f} img/s", flush=True)
            for meth in args.methods.split(","):
                if meth == "eva" and (name, precision) != first:
                    continue                       # EVA compiles for minutes: one cell, last
                if time.perf_counter() - start > args.budget:
                    print(f"budget spent: skipping {name} {precision} {meth}", flush=True)
                    continue
                kw, kind, calls = METHODS[meth]
                try:
                    e = A.from_name(meth, model, batch_size=b, **kw)
                    key = jax.random.key(0) if meth in A.STOCHASTIC else None
                    run = jax.jit(lambda p, xs, ys, e=e, key=key: e(p, xs, ys, key=key))
                    t, comp = _timed(run, model.params, x, y)
                except Exception as err:  # report and go on: one failing cell must not hide the rest
                    print(f"{name:18s} {precision:8s} {meth:22s} FAILED {type(err).__name__}: "
                          f"{str(err)[:200]}", flush=True)
                    rows.append({"model": name, "precision": precision, "method": meth,
                                 "error": f"{type(err).__name__}: {str(err)[:500]}"})
                    continue
                t /= args.n
                ratio = t / (calls * unit[kind]) if calls else t / unit["fwd"]
                rows.append({"model": name, "precision": precision, "method": meth,
                             "kwargs": kw, "seconds_per_image": t, "compile_seconds": comp,
                             "model_calls": calls, "unit": kind, "overhead_ratio": ratio})
                label = "x forward" if calls is None else "ratio"
                print(f"{name:18s} {precision:8s} {meth:22s} {t * 1e3:10.2f} ms/image  "
                      f"{label} {ratio:8.2f}  (compile {comp:5.1f} s)", flush=True)
    print(f"# total {time.perf_counter() - start:.0f} s", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": str(getattr(dev, "device_kind", dev.platform)),
                       "jax": jax.__version__, "n": args.n, "batch_size": b, "rows": rows}, f,
                      indent=1)
    return rows


if __name__ == "__main__":
    main()
