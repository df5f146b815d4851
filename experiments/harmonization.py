"""Harmonization on known shortcuts: small_cnn trained plain or harmonized on decoy
Fashion-MNIST, with garment masks standing in for human maps (Fel et al., NeurIPS 2022).

    python experiments/harmonization.py            # 12k images, 3 epochs, 3 seeds, both tasks
    python experiments/harmonization.py --quick    # 1k images, 1 epoch, 1 seed (CI)

Two tasks. ``corner``: Pullover vs Coat with a white top-corner patch that matches the label 95%
of the time in training (``xjax.data.decoy_patch``). ``swatch``: all ten classes with a gray
swatch in a random corner whose shade encodes the label in every training image, in the manner of
Decoy MNIST (``xjax.data.decoy_swatch``). At test time the decoy is random, so a model that
relies on it follows the decoy (decoy agreement well above chance: 1/2 and 1/10) and loses
accuracy. Two losses: the reference (``gradient="signed"``) and xjax's variant on the absolute
gradient (``"abs"`` rows). Human maps cover the garment, never the decoy's corners. Writes
``<out>/harmonization_<mode>.{json,md}`` and one figure per task (resumable per (task, loss,
seed); training resumes from its per-epoch checkpoints).
"""

import os
import sys

import numpy as np
from tqdm.auto import tqdm

sys.path.insert(0, os.path.dirname(__file__))
from _results import Results, fashion_mnist_args, run_settings  # noqa: E402

import xjax  # noqa: E402

COLUMNS = ["accuracy", "decoy_agreement", "alignment_spearman", "alignment_dice"]


def tasks(args, quick):
    """``{task: (train, test, configs, model kwargs)}``; a config is (label, lambda, gradient);
    the ``"no decoy"`` config (swatch, full mode) trains plainly on the same images without
    their swatch: the accuracy a model reaches when the shortcut is absent."""
    x, y = xjax.data.fashion_mnist_arrays("train", source_dir=args.source_dir)
    xt, yt = xjax.data.fashion_mnist_arrays("test", source_dir=args.source_dir)
    n_train = 1000 if quick else 12000
    n_test = 500 if quick else None

    def configs(lambdas, reference):
        return [("lambda=0", 0.0, "signed")] + [
            (f"{g_name}lambda={lam:g}", lam, g) for lam in lambdas
            for g_name, g in (("", "signed"), ("abs ", "absolute"))
            if g == "absolute" or lam in reference]

    x_c, y_c, _ = xjax.data.decoy_patch(x, y, correlation=0.95, seed=0)
    xt_c, yt_c, corner = xjax.data.decoy_patch(xt, yt, correlation=0.5, seed=1)
    x_s, _, _ = xjax.data.decoy_swatch(x, y, correlation=1.0, seed=0)
    xt_s, code, _ = xjax.data.decoy_swatch(xt, yt, correlation=0.0, seed=1)
    return {
        # keys of the corner task carry no prefix (the rows of the first version of this file)
        "corner": ((x_c[:n_train], y_c[:n_train]), (xt_c[:n_test], yt_c[:n_test], corner[:n_test]),
                   configs((10.0,) if quick else (1.0, 10.0), (1.0, 10.0)),
                   {"num_classes": 2, "corners": "top"}),
        "swatch": ((x_s[:n_train], y[:n_train], x[:n_train]),
                   (xt_s[:n_test], yt[:n_test], code[:n_test]),
                   configs((10.0,) if quick else (1.0, 10.0), () if quick else (1.0,))
                   + ([] if quick else [("no decoy", 0.0, "signed")]),
                   {"num_classes": 10, "corners": "all"}),
    }


def _key(task, label, seed):
    return f"{label}/seed={seed}" if task == "corner" else f"{task}/{label}/seed={seed}"


