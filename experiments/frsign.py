"""FRSign: where attribution is not enough. A classifier of signal state on box crops, explained by
attribution maps (saliency, Sobol, RISE) and by CRAFT concepts; how much of the decision each
explanation carries.

    python experiments/frsign.py --quick                    # synthetic release, tiny (CI, ~1 min)
    python experiments/frsign.py                            # synthetic, 120 sequences (CPU, ~1 min)
    python experiments/frsign.py --manual-dir DIR           # the public release (GPU advised)

The public release (https://frsign.irt-systemx.fr/, after registration) is ``frsign_v1.0.h5`` and
``FRSign.tar.gz`` (over 250 GB; it may stay compressed: the builder streams it once) in one
directory, read by :func:`xjax.data.frsign`. Its first preparation reads the archive once and
decodes every annotated frame once: about 0.04 s per 1920x1200 PNG of 4.5 MB on one core of this
CPU (measured on a synthetic frame), so a little over an hour for 100,000 frames, plus the time to
read 250 GB; training and explaining the crops then take minutes on one GPU (not measured: no
release and no GPU here). Without the release the script runs on a synthetic release written in the
same layout (:func:`xjax.data.write_synthetic_frsign`), where states share the lit lamp's position
and differ only by its colour: a control built so that a map has no position of its own to
show per state, not evidence about FRSign (measured there: the maps still predict the decision,
see experiments/README.md).

The thesis's finding is that attribution says where the model looks (the light) and not what it
sees there. Measured here, on the test crops, for the model's own predicted state:

* **decision predictability**: leave-one-out nearest-centroid accuracy (cosine) of the predicted
  state from the explanation alone, next to the majority share (what a constant guess gets). An
  explanation type that tells states apart predicts the decision; one that looks alike across
  states stays near the majority share.
* **same- and other-state similarity**: the mean cosine similarity of explanations of two crops
  with the same predicted state, and with different ones; the gap is how state-specific it is.

Explanations: attribution maps (saliency, Sobol, RISE; each L2-normalized, flattened), and CRAFT
(one NMF dictionary of concepts fitted on train crops of every state at the model's last
convolutional block): the crop's concept codes (what is there) and its concept importances for
the predicted state (total Sobol indices, what mattered).

Writes ``<out>/frsign_<target>.{json,md}`` and ``frsign_<target>.png`` (mean crop and mean maps
per predicted state, next to the crop that most expresses its most important concept); a finished
file is not recomputed (the model is retrained when a row is missing, so every row of a file comes
from one model).
"""

import argparse
import os
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(__file__))
from _results import Results, run_settings, start_devices, write_report  # noqa: E402

import xjax  # noqa: E402

A = xjax.attributions
METHODS = ("saliency", "sobol", "rise")
CONCEPT_ROWS = ("craft_codes", "craft_importance")
FRACTIONS = (0.6, 0.1, 0.3)            # train / validation / test sequences, per state


def settings(quick: bool, release: bool) -> dict:
    if release:
        return {"n_sequences": None, "frames": None, "image_size": 64, "epochs": 10,
                "n_explain": 600, "rise_samples": 2000, "concepts": 10, "nb_design": 32}
    if quick:
        return {"n_sequences": 24, "frames": 3, "image_size": 32, "epochs": 8, "n_explain": 24,
                "rise_samples": 200, "concepts": 4, "nb_design": 8}
    return {"n_sequences": 120, "frames": 4, "image_size": 32, "epochs": 15, "n_explain": 150,
            "rise_samples": 1000, "concepts": 6, "nb_design": 32}


def load(manual_dir, data_dir, image_size):
    """All three splits as ``(x f32[N, S, S, 3] in [0, 1], y i32[N], names)``."""
    out = {}
    for split in ("train", "validation", "test"):
        ds = xjax.data.frsign(split, manual_dir=manual_dir, data_dir=data_dir,
                              image_size=image_size, fractions=FRACTIONS)
        items = ds.__getitems__(list(range(len(ds))))
        out[split] = (np.stack([it["image"] for it in items]).astype(np.float32) / 255.0,
                      np.array([it["label"] for it in items], np.int32))
    return out, ds.dataset_info.features["label"].names, ds.dataset_info.metadata


