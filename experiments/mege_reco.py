"""MeGe and ReCo of attribution methods for a small CNN on Fashion-MNIST (Fel et al., WACV 2022).

    python experiments/mege_reco.py            # 1000 images, k = 4 folds, 5 epochs per model
    python experiments/mege_reco.py --quick    # 160 images, 4 epochs (CI)

Trains k ``small_cnn`` models with ``xjax.train`` on the k fold complements, explains every
image with all k models at once (vmap over stacked parameters) and writes
``<out>/mege_reco_<mode>.{json,md}`` (resumable per method). The perturbation methods use
reduced sample counts on this CPU (listed in the table).

The paper's sanity check runs the same protocol on k models trained on randomly permuted labels
(rows ``random_labels/<method>``): explanations of models that learned nothing generalizable
should agree less across folds, so their MeGe must come out lower. RISE and Sobol are left out of
that check for CPU time (they are the two slowest rows).
"""

import argparse
import os
import sys
import time

import jax
import numpy as np
import optax
from jax.sharding import Mesh
from tqdm.auto import tqdm

sys.path.insert(0, os.path.dirname(__file__))
from _results import Results, run_settings, start_devices  # noqa: E402

import xjax  # noqa: E402

A, M = xjax.attributions, xjax.metrics

RANDOM_LABEL_METHODS = ("saliency", "gradient_input", "integrated_gradients", "smoothgrad",
                        "grad_cam", "occlusion")
METHODS = {
    "saliency": {}, "gradient_input": {}, "integrated_gradients": {"steps": 16},
    "smoothgrad": {"nb_samples": 16}, "grad_cam": {}, "occlusion": {"patch_size": 4,
                                                                    "patch_stride": 4},
    "rise": {"nb_samples": 500, "grid_size": 7}, "sobol": {"grid_size": 7, "nb_design": 8},
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--out", default="experiments/results")
    parser.add_argument("--source-dir", default=xjax.data.FASHION_MNIST_DIR)
    parser.add_argument("--redo", default="", type=lambda v: [k for k in v.split(",") if k],
                        help="comma-separated finished rows to compute again (the others are kept)")
    parser.add_argument("--overwrite", action="store_true",
                        help="start a results file written with other settings afresh")
    args = parser.parse_args(argv)
    start_devices()
    n, epochs = (160, 4) if args.quick else (1000, 5)
    x, y = xjax.data.fashion_mnist_arrays("train", source_dir=args.source_dir)
    x, y = x[:n], y[:n]
    arch = xjax.models.small_cnn()

    # data parallel over every device in full mode; the tiny quick run stays on one device
    mesh = Mesh(np.array(jax.devices()[:1]), ("data",)) if args.quick else None

    def train(xt, yt, key):
        model = xjax.models.small_cnn(key=key)
        state = xjax.train.fit(model.model_fn, model.params, xt, yt,
                               optimizer=optax.adam(1e-3), epochs=epochs, batch_size=40,
                               key=jax.random.fold_in(key, 1), progress=False, mesh=mesh)
        return state.params

    tag = "quick" if args.quick else "full"
    results = Results(os.path.join(args.out, f"mege_reco_{tag}.json"), run_settings(args),
                      overwrite=args.overwrite)
    results.drop(args.redo)
    # labels as given, then randomly permuted (the sanity check): same folds, same recipe
    permuted = np.random.default_rng(0).permutation(y)
    conditions = {"": (y, list(METHODS)), "random_labels/": (permuted, RANDOM_LABEL_METHODS)}
    for prefix, (labels, names) in conditions.items():
        todo = [m for m in names if not results.done(prefix + m)]
        if not todo:
            continue
        t0 = time.perf_counter()
        models = M.train_folds(train, arch.model_fn, x, labels, k=args.k, key=jax.random.key(0))
        print(f"trained {args.k} models{' on permuted labels' if prefix else ''} in "
              f"{time.perf_counter() - t0:.1f} s; held-out accuracy "
              f"{np.round(models.held_out_accuracy, 3).tolist()}", flush=True)
        # explanations data parallel: the inputs split over every device, the k models replicated
        xs, ys = xjax.runs.shard_rows(models.x, models.y)
        models = models._replace(x=xs, y=ys, params=xjax.runs.replicate(models.params))
        for name in tqdm(todo, desc=f"methods{' (permuted labels)' if prefix else ''}"):
            kw = dict(METHODS[name], batch_size=256)
            if args.quick and name in ("rise", "sobol", "occlusion"):
                kw.update({"rise": {"nb_samples": 32}, "sobol": {"grid_size": 4, "nb_design": 4},
                           "occlusion": {"patch_size": 7, "patch_stride": 7}}[name])
            e = A.from_name(name, arch, **kw)
            t = time.perf_counter()
            out = M.explain_folds(models, arch.model_fn, e,
                                  key=jax.random.key(1) if name in A.STOCHASTIC else None)
            results.add(prefix + name, {
                "mege": float(out.mege), "reco": float(out.reco),
                "pairs_same": int(out.n_same), "pairs_diff": int(out.n_diff),
                "pairs_dropped": int(out.n_dropped),
                "held_out_accuracy": float(np.mean(models.held_out_accuracy)),
                "seconds": time.perf_counter() - t, "settings": str(kw)},
                meta={"n": n, "k": args.k, "epochs": epochs, "model": "small_cnn"})
    cols = ["mege", "reco", "pairs_same", "pairs_diff", "pairs_dropped", "held_out_accuracy", "seconds",
            "settings"]
    cmd = "python experiments/mege_reco.py" + (" --quick" if args.quick else "")
    title = (f"MeGe / ReCo, small_cnn on Fashion-MNIST ({n} images, k={args.k}, {epochs} "
             "epoch(s) per model; higher is better)")
    results.write_markdown(os.path.join(args.out, f"mege_reco_{tag}.md"), cols, title, cmd)
    print(results.markdown(cols, title, cmd))
    return results


if __name__ == "__main__":
    main()