def main(argv=None):
    args = fashion_mnist_args(__doc__, argv)
    quick = args.quick
    epochs, seeds = (1, (0,)) if quick else (3, (0, 1, 2))
    tag = "quick" if quick else "full"
    results = Results(os.path.join(args.out, f"harmonization_{tag}.json"), run_settings(args),
                      overwrite=args.overwrite)
    all_tasks = tasks(args, quick)
    runs = [(t, c, s) for t, (_, _, configs, _) in all_tasks.items() for c in configs
            for s in seeds]
    for task, (label, lam, gradient), seed in tqdm(runs, desc="harmonization runs"):
        key = _key(task, label, seed)
        if results.done(key):
            continue
        (x_tr, y_tr, *clean), (x_te, y_te, decoy), _, kw = all_tasks[task]
        if label == "no decoy":
            x_tr = clean[0]
        out = xjax.harmonization.harmonize_decoy(
            x_tr, y_tr, x_te, y_te, decoy, lambda_harmonization=lam, seed=seed, epochs=epochs,
            gradient=gradient, checkpoint_dir=_ckpt(args.out, tag, key), **kw)
        results.add(key, {k: v for k, v in out.items() if k not in ("params", "history")},
                    meta={"n_train": len(x_tr), "epochs": epochs, "n_test": len(x_te)})
    # one row per (task, configuration): mean and spread over seeds
    summary = {}
    for task, (_, _, configs, _) in all_tasks.items():
        for label, _, _ in configs:
            rows = [results.rows[_key(task, label, s)] for s in seeds]
            summary[f"{task}: {label}"] = {
                c: f"{np.mean([r[c] for r in rows]):.3f} ± {np.std([r[c] for r in rows]):.3f}"
                for c in COLUMNS}
    cmd = "python experiments/harmonization.py" + (" --quick" if quick else "")
    n_train = len(all_tasks["corner"][0][0])
    title = (f"Harmonization on decoy Fashion-MNIST (corner: 2 classes, {n_train} training "
             f"images; swatch: 10 classes, {len(all_tasks['swatch'][0][0])}; {epochs} epoch(s), "
             f"mean ± sd over {len(seeds)} seed(s); decoy random at test: accuracy up, decoy "
             "agreement down (chance 0.5 and 0.1) is better)")
    text = results.subset(summary).markdown(COLUMNS, title, cmd)
    with open(os.path.join(args.out, f"harmonization_{tag}.md"), "w") as f:
        f.write(text)
    print(text)
    for task, spec in all_tasks.items():
        figure(args.out, tag, task, spec, epochs)
    return results


def _ckpt(out, tag, key):
    return os.path.abspath(os.path.join(out, f"harmonization_{tag}_ckpt",
                                        key.replace("/", "_").replace(" ", "_")))


def figure(out, tag, task, spec, epochs):
    """Saliency of the seed-0 model of every configuration on 6 test images (the models are
    restored from their finished checkpoints, nothing is retrained)."""
    import jax
    import jax.numpy as jnp
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (x_tr, y_tr, *clean), (x_te, y_te, decoy), configs, kw = spec
    idx = np.arange(6)
    maps = {}
    for label, lam, gradient in configs:
        res = xjax.harmonization.harmonize_decoy(
            clean[0] if label == "no decoy" else x_tr, y_tr, x_te[:64], y_te[:64], decoy[:64],
            lambda_harmonization=lam, seed=0,
            epochs=epochs, gradient=gradient, checkpoint_dir=_ckpt(out, tag, _key(task, label, 0)),
            **kw)
        model = xjax.models.small_cnn(num_classes=kw["num_classes"])
        sal = xjax.attributions.saliency(model.model_fn)
        xs = jnp.asarray(x_te[idx])
        params = jax.device_put(res["params"], jax.devices()[0])
        pred = jnp.argmax(model.model_fn(params, xs), -1).astype(jnp.int32)
        maps[label] = np.asarray(jax.jit(sal)(params, xs, pred))
    maps["garment map"] = xjax.harmonization.garment_maps(x_te[idx], corners=kw["corners"])
    if task == "corner":
        titles = [f"{'coat' if y_te[i] else 'pullover'}, corner {'R' if decoy[i] else 'L'}"
                  for i in idx]
        name = f"harmonization_{tag}.png"
    else:
        names = xjax.models.FASHION_MNIST_CLASSES
        titles = [f"{names[y_te[i]]}, swatch says {names[decoy[i]]}" for i in idx]
        name = f"harmonization_{tag}_{task}.png"
    fig = xjax.plots.method_grid(x_te[idx], maps, titles=titles)
    fig.savefig(os.path.join(out, name), dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    main()
