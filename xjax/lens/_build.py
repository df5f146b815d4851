"""Build a Lens atlas: for each class, CRAFT concepts with their importance, top crops, a
feature visualization per concept, example attribution maps and strategic clusters.

Layout of ``out/``::

    index.html, map.html, assets/{lens.css, lens.js}
    classes/<slug>/index.html, class.json, concept_<i>_crops.png, concept_<i>_viz.png,
                   example_<j>.png

A class is finished when its ``class.json`` exists (written last, atomically); a build started
again skips finished classes, so an interrupted build loses at most the class in progress.
"""

import json
import os
import re
import sys
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Float, Int

from xjax._internal.rundir import atomic_write
from xjax.typing import Model

__all__ = ["build_lens", "class_slug"]


def class_slug(index: int, name: str) -> str:
    """A file-system and URL safe folder name for a class."""
    s = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "class"
    return f"{index:04d}-{s}"


def _png(path, array):
    from PIL import Image

    a = np.asarray(array)
    if a.dtype != np.uint8:
        a = np.round(np.clip(a, 0, 1) * 255).astype(np.uint8)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    atomic_write(path, lambda f: Image.fromarray(a).save(f, format="PNG"))


def _upscale(img, height):
    k = max(1, int(round(height / img.shape[0])))
    return np.repeat(np.repeat(img, k, axis=0), k, axis=1)


def _fit(img, side):
    """``img`` (floats in [0, 1]) at about ``side`` pixels: pixel-repeated up, Lanczos down (a
    448 px RGBA visualization is 440 kB; at 160 px, 60 kB: 10 000 concepts stay small)."""
    from PIL import Image

    if img.shape[0] <= side:
        return _upscale(img, side)
    a = np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
    a = a[..., 0] if a.ndim == 3 and a.shape[-1] == 1 else a
    size = (round(side * a.shape[1] / a.shape[0]), side)            # PIL: (width, height)
    return np.asarray(Image.fromarray(a).resize(size, Image.LANCZOS))


def _strip(crops, height=96):
    tiles = [_upscale(np.asarray(c), height) for c in crops]
    gap = np.ones((tiles[0].shape[0], 4, tiles[0].shape[2]), np.float32)
    return np.concatenate(sum([[t, gap] for t in tiles], [])[:-1], axis=1)


def _overlay_strip(images, maps, height=96):
    """The images with each one's map blended on top (inferno colour map), side by side."""
    from matplotlib import colormaps  # a colour table only: no backend, no figure

    tiles = []
    for img, m in zip(np.asarray(images, np.float32), np.asarray(maps, np.float32), strict=True):
        img = np.repeat(img, 3, -1) if img.shape[-1] == 1 else img
        lo, hi = float(np.nanmin(m)), float(np.nanmax(m))
        m = (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)
        heat = colormaps["inferno"](np.nan_to_num(m))[..., :3]
        tiles.append(0.45 * img + 0.55 * heat)
    return _strip(tiles, height)


# a concept whose top crops vary less than this (pixel standard deviation, images in [0, 1]) is
# flagged: near-constant crops (all black, blank background) say nothing about the class
FLAT_CROPS = 0.02


def concept_flags(importance: float, crops) -> list[str]:
    """Why a concept is folded away on its class page: ``"non-positive importance"`` and/or
    ``"near-constant crops"`` (mean per-crop pixel standard deviation below ``FLAT_CROPS``)."""
    flags = []
    if not importance > 0:
        flags.append("non-positive importance")
    crops = np.asarray(crops, np.float32)
    if float(crops.reshape(len(crops), -1).std(1).mean()) < FLAT_CROPS:
        flags.append("near-constant crops")
    return flags


def _predict(model, x, batch):
    fn = jax.jit(model.model_fn)
    return np.concatenate([np.asarray(fn(model.params, jnp.asarray(x[i:i + batch])))
                           for i in range(0, len(x), batch)])


_PLOT_LOCK = threading.Lock()     # matplotlib's text layout is not thread-safe


