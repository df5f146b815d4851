"""MACO against Fourier feature visualization of ImageNet classes on EfficientNet-Lite0, with
transferability to EfficientNet-Lite1 and Lite2.

    python experiments/featviz_maco.py                 # full: 8 classes, MACO 512 px / 32 crops
                                                       #   / 256 steps; Fourier 224 px / 256 steps
    python experiments/featviz_maco.py --quick         # 2 classes, 64 px, few steps (CI)
    python experiments/featviz_maco.py --no-transfer   # optimize only (e.g. on a GPU machine)

For each class (the pre-softmax logit as the objective, as the paper), each parameterization
optimizes one image per class in one jitted scan (MACO: NAdam(1.0), 32 random crops per step
with the box shrinking 0.5 -> 0.05, noise 0.08; Fourier: Lucid's transforms, Adam(0.05)). The
final images are scored by Lite0 (the optimized model: final logit and class probability) and by
Lite1 and Lite2 at their native sizes (transferability: the class probability and whether the
class is top-1 for a model that never saw the optimization). Images are saved per method
(``featviz_<mode>_<method>.npz``, reused when present, so optimization and scoring can run on
different machines) and drawn in ``featviz_<mode>.png``.
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
from _results import Results, run_settings, start_devices, write_report  # noqa: E402

import xjax  # noqa: E402

fv = xjax.featviz
CLASSES = (1, 9, 130, 207, 340, 417, 950, 967)   # goldfish, ostrich, flamingo, golden retriever,
                                                 # zebra, balloon, orange, espresso


def settings(quick):
    """{method: (image size, steps, crops)}, classes."""
    if quick:
        return {"maco": (64, 4, 2), "fourier": (64, 4, 1)}, CLASSES[:2]
    return {"maco": (512, 256, 32), "fourier": (224, 256, 1)}, CLASSES


def optimize_images(method, size, steps, crops, classes, model, key):
    if method == "maco":
        pz = fv.maco((size, size, 3))
        t = fv.random_crops((224, 224), nb_crops=crops)
    else:
        pz = fv.fourier((size, size, 3))
        t = fv.lucid((224, 224))
    run = jax.jit(lambda p, k: fv.optimize(model.model_fn, p, fv.logit(np.asarray(classes)), pz,
                                           steps=steps, transforms=t, key=k))
    t0 = time.perf_counter()
    r = jax.block_until_ready(run(model.params, key))
    return np.asarray(r.images), np.asarray(r.transparency), np.asarray(r.scores), \
        time.perf_counter() - t0


def score(model, images, classes):
    """Full view (the whole image resized to the model's input): logit, probability and top-1
    of each image's class; crop view: the class probability averaged over 8 random crops of
    35% of the side (about what MACO's shrinking crops optimized mid-run), resized likewise."""
    size = model.input_shape[0]
    x = jax.image.resize(jnp.asarray(images), (len(images), size, size, 3), "bilinear")
    logits = np.asarray(jax.jit(model.model_fn)(model.params, x))
    probs = np.asarray(jax.nn.softmax(jnp.asarray(logits)))
    idx = np.arange(len(classes))
    crop = fv.random_crops((size, size), nb_crops=8, box_start=0.35, box_end=0.35, noise_std=0.0)
    views = jax.vmap(lambda img: crop(jax.random.key(0), img[None], 0.0))(jnp.asarray(images))
    p_crop = jax.nn.softmax(jax.jit(model.model_fn)(model.params, views.reshape(
        (-1, size, size, 3)))).reshape(len(images), 8, -1).mean(1)
    return (logits[idx, classes], probs[idx, classes], logits.argmax(1) == np.asarray(classes),
            np.asarray(p_crop)[idx, classes])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="experiments/results")
    parser.add_argument("--no-transfer", action="store_true",
                        help="optimize and save the images only (no Lite1/Lite2 scoring)")
    parser.add_argument("--overwrite", action="store_true",
                        help="start a results file written with other settings afresh")
    args = parser.parse_args(argv)
    start_devices()
    tag = "quick" if args.quick else "full"
    methods, classes = settings(args.quick)
    os.makedirs(args.out, exist_ok=True)
    results = Results(os.path.join(args.out, f"featviz_{tag}.json"), run_settings(args),
                      overwrite=args.overwrite)
    lite0 = xjax.models.efficientnet_lite0()
    names = lite0.class_names
    others = {}
    for method, (size, steps, crops) in tqdm(methods.items(), desc="parameterizations"):
        path = os.path.join(args.out, f"featviz_{tag}_{method}.npz")
        if not os.path.exists(path):
            print(f"{method}: {len(classes)} images of {size} px, {steps} steps, {crops} crops",
                  flush=True)
            img, alpha, sc, secs = optimize_images(method, size, steps, crops, classes, lite0,
                                                   jax.random.key(0))
            # uint8 images and a float16 channel-mean transparency keep the file small
            np.savez_compressed(path, images=np.round(np.clip(img, 0, 1) * 255).astype(np.uint8),
                                transparency=alpha.mean(-1).astype(np.float16), scores=sc,
                                seconds=secs, device=str(jax.devices()[0].device_kind
                                                        if hasattr(jax.devices()[0],
                                                                   "device_kind") else "cpu"))
        if args.no_transfer or all(results.done(f"{method}/{names[c]}") for c in classes):
            continue
        d = np.load(path)
        images = d["images"].astype(np.float32) / 255.0
        cols = {"lite0": score(lite0, images, classes)}
        for other in ("efficientnet_lite1", "efficientnet_lite2"):
            if other not in others:
                others[other] = xjax.models.get_model(other)
            cols[other.split("_")[1]] = score(others[other], images, classes)
        for i, c in enumerate(classes):
            results.add(f"{method}/{names[c]}", {
                "method": method, "class": names[c], "image_px": size, "steps": steps,
                "crops": crops, "seconds_per_image": float(d["seconds"]) / len(classes),
                "device": str(d["device"]),
                "lite0_logit": float(cols["lite0"][0][i]), "lite0_prob": float(cols["lite0"][1][i]),
                "lite1_prob": float(cols["lite1"][1][i]), "lite1_top1": bool(cols["lite1"][2][i]),
                "lite2_prob": float(cols["lite2"][1][i]), "lite2_top1": bool(cols["lite2"][2][i]),
                "lite0_crop_prob": float(cols["lite0"][3][i]),
                "lite1_crop_prob": float(cols["lite1"][3][i]),
                "lite2_crop_prob": float(cols["lite2"][3][i]),
            })
    if not args.no_transfer:
        _figure(args.out, tag, methods, classes, names)
        _write_markdown(results, args.out, tag, args.quick)
    return results


def _figure(out, tag, methods, classes, names):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = list(methods) + ["maco transparency"]
    fig, axes = plt.subplots(len(rows), len(classes), figsize=(2.0 * len(classes), 2.1 * len(rows)),
                             squeeze=False)
    data = {m: np.load(os.path.join(out, f"featviz_{tag}_{m}.npz")) for m in methods}
    for j, c in enumerate(classes):
        for i, m in enumerate(methods):
            axes[i, j].imshow(data[m]["images"][j])
            axes[i, j].set_title(f"{m}: {names[c][:16]}", fontsize=7)
        img = data["maco"]["images"][j].astype(np.float32) / 255.0
        alpha = fv.transparency_alpha(data["maco"]["transparency"][j][..., None].astype(np.float32))
        axes[-1, j].imshow(np.concatenate([img, alpha[..., None]], -1))
        axes[-1, j].set_title("MACO with alpha", fontsize=7)
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(os.path.join(out, f"featviz_{tag}.png"), dpi=70)
    plt.close(fig)


def _write_markdown(results, out, tag, quick):
    cmd = "python experiments/featviz_maco.py" + (" --quick" if quick else "")
    rows = results.rows.values()
    lines = [f"## MACO vs Fourier on EfficientNet-Lite0 ({tag})", "", f"`{cmd}`", "",
             "| method | class | Lite0 logit | Lite0 prob | Lite1 prob (top-1) | "
             "Lite2 prob (top-1) |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['class']} | {r['lite0_logit']:.2f} | "
                     f"{r['lite0_prob']:.3f} | {r['lite1_prob']:.3f} ({int(r['lite1_top1'])}) | "
                     f"{r['lite2_prob']:.3f} ({int(r['lite2_top1'])}) |")
    lines += ["", "| method | mean Lite0 logit | mean Lite0 prob | mean Lite1 prob | Lite1 top-1 | "
                  "mean Lite2 prob | Lite2 top-1 | crop view: Lite0 / Lite1 / Lite2 prob | "
                  "s/image (device) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for m in ("maco", "fourier"):
        rs = [r for r in rows if r["method"] == m]
        if not rs:
            continue
        mean = lambda k, rs=rs: float(np.mean([r[k] for r in rs]))
        lines.append(f"| {m} | {mean('lite0_logit'):.2f} | {mean('lite0_prob'):.3f} | "
                     f"{mean('lite1_prob'):.3f} | {mean('lite1_top1'):.2f} | "
                     f"{mean('lite2_prob'):.3f} | {mean('lite2_top1'):.2f} | "
                     f"{mean('lite0_crop_prob'):.3f} / {mean('lite1_crop_prob'):.3f} / "
                     f"{mean('lite2_crop_prob'):.3f} | "
                     f"{rs[0]['seconds_per_image']:.1f} ({rs[0]['device']}) |")
    write_report(os.path.join(out, f"featviz_{tag}.md"), "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
