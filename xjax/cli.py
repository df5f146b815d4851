"""The ``xjax`` command.

    xjax explain --model efficientnet_lite0 --method saliency --images samples --out out/explain
    xjax explain --method sobol --param nb_design=16 --param grid_size=6 --images 'photos/*.jpg'
    xjax explain --method saliency,grad_cam,rise --target 'tabby cat' --save-maps maps.npz
    xjax explain --model mypackage.models:my_model --images photo.png     # your own Model
    xjax explain --method sobol --help           # lists sobol's hyperparameters and defaults
    xjax explain --model small_cnn --dataset fashion_mnist --method saliency --out runs/sal \
        --batch-size 512 --precision bfloat16      # every device and host; resumable shards
    xjax lens build --model small_cnn --dataset fashion_mnist --out out/lens
    xjax lens serve out/lens

Each (image, method) gets a PNG (the photo, the map overlay, the top-5 classes), written
atomically; an interrupted run started again skips figures that exist (``--overwrite`` redoes
them). With several methods, a method x image grid (``grid.png``) is written too; with
``--save-maps`` the float32 maps, the image names and the settings go to one ``.npz``
(:func:`xjax.runs.load_maps_file` reads it). Images are explained a few at a time
(``--images-per-step``, one jitted computation compiled once), with progress over the images
and, inside a step estimated to be long, over the model-call blocks (``--block-progress``).
Unreadable images are skipped with a warning.

JAX is imported only once a command runs, so ``xjax --help`` answers at once.
"""

import argparse
import glob
import os
import sys
from collections.abc import Callable

from xjax._internal.registry import METHODS, REGISTRY, STOCHASTIC, hyperparameters, parse_value

_GLOB_CHARS = set("*?[")


def _fail(argument: str, message: str):
    raise SystemExit(f"xjax explain: {argument}: {message}")


def _load_model(spec: str):
    """A zoo name, or ``package.module:function`` returning an :class:`xjax.typing.Model`."""
    import importlib

    import xjax

    if ":" not in spec:
        from xjax.models import ZOO

        if spec not in ZOO:
            _fail("--model", f"unknown zoo model {spec!r}; choose from {', '.join(sorted(ZOO))} "
                  "or give package.module:function returning an xjax.typing.Model")
        return xjax.models.get_model(spec)
    module, _, attr = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        _fail("--model", f"cannot load {spec!r} ({type(e).__name__}: {e})")
    model = fn() if callable(fn) else fn
    if not isinstance(model, xjax.typing.Model):
        _fail("--model", f"{spec} must return an xjax.typing.Model (model_fn, params, "
              f"features_fn, head_fn, input_shape, class_names), got {type(model).__name__}")
    return model


