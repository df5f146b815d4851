"""The ``xjax`` command.

    xjax explain --model efficientnet_lite0 --method saliency --images samples --out out/explain
    xjax explain --method saliency,grad_cam,rise --images my_photos/ --out out/cmp
    xjax explain --model small_cnn --dataset fashion_mnist --method saliency --out runs/sal \
        --batch-size 512 --precision bfloat16      # every device and host; resumable shards
    xjax lens build --model small_cnn --dataset fashion_mnist --out out/lens
    xjax lens serve out/lens

Each (image, method) gets a PNG (the photo, the map overlay, the top-5 classes), written
atomically; an interrupted run started again skips figures that exist (``--overwrite`` redoes
them). With several methods, a method x image grid (``grid.png``) is written too. Images are
explained a few at a time (``--images-per-step``) so the progress bar moves on long runs;
each step is one jitted computation.
"""

import argparse
import os
import sys

from xjax.attributions._registry import METHODS, STOCHASTIC


def _explain_dataset(args, model, methods) -> int:
    import jax
    import numpy as np

    import xjax

    if len(methods) != 1:
        raise SystemExit("xjax explain: --dataset runs one --method at a time")
    e = xjax.attributions.from_name(methods[0], model, batch_size=args.batch_size)
    key = jax.random.key(args.seed) if methods[0] in STOCHASTIC else None

    def explain(params, x, y):          # the predicted class, as for photos
        del y
        return e(params, x, model.model_fn(params, x).argmax(-1), key=key)

    if args.dataset == "fashion_mnist":
        source = xjax.data.fashion_mnist("test")
        decode = lambda items: (np.stack([it["image"] for it in items]).astype(np.float32) / 255,
                                np.array([it["label"] for it in items], np.int32))
    else:
        source, decode = xjax.lens.dataset_arrays(args.dataset, model), None
    settings = {"model": args.model, "method": methods[0], "hyperparameters": "defaults",
                "seed": args.seed if methods[0] in STOCHASTIC else None,
                "precision": args.precision, "dataset": args.dataset,
                "split": "test" if args.dataset == "fashion_mnist" else None}
    from xjax._internal.rundir import LockedError, SettingsMismatch

    try:
        steps = xjax.runs.explain_dataset(explain, model.params, source, args.out,
                                          batch_size=args.batch_size, decode=decode,
                                          settings=settings, overwrite=args.overwrite)
    except (SettingsMismatch, LockedError) as e:
        raise SystemExit(f"xjax explain: {e}") from None
    print(f"{steps} step(s) computed; maps in {os.path.abspath(args.out)} "
          f"(xjax.runs.load_maps reads them in dataset order)")
    return 0


def _explain(args) -> int:
    import jax
    import numpy as np
    from tqdm.auto import tqdm

    import xjax
    from xjax import plots

    methods = args.method.split(",")
    if args.dataset:
        xjax.runs.initialize()           # multi-host when a cluster environment is set
    model = xjax.models.with_precision(xjax.models.get_model(args.model), args.precision)
    if args.dataset:
        return _explain_dataset(args, model, methods)
    h, w, c = model.input_shape
    if args.images == "samples":
        named = [(p.name, p.image) for p in xjax.data.sample_photos()]
    else:
        named = xjax.data.load_images(args.images)
    os.makedirs(args.out, exist_ok=True)
    figure = lambda n, m: os.path.join(args.out, f"{n}_{m}.png")
    todo = [(n, im) for n, im in named
            if args.overwrite or not all(os.path.exists(figure(n, m)) for m in methods)]
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

    explainers = {m: xjax.attributions.from_name(m, model, batch_size=args.batch_size)
                  for m in methods}
    key = jax.random.key(args.seed)

    @jax.jit
    def run(params, x):
        logits = model.model_fn(params, x)
        y = logits.argmax(axis=-1)
        maps = {m: e(params, x, y, key=key if m in STOCHASTIC else None)
                for m, e in explainers.items()}
        return jax.nn.softmax(logits), maps

    label = (lambda k: model.class_names[k] if model.class_names else str(k))
    step = args.images_per_step
    all_x, all_maps, titles = [], {m: [] for m in methods}, []
    bar = tqdm(total=len(todo), desc=f"{args.method} on {args.model}", unit="image")
    for start in range(0, len(todo), step):
        group = todo[start:start + step]
        x = np.stack([prepare(im) for _, im in group])
        probs, maps = jax.device_get(run(model.params, x))
        for i, ((name, _), xi, p) in enumerate(zip(group, x, probs, strict=True)):
            top = np.argsort(-p)[:5]
            titles.append(f"{name}: {label(int(top[0]))}")
            for m in methods:
                fig = plots._figure(9, 3.2)
                axes = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1, 1.1]})
                axes[0].imshow(np.repeat(xi, 3, -1) if c == 1 else xi)
                axes[0].set_axis_off()
                axes[0].set_title(name, fontsize=9)
                plots.heatmap_overlay(axes[1], xi, maps[m][i],
                                      title=f"{m}: {label(int(top[0]))}")
                axes[2].barh(range(5)[::-1], p[top])
                axes[2].set_yticks(range(5)[::-1], [label(int(k)) for k in top], fontsize=8)
                axes[2].set_xlim(0, 1)
                axes[2].set_title("top-5 probability", fontsize=9)
                fig.tight_layout()
                plots.save(fig, figure(name, m), dpi=100)
                print(f"{figure(name, m)}\t{label(int(top[0]))}\t{p[top[0]]:.3f}", flush=True)
        all_x.append(x)
        for m in methods:
            all_maps[m].append(maps[m])
        bar.update(len(group))
    bar.close()
    if len(methods) > 1:
        fig = plots.method_grid(np.concatenate(all_x),
                                {m: np.concatenate(v) for m, v in all_maps.items()},
                                titles=titles)
        plots.save(fig, os.path.join(args.out, "grid.png"), dpi=80)
    return 0


