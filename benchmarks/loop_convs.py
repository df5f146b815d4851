"""The input gradient inside a block loop, with and without canonical convolutions.

    python benchmarks/loop_convs.py [--models small_cnn,resnet18] [--json out.json]

XLA:CPU canonicalizes convolution dimension orders in the entry computation only, so the backward
convolutions of a conv net inside ``lax.scan`` fall to its naive emitter
(``xjax/_internal/canonical.py``). This times, for each model, the input gradient of B rows as
one call, as a ``lax.scan`` over two blocks of B/2 rows, and as the same scan whose body goes
through ``canonical_convs`` (compilation excluded; median of repeats), and records how far the
last two differ (different convolution kernels round differently).
"""

import argparse
import json
import platform
import statistics
import subprocess
import time

import jax
import jax.numpy as jnp
import numpy as np

import xjax
from xjax._internal.canonical import canonical_convs

ROWS = {"small_cnn": (50, 5), "resnet18": (16, 2)}      # rows B, repeats


def model(name):
    return (xjax.models.small_cnn(input_shape=(32, 32, 3)) if name == "small_cnn"
            else xjax.models.get_model(name))


def measure(name):
    m = model(name)
    b, repeats = ROWS.get(name, (16, 2))
    x = jnp.asarray(np.random.default_rng(0).random((b,) + m.input_shape), jnp.float32)

    def grad(z, p):
        return jax.grad(lambda a: m.model_fn(p, a)[:, 0].sum())(z)

    def scanned(body):
        def run(z, p):
            blocks = z.reshape((2, b // 2) + z.shape[1:])
            _, out = jax.lax.scan(lambda c, zi: (c, body(zi, p)), 0, blocks)
            return out.reshape(z.shape)
        return jax.jit(run)

    fns = {"one_call": jax.jit(grad), "scan": scanned(grad), "scan_canonical":
           scanned(canonical_convs(grad))}
    outs = {k: jax.block_until_ready(f(x, m.params)) for k, f in fns.items()}
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t = time.perf_counter()
            jax.block_until_ready(f(x, m.params))
            times[k].append(time.perf_counter() - t)
    row = {k: statistics.median(v) for k, v in times.items()}
    row.update(rows=b, blocks=2, repeats=repeats,
               max_abs_diff=float(jnp.abs(outs["scan"] - outs["scan_canonical"]).max()),
               max_abs=float(jnp.abs(outs["scan"]).max()),
               scan_over_one_call=row["scan"] / row["one_call"],
               canonical_over_one_call=row["scan_canonical"] / row["one_call"])
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="small_cnn,resnet18")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    out = {"command": "python benchmarks/loop_convs.py " + f"--models {args.models}",
           "commit": commit.strip(), "date": time.strftime("%Y-%m-%d"),
           "machine": f"{platform.machine()} {jax.devices()[0].device_kind}, "
                      f"{len(jax.devices())} device(s), jax {jax.__version__}",
           "models": {}}
    for name in args.models.split(","):
        out["models"][name] = measure(name)
        print(name, json.dumps(out["models"][name]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
