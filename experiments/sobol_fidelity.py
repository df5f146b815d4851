"""Sobol's efficiency claim: fidelity against the number of forward passes, with the ablations.

    python experiments/sobol_fidelity.py                    # small_cnn, 1000 Fashion-MNIST images
    python experiments/sobol_fidelity.py --target photos    # EfficientNet-Lite0, 8 photos (GPU)
    python experiments/sobol_fidelity.py --quick [--target photos]   # tiny (CI)

The Sobol paper (Fel et al., NeurIPS 2021) claims fidelity on par with the best black-box methods
for fewer forward passes. Each black-box method is run at matched budgets of forward passes per
image: Sobol at ``nb_design (d + 2)`` with ``d = 64`` cells (grid 8, nb_design 4..16: 264 to 1056
passes), HSIC with as many binary masks, RISE with as many masks; occlusion's cost is set by its
window grid, so its points sit at their own counts (``1 + windows``). Every map is scored by
Deletion and Insertion (probabilities; lower / higher is better) and MuFidelity (higher), and
timed apart from compilation (ahead-of-time ``lower().compile()``, then one timed execution),
beside the model-call limit: the time of the same number of forward passes of the model alone at
the same batch size. The ablations of the paper: the design (Sobol, Halton,
Latin hypercube, plain Monte Carlo), the estimator, and the perturbation, at 528 passes.

Writes ``<out>/sobol_fidelity_<target>_<mode>.{json,md,png}`` (resumable per row). The photos
target is a GPU run (one photo at 1056 passes is minutes on a 2-core CPU).
"""

import argparse
import math
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

sys.path.insert(0, os.path.dirname(__file__))
from _results import Results, run_settings, run_timed, start_devices  # noqa: E402

import xjax  # noqa: E402

A, M = xjax.attributions, xjax.metrics

GRID = 8                                   # d = 64 cells: Sobol costs nb_design * 66 passes
BUDGETS = (264, 528, 1056)
ABLATION_BUDGET = 528
OCCLUSION = ({"patch_size": 14, "patch_stride": 7}, {"patch_size": 7, "patch_stride": 3},
             {"patch_size": 4, "patch_stride": 2}, {"patch_size": 4, "patch_stride": 1})
ABLATIONS = {"sampler": ("halton", "latin_hypercube", "uniform"),
             "estimator": ("homma", "janon", "glen", "saltelli"),
             "perturbation": ("blurring", "amplitude")}