def _train(args, parser) -> int:
    import json

    import xjax

    if args.epochs < 1 or args.n_train < 64:
        parser.error("--epochs must be >= 1 and --n-train >= 64")
    if args.n_test is not None and args.n_test < 1:
        parser.error("--n-test must be >= 1")
    source = args.source_dir or xjax.data.FASHION_MNIST_DIR
    x, y = xjax.data.fashion_mnist_arrays("train", source_dir=source)
    xt, yt = xjax.data.fashion_mnist_arrays("test", source_dir=source)
    if args.decoy == "corner":
        x_tr, y_tr, _ = xjax.data.decoy_patch(x, y, correlation=0.95, seed=0)
        x_te, y_te, decoy = xjax.data.decoy_patch(xt, yt, correlation=0.5, seed=1)
        kw = {"num_classes": 2, "corners": "top"}
    else:
        x_tr, y_tr = xjax.data.decoy_swatch(x, y, correlation=1.0, seed=0)[0], y
        x_te, decoy, _ = xjax.data.decoy_swatch(xt, yt, correlation=0.0, seed=1)
        y_te = yt
        kw = {"num_classes": 10, "corners": "all"}
    out = xjax.harmonization.harmonize_decoy(
        x_tr[:args.n_train], y_tr[:args.n_train], x_te[:args.n_test], y_te[:args.n_test],
        decoy[:args.n_test],
        lambda_harmonization=args.lam, seed=args.seed, epochs=args.epochs, progress=True,
        gradient=args.gradient,
        checkpoint_dir=os.path.abspath(os.path.join(args.out, "checkpoints")), **kw)
    metrics = {k: v for k, v in out.items() if k not in ("params",)}
    metrics.update({"lambda": args.lam, "seed": args.seed, "n_train": args.n_train,
                    "decoy": args.decoy, "gradient": args.gradient})
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1, default=float)
    print(json.dumps({k: v for k, v in metrics.items() if k != "history"}, default=float))
    return 0


