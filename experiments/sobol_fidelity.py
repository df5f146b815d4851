"""Sobol, HSIC, RISE, occlusion, saliency and integrated gradients on EfficientNet-Lite0 over the
bundled photos, judged by Deletion and Insertion (logits and probabilities).

    python experiments/sobol_fidelity.py            # 224 px, the methods' default settings
    python experiments/sobol_fidelity.py --quick    # 64 px, 2 photos, reduced samples (CI)

Writes ``<out>/sobol_fidelity.json`` (resumable: finished methods are skipped on a rerun) and
``<out>/sobol_fidelity.md``.
"""

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

sys.path.insert(0, os.path.dirname(__file__))
from _results import Results, start_devices  # noqa: E402

import xjax  # noqa: E402

A, M = xjax.attributions, xjax.metrics


def settings(quick: bool):
    if quick:
        return {"sobol": {"grid_size": 4, "nb_design": 8}, "hsic": {"grid_size": 4,
                                                                    "nb_design": 64},
                "rise": {"nb_samples": 128, "grid_size": 4},
                "occlusion": {"patch_size": 16, "patch_stride": 16},
                "saliency": {}, "integrated_gradients": {"steps": 8}}
    return {"sobol": {}, "hsic": {}, "rise": {}, "occlusion": {"patch_size": 16,
                                                              "patch_stride": 16},
            "saliency": {}, "integrated_gradients": {}}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="experiments/results")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)
    start_devices()
    size = 64 if args.quick else 224
    names = ["coffee", "camera"] if args.quick else None
    model = xjax.models.efficientnet_lite0()
    model = model._replace(params=xjax.runs.replicate(model.params))   # on every device
    photos = xjax.data.sample_photos(names)
    x = xjax.runs.shard_rows(np.stack([xjax.data.resize_center_crop(p.image, size)
                                       for p in photos]))
    y = jnp.argmax(jax.jit(model.model_fn)(model.params, x), -1).astype(jnp.int32)
    steps = 8 if args.quick else 20
    metrics = {
        "deletion_logit": M.deletion(model.model_fn, steps=steps, batch_size=args.batch_size),
        "insertion_logit": M.insertion(model.model_fn, steps=steps, batch_size=args.batch_size),
        "deletion_prob": M.deletion(model.model_fn, steps=steps, activation="softmax",
                                    batch_size=args.batch_size),
        "insertion_prob": M.insertion(model.model_fn, steps=steps, activation="softmax",
                                      batch_size=args.batch_size),
    }
    # per-device code (xjax.runs.per_device): each device scores and explains its own photos
    scores = jax.jit(lambda p, a, b, maps: {k: xjax.runs.per_device(m)(p, a, b, maps)
                                            for k, m in metrics.items()})  # compiled once

    def evaluate(p, a, b, maps):  # per-image scores averaged on the host
        return {k: np.mean(v) for k, v in xjax.runs.gather_rows(scores(p, a, b, maps)).items()}
    tag = "quick" if args.quick else "full"
    results = Results(os.path.join(args.out, f"sobol_fidelity_{tag}.json"))
    todo = [m for m in settings(args.quick) if not results.done(m)]
    for name in tqdm(todo, desc="methods"):
        kw = settings(args.quick)[name]
        e = A.from_name(name, model, batch_size=args.batch_size, **kw)
        key = jax.random.key(0) if name in A.STOCHASTIC else None
        t = time.perf_counter()
        maps = jax.block_until_ready(jax.jit(
            lambda p, a, b, e=e, key=key: xjax.runs.per_device(e)(p, a, b, key=key))(
            model.params, x, y))
        seconds = (time.perf_counter() - t) / len(x)
        row = {k: float(v) for k, v in evaluate(model.params, x, y, maps).items()}
        row["first_call_seconds_per_image"] = seconds  # includes compilation
        row["settings"] = str(kw or "defaults")
        results.add(name, row, meta={"model": "efficientnet_lite0", "size": size,
                                     "photos": [p.name for p in photos]})
    cols = list(metrics) + ["first_call_seconds_per_image", "settings"]
    cmd = "python experiments/sobol_fidelity.py" + (" --quick" if args.quick else "")
    results.write_markdown(os.path.join(args.out, f"sobol_fidelity_{tag}.md"), cols,
                           f"Deletion / Insertion on EfficientNet-Lite0, {len(x)} photos at {size} px"
                           " (deletion: lower is better; insertion: higher)", cmd)
    print(results.markdown(cols, "sobol fidelity", cmd))
    return results


if __name__ == "__main__":
    main()