def _examples_figure(path, images, method_maps, concept_maps, concept_ids, method):
    with _PLOT_LOCK:
        _draw_examples(path, images, method_maps, concept_maps, concept_ids, method)


def _draw_examples(path, images, method_maps, concept_maps, concept_ids, method):
    from xjax import plots
    from xjax.plots import heatmap_overlay

    n, k = len(images), 2 + concept_maps.shape[1]
    fig = plots.figure(1.9 * k, 1.9 * n)
    axes = fig.subplots(n, k, squeeze=False)
    for i in range(n):
        img = np.asarray(images[i])
        axes[i, 0].imshow(img if img.shape[-1] == 3 else img[..., 0], cmap="gray")
        axes[i, 0].set_axis_off()
        heatmap_overlay(axes[i, 1], img, np.asarray(method_maps[i]),
                        title=method if i == 0 else None)
        for j in range(concept_maps.shape[1]):
            heatmap_overlay(axes[i, 2 + j], img, np.asarray(concept_maps[i, j]),
                            title=f"concept {int(concept_ids[i, j])}")
    fig.tight_layout()
    plots.save(fig, path, dpi=60)


def bucket(n: int, *, minimum: int, maximum: int) -> int:
    """The padded image count of a class of ``n`` images: ``minimum * 2^k >= n``, at most
    ``maximum`` (so that an atlas compiles CRAFT once per bucket, not once per class)."""
    b = minimum
    while b < n:
        b *= 2
    return min(b, max(maximum, n))