def budget_settings(name, budget):
    if name == "sobol":
        return {"grid_size": GRID, "nb_design": budget // (GRID * GRID + 2)}
    if name == "hsic":
        return {"grid_size": GRID, "nb_design": budget}
    return {"nb_samples": budget, "grid_size": 7}                      # rise


def occlusion_passes(h, w, k, s):
    return 1 + (math.ceil((h - k) / s) + 1) * (math.ceil((w - k) / s) + 1)


def plan(quick, h, w, scale, target):
    """Rows ``key -> (method, settings, forward passes per image)``; ``scale`` maps the 28 px
    occlusion windows to the image size."""
    if quick and target == "photos":                  # a large model on CPU: one budget, no ablation
        return {f"{m}/264": (m, budget_settings(m, 264), 264) for m in ("sobol", "rise")}
    budgets = BUDGETS[:2] if quick else BUDGETS
    rows = {}
    for name in ("sobol", "hsic", "rise"):
        for b in budgets:
            rows[f"{name}/{b}"] = (name, budget_settings(name, b), b)
    for o in OCCLUSION[:1] if quick else OCCLUSION:
        k, s = o["patch_size"] * scale, o["patch_stride"] * scale
        rows[f"occlusion/k{k}s{s}"] = ("occlusion", {"patch_size": k, "patch_stride": s},
                                       occlusion_passes(h, w, k, s))
    base = budget_settings("sobol", budgets[0] if quick else ABLATION_BUDGET)
    passes = base["nb_design"] * (GRID * GRID + 2)
    for arg, values in ABLATIONS.items():
        for v in values[:1] if quick else values:
            kw = {**base, arg: v}
            if v in ("latin_hypercube", "uniform"):            # random designs need a seed
                kw["design_seed"] = 0
            rows[f"ablation/{arg}={v}"] = ("sobol", kw, passes)
    return rows


def data(target, quick, source_dir):
    if target == "fmnist":
        n = 16 if quick else 1000
        xt, yt = xjax.data.fashion_mnist_arrays("test", source_dir=source_dir)
        model = xjax.models.small_cnn(pretrained="fashion_mnist")
        x = xt[:n]
        scale = 1
    else:
        size = 64 if quick else 224
        photos = xjax.data.sample_photos(["coffee", "camera"] if quick else None)
        x = np.stack([xjax.data.resize_center_crop(p.image, size) for p in photos])
        model = xjax.models.efficientnet_lite0()
        scale = size // 28
    # explain the model's decision (the photos have no labels; the test labels would differ
    # from the decision on misclassified images)
    y = np.argmax(np.asarray(jax.jit(model.model_fn)(model.params, x)), -1).astype(np.int32)
    return model, x, y, scale


def forward_seconds(model, params, x, batch_size, repeats=5):
    """Seconds per image of the model's own forward pass at ``batch_size``."""
    xb = jnp.asarray(np.resize(x, (batch_size,) + x.shape[1:]))
    f = jax.jit(model.model_fn)
    f(params, xb).block_until_ready()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f(params, xb).block_until_ready()
        times.append(time.perf_counter() - t)
    return float(np.median(times)) / batch_size


def figure(results, path, title):
    """Deletion, Insertion and MuFidelity against forward passes per image, one line a method."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 3.6), layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, metric in zip(axes, ("deletion", "insertion", "mu_fidelity"), strict=True):
        for method in ("sobol", "hsic", "rise", "occlusion"):
            pts = sorted((r["forward_passes"], r[metric]) for k, r in results.rows.items()
                         if k.split("/")[0] == method)
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=method)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("forward passes per image")
        ax.set_title(metric + (" (lower is better)" if metric == "deletion" else
                               " (higher is better)"))
    axes[0].legend()
    fig.suptitle(title)
    fig.savefig(path, dpi=110)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the small run the tests use")
    parser.add_argument("--target", choices=("fmnist", "photos"), default="fmnist")
    parser.add_argument("--out", default="experiments/results")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--source-dir", default=xjax.data.FASHION_MNIST_DIR,
                        help="directory of the Fashion-MNIST IDX files")
    parser.add_argument("--redo", default="", type=lambda v: [k for k in v.split(",") if k],
                        help="comma-separated finished rows to compute again")
    parser.add_argument("--overwrite", action="store_true",
                        help="start a results file written with other settings afresh")
    args = parser.parse_args(argv)
    start_devices()
    tag = f"{args.target}_{'quick' if args.quick else 'full'}"
    results = Results(os.path.join(args.out, f"sobol_fidelity_{tag}.json"), run_settings(args),
                      overwrite=args.overwrite)
    results.drop(args.redo)
    model, xh, yh, scale = data(args.target, args.quick, args.source_dir)
    n, h, w = xh.shape[:3]
    rows = plan(args.quick, h, w, scale, args.target)
    params = xjax.runs.replicate(model.params)
    x, y = xjax.runs.shard_rows(xh, yh)
    fn, bs = model.model_fn, args.batch_size
    if not results.done("forward"):
        results.add("forward", {"seconds_per_image": forward_seconds(model, model.params, xh, bs),
                                "batch_size": bs})
    forward = results.rows["forward"]["seconds_per_image"]
    dp, host = xjax.runs.per_device, xjax.runs.gather_rows
    steps = 10 if args.quick else 20
    metrics = {"deletion": M.deletion(fn, steps=steps, activation="softmax", batch_size=bs),
               "insertion": M.insertion(fn, steps=steps, activation="softmax", batch_size=bs),
               "mu_fidelity": M.mu_fidelity(fn, grid_size=7, nb_samples=32 if args.quick else 128,
                                            batch_size=bs)}
    score = jax.jit(lambda p, a, b, maps, key: {
        k: dp(m)(p, a, b, maps, key=key) if k == "mu_fidelity" else dp(m)(p, a, b, maps)
        for k, m in metrics.items()})
    todo = [k for k in rows if not results.done(k)]
    for key_ in tqdm(todo, desc=f"{args.target} rows"):
        name, kw, passes = rows[key_]
        call = dict(kw)
        if "design_seed" in call:
            call["design_key"] = jax.random.key(call.pop("design_seed"))
        e = A.from_name(name, model, batch_size=bs, **call)
        rng = jax.random.key(0) if name in A.STOCHASTIC else None
        maps, compile_seconds, seconds = run_timed(
            lambda p, a, b, e=e, rng=rng: dp(e)(p, a, b, key=rng), params, x, y)
        seconds /= n
        s = {k: float(np.mean(host(v)))
             for k, v in score(params, x, y, maps, jax.random.key(2)).items()}
        results.add(key_, {**s, "forward_passes": passes, "seconds_per_image": seconds,
                           "compile_seconds": compile_seconds,
                           "model_call_limit_seconds": passes * forward,
                           "overhead": seconds / (passes * forward), "settings": str(kw)},
                    meta={"n": n, "size": h, "model": "small_cnn" if args.target == "fmnist"
                          else "efficientnet_lite0", "device": jax.devices()[0].device_kind})
    cols = ["forward_passes", "deletion", "insertion", "mu_fidelity", "seconds_per_image",
            "overhead", "settings"]
    cmd = "python experiments/sobol_fidelity.py" + (" --quick" if args.quick else "") + (
        " --target photos" if args.target == "photos" else "")
    what = ("small_cnn, Fashion-MNIST test images" if args.target == "fmnist"
            else f"EfficientNet-Lite0, photos at {h} px")
    title = f"Fidelity against forward passes ({what}, n = {n})"
    table = results.subset({k: v for k, v in results.rows.items() if k != "forward"})
    table.write_markdown(os.path.join(args.out, f"sobol_fidelity_{tag}.md"), cols, title, cmd)
    figure(table, os.path.join(args.out, f"sobol_fidelity_{tag}.png"), title)
    print(table.markdown(cols, title, cmd))
    return results


if __name__ == "__main__":
    main()