def train(x, y, k, epochs, seed):
    m = xjax.models.small_cnn(input_shape=x.shape[1:], num_classes=k, key=jax.random.key(seed))
    steps = epochs * max(len(x) // 32, 1)
    state = xjax.train.fit(m.model_fn, m.params, x, y, epochs=epochs, batch_size=min(32, len(x)),
                           optimizer=optax.adamw(optax.cosine_decay_schedule(3e-3, steps)),
                           key=jax.random.key(seed + 1), progress=False)
    return m._replace(params=state.params)


def predictability(v: np.ndarray, labels: np.ndarray) -> dict:
    """Leave-one-out nearest-centroid accuracy (cosine) and same/other-label mean cosines."""
    v = _unit(v)
    classes = np.unique(labels)
    sums = {c: v[labels == c].sum(0) for c in classes}
    counts = {c: int((labels == c).sum()) for c in classes}
    correct = 0
    for i in range(len(v)):
        best, arg = -np.inf, None
        for c in classes:
            n = counts[c] - (labels[i] == c)
            if n == 0:
                continue
            centroid = (sums[c] - (v[i] if labels[i] == c else 0.0)) / n
            score = centroid @ v[i] / max(np.linalg.norm(centroid), 1e-12)
            if score > best:
                best, arg = score, c
        correct += arg == labels[i]
    cos = v @ v.T
    same = labels[:, None] == labels[None, :]
    off = ~np.eye(len(v), dtype=bool)
    same_cos = float(cos[same & off].mean()) if (same & off).any() else None
    other_cos = float(cos[~same].mean()) if (~same).any() else None
    return {"predictability": correct / len(v), "majority": max(counts.values()) / len(v),
            "same_state_cosine": same_cos, "other_state_cosine": other_cos,
            "state_gap": None if None in (same_cos, other_cos) else same_cos - other_cos}


def _unit(v: np.ndarray) -> np.ndarray:
    v = v.reshape(len(v), -1).astype(np.float64)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def mean_cosines(v: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """``[K, K]`` cosine similarity of the states' mean explanations (NaN for an absent state)."""
    u = _unit(v)
    present = np.array([(labels == c).any() for c in range(k)])
    means = _unit(np.stack([u[labels == c].mean(0) if present[c] else np.zeros(u.shape[1])
                            for c in range(k)]))
    return np.where(present[:, None] & present[None, :], means @ means.T, np.nan)


def box_mass(maps: np.ndarray, context: float) -> tuple[float, float]:
    """Mean share of ``|map|`` inside the central square that holds the box's larger side, and
    that square's share of the crop (what a uniform map gets)."""
    s = maps.shape[1]
    inner = s / (1.0 + 2.0 * context)
    lo, hi = int(round((s - inner) / 2)), int(round((s + inner) / 2))
    a = np.abs(maps.reshape(len(maps), s, s))
    share = a[:, lo:hi, lo:hi].sum((1, 2)) / np.maximum(a.sum((1, 2)), 1e-12)
    return float(share.mean()), (hi - lo) ** 2 / s ** 2


def explain_maps(m, x, y, s, seed):
    g = max(s["image_size"] // 8, 2)
    factories = {
        "saliency": lambda: A.saliency(m.model_fn),
        "sobol": lambda: A.sobol(m.model_fn, grid_size=g, nb_design=s["nb_design"]),
        "rise": lambda: A.rise(m.model_fn, nb_samples=s["rise_samples"], grid_size=g),
    }
    out = {}
    for name in METHODS:
        explain = jax.jit(factories[name]())
        extra = {"key": jax.random.key(seed)} if name == "rise" else {}
        t = time.perf_counter()
        maps = np.asarray(jax.block_until_ready(explain(m.params, x, y, **extra)))
        out[name] = (maps, (time.perf_counter() - t) / len(x))
    return out


def concepts(m, x_fit, x, y, s, seed):
    C = xjax.concepts
    model = C.craft(m.features_fn, m.head_fn, nb_concepts=s["concepts"],
                    patch_size=s["image_size"] // 2, nb_design=s["nb_design"],
                    layer="small_cnn conv2 block")
    t = time.perf_counter()
    bank = jax.block_until_ready(model.fit(m.params, jnp.asarray(x_fit), key=jax.random.key(seed)))
    fit_s = time.perf_counter() - t
    codes = np.asarray(model.transform(m.params, bank, jnp.asarray(x))).mean(axis=(1, 2))
    t = time.perf_counter()
    imp = np.asarray(jax.block_until_ready(model.importance(m.params, bank, jnp.asarray(x), y)))
    imp_s = (time.perf_counter() - t) / len(x)
    return bank, {"craft_codes": (codes, 0.0), "craft_importance": (imp, imp_s)}, fit_s


def figure(path, x, pred, names, maps, importance, bank):
    """Per predicted state: the mean crop, the mean |map| of each attribution method, and the
    bank crop that most expresses the state's most important concept (mean total Sobol index)."""
    import matplotlib.pyplot as plt

    k, cols = len(names), len(METHODS) + 2
    fig, axes = plt.subplots(k, cols, figsize=(1.8 * cols, 1.8 * k), squeeze=False)
    bank_codes, crops = np.asarray(bank.codes), np.asarray(bank.crops)
    for c in range(k):
        sel = pred == c
        axes[c, 0].imshow(x[sel].mean(0) if sel.any() else np.zeros(x.shape[1:]))
        axes[c, 0].set_ylabel(names[c][:14], fontsize=8)
        for j, name in enumerate(METHODS):
            mean_map = np.abs(maps[name][0][sel]).mean(0) if sel.any() else np.zeros(x.shape[1:3])
            axes[c, j + 1].imshow(mean_map, cmap="magma")
            axes[0, j + 1].set_title(name, fontsize=8)
        if sel.any():
            concept = int(np.argmax(importance[sel].mean(0)))
            axes[c, -1].imshow(np.clip(crops[np.argmax(bank_codes[:, concept])], 0, 1))
            axes[c, -1].set_xlabel(f"concept {concept}", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_title("mean crop", fontsize=8)
    axes[0, -1].set_title("top concept", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the small run the tests use")
    parser.add_argument("--manual-dir", default=None,
                        help="directory of frsign_v1.0.h5 and FRSign.tar.gz (the real release)")
    parser.add_argument("--data-dir", default=None, help="where the prepared crops are stored")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="experiments/results")
    parser.add_argument("--redo", default="", type=lambda v: [k for k in v.split(",") if k])
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    start_devices()
    release = args.manual_dir is not None
    target = "release" if release else "synthetic_quick" if args.quick else "synthetic"
    s = settings(args.quick, release)
    os.makedirs(args.out, exist_ok=True)
    results = Results(os.path.join(args.out, f"frsign_{target}.json"), run_settings(args),
                      overwrite=args.overwrite)
    results.drop(args.redo)
    rows = ["model", *METHODS, *CONCEPT_ROWS]
    if all(results.done(r) for r in rows):
        return results
    with tempfile.TemporaryDirectory() as tmp:
        manual_dir = args.manual_dir or xjax.data.write_synthetic_frsign(
            os.path.join(tmp, "release"), n_sequences=s["n_sequences"], frames=s["frames"],
            frame_size=(160, 100), layout="tar", seed=args.seed)
        data_dir = args.data_dir or os.path.join(tmp, "tfds")
        splits, names, info = load(manual_dir, data_dir, s["image_size"])
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = splits["train"], splits["validation"], splits["test"]
    k = len(names)
    t = time.perf_counter()
    m = train(x_tr, y_tr, k, s["epochs"], args.seed)
    train_s = time.perf_counter() - t
    x = jnp.asarray(x_te[:s["n_explain"]])
    pred = np.asarray(jax.jit(m.model_fn)(m.params, x)).argmax(1).astype(np.int32)
    meta = {"states": names, "settings_used": s, "sequences": info["sequences"],
            "dropped": info.get("dropped", {})}
    results.add("model", {
        "states": k, "train_crops": len(x_tr), "validation_crops": len(x_va),
        "test_crops": len(x_te), "explained_crops": len(x),
        "train_accuracy": xjax.train.evaluate(m.model_fn, m.params, x_tr, y_tr),
        "validation_accuracy": xjax.train.evaluate(m.model_fn, m.params, x_va, y_va),
        "test_accuracy": xjax.train.evaluate(m.model_fn, m.params, x_te, y_te),
        "train_seconds": train_s,
        "predicted_states": {names[c]: int((pred == c).sum()) for c in range(k)}}, meta)
    maps = explain_maps(m, x, jnp.asarray(pred), s, args.seed)
    bank, concept_vectors, fit_s = concepts(m, x_tr, x, jnp.asarray(pred), s, args.seed)
    # The two states whose attribution maps look most alike (mean over the methods of the cosine
    # of their mean maps): can each explanation tell those two apart?
    alike = np.mean([mean_cosines(maps[n][0], pred, k) for n in METHODS], axis=0)  # NaN: absent
    alike[np.tril_indices(k)] = np.nan
    pair = np.unravel_index(np.nanargmax(alike), alike.shape) if np.isfinite(alike).any() else None
    for name, (v, sec) in {**maps, **concept_vectors}.items():
        kind = "concepts" if name in CONCEPT_ROWS else "attribution"
        row = {"kind": kind, **predictability(v, pred), "seconds_per_image": sec}
        if pair is not None:
            sel = np.isin(pred, pair)
            row["alike_pair"] = [names[pair[0]], names[pair[1]]]
            row["alike_pair_map_cosine"] = float(alike[pair])
            sub = predictability(v[sel], pred[sel])
            row["alike_pair_predictability"] = sub["predictability"]
            row["alike_pair_majority"] = sub["majority"]
        if kind == "attribution":
            row["mass_in_box"], row["box_area_share"] = box_mass(v, info["settings"]["context"])
        else:
            row["craft_fit_seconds"] = fit_s
        results.add(name, row, meta)
    figure(os.path.join(args.out, f"frsign_{target}.png"), np.asarray(x), pred, names, maps,
           concept_vectors["craft_importance"][0], bank)
    md = results.subset({r: results.rows[r] for r in [*METHODS, *CONCEPT_ROWS]}).markdown(
        ["kind", "predictability", "majority", "alike_pair_predictability", "same_state_cosine",
         "other_state_cosine", "state_gap", "mass_in_box", "seconds_per_image"],
        f"FRSign ({target}): how much of the decision each explanation carries",
        "python experiments/frsign.py" + (" --quick" if args.quick else ""))
    write_report(os.path.join(args.out, f"frsign_{target}.md"), md)
    return results


if __name__ == "__main__":
    main()
