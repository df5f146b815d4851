r"""Local to global (strategic clusters) and the holistic comparison of concept extractors.

Strategic clusters (Fel, Boutin et al., NeurIPS 2023; Lens): each image of a class goes to the
concept with the largest local importance, its *dominant* concept. Per concept, *prevalence*
is the share of images it dominates and *reliability* the accuracy of the model on them.

``holistic_report`` fits several extractors on the same activations and measures, for each,
reconstruction (relative l2, R^2), sparsity, stability across two halves of the images,
Fréchet distance and OOD score of the reconstructions, and the fidelity of Gradient x Input
concept importance (C-Deletion, C-Insertion, C-muFidelity) through the model's head.
"""

import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from xjax.concepts._factorization import Factorization
from xjax.concepts._metrics import (
    concept_deletion,
    concept_insertion,
    concept_mufidelity,
    frechet_distance,
    hoyer,
    ood_score,
    r2_score,
    relative_l2,
    sparsity,
    stability,
)

__all__ = ["StrategicClusters", "holistic_report", "report_markdown", "strategic_clusters"]


class StrategicClusters(NamedTuple):
    """``dominant: i32[N]`` concept of each image, ``prevalence: f32[R]`` (sums to 1),
    ``reliability: f32[R]`` (accuracy on the images a concept dominates, NaN where it dominates
    none) and ``important: bool[R]`` (dominates at least ``min_points`` images)."""

    dominant: Int[Array, " N"]
    prevalence: Float[Array, " R"]
    reliability: Float[Array, " R"]
    important: Bool[Array, " R"]


def strategic_clusters(importance: Float[Array, "N R"], correct: Bool[Array, " N"], *,
                       min_points: int = 10) -> StrategicClusters:
    """Group images by their dominant concept (``argmax`` of local importance).

    Args:
      importance: ``f32[N, R]`` local concept importances of N images of one class.
      correct: ``bool[N]`` whether the model classifies each image correctly (or any 0/1 score).
      min_points: images a concept must dominate to count as important (Lens uses 10).
    """
    importance = jnp.asarray(importance)
    if importance.ndim != 2:
        raise ValueError(f"strategic_clusters: importance must be f32[N, R], got shape "
                         f"{importance.shape}")
    correct = jnp.asarray(correct, jnp.float32)
    if correct.shape != importance.shape[:1]:
        raise ValueError(f"strategic_clusters: correct must have one entry per image "
                         f"({importance.shape[0]}), got shape {correct.shape}")
    r = importance.shape[1]
    dom = jnp.argmax(importance, axis=1)
    onehot = jax.nn.one_hot(dom, r)
    counts = onehot.sum(0)
    rel = jnp.where(counts > 0, onehot.T @ correct / jnp.maximum(counts, 1), jnp.nan)
    return StrategicClusters(dom.astype(jnp.int32), counts / importance.shape[0], rel,
                             counts >= min_points)


def _gradient_input(score_fn, u):
    return jax.vmap(lambda ui: (ui * jax.grad(score_fn)(ui)).reshape(-1, ui.shape[-1]).sum(0))(u)


def holistic_report(activations: Float[Array, "N h w F"], factorizations: dict[str, Factorization],
                    *, score_fn: Callable | None = None, key: jax.Array,
                    max_rows: int = 2000) -> list[dict]:
    """Compare concept extractors on the same activations.

    Each factorization is fitted on all positions of ``activations`` (the holistic framework
    factorizes the full maps), and on two halves of the images for stability.

    Args:
      activations: ``f32[N, h, w, F]`` feature maps of a class's images (``h = w = 1`` for pooled
        vectors).
      factorizations: name -> :class:`Factorization` (same rank for a fair table).
      score_fn: ``score_fn(a: f32[h, w, F]) -> f32[]``, the explained score of one image's
        activations (e.g. its class logit through ``head_fn``); enables the importance fidelity
        columns (Gradient x Input importance in concept space).
      key: for fits and C-muFidelity subsets.
      max_rows: positions used by the Fréchet and OOD scores (a deterministic subsample).

    Returns:
      One dict per method: ``method, relative_l2, r2, sparsity, hoyer, stability, fid, ood`` and,
      with ``score_fn``, ``c_deletion, c_insertion, c_mufidelity``, plus ``seconds``.
    """
    if activations.ndim != 4:
        raise ValueError(f"holistic_report: activations must be f32[N, h, w, F], got shape "
                         f"{activations.shape}")
    n = activations.shape[0]
    if n < 4:
        raise ValueError(f"holistic_report: need at least 4 images (two halves for stability), "
                         f"got {n}")
    a = activations.astype(jnp.float32)
    flat = a.reshape(-1, a.shape[-1])
    half = n // 2
    step = max(1, flat.shape[0] // max_rows)
    rows = []
    for name, fac in factorizations.items():
        k_fit, k_a, k_b, k_mu = jax.random.split(jax.random.fold_in(key, len(rows)), 4)
        t0 = time.perf_counter()
        bank = fac.fit(flat, key=k_fit)
        jax.block_until_ready(bank)
        seconds = time.perf_counter() - t0
        u = fac.transform(bank, a)                                     # [N, h, w, R]
        rec = fac.inverse(bank, u).reshape(flat.shape)
        codes = u.reshape(-1, u.shape[-1])
        bank_a = fac.fit(a[:half].reshape(-1, a.shape[-1]), key=k_a)
        bank_b = fac.fit(a[half:].reshape(-1, a.shape[-1]), key=k_b)
        row = {
            "method": name,
            "relative_l2": float(relative_l2(flat, rec)),
            "r2": float(r2_score(flat, rec)),
            "sparsity": float(sparsity(codes)),
            "hoyer": float(hoyer(codes)),
            "stability": stability(bank_a.components, bank_b.components),
            "fid": float(frechet_distance(flat[::step], rec[::step])),
            "ood": float(ood_score(flat[::step], rec[::step])),
            "seconds": seconds,
        }
        if score_fn is not None:
            y = lambda ui, bank=bank, fac=fac: score_fn(fac.inverse(bank, ui))
            phi = _gradient_input(y, u)
            row["c_deletion"] = float(concept_deletion(y, u, phi).mean())
            row["c_insertion"] = float(concept_insertion(y, u, phi).mean())
            row["c_mufidelity"] = float(jnp.nanmean(concept_mufidelity(y, u, phi, key=k_mu)))
        rows.append(row)
    return rows


def report_markdown(rows: list[dict], *, digits: int = 3) -> str:
    """A markdown table of :func:`holistic_report` rows."""
    if not rows:
        return ""
    cols = list(rows[0])
    fmt = lambda v: f"{v:.{digits}f}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)
