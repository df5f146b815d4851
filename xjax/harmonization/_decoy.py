"""Harmonization on a known shortcut: decoy-patch Fashion-MNIST with garment "human" maps."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from xjax.harmonization._alignment import alignment
from xjax.harmonization._loss import make_train_step

__all__ = ["garment_maps", "harmonize_decoy"]


def garment_maps(x_decoy: np.ndarray, *, patch_size: int = 4, threshold: float = 0.1
                 ) -> np.ndarray:
    """Stand-in human importance maps for :func:`xjax.data.decoy_patch` images: 1 on the garment
    (pixels brighter than ``threshold``), 0 on the background and on both decoy corners (what a
    person would click: the clothing, never the corner square)."""
    maps = (x_decoy[..., 0] > threshold).astype(np.float32)
    maps[:, :patch_size, :patch_size] = 0.0
    maps[:, :patch_size, -patch_size:] = 0.0
    return maps


def harmonize_decoy(x_train, y_train, x_test, y_test, corner_test, *, lambda_harmonization: float,
                    seed: int = 0, epochs: int = 2, batch_size: int = 64,
                    learning_rate: float = 1e-3, checkpoint_dir: str | None = None,
                    progress: bool = False, mesh: Mesh | None = None,
                    gradient: str = "signed") -> dict:
    """Train ``small_cnn`` (2 classes) on decoy data with the harmonization loss (lambda 0 is
    the plain model: cross-entropy with label smoothing and weight decay only) and score it on
    decoy-randomized test images.

    ``gradient`` is passed to :func:`harmonization_loss` (``"signed"``: the reference).

    Returns:
      ``{"accuracy", "decoy_agreement", "alignment_spearman", "alignment_dice", "params"}``:
      accuracy against the labels, the fraction of decisions that follow the corner (reliance on
      the shortcut; 0.5 = none), and the ClickMe-style alignment of |saliency| (max over
      channels) with the garment maps.
    """
    from xjax.attributions import saliency
    from xjax.models import small_cnn
    from xjax.train import run_epochs

    model = small_cnn(num_classes=2, key=jax.random.key(seed))
    opt = optax.adam(learning_rate)
    step = make_train_step(model.model_fn, opt, lambda_harmonization=lambda_harmonization,
                           levels=3, gradient=gradient)
    maps = garment_maps(x_train)
    data = (x_train, np.asarray(y_train, np.int32), maps, np.ones(len(x_train), bool))
    state = run_epochs(step, model.params, opt.init(model.params), data, epochs=epochs,
                       batch_size=batch_size, key=jax.random.key(seed + 1000), mesh=mesh,
                       checkpoint_dir=checkpoint_dir, progress=progress, where="harmonize")
    params = state.params
    xt = jnp.asarray(x_test)
    preds = np.asarray(jax.jit(lambda p, a: jnp.argmax(model.model_fn(p, a), -1))(params, xt))
    sal = jax.jit(saliency(model.model_fn, batch_size=256))(
        params, xt, jnp.asarray(preds, jnp.int32))
    al = alignment(sal, garment_maps(x_test))
    return {"accuracy": float(np.mean(preds == y_test)),
            "decoy_agreement": float(np.mean(preds == corner_test)),
            "alignment_spearman": float(jnp.mean(al.spearman)),
            "alignment_dice": float(jnp.mean(al.dice)), "params": params,
            "history": state.history}
