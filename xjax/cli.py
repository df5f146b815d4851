"""The ``xjax`` command.

    xjax explain --model efficientnet_lite0 --method saliency --images samples --out out/explain

Each image gets a PNG (the photo, the map overlay, the top-5 classes), written atomically; an
interrupted run started again skips images whose figure exists (``--overwrite`` redoes them).
"""

import argparse
import os
import sys

METHODS = ("saliency",)


def _explain(args) -> int:
    import jax
    import numpy as np
    from tqdm.auto import tqdm

    import xjax
    from xjax import plots

    model = xjax.models.get_model(args.model)
    h, w, c = model.input_shape
    if args.images == "samples":
        named = [(p.name, p.image) for p in xjax.data.sample_photos()]
    else:
        named = xjax.data.load_images(args.images)
    os.makedirs(args.out, exist_ok=True)
    todo = [(n, im) for n, im in named
            if args.overwrite or not os.path.exists(os.path.join(args.out, f"{n}_{args.method}.png"))]
    skipped = len(named) - len(todo)
    if skipped:
        print(f"skipping {skipped} image(s) already explained in {args.out}", file=sys.stderr)
    if not todo:
        return 0

    def prepare(im):
        x = xjax.data.resize_center_crop(im, h)
        if c == 1 and x.shape[-1] == 3:
            x = x.mean(axis=-1, keepdims=True)
        return x

    explainer = getattr(xjax.attributions, args.method)(model.model_fn, batch_size=args.batch_size)

    @jax.jit
    def run(params, x):
        logits = model.model_fn(params, x)
        y = logits.argmax(axis=-1)
        return jax.nn.softmax(logits), y, explainer(params, x, y)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bar = tqdm(range(0, len(todo), args.batch_size), desc=f"{args.method} on {args.model}",
               unit="batch")
    for start in bar:
        group = todo[start:start + args.batch_size]
        x = np.stack([prepare(im) for _, im in group])
        probs, ys, maps = jax.device_get(run(model.params, x))
        for (name, _), xi, p, mi in zip(group, x, probs, maps, strict=True):
            top = np.argsort(-p)[:5]
            label = (lambda k: model.class_names[k] if model.class_names else str(k))
            fig, axes = plt.subplots(1, 3, figsize=(9, 3.2),
                                     gridspec_kw={"width_ratios": [1, 1, 1.1]})
            axes[0].imshow(np.repeat(xi, 3, -1) if c == 1 else xi)
            axes[0].set_axis_off()
            axes[0].set_title(name, fontsize=9)
            plots.heatmap_overlay(axes[1], xi, mi, title=f"{args.method}: {label(int(top[0]))}")
            axes[2].barh(range(5)[::-1], p[top])
            axes[2].set_yticks(range(5)[::-1], [label(int(k)) for k in top], fontsize=8)
            axes[2].set_xlim(0, 1)
            axes[2].set_title("top-5 probability", fontsize=9)
            fig.tight_layout()
            final = os.path.join(args.out, f"{name}_{args.method}.png")
            tmp = final + ".tmp.png"
            fig.savefig(tmp, dpi=100)
            plt.close(fig)
            os.replace(tmp, final)
            print(f"{final}\t{label(int(top[0]))}\t{p[top[0]]:.3f}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xjax", description="Explain vision models in JAX.")
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("explain", help="explain images with an attribution method, write PNGs")
    ex.add_argument("--model", default="efficientnet_lite0",
                    help="zoo model name (efficientnet_lite0, small_cnn, resnet18, resnet50, "
                         "vit_tiny)")
    ex.add_argument("--method", default="saliency", choices=METHODS)
    ex.add_argument("--images", default="samples",
                    help="a directory of images, or 'samples' for the bundled photos")
    ex.add_argument("--out", default="out/explain", help="output directory for the figures")
    ex.add_argument("--batch-size", type=int, default=8, help="images per model call")
    ex.add_argument("--overwrite", action="store_true", help="redo images already explained")
    args = parser.parse_args(argv)
    if args.command == "explain":
        from xjax.models import ZOO

        if args.model not in ZOO:
            parser.error(f"--model: unknown zoo model {args.model!r}; choose from {sorted(ZOO)}")
        if args.images != "samples" and not os.path.isdir(args.images):
            parser.error(f"--images: {args.images!r} is neither 'samples' nor a directory")
        if args.batch_size < 1:
            parser.error("--batch-size must be >= 1")
        return _explain(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
