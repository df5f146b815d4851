"""Throughput of the zoo models: forward and forward+backward (w.r.t. the input) images/s.

    python benchmarks/models.py [--models small_cnn,efficientnet_lite0,...] [--batch-sizes 1,8]
                                [--precision float32|bfloat16] [--repeats 5] [--json out.json]

Each cell is one jitted computation, compiled and warmed up first, then timed ``--repeats``
times (the median is reported). Forward+backward is ``jax.grad`` of the summed top logit with
respect to the input: the work of one saliency map. Numbers depend on the machine; the README
table says which machine produced it.
"""

import argparse
import json
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import xjax

DEFAULT_BATCHES = {"small_cnn": (64, 256), "efficientnet_lite0": (1, 8), "resnet18": (1, 8),
                   "resnet50": (1, 8), "vit_tiny": (1, 8)}


def _time(fn, *args, repeats):
    jax.block_until_ready(fn(*args))  # compile + warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench(name, batch_sizes, repeats, precision):
    model = xjax.models.get_model(name)
    dtype = jnp.bfloat16 if precision == "bfloat16" else jnp.float32
    params = jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating)
                          else a, model.params)

    @jax.jit
    def forward(p, x):
        return model.model_fn(p, x)

    @jax.jit
    def forward_backward(p, x):
        return jax.grad(lambda xs: model.model_fn(p, xs).max(axis=-1).astype(jnp.float32).sum())(x)

    rows = []
    for b in batch_sizes:
        x = jnp.asarray(np.random.default_rng(0).random((b,) + model.input_shape), dtype)
        f = _time(forward, params, x, repeats=repeats)
        fb = _time(forward_backward, params, x, repeats=repeats)
        rows.append({"model": name, "input": "x".join(map(str, model.input_shape)), "batch": b,
                     "precision": precision, "forward_img_s": b / f,
                     "forward_backward_img_s": b / fb})
        print(f"{name:20s} {rows[-1]['input']:>10s} batch {b:4d} {precision:9s} "
              f"forward {b / f:9.1f} img/s   forward+backward {b / fb:9.1f} img/s", flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(DEFAULT_BATCHES))
    parser.add_argument("--batch-sizes", default=None,
                        help="comma-separated; default per model: " + str(DEFAULT_BATCHES))
    parser.add_argument("--precision", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args()
    device = jax.devices()[0]
    print(f"# {device.platform} {getattr(device, 'device_kind', '')} x{jax.device_count()}, "
          f"jax {jax.__version__}, {platform.processor() or platform.machine()}", flush=True)
    rows = []
    for name in args.models.split(","):
        sizes = (tuple(int(s) for s in args.batch_sizes.split(",")) if args.batch_sizes
                 else DEFAULT_BATCHES[name])
        rows += bench(name, sizes, args.repeats, args.precision)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": str(device), "jax": jax.__version__, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
