"""A synthetic Lens atlas of the 1000 ImageNet classes x 10 concepts, written through the real
site writers (no model): for the browser's load-time and scale tests."""

import io
import json
import os

import numpy as np
from PIL import Image

from xjax.data import imagenet_classes
from xjax.lens._build import _embedding, _summary, class_groups, related_concepts
from xjax.lens._site import write_class_page, write_global_pages


def _png(rng, h, w) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def write_synthetic_atlas(out: str, *, n_classes: int = 1000, n_concepts: int = 10,
                          dim: int = 32, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    images = {"thumb.png": _png(rng, 24, 24), "crops.png": _png(rng, 24, 200),
              "maps.png": _png(rng, 24, 100), "viz.png": _png(rng, 40, 40),
              "examples.png": _png(rng, 40, 120)}
    records = []
    for c in imagenet_classes()[:n_classes]:
        slug = f"{c.index:04d}-{c.wnid}"
        folder = os.path.join(out, "classes", slug)
        os.makedirs(folder)
        for name, data in images.items():
            with open(os.path.join(folder, name), "wb") as f:
                f.write(data)
        share = np.sort(rng.dirichlet(np.ones(n_concepts)))[::-1]
        concepts = [{"id": i, "rank": i + 1, "importance": float(share[i]) - 0.02 * (i == 9),
                     "prevalence": 1 / n_concepts, "reliability": 0.8,
                     "flags": ["non-positive importance"] if share[i] - 0.02 * (i == 9) <= 0
                     else [], "crops": "crops.png", "viz": "viz.png", "maps": "maps.png",
                     "vector": rng.random(dim).round(4).tolist()} for i in range(n_concepts)]
        records.append({"name": c.name, "index": c.index, "wnid": c.wnid, "images": 50,
                        "thumb": "thumb.png", "crops": 200, "accuracy": 0.8,
                        "concepts": concepts, "examples": ["examples.png"],
                        "method": "saliency", "slug": slug})
    related, groups = related_concepts(records), class_groups(records)
    slugs = [r["slug"] for r in records]
    for i, rec in enumerate(records):
        with open(os.path.join(out, "classes", rec["slug"], "class.json"), "w") as f:
            json.dump(rec, f)
        write_class_page(out, rec, (slugs[i - 1] if i else None,
                                    slugs[i + 1] if i + 1 < len(slugs) else None),
                         related=related)
    write_global_pages(out, [_summary(r) for r in records], _embedding(records),
                       {"title": "synthetic ImageNet atlas", "model": "none",
                        "dataset": "synthetic"}, groups=groups)
    return records
