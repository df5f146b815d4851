"""MeGe and ReCo: algorithmic stability of explanations across models trained on k folds."""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from xjax.metrics._common import spatial, spearman
from xjax.runs import gather_rows, per_device
from xjax.typing import Explainer, ModelFn

__all__ = ["FoldModels", "MegeReco", "explain_folds", "mege_reco", "mege_reco_protocol",
           "train_folds"]


class MegeReco(NamedTuple):
    """``mege`` in (0, 1], ``reco`` in [0, 1], the sizes of the two distance sets, and how many
    (pair, input) distances were dropped as undefined (a constant map on either side)."""

    mege: Float[Array, ""]
    reco: Float[Array, ""]
    n_same: Int[Array, ""]
    n_diff: Int[Array, ""]
    n_dropped: Int[Array, ""]


def mege_reco(maps: Float[Array, "k n H W"], predictions: Int[Array, "k n"], y: Int[Array, " n"],
              folds: Int[Array, " n"]) -> MegeReco:
    r"""MeGe and ReCo (Fel et al., WACV 2022) from the explanations of k models.

    For every pair of models ``i < j`` and every input in fold ``i`` or ``j`` (so exactly one of
    the two models was trained on it), skipping inputs neither model classifies correctly, the
    distance :math:`\delta = \sqrt{1 - |\rho_s(\phi_i(x), \phi_j(x))|}` (Spearman on flattened,
    channel-mean maps) goes to :math:`S^=` when both models are right and to :math:`S^{\neq}`
    when exactly one is. Then

    .. math:: \mathrm{MeGe} = \frac{1}{1 + \overline{S^=}}, \qquad
       \mathrm{ReCo} = \max_\gamma \; \mathrm{TPR}(\gamma) + \mathrm{TNR}(\gamma) - 1

    with :math:`\mathrm{TPR}(\gamma) = |\{\delta \in S^= : \delta < \gamma\}| / |S^=|` and
    :math:`\mathrm{TNR}(\gamma) = |\{\delta \in S^{\neq} : \delta > \gamma\}| / |S^{\neq}|`,
    scanned exactly over every observed distance and the midpoints between them (Xplique strides
    over ~20 observed distances), floored at 0.

    A distance is undefined when either map is constant (an all-zero Grad-CAM map, say): its
    rank correlation is 0/0. As in the reference implementation such distances are dropped from
    both sets (they are not "maximally distant"), and ``n_dropped`` counts them.

    Args:
      maps: ``f32[k, n, H, W]`` (or with channels) explanations of all n inputs by each model.
      predictions: ``i32[k, n]`` each model's predicted class.
      y: ``i32[n]`` true labels.
      folds: ``i32[n]`` the fold (0..k-1) each input was held out of.

    Returns:
      :class:`MegeReco`. With no pair in a set, MeGe is 1 (no same-prediction pair) or ReCo 0.

    References:
      T. Fel, D. Vigouroux, R. Cadène, T. Serre, "How Good is your Explanation? Algorithmic
      Stability Measures to Assess the Quality of Explanations for Deep Neural Networks",
      WACV 2022, arXiv:2009.04521.
    """
    k, n = predictions.shape
    if k < 2:
        raise ValueError(f"mege_reco: need at least 2 models (k folds), got {k}")
    if maps.shape[:2] != (k, n) or y.shape != (n,) or folds.shape != (n,):
        raise ValueError(f"mege_reco: maps must be (k, n, ...) = {(k, n)}, y and folds (n,); got "
                         f"{maps.shape}, {y.shape}, {folds.shape}")
    flat = spatial(maps.reshape((k * n,) + maps.shape[2:])).reshape(k, n, -1).astype(jnp.float32)
    pairs = np.array([(i, j) for i in range(k) for j in range(i + 1, k)])
    a, b = flat[pairs[:, 0]], flat[pairs[:, 1]]                          # [P, n, F]
    rho = spearman(a, b)
    delta = jnp.sqrt(jnp.maximum(1.0 - jnp.abs(rho), 0.0))              # [P, n]
    constant = jnp.max(flat, -1) == jnp.min(flat, -1)                    # [k, n]
    defined = ~(constant[pairs[:, 0]] | constant[pairs[:, 1]])
    correct = predictions == y[None, :]
    ci, cj = correct[pairs[:, 0]], correct[pairs[:, 1]]
    held = (folds[None, :] == pairs[:, :1]) | (folds[None, :] == pairs[:, 1:])
    counted = held & (ci | cj)
    same = counted & ci & cj & defined
    diff = counted & (ci ^ cj) & defined
    n_same, n_diff = same.sum(), diff.sum()
    n_dropped = (counted & ~defined).sum()
    count_same = jnp.maximum(n_same, 1).astype(jnp.float32)
    count_diff = jnp.maximum(n_diff, 1).astype(jnp.float32)
    mege = 1.0 / (1.0 + jnp.sum(jnp.where(same, delta, 0.0)) / count_same)
    s_sorted = jnp.sort(jnp.where(same, delta, jnp.inf).ravel())
    d_sorted = jnp.sort(jnp.where(diff, delta, -jnp.inf).ravel())
    # thresholds: every observed distance and every midpoint between consecutive ones, so a
    # perfect separation reaches 1 (the supremum of the Youden index over all real gamma)
    pooled = jnp.sort(jnp.concatenate([jnp.where(same, delta, jnp.inf).ravel(),
                                       jnp.where(diff, delta, jnp.inf).ravel()]))
    gammas = jnp.concatenate([pooled, (pooled[1:] + pooled[:-1]) / 2.0])
    tpr = jnp.searchsorted(s_sorted, gammas, side="left").astype(jnp.float32) / count_same
    above = d_sorted.size - jnp.searchsorted(d_sorted, gammas, side="right")
    tnr = above.astype(jnp.float32) / count_diff
    youden = jnp.where(jnp.isfinite(gammas), tpr + tnr - 1.0, 0.0)
    reco = jnp.where((n_same > 0) & (n_diff > 0), jnp.maximum(youden.max(), 0.0), 0.0)
    return MegeReco(mege.astype(jnp.float32), reco.astype(jnp.float32), n_same, n_diff, n_dropped)