def _image_paths(patterns: list[str]) -> list[str]:
    """Image files from directories, files and globs, in order, without repeats."""
    from xjax.data import IMAGE_EXTENSIONS, image_files

    paths = []
    for p in patterns:
        if os.path.isdir(p):
            found = image_files(p)
            if not found:
                _fail("--images", f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in {p!r}")
        elif _GLOB_CHARS & set(p):
            found = sorted(f for f in glob.glob(p) if os.path.isfile(f))
            if not found:
                _fail("--images", f"no file matches {p!r}")
        elif os.path.isfile(p):
            found = [p]
        else:
            _fail("--images", f"{p!r} does not exist (give 'samples', a directory, an image file "
                  "or a glob such as 'photos/*.jpg')")
        paths += [f for f in found if f not in paths]
    return paths


def _read_images(patterns: list[str]) -> list[tuple[str, object]]:
    """``(name, u8[H, W, 3])`` per readable image; an unreadable one is skipped with a warning."""
    import xjax

    if patterns == ["samples"]:
        return [(p.name, p.image) for p in xjax.data.sample_photos()]
    named, skipped, seen = [], [], set()
    for path in _image_paths(patterns):
        try:
            image = xjax.data.read_image(path)
        except ValueError as e:
            print(f"xjax explain: warning: skipping {e}", file=sys.stderr)
            skipped.append(path)
            continue
        name = stem = os.path.splitext(os.path.basename(path))[0]
        k = 2
        while name in seen:                       # same file name in two folders
            name, k = f"{stem}_{k}", k + 1
        seen.add(name)
        named.append((name, image))
    if skipped:
        print(f"xjax explain: skipped {len(skipped)} unreadable image(s) of "
              f"{len(skipped) + len(named)}: {', '.join(skipped)}", file=sys.stderr)
    if not named:
        _fail("--images", "none of the images could be read")
    return named


def _batch_size(text: str) -> int | str:
    """``--batch-size``: a positive int, or ``auto`` (chosen by :func:`xjax.tune.batch_size`)."""
    if text == "auto":
        return text
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', got {text!r}")
    return int(text)


def _tuned(model, mode: str, where: str) -> tuple[int, float | None]:
    """The measured batch size of ``model``'s ``mode`` program (cached; see xjax.tune) and the
    images per second measured at it."""
    import numpy as np

    import xjax

    h, w, c = model.input_shape
    choice = xjax.tune.choose(model.model_fn, model.params, np.full((1, h, w, c), 0.5, np.float32),
                              mode=mode)
    rates = ", ".join(f"{b}: {r:.0f}" if r else f"{b}: out of memory"
                      for b, r in choice.images_per_second.items())
    print(f"{where}: --batch-size auto: {choice.batch_size} ({mode} images/s at {rates}; "
          + ("cached" if choice.cached else "measured") + (f" in {choice.cache}" if choice.cache
                                                           else "") + ")", file=sys.stderr)
    return choice.batch_size, choice.images_per_second.get(choice.batch_size)


def _resolve_batch_sizes(args, model, methods: list[str], params: dict[str, dict]
                         ) -> dict[str, float]:
    """Fill in each method's ``batch_size`` when ``--batch-size auto``: one model call per
    image (photos): the images of a step; EVA: its factory default; else measured for the
    method's kind of model call (forward or forward+backward), once per kind. Returns the
    measured images per second of the methods whose batch size was measured."""
    tuned: dict[str, tuple[int, float | None]] = {}
    rates = {}
    for m in methods:
        if params[m]["batch_size"] is not None:      # --batch-size N or --param batch_size=N
            continue
        calls = REGISTRY[m].model_calls
        if REGISTRY[m].single_call and not args.dataset:
            params[m]["batch_size"] = args.images_per_step
        elif calls is None:
            params[m]["batch_size"] = hyperparameters(m)["batch_size"].default
        else:
            if calls not in tuned:
                tuned[calls] = _tuned(model, calls, "xjax explain")
            params[m]["batch_size"], rate = tuned[calls]
            if rate:
                rates[m] = rate
    return rates


def _method_params(methods: list[str], items: list[str],
                   batch_size: int | None) -> dict[str, dict]:
    """``--param name=value`` (every chosen method that has ``name``) or ``method.name=value``."""
    known = {m: hyperparameters(m) for m in methods}
    chosen = {m: {"batch_size": batch_size} for m in methods}
    for item in items:
        key, eq, text = item.partition("=")
        if not eq or not key:
            _fail("--param", f"expected name=value or method.name=value, got {item!r}")
        method, dot, name = key.rpartition(".")
        targets = [method] if dot else [m for m in methods if name in known[m]]
        if dot and method not in methods:
            _fail("--param", f"{method!r} in {item!r} is not one of the chosen methods "
                  f"({', '.join(methods)})")
        if not targets or any(name not in known[m] for m in targets):
            listing = "; ".join(f"{m}: {', '.join(known[m])}" for m in targets or methods)
            _fail("--param", f"no chosen method has the hyperparameter {name!r} ({listing})")
        for m in targets:
            chosen[m][name] = parse_value(text)
    return chosen


def _target(spec: str, class_names, n_classes: Callable[[], int]):
    """None for top-1, else the class index of ``spec`` (an index or a class name); the number
    of classes is only computed (a trace of the model) for an index."""
    if spec == "top1":
        return None
    if spec.lstrip("-").isdigit():
        k, n_classes = int(spec), n_classes()
        if not 0 <= k < n_classes:
            _fail("--target", f"class index {k} is outside [0, {n_classes}) for this model")
        return k
    if not class_names:
        _fail("--target", f"the model has no class names; give a class index, got {spec!r}")
    from xjax.data import class_index

    try:                          # any case; ImageNet models also take WordNet IDs and lemmas
        return class_index(spec, class_names, where="class")
    except ValueError as e:
        _fail("--target", f"expected top1, a class index or a class name: {e}")


def _build(methods: list[str], model, params: dict[str, dict]) -> dict:
    import xjax

    explainers = {}
    for m in methods:
        try:
            explainers[m] = xjax.attributions.from_name(m, model, **params[m])
        except (ValueError, TypeError) as e:
            message = str(e)
            _fail("--param", message if message.startswith(f"{m}:") else f"{m}: {message}")
    return explainers


def _settings(args, methods, params, target) -> dict:
    import datetime

    import xjax

    return {"model": args.model, "methods": methods, "hyperparameters": params,
            "target": "top1" if target is None else int(target),
            "seed": args.seed if set(methods) & set(STOCHASTIC) else None,
            "precision": args.precision, "xjax": xjax.__version__,
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}


def _explain_dataset(args, model, methods, params, target) -> int:
    import jax
    import numpy as np

    import xjax

    if len(methods) != 1:
        _fail("--dataset", "runs one --method at a time")
    (e,) = _build(methods, model, params).values()
    key = jax.random.key(args.seed) if methods[0] in STOCHASTIC else None

    def explain(p, x, y):          # the predicted class (or --target), as for photos
        del y
        t = (model.model_fn(p, x).argmax(-1) if target is None
             else jax.numpy.full((x.shape[0],), target, jax.numpy.int32))
        return e(p, x, t, key=key)

    h, w, c = model.input_shape
    if args.dataset == "fashion_mnist":
        if (h, w, c) != (28, 28, 1):
            _fail("--dataset", f"fashion_mnist images are 28x28x1 but --model {args.model} takes "
                  f"{h}x{w}x{c}")
        source = xjax.data.fashion_mnist("test")
        decode = lambda items: (np.stack([it["image"] for it in items]).astype(np.float32) / 255,
                                np.array([it["label"] for it in items], np.int32))
    else:
        try:
            source, decode = xjax.lens.dataset_arrays(args.dataset, model), None
        except (FileNotFoundError, ValueError) as err:
            _fail("--dataset", str(err).removeprefix("lens: ").removeprefix("--dataset "))
    defaults = all(set(p) == {"batch_size"} for p in params.values())
    settings = {"model": args.model, "method": methods[0],
                "hyperparameters": "defaults" if defaults else params[methods[0]],
                "seed": args.seed if methods[0] in STOCHASTIC else None,
                "precision": args.precision, "dataset": args.dataset,
                "split": "test" if args.dataset == "fashion_mnist" else None}
    if target is not None:
        settings["target"] = int(target)
    from xjax._internal.rundir import LockedError, SettingsMismatch

    try:
        steps = xjax.runs.explain_dataset(explain, model.params, source, args.out,
                                          batch_size=params[methods[0]]["batch_size"],
                                          decode=decode,
                                          settings=settings, overwrite=args.overwrite)
    except (SettingsMismatch, LockedError) as err:
        raise SystemExit(f"xjax explain: {err}") from None
    print(f"{steps} step(s) computed; maps in {os.path.abspath(args.out)} "
          f"(xjax.runs.load_maps reads them in dataset order)")
    return 0


class _BlockBar:
    """Progress inside a step: the model-call blocks of the traced program (see
    :func:`xjax._internal.batching.progress`), with tqdm's rate and estimate."""

    def __init__(self, tqdm):
        self.total, self.bar = 0, tqdm(total=0, desc="  model-call blocks", unit="block",
                                       leave=False)

    def planned(self, blocks: int) -> None:
        self.total += blocks
        self.bar.reset(total=self.total)

    def done(self) -> None:
        self.bar.update(1)

    def restart(self) -> None:
        self.bar.reset(total=self.total)

    def close(self) -> None:
        self.bar.close()


class _BlockCount:
    """Counts the model-call blocks traced (a progress sink that never reports)."""

    def __init__(self):
        self.blocks = 0

    def planned(self, blocks: int) -> None:
        self.blocks += blocks

    def done(self) -> None:
        pass


BLOCK_PROGRESS_SECONDS = 30.0    # --block-progress auto: steps estimated longer show blocks
BLOCK_PROGRESS_CALLS = 64        # ... or, with no measured throughput, making more calls


def _show_blocks(mode: str, counts: dict[str, _BlockCount], params: dict[str, dict],
                 rates: dict[str, float]) -> bool:
    """Whether a step shows progress over its model-call blocks (``--block-progress``): ``on``,
    ``off``, or ``auto``: when the model calls of the methods with a measured throughput are
    estimated (blocks x batch size over images per second) to take over
    ``BLOCK_PROGRESS_SECONDS``, or the methods without one (an explicit ``--batch-size``, EVA,
    one call per image) make more than ``BLOCK_PROGRESS_CALLS`` calls."""
    total = sum(c.blocks for c in counts.values())
    if mode != "auto" or not total:
        return mode == "on" and total > 0
    seconds = sum(c.blocks * params[m]["batch_size"] / rates[m]
                  for m, c in counts.items() if m in rates)
    unmeasured = sum(c.blocks for m, c in counts.items() if m not in rates)
    return seconds > BLOCK_PROGRESS_SECONDS or unmeasured > BLOCK_PROGRESS_CALLS


def _explain(args) -> int:
    methods = args.method.split(",")
    params = _method_params(methods, args.param,
                            None if args.batch_size == "auto" else args.batch_size)
    if args.dataset:
        import xjax

        xjax.runs.initialize()           # multi-host when a cluster environment is set
    model = _load_model(args.model)
    import jax
    import numpy as np
    from tqdm.auto import tqdm

    import xjax
    from xjax import plots
    from xjax._internal.batching import progress

    model = xjax.models.with_precision(model, args.precision)
    h, w, c = model.input_shape
    n_classes = lambda: jax.eval_shape(model.model_fn, model.params, jax.ShapeDtypeStruct(
        (1, h, w, c), np.float32)).shape[-1]
    target = _target(args.target, model.class_names, n_classes)
    rates = _resolve_batch_sizes(args, model, methods, params)
    if args.dataset:
        return _explain_dataset(args, model, methods, params, target)
    named = _read_images(args.images)
    explainers = _build(methods, model, params)
    os.makedirs(args.out, exist_ok=True)
    figure = lambda n, m: os.path.join(args.out, f"{n}_{m}.png")
    exists = lambda n: all(os.path.exists(figure(n, m)) for m in methods)
    todo = [(n, im) for n, im in named if args.overwrite or args.save_maps or not exists(n)]
    skipped = len(named) - len(todo)
    if skipped:
        print(f"skipping {skipped} image(s) already explained in {args.out}", file=sys.stderr)
    if not todo:
        return 0

    def prepare(im):
        x = xjax.data.resize_center_crop(im, h)
        return x.mean(axis=-1, keepdims=True) if c == 1 and x.shape[-1] == 3 else x

    key = jax.random.key(args.seed)

    def program(sink: Callable[[str], object]):
        """The jitted step; each method traced inside the context ``sink(method)``."""
        def run(p, x):
            logits = model.model_fn(p, x)
            y = logits.argmax(axis=-1) if target is None else jax.numpy.full(
                (x.shape[0],), target, jax.numpy.int32)
            maps = {}
            for m, e in explainers.items():
                with sink(m):
                    maps[m] = e(p, x, y, key=key if m in STOCHASTIC else None)
            return jax.nn.softmax(logits), y, maps
        return jax.jit(run)

    label = (lambda k: model.class_names[k] if model.class_names else str(k))
    step = min(args.images_per_step, len(todo))
    example = jax.ShapeDtypeStruct((step, h, w, c), np.float32)
    # Traced once counting each method's model-call blocks; only a step estimated to be long
    # is traced again with a host report per block (a program with host callbacks cannot go to
    # the persistent compilation cache, so it would compile on every run).
    counts = {m: _BlockCount() for m in methods}
    lowered = program(lambda m: progress(counts[m], report=False)).lower(model.params, example)
    blocks = _BlockBar(tqdm) if _show_blocks(args.block_progress, counts, params, rates) else None
    if blocks and args.block_progress == "auto":
        print("xjax explain: a long step: progress over its model-call blocks, so its program "
              "is compiled on every run (--block-progress off keeps it in the compilation "
              "cache)", file=sys.stderr)
    run = (program(lambda m: progress(blocks)).lower(model.params, example)
           if blocks else lowered).compile()
    all_x, all_maps, titles = [], {m: [] for m in methods}, []
    bar = tqdm(total=len(todo), desc=f"{args.method} on {args.model}", unit="image")
    for start in range(0, len(todo), step):
        group = todo[start:start + step]
        x = np.stack([prepare(im) for _, im in group])
        padded = np.concatenate([x, np.repeat(x[-1:], step - len(x), 0)]).astype(np.float32)
        if blocks:
            blocks.restart()
        probs, ys, maps = jax.device_get(run(model.params, padded))
        for i, ((name, _), xi) in enumerate(zip(group, x, strict=False)):
            top = np.argsort(-probs[i])[:5]
            titles.append(f"{name}: {label(int(ys[i]))}")
            for m in methods:
                if args.overwrite or not os.path.exists(figure(name, m)):
                    _write_figure(plots, figure(name, m), name, xi, maps[m][i], m,
                                  probs[i], top, label, int(ys[i]), c)
                print(f"{figure(name, m)}\t{label(int(ys[i]))}\t{probs[i][ys[i]]:.3f}",
                      flush=True)
        all_x.append(x)
        for m in methods:
            all_maps[m].append(maps[m][:len(group)])
        bar.update(len(group))
    if blocks:
        blocks.close()
    bar.close()
    stacked = {m: np.concatenate(v) for m, v in all_maps.items()}
    if len(methods) > 1:
        fig = plots.methods(np.concatenate(all_x), stacked, titles=titles)
        plots.save(fig, os.path.join(args.out, "grid.png"), dpi=80)
    if args.save_maps:
        xjax.runs.save_maps_file(args.save_maps, [n for n, _ in todo], stacked,
                                 _settings(args, methods, params, target))
        print(f"maps of {len(todo)} image(s) in {os.path.abspath(args.save_maps)} "
              "(xjax.runs.load_maps_file reads them)", file=sys.stderr)
    return 0


def _write_figure(plots, path, name, xi, map_i, method, probs, top, label, y, c):
    import numpy as np

    fig = plots.figure(9, 3.2)
    axes = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1, 1.1]})
    axes[0].imshow(np.repeat(xi, 3, -1) if c == 1 else xi)
    axes[0].set_axis_off()
    axes[0].set_title(name, fontsize=9)
    plots.heatmap_overlay(axes[1], xi, map_i, title=f"{method}: {label(y)}")
    axes[2].barh(range(5)[::-1], probs[top])
    axes[2].set_yticks(range(5)[::-1], [label(int(k)) for k in top], fontsize=8)
    axes[2].set_xlim(0, 1)
    axes[2].set_title("top-5 probability", fontsize=9)
    fig.tight_layout()
    plots.save(fig, path, dpi=100)


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


