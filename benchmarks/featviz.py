"""Seconds per feature-visualization step per image, and the ratio to the model's own cost.

    python benchmarks/featviz.py [--model efficientnet_lite0] [--crops 32] [--size 512]
                                 [--steps 8] [--json out.json]

One MACO step on one image renders the image (inverse FFT), takes ``crops`` random crops resized
to the model input, runs forward+backward on them and pulls the gradient back to the phase. The
ratio divides the step time by ``crops`` x the model's forward+backward time per image at batch
``crops``: 1.0 means the step costs exactly its model calls. Fourier (Lucid transforms, one
model call per step) is timed the same way. Each run is compiled first, then timed.
"""

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

import xjax

fv = xjax.featviz


def _time(fn, *args):
    jax.block_until_ready(fn(*args))
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - t


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--crops", type=int, default=32)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    m = xjax.models.get_model(args.model)
    h, w, c = m.input_shape
    xb = jnp.asarray(np.random.default_rng(0).random((args.crops, h, w, c)), jnp.float32)
    grad = jax.jit(jax.grad(lambda p, z: m.model_fn(p, z).max(-1).sum(), argnums=1))
    fb = _time(grad, m.params, xb) / args.crops
    x1 = xb[:1]
    fb1 = _time(grad, m.params, x1)
    rows = []
    for name, pz, t, calls, unit in (
            ("maco", fv.maco((args.size, args.size, c)),
             fv.random_crops((h, w), nb_crops=args.crops), args.crops, fb),
            ("fourier", fv.fourier((h, w, c)), fv.lucid((h, w)), 1, fb1)):
        run = jax.jit(lambda p, k, pz=pz, t=t: fv.optimize(
            m.model_fn, p, fv.logit(1), pz, steps=args.steps, transforms=t, key=k).images)
        step = _time(run, m.params, jax.random.key(0)) / args.steps
        rows.append({"parameterization": name, "seconds_per_step": step, "model_calls": calls,
                     "ratio": step / (calls * unit)})
        print(f"{args.model} {name:8s} {step * 1e3:9.2f} ms/step/image  ({calls} fwd+bwd per step)"
              f"  ratio {rows[-1]['ratio']:.2f}", flush=True)
    dev = jax.devices()[0]
    print(f"# {getattr(dev, 'device_kind', dev.platform)}; fwd+bwd per image: {fb * 1e3:.2f} ms at "
          f"batch {args.crops}, {fb1 * 1e3:.2f} ms at batch 1", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": args.model, "crops": args.crops, "size": args.size,
                       "device": str(getattr(dev, "device_kind", dev.platform)),
                       "fwd_bwd_per_image": {"batch_crops": fb, "batch_1": fb1},
                       "rows": rows}, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
