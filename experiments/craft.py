"""CRAFT concepts of the project's Fashion-MNIST CNN (every class) and of EfficientNet-Lite0 over
crops of the sample photos, with the holistic comparison of concept extractors.

    python experiments/craft.py            # full: 300 images per class, R = 10, nb_design 32
    python experiments/craft.py --quick    # 24 images, 2 classes, R = 4 (CI)

Per Fashion-MNIST class (test images the model predicts as that class): CRAFT with NMF on the
pooled activations of 10x10 crops (stride 8, resized to 28x28) at small_cnn's cut (after the
second conv block, 7x7x64, non-negative). Concept importance by total Sobol indices (Halton
design, Jansen) and by Gradient x Input in concept space; their fidelity by C-Deletion (lower is
better), C-Insertion (higher) and C-muFidelity (higher) through the model's own (non-linear)
head, next to a random ordering; strategic clusters (dominant concept by Sobol; prevalence and
reliability against the true labels). Holistic table: NMF, PCA, ICA, k-means, sparse coding and
a TopK SAE fitted on all 7x7 positions of the class's maps (rank 10). EfficientNet-Lite0: CRAFT
over 64 px grid crops of the 8 sample photos at the last layer (1280 channels, before global
pooling), importance for each photo's top-1 class, and concept attribution maps (Grad-CAM through
the implicit derivative of the NMF encoder).

Writes ``<out>/craft_<mode>.{json,md}`` and figures ``craft_<mode>_*.png``; resumable per class.
"""

import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

sys.path.insert(0, os.path.dirname(__file__))
from _results import Results, fashion_mnist_args, run_settings, write_report  # noqa: E402

import xjax  # noqa: E402

C = xjax.concepts
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot")
METHODS = ("nmf", "pca", "ica", "kmeans", "sparse_coding", "topk_sae")


def settings(quick):
    """(images per class, concepts, nb_design, images for importance, classes, photos)."""
    if quick:
        return 24, 4, 8, 6, (0, 1), ("coffee", "chelsea")
    return 300, 10, 32, 64, tuple(range(10)), None


def _fidelity(model, params, bank, x, y, phis, key, head_fn, inverse):
    """C-Deletion / C-Insertion / C-muFidelity of each importance through the model's head."""
    u = model.transform(params, bank, x)
    score = lambda ui: head_fn(params, inverse(bank.bank, ui)[None])[0, y]
    out = {}
    for name, phi in phis.items():
        out[f"c_deletion_{name}"] = float(C.concept_deletion(score, u, phi).mean())
        out[f"c_insertion_{name}"] = float(C.concept_insertion(score, u, phi).mean())
        out[f"c_mufidelity_{name}"] = float(jnp.nanmean(
            C.concept_mufidelity(score, u, phi, key=key, nb_samples=100)))
    return out


def _top_crops(bank, order, k=6):
    codes = np.asarray(bank.codes)
    return np.stack([np.asarray(bank.crops)[np.argsort(-codes[:, c])[:k]] for c in order])


