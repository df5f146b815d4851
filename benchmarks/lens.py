"""Build time of a Lens atlas per class, compilation included and not.

    python benchmarks/lens.py --json benchmarks/results/lens_lite0_cpu.json

Builds ``make demo``'s ImageNet atlas (EfficientNet-Lite0 over the crops of the bundled photos,
``--dataset samples``) from scratch and reads each class's build seconds, and the seconds of
each phase (CRAFT fit, importance, MACO visualization, concept maps, crops, example maps), from
its ``class.json``. The first class pays the compilations of its bucket; the others of the same
bucket reuse them, so the cost of a 1000-class atlas is about ``1000 x`` the per-class time of a
later class, plus one first class per bucket.

The visualization's model-call time is measured apart: one forward+backward of ``features_fn``
on ``concepts x viz_crops`` images (one MACO step's model call, compile excluded) times the
steps; the visualization phase over it is MACO's overhead ratio.
"""

import argparse
import json
import os
import tempfile
import time

import jax
import jax.numpy as jnp
from _common import provenance, timed

import xjax

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concepts", type=int, default=4)
    parser.add_argument("--images-per-class", type=int, default=8)
    parser.add_argument("--viz-steps", type=int, default=32)
    parser.add_argument("--viz-crops", type=int, default=8)
    parser.add_argument("--examples", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    model = xjax.models.efficientnet_lite0()
    x, y = xjax.lens.sample_crops(model)
    settings = {"concepts": args.concepts, "images_per_class": args.images_per_class,
                "viz_steps": args.viz_steps, "viz_crops": args.viz_crops, "examples": args.examples,
                "batch_size": args.batch_size}
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        records = xjax.lens.build_lens(
            model, x, y, out, nb_concepts=args.concepts, images_per_class=args.images_per_class,
            viz_steps=args.viz_steps, viz_crops=args.viz_crops, examples=args.examples,
            batch_size=args.batch_size,
            model_name="efficientnet_lite0", dataset_name="samples", progress=False)
        total = time.perf_counter() - t0
    classes = [{"name": r["name"], "wnid": r["wnid"], "images": r["images"],
                "seconds": r["seconds"], "phase_seconds": r["phase_seconds"]} for r in records]
    for c in classes:
        print(f"{c['name']:24s} {c['images']:3d} images  {c['seconds']:7.1f} s", flush=True)
    later = [c["seconds"] for c in classes[1:]]
    phases = {k: sum(c["phase_seconds"][k] for c in classes[1:]) / len(later)
              for k in classes[0]["phase_seconds"]} if later else None
    rows = args.concepts * args.viz_crops                  # one MACO step's images
    xb = jnp.asarray(x[:1].repeat(rows, 0))
    step = jax.jit(jax.grad(lambda v: model.features_fn(model.params, v).sum()))
    step_s = timed(step, xb, repeats=2)
    maco_calls = args.viz_steps * step_s
    result = {**provenance(), "model": "efficientnet_lite0", "dataset": "samples",
              "images": int(len(x)), "settings": settings, "total_seconds": total,
              "classes": classes,
              "first_class_seconds": classes[0]["seconds"] if classes else None,
              "later_class_seconds_mean": sum(later) / len(later) if later else None,
              "later_class_phase_seconds_mean": phases,
              "maco_step_model_call_seconds": step_s, "maco_rows_per_step": rows,
              "maco_model_call_seconds": maco_calls,
              "maco_overhead_ratio": phases["visualization"] / maco_calls if phases else None}
    print(f"total {total:.1f} s; first class {result['first_class_seconds']} s; later classes "
          f"{result['later_class_seconds_mean']} s on average; phases {phases}; MACO model calls "
          f"{maco_calls:.1f} s (ratio {result['maco_overhead_ratio']})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
