"""Harmonization on a known shortcut: decoy-patch Fashion-MNIST with garment "human" maps."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from xjax.harmonization._alignment import alignment
from xjax.harmonization._loss import make_train_step
from xjax.runs import gather_rows, per_device, shard_rows

__all__ = ["garment_maps", "harmonize_decoy"]


def garment_maps(x_decoy: np.ndarray, *, patch_size: int = 4, threshold: float = 0.1,
                 corners: str = "top") -> np.ndarray:
    """Stand-in human importance maps for the decoy images of :func:`xjax.data.decoy_patch`
    (``corners="top"``) or :func:`xjax.data.decoy_swatch` (``corners="all"``): 1 on the garment
    (pixels brighter than ``threshold``), 0 on the background and on every corner square the
    decoy can occupy (what a person would click: the clothing, never the corner square)."""
    if corners not in ("top", "all"):
        raise ValueError(f"garment_maps: corners must be 'top' or 'all', got {corners!r}")
    maps = (x_decoy[..., 0] > threshold).astype(np.float32)
    maps[:, :patch_size, :patch_size] = 0.0
    maps[:, :patch_size, -patch_size:] = 0.0
    if corners == "all":
        maps[:, -patch_size:, :patch_size] = 0.0
        maps[:, -patch_size:, -patch_size:] = 0.0
    return maps


def harmonize_decoy(x_train, y_train, x_test, y_test, decoy_test, *, lambda_harmonization: float,
                    seed: int = 0, epochs: int = 2, batch_size: int = 64,
                    learning_rate: float = 1e-3, checkpoint_dir: str | None = None,
                    progress: bool = False, mesh: Mesh | None = None,
                    gradient: str = "signed", num_classes: int = 2,
                    corners: str = "top") -> dict:
    """Train ``small_cnn`` on decoy data with the harmonization loss (lambda 0 is the plain
    model: cross-entropy with label smoothing and weight decay only) and score it on
    decoy-randomized test images.

    Args:
      x_train, y_train: decoy images and labels (:func:`xjax.data.decoy_patch`, 2 classes, or
        :func:`xjax.data.decoy_swatch`, ``num_classes``).
      x_test, y_test, decoy_test: test images whose decoy is random, their labels, and the class
        each one's decoy points to (the corner of ``decoy_patch``, the code of ``decoy_swatch``).
      gradient: passed to :func:`harmonization_loss` (``"signed"``: the reference).
      num_classes: classes of the model (2 for ``decoy_patch``).
      corners: the corner squares left out of the garment maps (``"top"`` for ``decoy_patch``,
        ``"all"`` for ``decoy_swatch``; :func:`garment_maps`).

    Returns:
      ``{"accuracy", "decoy_agreement", "alignment_spearman", "alignment_dice", "params",
      "history"}``: accuracy against the labels, the fraction of decisions that follow the decoy
      (reliance on the shortcut; chance is ``1 / num_classes``), and the ClickMe-style alignment
      of |saliency| (max over channels) with the garment maps.
    """
    from xjax.attributions import saliency
    from xjax.models import small_cnn
    from xjax.train import run_epochs

    model = small_cnn(num_classes=num_classes, key=jax.random.key(seed))
    opt = optax.adam(learning_rate)
    step = make_train_step(model.model_fn, opt, lambda_harmonization=lambda_harmonization,
                           levels=3, gradient=gradient)
    maps = garment_maps(x_train, corners=corners)
    data = (x_train, np.asarray(y_train, np.int32), maps, np.ones(len(x_train), bool))
    state = run_epochs(step, model.params, opt.init(model.params), data, epochs=epochs,
                       batch_size=batch_size, key=jax.random.key(seed + 1000), mesh=mesh,
                       checkpoint_dir=checkpoint_dir, progress=progress, where="harmonize")
    params = state.params
    xt = shard_rows(x_test, mesh=mesh)   # on the devices the parameters were trained on
    preds = jax.jit(lambda p, a: jnp.argmax(model.model_fn(p, a), -1).astype(jnp.int32))(
        params, xt)                                       # sharded like xt
    sal = jax.jit(per_device(saliency(model.model_fn, batch_size=256), mesh))(params, xt, preds)
    preds, sal = gather_rows((preds, sal))
    al = alignment(sal, garment_maps(x_test, corners=corners))
    return {"accuracy": float(np.mean(preds == y_test)),
            "decoy_agreement": float(np.mean(preds == decoy_test)),
            "alignment_spearman": float(jnp.mean(al.spearman)),
            "alignment_dice": float(jnp.mean(al.dice)), "params": params,
            "history": state.history}
