"""Validation shared by explainers (eager, before tracing)."""

import jax
import numpy as np

from xjax._internal.validate import check_images, check_positive_int


def check_batch_size(batch_size, where: str):
    if batch_size is None:
        return None
    return check_positive_int(batch_size, "batch_size", where=where)


def check_inputs(x, y, where: str, model_fn=None, params=None) -> None:
    """``x`` NHWC floating images; ``y`` one label per image, and, when ``model_fn`` is given,
    integer labels in ``[0, K)`` (K from an abstract evaluation; traced labels are not checked)."""
    check_images(x, "x", where=where)
    num_classes = output_classes(model_fn, params, x) if model_fn is not None else None
    leaves = jax.tree.leaves(y)
    if not leaves:
        raise TypeError(f"{where}: y must be i32[N] labels or a per-example pytree, got {y!r}")
    for leaf in leaves:
        if getattr(leaf, "shape", ())[:1] != (x.shape[0],):
            raise ValueError(f"{where}: y must have one entry per image (leading axis "
                             f"{x.shape[0]}), got shape {getattr(leaf, 'shape', ())}")
    if num_classes is not None and len(leaves) == 1 and hasattr(leaves[0], "dtype") and \
            np.issubdtype(leaves[0].dtype, np.integer):
        try:
            labels = np.asarray(leaves[0])
        except jax.errors.TracerArrayConversionError:
            return  # traced labels cannot be checked before compilation
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"{where}: y must be class indices in [0, {num_classes}), got values "
                             f"in [{labels.min()}, {labels.max()}]")


def output_classes(model_fn, params, x) -> int | None:
    """K, read from the abstract evaluation of ``model_fn`` on one image (no computation)."""
    out = jax.eval_shape(model_fn, params, jax.ShapeDtypeStruct((1,) + tuple(x.shape[1:]), x.dtype))
    return out.shape[-1] if len(out.shape) == 2 else None