def _lens_devices(n, parser):
    """The first ``n`` local devices (``None``: build_lens's default, every accelerator or one
    CPU device)."""
    import jax

    if n is None:
        return None
    local = jax.local_devices()
    if not 1 <= n <= len(local):
        parser.error(f"--devices: expected a count in [1, {len(local)}] (the local devices: "
                     f"{', '.join(map(str, local))}), got {n}")
    return local[:n]


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
        x, y = xjax.lens.dataset_arrays(args.dataset, model, source_dir=args.source_dir,
                                        split=args.split,
                                        max_per_class=None if args.dataset == "fashion_mnist"
                                        else args.images_per_class)
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))
    names = list(model.class_names or [])
    classes = None
    if args.classes:
        from xjax.data import class_index

        try:                      # any case; ImageNet models also take WordNet IDs and lemmas
            classes = [class_index(tok, names) for tok in args.classes.split(",")]
        except ValueError as e:
            parser.error(f"--classes: {e}")
    from xjax._internal.rundir import LockedError, SettingsMismatch

    batch_size = args.batch_size
    if batch_size == "auto":
        if args.method not in METHODS:
            parser.error(f"--method: unknown {args.method!r}; choose from {', '.join(METHODS)}")
        batch_size, _ = _tuned(model, REGISTRY[args.method].model_calls or "gradient",
                               "xjax lens build")
    try:
        xjax.lens.build_lens(
            model, x, y, args.out, classes=classes, nb_concepts=args.concepts,
            patch_size=args.patch_size, images_per_class=args.images_per_class,
            method=args.method, viz_steps=args.viz_steps, examples=args.examples,
            seed=args.seed, title=f"xjax Lens: {args.model} on {os.path.basename(args.dataset)}",
            model_name=args.model, dataset_name=args.dataset, overwrite=args.overwrite,
            batch_size=batch_size, devices=_lens_devices(args.devices, parser))
    except (SettingsMismatch, LockedError) as e:
        parser.error(str(e))
    except ValueError as e:                  # bad settings, or no class could be built
        raise SystemExit(f"xjax lens build: {str(e).removeprefix('build_lens: ')}") from None
    print(f"Lens written to {os.path.abspath(args.out)}: open "
          f"{os.path.abspath(os.path.join(args.out, 'index.html'))} or run "
          f"`xjax lens serve {args.out}`")
    return 0