class _Phases:
    """Seconds spent in each phase of one class's build, shown on the progress bar as they
    finish (every phase ends on a host transfer, so the clock sees the device's work)."""

    def __init__(self, bar):
        self.bar, self.seconds, self._t = bar, {}, time.perf_counter()

    def __call__(self, name: str) -> None:
        t = time.perf_counter()
        self.seconds[name] = round(self.seconds.get(name, 0.0) + t - self._t, 3)
        self._t = t
        if self.bar is not None:          # "fit 12.0 s, importance 0.4 s, ..." so far this class
            self.bar.set_postfix_str(", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items()))


def _build_class(model, cr, x_pad, n, logits, correct, c, name, folder, *, nb_concepts, method,
                 viz_steps, viz, n_examples, key, batch_size, phase):
    """One class from ``x_pad``: its ``n`` images cycled to the bucket size (each image at most
    twice; duplicates are left out of the importances, crops and examples); ``phase(name)`` is
    called as each phase ends."""
    from xjax import featviz as fv
    from xjax.attributions import from_name
    from xjax.concepts import strategic_clusters

    p = model.params
    bank = cr.fit(p, x_pad)
    jax.block_until_ready(bank)
    phase("fit")
    x_c = x_pad[:n]
    phi = np.asarray(cr.importance(p, bank, x_pad, c, method="gradient_input"))[:n]  # [n, R]
    share = phi.sum(0) / max(float(np.abs(logits.sum())), 1e-12)    # Lens: share of the logits
    clusters = strategic_clusters(jnp.asarray(phi), jnp.asarray(correct),
                                  min_points=max(2, len(x_c) // 20))
    order = [int(i) for i in np.argsort(-share)]
    phase("importance")
    codes = np.asarray(bank.codes)
    comps = np.asarray(bank.components)
    vizs = {}
    if viz_steps > 0:
        parameterization, transforms = viz
        r = fv.optimize(model.model_fn, p, fv.concept_objective(bank, order,
                                                                features_fn=model.features_fn),
                        parameterization, steps=viz_steps, key=key, transforms=transforms)
        for j, i in enumerate(order):
            alpha = fv.transparency_alpha(np.asarray(r.transparency[j]))
            img = np.asarray(r.images[j])
            img = np.repeat(img, 3, -1) if img.shape[-1] == 1 else img
            rgba = np.concatenate([img, 0.25 + 0.75 * alpha[..., None]], -1)
            _png(os.path.join(folder, f"concept_{i}_viz.png"), _fit(rgba, 160))
            vizs[i] = f"concept_{i}_viz.png"
        phase("visualization")
    n_ex = min(n_examples, n)
    xe, cmaps = x_c[:n_ex], {}
    if n_ex:                          # each concept's attribution maps on the example images
        for i in order:
            cmaps[i] = np.asarray(cr.attribute(p, bank, xe, jnp.full((n_ex,), i, jnp.int32)))
        phase("concept maps")
    concepts = []
    crops_all = np.asarray(bank.crops)
    codes = np.where((np.asarray(bank.crop_source) < n)[:, None], codes, -np.inf)  # no copies
    for rank, i in enumerate(order):
        top = np.argsort(-codes[:, i])[:8]
        _png(os.path.join(folder, f"concept_{i}_crops.png"), _strip(crops_all[top]))
        if n_ex:
            _png(os.path.join(folder, f"concept_{i}_maps.png"), _overlay_strip(xe, cmaps[i]))
        rel = float(clusters.reliability[i])
        v = comps[i] / max(np.linalg.norm(comps[i]), 1e-12)
        concepts.append({"id": i, "rank": rank + 1, "importance": float(share[i]),
                         "prevalence": float(clusters.prevalence[i]),
                         "reliability": None if np.isnan(rel) else rel,
                         "flags": concept_flags(float(share[i]), crops_all[top]),
                         "crops": f"concept_{i}_crops.png", "viz": vizs.get(i),
                         "maps": f"concept_{i}_maps.png" if n_ex else None,
                         "vector": [round(float(t), 5) for t in v]})
    shown = [k for k in concepts if not k["flags"]] or concepts
    best = shown[0]["id"]
    top = crops_all[np.argsort(-codes[:, best])[:8]]          # its most varied top crop
    thumb = top[int(np.argmax(top.reshape(len(top), -1).std(1)))]
    _png(os.path.join(folder, "thumb.png"), _upscale(thumb, 96))
    phase("crops")
    examples = []
    if n_ex:
        y = jnp.full((n_ex,), c, jnp.int32)
        key_m = jax.random.key(0)
        maps = from_name(method, model, batch_size=batch_size)(p, xe, y, key=key_m)
        top3 = np.argsort(-phi[:n_ex], axis=1)[:, :min(3, nb_concepts)]
        cm = np.stack([np.stack([cmaps[int(top3[k, j])][k] for j in range(top3.shape[1])])
                       for k in range(n_ex)])
        path = os.path.join(folder, "examples.png")
        _examples_figure(path, np.asarray(xe), np.asarray(maps), cm, top3, method)
        examples.append("examples.png")
        phase("examples")
    from xjax.data._imagenet import _is_imagenet, imagenet_classes

    wnid = imagenet_classes()[c].wnid if _is_imagenet(model.class_names) else None
    return {"name": name, "index": int(c), "wnid": wnid, "images": int(n),
            "thumb": "thumb.png",
            "crops": int((np.asarray(bank.crop_source) < n).sum()), "accuracy": float(np.mean(correct)),
            "concepts": concepts, "examples": examples, "method": method,
            "phase_seconds": phase.seconds}


def build_lens(model: Model, images: Float[np.ndarray, "N H W C"], labels: Int[np.ndarray, " N"],
               out: str, *, classes: list[int] | None = None, nb_concepts: int = 6,
               images_per_class: int = 200, patch_size: int | None = None,
               method: str = "saliency", viz_steps: int = 128, viz_crops: int = 8,
               examples: int = 4, seed: int = 0, title: str = "xjax Lens",
               model_name: str = "model", dataset_name: str = "dataset",
               overwrite: bool = False, progress: bool = True,
               batch_size: int = 256, devices=None) -> list[dict]:
    """Build (or resume) a Lens atlas in ``out``.

    ``out`` carries a manifest (``lens-manifest.json``: the weights' and images' fingerprints
    and every setting below that changes a class's content) and a lock; a build with other
    settings on an existing atlas refuses with the differences (``overwrite=True`` rebuilds
    it), a concurrent build refuses, and a class counts as finished only when its
    ``class.json`` and every file it lists match their recorded SHA-256 (a damaged class is
    rebuilt).

    Args:
      model: a :class:`~xjax.typing.Model` with ``features_fn``/``head_fn`` split at a
        non-negative layer, and ``class_names``.
      images: ``f32[N, H, W, C]`` in [0, 1] at the model's input size; ``labels: i32[N]`` their
        true classes (for reliability and accuracy).
      classes: class indices to include (default: every class some image is predicted as).
      nb_concepts: CRAFT concepts per class; ``images_per_class``: images predicted as the
        class that are used (the first ones).
      method: the attribution method shown next to the concept maps.
      viz_steps, viz_crops: MACO steps and crops per concept visualization (0: none).
      examples: images per class with attribution maps.
      overwrite: rebuild an atlas that was built with other settings.
      batch_size: most images in one model call of the predictions and the attribution maps
        (``xjax lens build --batch-size auto`` measures it with :func:`xjax.tune.batch_size`).
      devices: the devices classes are spread over: one worker thread per device builds one
        class at a time on it, the next class going to the first device free; each device
        compiles its programs once, and a class's content does not depend on the device it
        ran on. Default: every local device of an accelerator backend; on CPU the first device
        only (XLA:CPU already spreads one program over the cores, and host devices made with
        ``jax_num_cpu_devices`` share those cores).

    Returns:
      The class records (``class.json`` contents), in class order.
    """
    from xjax.attributions import METHODS
    from xjax.lens._site import write_class_page, write_global_pages

    if method not in METHODS:
        raise ValueError(f"build_lens: method must be one of {', '.join(METHODS)}, got {method!r}")
    names = model.class_names
    if names is None:
        raise ValueError("build_lens: the model has no class_names; give it class names")
    images = np.asarray(images, np.float32)
    labels = np.asarray(labels)
    if images.ndim != 4 or images.shape[1:] != tuple(model.input_shape):
        raise ValueError(f"build_lens: images must be f32[N, {', '.join(map(str, model.input_shape))}]"
                         f" (the model's input), got shape {images.shape}")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"build_lens: batch_size must be a positive int, got {batch_size!r}")
    if images_per_class < _min_images(nb_concepts):
        raise ValueError(f"build_lens: images_per_class must be at least {_min_images(nb_concepts)}"
                         f" (4, and at least nb_concepts={nb_concepts}), got {images_per_class}")
    devices = _devices(devices)
    all_logits = _predict(model, images, batch_size)
    pred = all_logits.argmax(1)
    if classes is None:
        classes = sorted({int(v) for v in pred})
    bad = [c for c in classes if not 0 <= c < len(names)]
    if bad:
        raise ValueError(f"build_lens: classes {bad} are outside [0, {len(names)})")
    from xjax import __version__
    from xjax._internal.rundir import RunDir, fingerprint

    settings = {"model": model_name, "params_sha256": fingerprint(model.params),
                "images_sha256": fingerprint(images, labels), "classes": list(classes),
                "nb_concepts": nb_concepts, "images_per_class": images_per_class,
                "patch_size": patch_size, "method": method, "viz_steps": viz_steps,
                "viz_crops": viz_crops, "examples": examples, "seed": seed, "xjax": __version__}
    os.makedirs(os.path.join(out, "classes"), exist_ok=True)
    rundir = RunDir(out, settings, kind="lens", manifest="lens-manifest.json", lock="lens.lock",
                    owned="classes/*/class.json", overwrite=overwrite, where="build_lens")
    with rundir:
        records = _build_classes(model, images, labels, out, rundir, classes, names, pred,
                                 all_logits, nb_concepts=nb_concepts,
                                 images_per_class=images_per_class, patch_size=patch_size,
                                 method=method, viz_steps=viz_steps, viz_crops=viz_crops,
                                 examples=examples, seed=seed, progress=progress,
                                 batch_size=batch_size, devices=devices)
        slugs = [r["slug"] for r in records]
        related = related_concepts(records)
        groups = class_groups(records)
        for i, rec in enumerate(records):
            write_class_page(out, rec, (slugs[i - 1] if i else None,
                                        slugs[i + 1] if i + 1 < len(slugs) else None),
                             related=related)
        write_global_pages(out, [_summary(r) for r in records], _embedding(records),
                           {"title": title, "model": model_name, "dataset": dataset_name},
                           groups=groups)
    return records


def _build_classes(model, images, labels, out, rundir, classes, names, pred, all_logits, *,
                   nb_concepts, images_per_class, patch_size, method, viz_steps, viz_crops,
                   examples, seed, progress, batch_size, devices):
    """Build each class not finished yet, recording its ``class.json`` and files in the
    manifest; the records in class order."""
    from tqdm.auto import tqdm

    from xjax._internal.rundir import check_file, sha256_file
    from xjax.lens._site import write_class_page

    def finished(marker: str) -> bool:        # class.json and every file it was written with
        if not rundir.verified(marker):
            return False
        assets = rundir.files[marker].get("assets", {})
        return all(check_file(os.path.join(out, f), rec) is None for f, rec in assets.items())

    from xjax.concepts import craft

    # built once: its compiled programs serve every class of the same bucket size
    cr = craft(model.features_fn, model.head_fn, nb_concepts=nb_concepts, patch_size=patch_size,
               layer="the model's features_fn", batch_size=batch_size)
    # the MACO image and its crops, built once: the visualization compiles once for all classes
    viz = None
    if viz_steps > 0:
        from xjax import featviz as fv
        h, w, ch = model.input_shape
        viz = (fv.maco((2 * h, 2 * w, ch)),
               fv.random_crops((h, w), nb_crops=viz_crops, box_start=0.9, box_end=0.5))
    records, skipped, todo = {}, [], []
    for c in classes:                    # finished classes are read back, the rest queued
        slug = class_slug(c, names[c])
        marker = f"classes/{slug}/class.json"
        if finished(marker):
            with open(os.path.join(out, marker)) as f:
                records[c] = json.load(f)
            continue
        rundir.forget(marker)
        predicted = np.flatnonzero(pred == c)
        if min(len(predicted), images_per_class) < _min_images(nb_concepts):
            skipped.append(f"{names[c]!r} ({len(predicted)})")
        else:
            todo.append(c)
    bar = tqdm(total=len(todo), desc="Lens classes", unit="class", disable=not progress)

    def build(c, device):
        """Class ``c`` on ``device``: its files, then its record (written by the caller)."""
        slug = class_slug(c, names[c])
        folder = os.path.join(out, "classes", slug)
        os.makedirs(folder, exist_ok=True)
        idx = np.flatnonzero(pred == c)[:images_per_class]
        n = len(idx)
        size = bucket(n, minimum=_min_images(nb_concepts), maximum=images_per_class)
        t0 = time.perf_counter()
        with jax.default_device(device):
            x_pad = jnp.asarray(images[idx[np.arange(size) % n]])
            rec = _build_class(model, cr, x_pad, n, all_logits[idx, c], labels[idx] == c,
                               c, names[c], folder, nb_concepts=nb_concepts, method=method,
                               viz_steps=viz_steps, viz=viz, n_examples=examples,
                               key=jax.random.fold_in(jax.random.key(seed), c),
                               batch_size=batch_size,
                               phase=_Phases(bar if progress and len(devices) == 1 else None))
        rec["slug"] = slug
        rec["seconds"] = round(time.perf_counter() - t0, 3)  # build time, compilation included
        write_class_page(out, rec, (None, None))
        return rec

    def record(rec):                     # the class is finished: its files enter the manifest
        folder = os.path.join(out, "classes", rec["slug"])
        assets = {f"classes/{rec['slug']}/{f}": {"sha256": sha256_file(os.path.join(folder, f)),
                                                 "bytes": os.path.getsize(os.path.join(folder, f))}
                  for f in sorted(os.listdir(folder))
                  if f != "class.json" and f != "index.html" and not f.startswith(".")}
        rundir.write(f"classes/{rec['slug']}/class.json",
                     lambda fh: fh.write(json.dumps(rec).encode()), assets=assets)
        records[rec["index"]] = rec
        bar.update()

    if len(devices) == 1:
        for c in todo:
            record(build(c, devices[0]))
    else:                                # one worker per device, each taking the next class
        import concurrent.futures
        import queue

        free = queue.Queue()
        for d in devices:
            free.put(d)

        def on_a_free_device(c):
            d = free.get()
            try:
                return build(c, d)
            finally:
                free.put(d)

        with concurrent.futures.ThreadPoolExecutor(len(devices)) as pool:
            for fut in concurrent.futures.as_completed([pool.submit(on_a_free_device, c)
                                                        for c in todo]):
                record(fut.result())
    bar.close()
    records = [records[c] for c in classes if c in records]
    if skipped:                          # one line, however many classes (1000 at ImageNet scale)
        print(f"lens: skipped {len(skipped)} of {len(classes)} classes with fewer images predicted "
              f"as them than the {_min_images(nb_concepts)} a class needs (at least 4 and at least "
              f"nb_concepts): {', '.join(skipped[:10])}{', ...' if len(skipped) > 10 else ''}",
              file=sys.stderr)
    if not records:
        raise ValueError(f"build_lens: no class was built: every requested class ({len(skipped)}: "
                         f"{', '.join(skipped[:5])}{', ...' if len(skipped) > 5 else ''})"
                         f" has fewer than {_min_images(nb_concepts)} images predicted as it; give "
                         f"more images per class or fewer concepts")
    return records


def _devices(devices) -> list:
    """``devices`` checked: a non-empty sequence of distinct ``jax.Device`` (default: every
    local accelerator, or the first CPU device)."""
    if devices is None:
        local = jax.local_devices()
        return local[:1] if local[0].platform == "cpu" else local
    if isinstance(devices, jax.Device):
        devices = [devices]
    try:
        devices = list(devices)
    except TypeError:
        devices = None
    if not devices or not all(isinstance(d, jax.Device) for d in devices) \
            or len(set(devices)) != len(devices):
        raise TypeError("build_lens: devices must be None or a non-empty sequence of distinct "
                        f"jax.Device (for example jax.local_devices()[:2]), got {devices!r}")
    return devices


def _min_images(nb_concepts: int) -> int:
    """Images predicted as a class that CRAFT needs to fit ``nb_concepts`` concepts."""
    return max(4, nb_concepts)


def _summary(rec: dict) -> dict:
    """What the index needs of a class: names to search (ImageNet: every WordNet name and the
    WordNet ID), its thumbnail and counts."""
    from xjax.data import imagenet_classes

    aliases = list(imagenet_classes()[rec["index"]].names) if rec.get("wnid") else []
    shown = sum(not c.get("flags") for c in rec["concepts"])
    return {"name": rec["name"], "slug": rec["slug"], "wnid": rec.get("wnid"),
            "aliases": aliases, "thumb": rec.get("thumb"), "images": rec["images"],
            "concepts": shown, "folded": len(rec["concepts"]) - shown,
            "accuracy": rec["accuracy"]}


def _vectors(records, shown_only: bool):
    rows = [(r, c) for r in records for c in r["concepts"]
            if not (shown_only and c.get("flags"))]
    v = np.array([c["vector"] for _, c in rows], np.float32).reshape(len(rows), -1)
    return rows, v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def related_concepts(records, *, k: int = 3, chunk: int = 1024) -> dict[tuple[str, int], list]:
    """For each concept, the ``k`` most similar concepts (cosine of the concept vectors, which
    live in the same feature space for every class) of *other* classes, flagged ones left out:
    ``{(slug, concept id): [{"slug", "name", "concept", "similarity"}]}``. Chunked, so 1000
    classes x 10 concepts never hold the full similarity matrix."""
    rows, v = _vectors(records, shown_only=False)
    targets = [j for j, (_, c) in enumerate(rows) if not c.get("flags")]
    if not rows or not targets:
        return {}
    vt = v[targets]
    position = {id(r): i for i, r in enumerate(records)}
    owner = np.array([position[id(r)] for r, _ in rows])
    towner = owner[targets]
    out = {}
    for start in range(0, len(rows), chunk):
        sim = v[start:start + chunk] @ vt.T
        sim[owner[start:start + chunk, None] == towner[None, :]] = -np.inf
        kk = min(k, sim.shape[1])
        top = np.argsort(-sim, axis=1)[:, :kk]
        for a, idx in enumerate(top):
            r, c = rows[start + a]
            out[(r["slug"], c["id"])] = [
                {"slug": rows[targets[j]][0]["slug"], "name": rows[targets[j]][0]["name"],
                 "concept": rows[targets[j]][1]["id"], "rank": rows[targets[j]][1]["rank"],
                 "similarity": float(sim[a, j])}
                for j in idx if np.isfinite(sim[a, j])]
    return out


def class_groups(records, *, seed: int = 0, iterations: int = 25) -> list[dict]:
    """Classes grouped by shared concepts: spherical k-means (``round(sqrt(K))`` groups) of each
    class's importance-weighted mean concept vector; a group is labelled by the classes nearest
    its centre. ``[{"label", "slugs"}]``, largest group first."""
    if not records:
        return []
    vecs = []
    for r in records:
        cs = [c for c in r["concepts"] if not c.get("flags")] or r["concepts"]
        w = np.array([max(c["importance"], 0.0) for c in cs]) + 1e-6
        v = (w[:, None] * np.array([c["vector"] for c in cs], np.float64)).sum(0)
        vecs.append(v / max(np.linalg.norm(v), 1e-12))
    v = np.stack(vecs)
    g = max(1, int(round(np.sqrt(len(records))))) if len(records) >= 4 else 1
    rng = np.random.default_rng(seed)
    centres = v[[int(rng.integers(len(v)))]]
    while len(centres) < g:                       # k-means++ seeding on cosine distance
        d = np.clip(1 - (v @ centres.T).max(1), 0, None)
        centres = np.vstack([centres, v[rng.choice(len(v), p=d / d.sum())] if d.sum() > 0
                             else v[int(rng.integers(len(v)))]])
    for _ in range(iterations):
        assign = (v @ centres.T).argmax(1)
        for j in range(g):
            if (assign == j).any():
                m = v[assign == j].sum(0)
                centres[j] = m / max(np.linalg.norm(m), 1e-12)
    assign = (v @ centres.T).argmax(1)
    groups = []
    for j in range(g):
        members = np.flatnonzero(assign == j)
        if not len(members):
            continue
        near = members[np.argsort(-(v[members] @ centres[j]))]
        groups.append({"label": ", ".join(records[i]["name"] for i in near[:3])
                       + (", ..." if len(near) > 3 else ""),
                       "slugs": [records[i]["slug"] for i in near]})
    return sorted(groups, key=lambda grp: -len(grp["slugs"]))


def _embedding(records) -> dict:
    """2-D PCA of all unit-normalized concept vectors, scaled to [0, 1]: ``{"points": [...],
    "variance": [share of variance of PC 1, of PC 2]}``."""
    rows, v = _vectors(records, shown_only=False)
    if not rows:
        return {"points": [], "variance": [0.0, 0.0]}
    v = v.astype(np.float64) - v.mean(0)
    share = [0.0, 0.0]
    if len(v) > 1:
        _, sv, vt = np.linalg.svd(v, full_matrices=False)
        xy = v @ vt[:2].T
        total = float((sv ** 2).sum())
        share = [float(sv[i] ** 2 / total) if total > 0 and i < len(sv) else 0.0
                 for i in range(2)]
        if xy.shape[1] == 1:
            xy = np.concatenate([xy, np.zeros_like(xy)], 1)
    else:
        xy = np.zeros((1, 2))
    lo, hi = xy.min(0), xy.max(0)
    xy = (xy - lo) / np.where(hi > lo, hi - lo, 1.0)
    return {"points": [{"slug": r["slug"], "name": r["name"], "concept": c["id"],
                        "rank": c.get("rank"), "importance": c["importance"],
                        "folded": bool(c.get("flags")), "x": float(x), "y": float(y)}
                       for (r, c), (x, y) in zip(rows, xy, strict=True)],
            "variance": share}


# (top, left, side) of the crops of a photo, as fractions of its shorter side
_SAMPLE_CROPS = ((0.0, 0.0, 1.0), (0.125, 0.125, 0.75), (0.0, 0.0, 0.75), (0.0, 0.25, 0.75),
                 (0.25, 0.0, 0.75), (0.25, 0.25, 0.75), (0.25, 0.25, 0.5), (0.05, 0.2, 0.6))


def sample_crops(model: Model) -> tuple[np.ndarray, np.ndarray]:
    """Eight crops of each bundled photo (:func:`xjax.data.sample_photos`) that has an ImageNet
    class, at the model's input size, labelled with the photo's first class: a small ImageNet
    dataset that ships with xjax (``xjax lens build --dataset samples``, used by ``make demo``).

    Raises:
      ValueError: the model is not an ImageNet-1k classifier.
    """
    from xjax.data import resize_center_crop, sample_photos
    from xjax.data._imagenet import _is_imagenet

    if not _is_imagenet(model.class_names or ()):
        raise ValueError("lens: --dataset samples needs an ImageNet-1k model (its photos are "
                         "labelled with ImageNet classes)")
    h, w, c = model.input_shape
    xs, ys = [], []
    for photo in sample_photos():
        if not photo.imagenet_classes:
            continue
        img = photo.image
        side = min(img.shape[:2])
        oy, ox = (img.shape[0] - side) // 2, (img.shape[1] - side) // 2
        for top, left, size in _SAMPLE_CROPS:
            y0, x0, n = oy + int(top * side), ox + int(left * side), int(size * side)
            xs.append(resize_center_crop(img[y0:y0 + n, x0:x0 + n], h).astype(np.float32))
            ys.append(photo.imagenet_classes[0])
    return np.stack(xs), np.asarray(ys, np.int32)


def dataset_arrays(dataset: str, model: Model, *, source_dir: str | None = None,
                   max_per_class: int | None = None,
                   split: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images ``f32[N, H, W, C]`` at the model's input size and labels ``i32[N]`` (indices of
    ``model.class_names``).

    Args:
      dataset: ``"fashion_mnist"`` (the test split, read from ``source_dir`` or Debian's
        directory), ``"samples"`` (:func:`sample_crops`, ImageNet models), or an image
        folder read by :func:`xjax.data.image_folder`: one
        sub-directory per class named by a class name (any case), a class index or, for
        ImageNet models, a WordNet ID or any WordNet name; the ``train/`` / ``val/`` layouts;
        or a tensorflow-datasets ``imagenet2012`` manual directory (the ILSVRC-2012 tars).
      max_per_class: keep the first images of each class.
      split: ``"train"`` or ``"val"`` for a folder holding both (default ``"val"``).
    """
    from xjax.data import resize_center_crop

    h, w, c = model.input_shape
    if dataset == "fashion_mnist":
        from xjax.data import FASHION_MNIST_DIR, fashion_mnist_arrays

        x, y = fashion_mnist_arrays("test", source_dir=source_dir or FASHION_MNIST_DIR)
        if x.shape[1:] != (h, w, c):
            raise ValueError(f"lens: fashion_mnist images are 28x28x1 but the model takes "
                             f"{model.input_shape}")
        return x, y
    from xjax.data import image_folder

    if dataset == "samples":
        return sample_crops(model)
    names = list(model.class_names or [])
    if not names:
        raise ValueError("lens: the model has no class_names to match the class folders to")
    try:
        folder = image_folder(dataset, names, split=split, max_per_class=max_per_class)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"lens: --dataset {dataset!r} is neither 'fashion_mnist' nor an "
                                f"image folder: {e}") from None
    except ValueError as e:
        raise ValueError(f"lens: {e}") from None
    xs = np.empty((len(folder.labels), h, w, c), np.float32)
    for i in range(len(folder.labels)):
        x = resize_center_crop(folder.read(i), h)
        xs[i] = x.mean(-1, keepdims=True) if c == 1 else x
    return xs, folder.labels
