"""Cost and tightness of the bound transform and of EVA.

    python benchmarks/bounds.py [--n 8] [--json benchmarks/results/bounds_cpu.json]
    python benchmarks/bounds.py --models small_cnn,lipschitz_cnn,efficientnet_lite0 --n 1

For each model: the forward time per image, then for IBP, CROWN-IBP and (small models) CROWN
the time per image of bounding the logits of l_inf boxes (ratio to the forward) and the mean
width of the logit bounds at several epsilons; EVA's time per image (7 x 7 groups, 50 boxes per
image, margin specification). All timings are the second call of a jitted function.
"""

import argparse
import functools
import json
import time

import jax
import jax.numpy as jnp

import xjax

B = xjax.bounds


def timed(fn, *args, repeats=3):
    jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t)
    return best


def model(name):
    if name == "small_cnn":
        return xjax.models.small_cnn(pretrained="fashion_mnist")
    if name == "lipschitz_cnn":
        module = xjax.lipschitz.lipschitz_cnn(key=jax.random.key(0))
        return xjax.models.model_from_nnx(xjax.lipschitz.export(module), input_shape=(28, 28, 1))
    return xjax.models.get_model(name)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="small_cnn,lipschitz_cnn")
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--epsilons", default="0.001,0.01,0.03")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    rows = []
    for name in args.models.split(","):
        m = model(name)
        x = jax.random.uniform(jax.random.key(0), (args.n,) + tuple(m.input_shape))
        y = jnp.argmax(m.model_fn(m.params, x), -1).astype(jnp.int32)
        fwd = timed(jax.jit(m.model_fn), m.params, x) / args.n
        methods = ["ibp", "crown_ibp"] + (["crown"] if name != "efficientnet_lite0" else []) + \
            (["lipschitz"] if name == "lipschitz_cnn" else [])
        k = m.model_fn(m.params, x[:1]).shape[-1]
        # CROWN on 1000 logits needs 2000 backward rows; large models use a margin spec of 3
        spec = None if k <= 10 else jnp.eye(k)[:3] - jnp.eye(k)[3:4]
        for method in methods:
            g = jax.jit(functools.partial(B.bounds(m.model_fn, method=method), spec=spec))
            row = {"model": name, "method": method, "device": jax.devices()[0].device_kind,
                   "forward_s_per_image": fwd}
            for eps in map(float, args.epsilons.split(",")):
                iv = g(m.params, x - eps, x + eps)
                row[f"width@{eps}"] = float(jnp.mean(iv.upper - iv.lower))
            t = timed(g, m.params, x - 0.01, x + 0.01) / args.n
            row.update({"s_per_image": t, "ratio_to_forward": t / fwd})
            rows.append(row)
            print(row, flush=True)
        eva = jax.jit(xjax.attributions.eva(m.model_fn, epsilon=0.01, grid_size=7,
                                            top_k_rivals=3 if k > 10 else None,
                                            batch_size=8 if k > 10 else 64))
        t = timed(eva, m.params, x, y, repeats=1) / args.n
        rows.append({"model": name, "method": "eva (crown_ibp, 7x7)", "s_per_image": t,
                     "ratio_to_forward": t / fwd, "forward_s_per_image": fwd,
                     "device": jax.devices()[0].device_kind})
        print(rows[-1], flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