def _wrap(names, width: int = 76) -> str:
    lines, line = [], ""
    for n in names:
        if line and len(line) + len(n) + 2 > width:
            lines.append(line + ",")
            line = ""
        line = f"{line}, {n}" if line else n
    return "\n".join([*lines, line])


def _method_epilog(argv: list[str]) -> str | None:
    """For ``xjax explain --method M --help``: M's hyperparameters, types and defaults (this
    imports M's module, so only when asked)."""
    if not {"-h", "--help"} & set(argv) or "--method" not in argv[:-1]:
        return None
    lines = []
    for m in argv[argv.index("--method") + 1].split(","):
        if m in METHODS:
            lines.append(f"{m} hyperparameters (--param NAME=VALUE):")
            lines += [f"  {h.name}: {h.annotation} = {h.default!r}"
                      for h in hyperparameters(m).values() if h.name != "batch_size"]
            lines.append("  batch_size: int | None = --batch-size")
    return "\n".join(lines) or None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="xjax", description="Explain vision models in JAX.")
    parser.add_argument("--no-compile-cache", action="store_true",
                        help="do not use JAX's persistent compilation cache "
                             "(default: ~/.cache/xjax/jax-compilation, or $XJAX_COMPILE_CACHE)")
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("explain", help="explain images with an attribution method, write PNGs",
                        epilog=_method_epilog(argv), formatter_class=argparse.RawTextHelpFormatter)
    ex.add_argument("--model", default="efficientnet_lite0",
                    help="zoo model (efficientnet_lite0, small_cnn, resnet18, resnet50, vit_tiny), "
                         "or package.module:function\nreturning an xjax.typing.Model (your own)")
    ex.add_argument("--method", default="saliency",
                    help="one method or a comma-separated list:\n" + _wrap(METHODS))
    ex.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                    help="a hyperparameter of the chosen methods (repeatable), e.g. nb_design=16;\n"
                         "method.NAME=VALUE sets it for one method; `--method M --help` lists M's")
    ex.add_argument("--target", default="top1",
                    help="class explained: top1 (the prediction), a class index or a class name")
    ex.add_argument("--images", nargs="+", default=["samples"],
                    help="image files, directories or globs ('photos/*.jpg'), or 'samples' for "
                         "the bundled photos")
    ex.add_argument("--out", default="out/explain", help="output directory for the figures")
    ex.add_argument("--save-maps", default=None, metavar="FILE.npz",
                    help="also write the float32 maps, image names and settings to FILE.npz\n"
                         "(xjax.runs.load_maps_file reads it)")
    ex.add_argument("--batch-size", type=_batch_size,
                    default=os.environ.get("XJAX_BATCH_SIZE", "auto"),
                    help="most images in one model call (inputs and perturbations together);\n"
                         "auto (default; $XJAX_BATCH_SIZE overrides): the fastest size measured\n"
                         "for the model (xjax.tune.batch_size, cached per model and backend)")
    ex.add_argument("--images-per-step", type=int, default=4,
                    help="images explained per jitted step (progress granularity)")
    ex.add_argument("--block-progress", choices=("auto", "on", "off"), default="auto",
                    help="progress over the model-call blocks inside a step; such a program is\n"
                         "compiled on every run (host callbacks are not cached). auto: only for a\n"
                         f"step estimated over {BLOCK_PROGRESS_SECONDS:g} s from the measured "
                         f"throughput\n(or, unmeasured, over {BLOCK_PROGRESS_CALLS} model calls)")
    ex.add_argument("--seed", type=int, default=0, help="key of the stochastic methods")
    ex.add_argument("--overwrite", action="store_true",
                    help="redo images already explained; with --dataset, discard a run of "
                         "other settings in --out")
    ex.add_argument("--precision", default="float32", choices=("float32", "bfloat16"),
                    help="model calls in float32, or in bfloat16 (jmp policy; maps stay float32)")
    ex.add_argument("--dataset", default=None,
                    help="explain a whole dataset ('fashion_mnist' or a folder per class) over "
                         "every device and host,\nwriting resumable shard files to --out")
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
                    help="'fashion_mnist', 'samples' (crops of the bundled photos, ImageNet\n"
                         "models) or an image folder: one folder per class named by class name,\n"
                         "index or WordNet ID (ImageNet train/ or val/), or a tensorflow-datasets\n"
                         "imagenet2012 manual directory (ILSVRC2012_img_val.tar)")
    lb.add_argument("--split", default=None, choices=("train", "val"),
                    help="for a folder holding both train/ and val/ (default val)")
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
    lb.add_argument("--batch-size", type=_batch_size,
                    default=os.environ.get("XJAX_BATCH_SIZE", "auto"),
                    help="most images in one model call; auto (default): measured for the model")
    lb.add_argument("--devices", type=int, default=None,
                    help="spread classes over the first N local devices (default: all "
                         "accelerators; on CPU one device)")
    lb.add_argument("--out", default="out/lens")
    lb.add_argument("--overwrite", action="store_true",
                    help="rebuild an atlas in --out that was built with other settings")
    ls = lsub.add_parser("serve", help="serve a built atlas on 127.0.0.1")
    ls.add_argument("dir", nargs="?", default="out/lens")
    ls.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    if not args.no_compile_cache and not (args.command == "lens" and args.action == "serve"):
        from xjax._internal import compile_cache

        compile_cache.enable()           # a second run of the same command compiles nothing
    if args.command == "lens":
        return _lens(args, parser)
    if args.command == "train":
        return _train(args, parser)
    if args.command == "explain":
        unknown = [m for m in args.method.split(",") if m not in METHODS]
        if unknown:
            _fail("--method", f"unknown {', '.join(unknown)}; choose from {', '.join(METHODS)}")
        if args.images_per_step < 1:
            _fail("--images-per-step", "--images-per-step must be >= 1")
        if args.dataset and args.images != ["samples"]:
            _fail("--dataset", "give --images or --dataset, not both")
        if args.dataset and args.save_maps:
            _fail("--save-maps", "a --dataset run writes its maps to --out (xjax.runs.load_maps)")
        return _explain(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