class FoldModels(NamedTuple):
    """k models trained on the complements of k contiguous folds of a shuffled dataset."""

    params: object                      # stacked parameter pytree, leading axis k
    x: np.ndarray                       # the shuffled inputs
    y: np.ndarray                       # their labels
    folds: np.ndarray                   # i32[n], the fold each input was held out of
    held_out_accuracy: list


def train_folds(train: Callable, model_fn: ModelFn, x, y, *, k: int = 4,
                key: jax.Array) -> FoldModels:
    """Shuffle, split into k contiguous folds and train ``train(x_train, y_train, key) -> params``
    on each complement (the part of the MeGe protocol that does not depend on the explainer)."""
    n = len(x)
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ValueError(f"mege_reco_protocol: k must be an int >= 2 (folds), got {k!r}")
    if n % k:
        raise ValueError(f"mege_reco_protocol: the number of inputs ({n}) must be divisible by "
                         f"k={k}")
    k_perm, k_train = jax.random.split(key)
    perm = np.asarray(jax.random.permutation(k_perm, n))
    x, y = np.asarray(x)[perm], np.asarray(y)[perm]
    folds = np.arange(n) // (n // k)
    params = [train(x[folds != i], y[folds != i], jax.random.fold_in(k_train, i))
              for i in range(k)]
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *params)
    preds = jax.jit(jax.vmap(lambda p: jnp.argmax(model_fn(p, jnp.asarray(x)), -1)))(stacked)
    acc = [float(np.mean(np.asarray(preds[i])[folds == i] == y[folds == i])) for i in range(k)]
    return FoldModels(stacked, x, y, folds, acc)


def explain_folds(models: FoldModels, model_fn: ModelFn, explainer: Explainer, *,
                  key: jax.Array | None = None) -> MegeReco:
    """Explain every input with all k models at once (``vmap`` over the stacked parameters) and
    score with :func:`mege_reco`. Inputs placed on a mesh (``models._replace(x=shard_rows(x),
    y=..., params=replicate(params))``, :mod:`xjax.runs`) keep their sharding: the explanation
    then runs data parallel."""
    xj, yj = jnp.asarray(models.x), jnp.asarray(models.y).astype(jnp.int32)

    def explain_all(stacked, xs, ys):
        def one(p):
            preds = jnp.argmax(model_fn(p, xs), -1).astype(jnp.int32)
            return explainer(p, xs, ys, key=key), preds
        return jax.vmap(one)(stacked)

    sharded = isinstance(xj.sharding, jax.sharding.NamedSharding) and len(
        xj.sharding.device_set) > 1
    run = jax.jit(per_device(explain_all, xj.sharding.mesh, out_axis=1) if sharded
                  else explain_all)
    maps, preds = run(models.params, xj, yj)
    if sharded:   # score on one device: the pairwise statistics need every row anyway
        maps, preds, yj = gather_rows((maps, preds, yj))
    return mege_reco(maps, preds, yj, jnp.asarray(models.folds, jnp.int32))


def mege_reco_protocol(train: Callable, model_fn: ModelFn, explainer: Explainer,
                       x: Float[np.ndarray, "n H W C"], y: Int[np.ndarray, " n"], *, k: int = 4,
                       key: jax.Array, explain_key: jax.Array | None = None):
    """Run the whole protocol: :func:`train_folds` then :func:`explain_folds`.

    Returns:
      ``(MegeReco, info)`` where ``info`` has the per-model held-out accuracy.

    Raises:
      ValueError: ``k < 2`` or ``n`` not divisible by ``k``.
    """
    models = train_folds(train, model_fn, x, y, k=k, key=key)
    return (explain_folds(models, model_fn, explainer, key=explain_key),
            {"held_out_accuracy": models.held_out_accuracy})