def fashion_class(m, x_c, correct_c, c, r, nb_design, n_imp, key):
    nmf = C.nmf(r)
    model = C.craft(m.features_fn, m.head_fn, nb_concepts=r, patch_size=10, nb_design=nb_design,
                    factorization=nmf, layer="small_cnn features (conv2 block)")
    t0 = time.perf_counter()
    bank = model.fit(m.params, x_c)
    jax.block_until_ready(bank)
    fit_s = time.perf_counter() - t0
    xi = x_c[:n_imp]
    t0 = time.perf_counter()
    sobol = jax.block_until_ready(model.importance(m.params, bank, xi, c))
    sobol_s = (time.perf_counter() - t0) / len(xi)
    gi = model.importance(m.params, bank, xi, c, method="gradient_input")
    rand = jax.random.uniform(key, sobol.shape)
    fid = _fidelity(model, m.params, bank, xi, c, {"sobol": sobol, "gi": gi, "random": rand},
                    key, m.head_fn, nmf.inverse)
    clusters = C.strategic_clusters(sobol, correct_c[:n_imp], min_points=max(2, n_imp // 10))
    glob = np.asarray(sobol.mean(0))
    order = np.argsort(-glob)
    rec = np.asarray(nmf.inverse(bank.bank, bank.codes))
    row = {
        "class": CLASSES[c], "images": int(len(x_c)), "crops": int(bank.crops.shape[0]),
        "fit_seconds": fit_s, "sobol_seconds_per_image": sobol_s,
        "crop_relative_l2": float(C.relative_l2(bank.activations, rec)),
        "global_sobol": [round(float(v), 4) for v in glob],
        "top_concepts": [int(i) for i in order[:3]],
        "prevalence": [round(float(v), 3) for v in np.asarray(clusters.prevalence)],
        "reliability": [None if np.isnan(v) else round(float(v), 3)
                        for v in np.asarray(clusters.reliability)],
        "spearman_sobol_gi": float(_spearman(glob, np.asarray(gi.mean(0)))),
        **fid,
    }
    return row, _top_crops(bank, order[:3]), order[:3], glob


def _spearman(a, b):
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return np.corrcoef(ra, rb)[0, 1]


def holistic(m, x_c, c, r, key, quick):
    acts = jax.jit(m.features_fn)(m.params, x_c)
    facs = {"nmf": C.nmf(r), "pca": C.pca(r), "ica": C.ica(r), "kmeans": C.kmeans(r),
            "sparse_coding": C.sparse_coding(r, alpha=0.5, max_iter=20 if quick else 100),
            "topk_sae": C.topk_sae(r, k=max(1, r // 4), steps=300 if quick else 2000)}
    score = lambda a: m.head_fn(m.params, a[None])[0, c]
    return C.holistic_report(acts, facs, score_fn=score, key=key)


def lite0_photos(names, r, nb_design, out, tag):
    from xjax.data import resize_center_crop, sample_photos

    m = xjax.models.efficientnet_lite0()
    photos = sample_photos(names)
    x = jnp.asarray(np.stack([resize_center_crop(p.image, 224) for p in photos]), jnp.float32)
    pred = np.asarray(jax.jit(m.model_fn)(m.params, x)).argmax(1)
    model = C.craft(m.features_fn, m.head_fn, nb_concepts=r, patch_size=64, nb_design=nb_design,
                    batch_size=16, layer="EfficientNet-Lite0 last conv (1280 ch, ReLU6)")
    t0 = time.perf_counter()
    bank = model.fit(m.params, x)
    jax.block_until_ready(bank)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    sobol = jax.block_until_ready(model.importance(m.params, bank, x, pred))
    sobol_s = (time.perf_counter() - t0) / len(x)
    gi = model.importance(m.params, bank, x, pred, method="gradient_input")
    occ = model.importance(m.params, bank, x, pred, method="occlusion")
    top = np.asarray(gi).argmax(1)
    t0 = time.perf_counter()
    cams = np.asarray(model.attribute(m.params, bank, x, top))
    cam_s = (time.perf_counter() - t0) / len(x)
    order = np.argsort(-np.asarray(sobol.mean(0)))
    _figure_lite0(out, tag, photos, x, cams, top, bank, order, m.class_names, pred)
    src = np.asarray(bank.crop_source)
    codes = np.asarray(bank.codes)
    return {
        "photos": [p.name for p in photos], "predicted": [m.class_names[i] for i in pred],
        "crops": int(bank.crops.shape[0]), "fit_seconds": fit_s,
        "sobol_seconds_per_image": sobol_s, "cam_seconds_per_image": cam_s,
        "gi_equals_occlusion_max_abs": float(jnp.abs(gi - occ).max()),
        "spearman_sobol_gi_mean": float(np.mean([_spearman(np.asarray(sobol[i]),
                                                           np.asarray(gi[i]))
                                                 for i in range(len(x))])),
        # which photos each concept's top crops come from (a concept per object or per texture?)
        "concept_sources": {int(c): sorted({photos[s].name for s in src[np.argsort(-codes[:, c])[:6]]})
                            for c in order},
        "top_concept_per_photo": {p.name: int(t) for p, t in zip(photos, top, strict=True)},
    }


def _figure_lite0(out, tag, photos, x, cams, top, bank, order, names, pred):
    import matplotlib.pyplot as plt

    fig = xjax.plots.concept_grid(_top_crops(bank, order),
                                  titles=[f"concept {c}" for c in order])
    fig.savefig(os.path.join(out, f"craft_{tag}_lite0_concepts.png"), dpi=80)
    plt.close(fig)
    fig, axes = plt.subplots(1, len(photos), figsize=(2.2 * len(photos), 2.4), squeeze=False)
    for i, p in enumerate(photos):
        xjax.plots.heatmap_overlay(axes[0, i], np.asarray(x[i]), cams[i],
                                   title=f"{p.name}: concept {top[i]}\n({names[pred[i]][:18]})")
    fig.tight_layout()
    fig.savefig(os.path.join(out, f"craft_{tag}_lite0_cams.png"), dpi=80)
    plt.close(fig)


def main(argv=None):
    args = fashion_mnist_args(__doc__, argv)
    quick = args.quick
    tag = "quick" if quick else "full"
    n_fit, r, nb_design, n_imp, classes, photos = settings(quick)
    os.makedirs(args.out, exist_ok=True)
    results = Results(os.path.join(args.out, f"craft_{tag}.json"), run_settings(args),
                      overwrite=args.overwrite)
    meta = {"images_per_class": n_fit, "concepts": r, "nb_design": nb_design,
            "importance_images": n_imp, "patch": 10, "stride": 8}
    m = xjax.models.small_cnn(pretrained="fashion_mnist")
    x_te, y_te = xjax.data.fashion_mnist_arrays("test", source_dir=args.source_dir)
    pred = np.asarray(jax.jit(m.model_fn)(m.params, xjax.runs.shard_rows(x_te))).argmax(1)
    crops_dir = os.path.join(args.out, f"craft_{tag}_crops")
    os.makedirs(crops_dir, exist_ok=True)
    for c in tqdm(classes, desc="CRAFT per class"):
        idx = np.flatnonzero(pred == c)[:n_fit]
        x_c = jnp.asarray(x_te[idx])
        key = jax.random.key(c)
        if not results.done(f"fmnist/{CLASSES[c]}"):
            row, crops, order, glob = fashion_class(m, x_c, y_te[idx] == c, c, r, nb_design,
                                                    n_imp, key)
            np.savez(os.path.join(crops_dir, f"{c}.npz"), crops=crops, order=order,
                     importance=glob[order])
            results.add(f"fmnist/{CLASSES[c]}", row, meta)
        if not results.done(f"holistic/{CLASSES[c]}"):
            rows = holistic(m, x_c[:max(8, n_fit // 3)], c, r, key, quick)
            results.add(f"holistic/{CLASSES[c]}", {row.pop("method"): row for row in rows}, meta)
    _figure_fashion(args.out, tag, crops_dir, classes)
    if not results.done("lite0/photos"):
        results.add("lite0/photos", lite0_photos(photos, 3 if quick else 8, nb_design,
                                                 args.out, tag), meta)
    _write_markdown(results, args.out, tag, quick)
    return results


def _figure_fashion(out, tag, crops_dir, classes):
    import matplotlib.pyplot as plt

    rows, titles = [], []
    for c in classes:
        d = np.load(os.path.join(crops_dir, f"{c}.npz"))
        for o, v, cr in zip(d["order"], d["importance"], d["crops"], strict=True):
            rows.append(cr)
            titles.append(f"{CLASSES[c]}: concept {o} (Sobol {v:.2f})")
    fig = xjax.plots.concept_grid(np.stack(rows), titles=titles, size=0.9)
    fig.savefig(os.path.join(out, f"craft_{tag}_fmnist_concepts.png"), dpi=70)
    plt.close(fig)


def _write_markdown(results, out, tag, quick):
    cmd = "python experiments/craft.py" + (" --quick" if quick else "")
    fm = {k.split("/", 1)[1]: v for k, v in results.rows.items() if k.startswith("fmnist/")}
    lines = [f"## CRAFT on the Fashion-MNIST CNN ({tag})", "", f"`{cmd}`", "",
             "| class | images | crops | crop rel. l2 | C-Del Sobol / GI / random (lower) | "
             "C-Ins Sobol / GI / random (higher) | C-muFid Sobol / GI | top concepts "
             "(prevalence) | fit s | Sobol s/img |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, row in fm.items():
        prev = ", ".join(f"{c} ({row['prevalence'][c]:.2f})" for c in row["top_concepts"])
        lines.append(
            f"| {name} | {row['images']} | {row['crops']} | {row['crop_relative_l2']:.3f} | "
            f"{row['c_deletion_sobol']:.2f} / {row['c_deletion_gi']:.2f} / "
            f"{row['c_deletion_random']:.2f} | {row['c_insertion_sobol']:.2f} / "
            f"{row['c_insertion_gi']:.2f} / {row['c_insertion_random']:.2f} | "
            f"{row['c_mufidelity_sobol']:.2f} / {row['c_mufidelity_gi']:.2f} | {prev} | "
            f"{row['fit_seconds']:.1f} | {row['sobol_seconds_per_image']:.3f} |")
    hol = [v for k, v in results.rows.items() if k.startswith("holistic/")]
    if hol:
        cols = ["relative_l2", "r2", "sparsity", "stability", "fid", "ood", "c_deletion",
                "c_insertion", "c_mufidelity", "seconds"]
        lines += ["", f"## Holistic comparison of concept extractors (mean over {len(hol)} "
                      f"classes, rank {len(fm and next(iter(fm.values()))['global_sobol'])})",
                  "", "| method | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
        for meth in METHODS:
            vals = [np.mean([h[meth][c] for h in hol]) for c in cols]
            lines.append(f"| {meth} | " + " | ".join(f"{v:.3f}" for v in vals) + " |")
    lite = results.rows.get("lite0/photos")
    if lite:
        lines += ["", "## CRAFT on EfficientNet-Lite0 over crops of the sample photos", "",
                  f"{lite['crops']} crops of {len(lite['photos'])} photos; fit "
                  f"{lite['fit_seconds']:.1f} s; Sobol {lite['sobol_seconds_per_image']:.2f} "
                  f"s/photo; concept map {lite['cam_seconds_per_image']:.2f} s/photo; "
                  f"max |GI - occlusion| = {lite['gi_equals_occlusion_max_abs']:.2e} (exact at "
                  f"the last layer); mean Spearman(Sobol, GI) per photo "
                  f"{lite['spearman_sobol_gi_mean']:.2f}.", "",
                  "| concept | photos of its top-6 crops |", "|---|---|"]
        lines += [f"| {c} | {', '.join(v)} |" for c, v in lite["concept_sources"].items()]
    write_report(os.path.join(out, f"craft_{tag}.md"), "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
