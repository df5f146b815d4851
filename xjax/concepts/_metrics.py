r"""Metrics of concept explanations (CRAFT and the holistic framework).

Importance fidelity, in concept space: with ``score_fn(u) -> f32[]`` the explained score as a
function of one image's codes ``u: f32[..., R]`` (for example the logit of the head applied to
the reconstruction ``u W``) and an importance vector ``phi: f32[R]``:

- :func:`concept_deletion` (lower is better): zero the codes of the ``j`` most important
  concepts, ``j = 0..R``, and average the score over the curve (trapezoid on ``j / R``).
- :func:`concept_insertion` (higher is better): start from zero codes and insert them in
  decreasing importance.
- :func:`concept_mufidelity` (higher is better): Spearman correlation, over random subsets S of
  ``subset_fraction R`` concepts, between :math:`\sum_{i\in S}\phi_i` and the score drop when S
  is zeroed.

Dictionary quality: :func:`relative_l2`, :func:`r2_score`, :func:`sparsity`, :func:`hoyer`,
:func:`stability` (Hungarian matching of two banks on absolute cosine), :func:`frechet_distance`
and :func:`ood_score` (k-NN distance of reconstructions to real activations).

References:
  T. Fel et al., "CRAFT", CVPR 2023; T. Fel, V. Boutin et al., "A Holistic Approach to Unifying
  Automatic Concept Extraction and Concept Importance Estimation", NeurIPS 2023;
  V. Petsiuk et al., RISE (Deletion/Insertion), BMVC 2018; U. Bhatt et al. (muFidelity),
  IJCAI 2020.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

__all__ = [
    "concept_deletion",
    "concept_insertion",
    "concept_mufidelity",
    "frechet_distance",
    "hoyer",
    "linear_assignment",
    "ood_score",
    "r2_score",
    "relative_l2",
    "sparsity",
    "stability",
]


def _lead(v, like):
    """``v: [R]`` shaped to broadcast against codes ``like: [..., R]``."""
    return v.reshape((1,) * (like.ndim - 1) + v.shape)


def _curve(score_fn, u, phi, insert):
    r = phi.shape[-1]
    order = jnp.argsort(-phi)
    rank = jnp.empty_like(order).at[order].set(jnp.arange(r))            # rank of each concept
    def at(j):
        keep = (rank >= j) if not insert else (rank < j)
        return score_fn(u * _lead(keep.astype(u.dtype), u))
    return jax.vmap(at)(jnp.arange(r + 1))


def _auc(curve):
    return (curve[..., 1:] + curve[..., :-1]).mean(-1) / 2.0


def concept_deletion(score_fn: Callable, u: Float[Array, "N ... R"],
                     phi: Float[Array, "N R"]) -> Float[Array, " N"]:
    """C-Deletion: mean score along the deletion curve (lower: the importance found the
    concepts the score depends on). ``score_fn`` takes one image's codes ``f32[..., R]``."""
    return jax.vmap(lambda ui, pi: _auc(_curve(score_fn, ui, pi, False)))(u, phi)


def concept_insertion(score_fn: Callable, u: Float[Array, "N ... R"],
                      phi: Float[Array, "N R"]) -> Float[Array, " N"]:
    """C-Insertion: mean score along the insertion curve (higher is better)."""
    return jax.vmap(lambda ui, pi: _auc(_curve(score_fn, ui, pi, True)))(u, phi)


def _rankdata(x):
    return jnp.argsort(jnp.argsort(x, axis=-1), axis=-1).astype(jnp.float32)


def _pearson(a, b):
    a = a - a.mean(-1, keepdims=True)
    b = b - b.mean(-1, keepdims=True)
    return (a * b).sum(-1) / jnp.sqrt(jnp.maximum((a * a).sum(-1) * (b * b).sum(-1), 1e-30))


def concept_mufidelity(score_fn: Callable, u: Float[Array, "N ... R"], phi: Float[Array, "N R"],
                       *, key: jax.Array, subset_fraction: float = 0.2,
                       nb_samples: int = 200) -> Float[Array, " N"]:
    """C-muFidelity: Spearman correlation between the summed importance of random concept subsets
    and the score drop when they are zeroed (Xplique's defaults: 20% subsets, 200 samples)."""
    r = phi.shape[-1]
    size = max(1, round(subset_fraction * r))

    def one(ui, pi, k):
        keys = jax.random.split(k, nb_samples)
        subsets = jax.vmap(lambda kk: jnp.zeros(r, bool).at[
            jax.random.permutation(kk, r)[:size]].set(True))(keys)       # [S, R]
        base = score_fn(ui)
        drops = jax.vmap(lambda s: base - score_fn(ui * _lead((~s).astype(ui.dtype), ui)))(subsets)
        sums = (subsets.astype(pi.dtype) * pi[None]).sum(-1)
        return _pearson(_rankdata(sums), _rankdata(drops))

    return jax.vmap(one)(u, phi, jax.random.split(key, u.shape[0]))


def relative_l2(a: Float[Array, "M F"], a_hat: Float[Array, "M F"]) -> Float[Array, ""]:
    """``||A - A_hat||_F / ||A||_F``."""
    return jnp.linalg.norm(a - a_hat) / jnp.maximum(jnp.linalg.norm(a), 1e-30)