def _lens(args, parser) -> int:
    import xjax

    if args.action == "serve":
        try:
            server = xjax.lens.serve(args.dir, port=args.port, background=True)
        except FileNotFoundError as e:
            parser.error(str(e))
        host, port = server.server_address[:2]
        print(f"Lens at http://{host}:{port}/index.html (Ctrl-C to stop)", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        return 0
    from xjax.models import ZOO

    if args.model not in ZOO:
        parser.error(f"--model: unknown zoo model {args.model!r}; choose from {sorted(ZOO)}")
    model = xjax.models.get_model(args.model)
    if args.checkpoint:
        model = model._replace(params=xjax.models.restore_checkpoint(args.checkpoint,
                                                                     model.params))
    try:
        x, y = xjax.lens.dataset_arrays(args.dataset, model, source_dir=args.source_dir)
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))
    names = list(model.class_names or [])
    classes = None
    if args.classes:
        classes = []
        for tok in args.classes.split(","):
            tok = tok.strip()
            if tok.isdigit():
                classes.append(int(tok))
            elif tok in names:
                classes.append(names.index(tok))
            else:
                parser.error(f"--classes: {tok!r} is neither a class index nor a class name")
    from xjax._internal.rundir import LockedError, SettingsMismatch

    try:
        xjax.lens.build_lens(
            model, x, y, args.out, classes=classes, nb_concepts=args.concepts,
            patch_size=args.patch_size, images_per_class=args.images_per_class,
            method=args.method, viz_steps=args.viz_steps, examples=args.examples,
            seed=args.seed, title=f"xjax Lens: {args.model} on {os.path.basename(args.dataset)}",
            model_name=args.model, dataset_name=args.dataset, overwrite=args.overwrite)
    except (SettingsMismatch, LockedError) as e:
        parser.error(str(e))
    print(f"Lens written to {os.path.abspath(args.out)}: open "
          f"{os.path.abspath(os.path.join(args.out, 'index.html'))} or run "
          f"`xjax lens serve {args.out}`")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xjax", description="Explain vision models in JAX.")
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("explain", help="explain images with an attribution method, write PNGs")
    ex.add_argument("--model", default="efficientnet_lite0",
                    help="zoo model name (efficientnet_lite0, small_cnn, resnet18, resnet50, "
                         "vit_tiny)")
    ex.add_argument("--method", default="saliency",
                    help="one method or a comma-separated list: " + ", ".join(METHODS))
    ex.add_argument("--images", default="samples",
                    help="a directory of images, or 'samples' for the bundled photos")
    ex.add_argument("--out", default="out/explain", help="output directory for the figures")
    ex.add_argument("--batch-size", type=int, default=32,
                    help="most images in one model call (inputs and perturbations together)")
    ex.add_argument("--images-per-step", type=int, default=4,
                    help="images explained per jitted step (progress granularity)")
    ex.add_argument("--seed", type=int, default=0, help="key of the stochastic methods")
    ex.add_argument("--overwrite", action="store_true",
                    help="redo images already explained; with --dataset, discard a run of "
                         "other settings in --out")
    ex.add_argument("--precision", default="float32", choices=("float32", "bfloat16"),
                    help="model calls in float32, or in bfloat16 (jmp policy; maps stay float32)")
    ex.add_argument("--dataset", default=None,
                    help="explain a whole dataset ('fashion_mnist' or a folder per class) over "
                         "every device and host, writing resumable shard files to --out")
    tr = sub.add_parser("train", help="train a model (harmonize: the decoy Fashion-MNIST run)")
    tr.add_argument("task", choices=["harmonize"],
                    help="harmonize: small_cnn on decoy Fashion-MNIST with garment maps")
    tr.add_argument("--lambda", dest="lam", type=float, default=1.0,
                    help="weight of the harmonization term (0: plain training)")
    tr.add_argument("--epochs", type=int, default=3)
    tr.add_argument("--n-train", type=int, default=12000, help="training images")
    tr.add_argument("--n-test", type=int, default=None,
                    help="decoy-randomized test images scored (default: the whole test split)")
    tr.add_argument("--decoy", choices=["corner", "swatch"], default="swatch",
                    help="swatch: 10 classes, a gray corner swatch whose shade encodes the label "
                         "(decoy_swatch); corner: Pullover/Coat with a white corner patch "
                         "(decoy_patch)")
    tr.add_argument("--gradient", choices=["signed", "absolute"], default="signed",
                    help="signed: the reference loss; absolute: xjax's variant on |gradient|")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--source-dir", default=None,
                    help="directory of the Fashion-MNIST IDX files (default: Debian's)")
    tr.add_argument("--out", default="runs/harmonize",
                    help="checkpoints (resumable) and metrics.json go here")
    lens = sub.add_parser("lens", help="build or serve a concept atlas (Lens)")
    lsub = lens.add_subparsers(dest="action", required=True)
    lb = lsub.add_parser("build", help="build (or resume) an atlas for a model and a dataset")
    lb.add_argument("--model", default="small_cnn", help="zoo model name")
    lb.add_argument("--checkpoint", default=None,
                    help="orbax checkpoint directory of the model's params (default: zoo weights)")
    lb.add_argument("--dataset", default="fashion_mnist",
                    help="'fashion_mnist' or a directory with one folder of images per class")
    lb.add_argument("--source-dir", default=None, help="Fashion-MNIST IDX directory")
    lb.add_argument("--classes", default=None,
                    help="comma-separated class indices or names (default: all predicted)")
    lb.add_argument("--concepts", type=int, default=6, help="CRAFT concepts per class")
    lb.add_argument("--patch-size", type=int, default=None,
                    help="crop side in pixels (default: 64/224 of the input side)")
    lb.add_argument("--images-per-class", type=int, default=200)
    lb.add_argument("--method", default="saliency", help="attribution method shown: "
                    + ", ".join(METHODS))
    lb.add_argument("--viz-steps", type=int, default=128,
                    help="MACO steps per concept visualization (0: none)")
    lb.add_argument("--examples", type=int, default=4, help="images per class with maps")
    lb.add_argument("--seed", type=int, default=0)
    lb.add_argument("--out", default="out/lens")
    lb.add_argument("--overwrite", action="store_true",
                    help="rebuild an atlas in --out that was built with other settings")
    ls = lsub.add_parser("serve", help="serve a built atlas on 127.0.0.1")
    ls.add_argument("dir", nargs="?", default="out/lens")
    ls.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    if args.command == "lens":
        return _lens(args, parser)
    if args.command == "train":
        return _train(args, parser)
    if args.command == "explain":
        from xjax.models import ZOO

        if args.model not in ZOO:
            parser.error(f"--model: unknown zoo model {args.model!r}; choose from {sorted(ZOO)}")
        if args.images != "samples" and not os.path.isdir(args.images):
            parser.error(f"--images: {args.images!r} is neither 'samples' nor a directory")
        unknown = [m for m in args.method.split(",") if m not in METHODS]
        if unknown:
            parser.error(f"--method: unknown {unknown}; choose from {', '.join(METHODS)}")
        if args.batch_size < 1 or args.images_per_step < 1:
            parser.error("--batch-size and --images-per-step must be >= 1")
        return _explain(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
