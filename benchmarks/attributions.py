"""Seconds per explained image and overhead ratio of every attribution method.

    python benchmarks/attributions.py --model small_cnn [--n 8] [--batch-size 64] [--json out.json]
    python benchmarks/attributions.py --model efficientnet_lite0 --n 1 --reduced

overhead ratio = method time / (model calls per image x the model's own time per image at the
same batch size), with forward+backward as the unit for gradient methods and forward for
perturbation methods. 1.0 means the explanation costs exactly its model calls. ``--reduced``
uses fewer samples (for slow CPUs); the ratio is per model call, so it stays comparable.
"""

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np
from _common import timed

import xjax

A = xjax.attributions

# name: (kwargs at the paper/Xplique defaults, reduced kwargs, kind, model calls per image)
def methods(h, reduced):
    occ = {"patch_size": 3, "patch_stride": 3} if not reduced else {"patch_size": h // 7,
                                                                  "patch_stride": h // 7}
    n_patch = ((h - occ["patch_size"]) // occ["patch_stride"] + 1) ** 2
    s = 16 if reduced else 50
    rise_n, lime_n, shap_n = (256, 64, 64) if reduced else (4000, 150, 800)
    sobol_n, hsic_n = (4, 128) if reduced else (32, 500)
    return {
        "saliency": ({}, "grad", 1),
        "gradient_input": ({}, "grad", 1),
        "integrated_gradients": ({"steps": s}, "grad", s),
        "smoothgrad": ({"nb_samples": s}, "grad", s),
        "vargrad": ({"nb_samples": s}, "grad", s),
        "squaregrad": ({"nb_samples": s}, "grad", s),
        "guided_backprop": ({}, "grad", 1),
        "deconvnet": ({}, "grad", 1),
        "grad_cam": ({}, "grad", 1),
        "grad_cam_pp": ({}, "grad", 1),
        "occlusion": (occ, "fwd", n_patch + 1),
        "rise": ({"nb_samples": rise_n}, "fwd", rise_n),
        "lime": ({"nb_samples": lime_n}, "fwd", lime_n),
        "kernel_shap": ({"nb_samples": shap_n}, "fwd", shap_n),
        "sobol": ({"nb_design": sobol_n}, "fwd", sobol_n * (8 * 8 + 2)),
        "hsic": ({"nb_design": hsic_n}, "fwd", hsic_n),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="small_cnn")
    parser.add_argument("--n", type=int, default=8, help="images explained per call")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reduced", action="store_true")
    parser.add_argument("--methods", default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    if args.model == "small_cnn":
        model = xjax.models.small_cnn(input_shape=(32, 32, 3))
    else:
        model = xjax.models.get_model(args.model)
    h, w, c = model.input_shape
    x = jnp.asarray(np.random.default_rng(0).random((args.n, h, w, c)), jnp.float32)
    b = args.batch_size
    xb = jnp.asarray(np.random.default_rng(1).random((b, h, w, c)), jnp.float32)
    fwd = jax.jit(model.model_fn)
    fwdbwd = jax.jit(jax.grad(lambda p, z: model.model_fn(p, z).max(-1).sum(), argnums=1))
    unit = {"fwd": timed(fwd, model.params, xb, repeats=args.repeats) / b,
            "grad": timed(fwdbwd, model.params, xb, repeats=args.repeats) / b}
    y = jnp.asarray(np.asarray(fwd(model.params, x)).argmax(-1), jnp.int32)
    dev = jax.devices()[0]
    print(f"# {args.model} {h}x{w}x{c}, N={args.n}, batch_size={b}, {dev.platform} "
          f"{getattr(dev, 'device_kind', '')}, jax {jax.__version__}; model per image: forward "
          f"{unit['fwd'] * 1e3:.3f} ms, forward+backward {unit['grad'] * 1e3:.3f} ms", flush=True)
    rows = []
    chosen = args.methods.split(",") if args.methods else None
    for name, (kw, kind, calls) in methods(h, args.reduced).items():
        if chosen and name not in chosen:
            continue
        e = A.from_name(name, model, batch_size=b, **kw)
        key = jax.random.key(0) if name in A.STOCHASTIC else None
        run = jax.jit(lambda p, xs, ys, e=e, key=key: e(p, xs, ys, key=key))
        t = timed(run, model.params, x, y, repeats=args.repeats) / args.n
        ratio = t / (calls * unit[kind])
        row = {"method": name, "kwargs": kw, "seconds_per_image": t, "model_calls": calls,
               "unit": kind, "overhead_ratio": ratio}
        extra = ""
        if name in ("sobol", "hsic"):
            # the same explainer on a model that costs nothing: masks, perturbation, estimator
            free = A.from_name(name, model._replace(
                model_fn=lambda p, z: jnp.broadcast_to(z.mean((1, 2, 3))[:, None],
                                                       (z.shape[0], 1000))), batch_size=b, **kw)
            t0 = timed(jax.jit(lambda p, xs, ys, e=free: e(p, xs, ys)), model.params, x, y,
                       repeats=args.repeats) / args.n
            row["seconds_without_model"] = t0
            extra = f"  masks+estimator {100 * t0 / t:5.1f}%"
        rows.append(row)
        print(f"{name:22s} {t:10.5f} s/image  calls {calls:5d} ({kind})  ratio {ratio:6.3f}{extra}",
              flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": args.model, "n": args.n, "batch_size": b, "device": str(dev),
                       "unit_seconds": unit, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