def r2_score(a: Float[Array, "M F"], a_hat: Float[Array, "M F"]) -> Float[Array, ""]:
    """``1 - mean((A - A_hat)^2) / mean((A - mean A)^2)`` (column means)."""
    var = jnp.mean((a - a.mean(0, keepdims=True)) ** 2)
    return 1.0 - jnp.mean((a - a_hat) ** 2) / jnp.maximum(var, 1e-30)


def sparsity(u: Float[Array, "M R"], *, eps: float = 1e-6) -> Float[Array, ""]:
    """The fraction of codes with ``|u| <= eps`` (1 = all zero)."""
    return jnp.mean(jnp.abs(u) <= eps)


def hoyer(u: Float[Array, "M R"]) -> Float[Array, ""]:
    r"""Mean Hoyer sparsity :math:`(\sqrt d - \|u\|_1/\|u\|_2)/(\sqrt d - 1)` of the rows
    (1: one active code, 0: all equal)."""
    d = u.shape[-1]
    ratio = jnp.abs(u).sum(-1) / jnp.maximum(jnp.linalg.norm(u, axis=-1), 1e-30)
    return jnp.mean((jnp.sqrt(d) - ratio) / (jnp.sqrt(d) - 1.0))


def linear_assignment(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost perfect matching of the rows of ``cost: [n, m]`` (``n <= m``) to distinct
    columns (the Hungarian algorithm with potentials, O(n^2 m)). Returns ``(rows, cols)``."""
    cost = np.asarray(cost, np.float64)
    n, m = cost.shape
    if n > m:
        cols, rows = linear_assignment(cost.T)
        order = np.argsort(rows)
        return rows[order], cols[order]
    u, v = np.zeros(n + 1), np.zeros(m + 1)
    p, way = np.zeros(m + 1, int), np.zeros(m + 1, int)
    for i in range(1, n + 1):
        p[0], j0 = i, 0
        minv = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, bool)
        while True:
            used[j0] = True
            i0 = p[j0]
            free = ~used[1:]
            cur = cost[i0 - 1] - u[i0] - v[1:]
            better = free & (cur < minv[1:])
            minv[1:] = np.where(better, cur, minv[1:])
            way[1:] = np.where(better, j0, way[1:])
            masked = np.where(free, minv[1:], np.inf)
            j1 = int(np.argmin(masked)) + 1
            delta = masked[j1 - 1]
            u[p[used]] += delta
            v[used] -= delta
            minv[~used] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while j0:
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
    cols = np.zeros(n, int)
    for j in range(1, m + 1):
        if p[j]:
            cols[p[j] - 1] = j - 1
    return np.arange(n), cols


def stability(bank_a: Float[Array, "R F"], bank_b: Float[Array, "R F"]) -> float:
    """Mean cosine distance ``1 - |cos|`` between two banks' atoms after optimal (Hungarian)
    matching: 0 when the second fit found the same concepts. Absolute cosine, because a signed
    factorization's atoms are defined up to sign."""
    a = np.asarray(bank_a, np.float64)
    b = np.asarray(bank_b, np.float64)
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-30)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-30)
    dist = 1.0 - np.abs(a @ b.T)
    rows, cols = linear_assignment(dist)
    return float(dist[rows, cols].mean())


def _sqrtm_psd(s):
    w, v = jnp.linalg.eigh(s)
    return (v * jnp.sqrt(jnp.maximum(w, 0.0))[None]) @ v.T


def frechet_distance(a: Float[Array, "M F"], a_hat: Float[Array, "M F"]) -> Float[Array, ""]:
    r"""Fréchet distance between Gaussian fits of the real and reconstructed activations,
    :math:`\|\mu-\hat\mu\|^2 + \mathrm{Tr}(\Sigma + \hat\Sigma - 2(\Sigma^{1/2}\hat\Sigma
    \Sigma^{1/2})^{1/2})`."""
    a = a.astype(jnp.float32)
    a_hat = a_hat.astype(jnp.float32)
    mu, mu_h = a.mean(0), a_hat.mean(0)
    s = jnp.cov(a, rowvar=False)
    s_h = jnp.cov(a_hat, rowvar=False)
    root = _sqrtm_psd(s)
    cross = jnp.trace(_sqrtm_psd(root @ s_h @ root))
    return jnp.sum((mu - mu_h) ** 2) + jnp.trace(s) + jnp.trace(s_h) - 2.0 * cross


def _cos_dist(x, y):
    x = x / jnp.maximum(jnp.linalg.norm(x, axis=1, keepdims=True), 1e-30)
    y = y / jnp.maximum(jnp.linalg.norm(y, axis=1, keepdims=True), 1e-30)
    return 1.0 - x @ y.T


def ood_score(a: Float[Array, "M F"], a_hat: Float[Array, "M F"], *, k: int = 5) -> Float[Array, ""]:
    """Out-of-distribution score of reconstructions: the mean cosine distance of each
    reconstruction to its ``k`` nearest real activations, divided by the same distance among real
    activations (self excluded). 1: as close to the data as the data itself; larger: off the
    manifold of real activations."""
    d_hat = _cos_dist(a_hat, a)
    d_real = _cos_dist(a, a) + 2.0 * jnp.eye(a.shape[0])               # exclude self
    knn = lambda d: -jax.lax.top_k(-d, k)[0].mean()
    return knn(d_hat) / jnp.maximum(knn(d_real), 1e-12)
