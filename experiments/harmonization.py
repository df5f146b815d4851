"""Harmonization on a known shortcut: small_cnn trained plain or harmonized on decoy-patch
Fashion-MNIST, with garment masks standing in for human maps (Fel et al., NeurIPS 2022).

    python experiments/harmonization.py            # 12k images, 3 epochs, lambdas 0/1/10, 3 seeds
    python experiments/harmonization.py --quick    # 1k images, 1 epoch, lambda 0/10, 1 seed (CI)

Two losses: the reference (``gradient="signed"``) and xjax's variant on the absolute gradient
(``"abs"`` rows). Training images carry a corner patch matching the label 95% of the time; the
test images' corner is random. A model that relies on the decoy follows the corner (decoy
agreement near 1) and is near chance against the labels. Human maps cover the garment, never
the corner. Writes ``<out>/harmonization_<mode>.{json,md,png}`` (resumable per (loss, seed);
training resumes from its per-epoch checkpoints).
"""

import os
import sys

import numpy as np
from tqdm.auto import tqdm

sys.path.insert(0, os.path.dirname(__file__))
from _results import Results, fashion_mnist_args  # noqa: E402

import xjax  # noqa: E402


def main(argv=None):
    args = fashion_mnist_args(__doc__, argv)
    quick = args.quick
    n_train, epochs, lambdas, seeds = ((1000, 1, (0.0, 10.0), (0,)) if quick else
                                       (12000, 3, (0.0, 1.0, 10.0), (0, 1, 2)))
    # (label, lambda, gradient): the reference loss (signed gradient) and xjax's absolute variant
    configs = [("lambda=0", 0.0, "signed")] + [
        (f"{g_name}lambda={lam:g}", lam, g) for lam in lambdas if lam > 0
        for g_name, g in (("", "signed"), ("abs ", "absolute"))]
    tag = "quick" if quick else "full"
    results = Results(os.path.join(args.out, f"harmonization_{tag}.json"))
    x, y = xjax.data.fashion_mnist_arrays("train", source_dir=args.source_dir)
    xt, yt = xjax.data.fashion_mnist_arrays("test", source_dir=args.source_dir)
    x_tr, y_tr, _ = xjax.data.decoy_patch(x, y, correlation=0.95, seed=0)
    x_tr, y_tr = x_tr[:n_train], y_tr[:n_train]
    x_te, y_te, corner = xjax.data.decoy_patch(xt, yt, correlation=0.5, seed=1)
    if quick:
        x_te, y_te, corner = x_te[:500], y_te[:500], corner[:500]
    runs = [(c, s) for c in configs for s in seeds]
    for (label, lam, gradient), seed in tqdm(runs, desc="harmonization runs"):
        key = f"{label}/seed={seed}"
        if results.done(key):
            continue
        out = xjax.harmonization.harmonize_decoy(
            x_tr, y_tr, x_te, y_te, corner, lambda_harmonization=lam, seed=seed, epochs=epochs,
            gradient=gradient, checkpoint_dir=_ckpt(args.out, tag, key))
        results.add(key, {k: v for k, v in out.items() if k not in ("params", "history")},
                    meta={"n_train": n_train, "epochs": epochs, "n_test": len(x_te)})
    # one row per configuration: mean and spread over seeds
    summary = {}
    for label, _, _ in configs:
        rows = [results.rows[f"{label}/seed={s}"] for s in seeds]
        summary[label] = {
            c: f"{np.mean([r[c] for r in rows]):.3f} ± {np.std([r[c] for r in rows]):.3f}"
            for c in ("accuracy", "decoy_agreement", "alignment_spearman", "alignment_dice")}
    cols = ["accuracy", "decoy_agreement", "alignment_spearman", "alignment_dice"]
    cmd = "python experiments/harmonization.py" + (" --quick" if quick else "")
    title = (f"Harmonization on decoy-patch Fashion-MNIST ({n_train} training images, {epochs} "
             f"epoch(s), mean ± sd over {len(seeds)} seed(s); test corner random: accuracy up, "
             "decoy agreement down is better)")
    text = results.subset(summary).markdown(cols, title, cmd)
    with open(os.path.join(args.out, f"harmonization_{tag}.md"), "w") as f:
        f.write(text)
    print(text)
    figure(args.out, tag, x_tr, y_tr, x_te, y_te, corner, configs, epochs)
    return results


def _ckpt(out, tag, key):
    return os.path.abspath(os.path.join(out, f"harmonization_{tag}_ckpt",
                                        key.replace("/", "_").replace(" ", "_")))


def figure(out, tag, x_tr, y_tr, x_te, y_te, corner, configs, epochs):
    """Saliency of the seed-0 model of every lambda on 6 test images (the models are restored
    from their finished checkpoints, nothing is retrained)."""
    import jax
    import jax.numpy as jnp
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    idx = np.arange(6)
    maps = {}
    for label, lam, gradient in configs:
        res = xjax.harmonization.harmonize_decoy(
            x_tr, y_tr, x_te[:64], y_te[:64], corner[:64], lambda_harmonization=lam, seed=0,
            epochs=epochs, gradient=gradient, checkpoint_dir=_ckpt(out, tag, f"{label}/seed=0"))
        model = xjax.models.small_cnn(num_classes=2)
        sal = xjax.attributions.saliency(model.model_fn)
        xs = jnp.asarray(x_te[idx])
        pred = jnp.argmax(model.model_fn(res["params"], xs), -1).astype(jnp.int32)
        maps[label] = np.asarray(jax.jit(sal)(res["params"], xs, pred))
    maps["garment map"] = xjax.harmonization.garment_maps(x_te[idx])
    titles = [f"{'coat' if y_te[i] else 'pullover'}, corner {'R' if corner[i] else 'L'}"
              for i in idx]
    fig = xjax.plots.method_grid(x_te[idx], maps, titles=titles)
    fig.savefig(os.path.join(out, f"harmonization_{tag}.png"), dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    main()
