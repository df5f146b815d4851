"""Machinery shared by explainers: eager validation, channel reduction, the gradient and
perturbation engines (chunked by ``batch_size`` over inputs and samples together)."""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from xjax._internal.batching import scan_items, take
from xjax._internal.validate import check_images, check_positive_int

REDUCTIONS = ("max", "mean", "sum", None)


def check_batch_size(batch_size, where: str):
    if batch_size is None:
        return None
    return check_positive_int(batch_size, "batch_size", where=where)


def check_reduction(reduction, where: str):
    if reduction not in REDUCTIONS:
        raise ValueError(f"{where}: channel_reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def check_key(key, where: str):
    if key is None:
        raise ValueError(f"{where}: this method is stochastic; pass key=jax.random.key(seed)")
    if not (isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)):
        raise TypeError(f"{where}: key must be a typed PRNG key from jax.random.key(seed), got "
                        f"{type(key).__name__} {getattr(key, 'dtype', '')}")
    if key.shape != ():
        raise ValueError(f"{where}: key must be a single key (shape ()), got shape {key.shape}")


def output_classes(model_fn, params, x) -> int | None:
    """K, read from the abstract evaluation of ``model_fn`` on one image (no computation)."""
    out = jax.eval_shape(model_fn, params, jax.ShapeDtypeStruct((1,) + tuple(x.shape[1:]), x.dtype))
    return out.shape[-1] if len(out.shape) == 2 else None


def check_inputs(x, y, where: str, model_fn=None, params=None) -> None:
    """``x`` NHWC floating images; ``y`` one label per image, and, when ``model_fn`` is given,
    integer labels in ``[0, K)`` (K from an abstract evaluation; traced labels are not checked)."""
    check_images(x, "x", where=where)
    leaves = jax.tree.leaves(y)
    if not leaves:
        raise TypeError(f"{where}: y must be i32[N] labels or a per-example pytree, got {y!r}")
    for leaf in leaves:
        if getattr(leaf, "shape", ())[:1] != (x.shape[0],):
            raise ValueError(f"{where}: y must have one entry per image (leading axis "
                             f"{x.shape[0]}), got shape {getattr(leaf, 'shape', ())}")
    if model_fn is None or len(leaves) != 1 or leaves[0].ndim != 1 or \
            not jnp.issubdtype(leaves[0].dtype, jnp.integer):
        return
    num_classes = output_classes(model_fn, params, x)
    if num_classes is None:
        return
    try:
        labels = np.asarray(leaves[0])
    except jax.errors.TracerArrayConversionError:
        return  # traced labels cannot be checked before compilation
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{where}: y must be class indices in [0, {num_classes}), got values in "
                         f"[{labels.min()}, {labels.max()}]")


def reduce_channels(maps: Float[Array, "N H W C"], reduction: str | None):
    """``"max"``, ``"mean"``, ``"sum"`` over the channel axis, or ``None`` to keep it."""
    if reduction == "max":
        return maps.max(axis=-1)
    if reduction == "mean":
        return maps.mean(axis=-1)
    if reduction == "sum":
        return maps.sum(axis=-1)
    return maps


def gradient_moments(model_fn, score_fn, params, x: Float[Array, "N H W C"], y,
                     make_input: Callable, weights: Float[Array, " S"], *, batch_size,
                     second: bool = False):
    """Weighted first (and second) moments of input gradients over S samples per input.

    For item ``(n, s)``: ``z = make_input(x[n], s)``, ``g = d score(model(z), y[n]) / dz``;
    returns ``m1[n] = sum_s w_s g`` and, if ``second``, ``m2[n] = sum_s w_s g^2``. One scan
    over chunks of ``batch_size`` items (inputs and samples together).
    """
    n_inputs, nb = x.shape[0], weights.shape[0]
    acc = (jnp.zeros_like(x), jnp.zeros_like(x)) if second else (jnp.zeros_like(x),)

    def step(carry, t, valid):
        n, s = t // nb, t % nb
        z = jax.vmap(make_input)(jnp.take(x, n, axis=0), s)
        yn = take(y, n)
        g = jax.grad(lambda zs: score_fn(model_fn(params, zs), yn).astype(jnp.float32).sum())(z)
        w = (jnp.where(valid, jnp.take(weights, s), 0.0)).astype(x.dtype).reshape(-1, 1, 1, 1)
        out = (carry[0].at[n].add(w * g),)
        if second:
            out += (carry[1].at[n].add(w * g * g),)
        return out

    return scan_items(step, acc, n_inputs * nb, batch_size)


def perturbation_accumulate(model_fn, score_fn, params, x, y, nb: int, perturb: Callable,
                            contribution: Callable, init, *, batch_size):
    """Fold model scores of ``nb`` perturbed copies per input into accumulators.

    For item ``(n, p)``: ``z, aux = perturb(x[n], p)``; ``s = score(model(z), y[n])``;
    ``carry = contribution(carry, n, p, s, aux, valid)``. ``x`` is the images ``f32[N, H, W, C]``
    or any pytree with leading axis N (images with their segmentations, say). One scan over
    chunks of ``batch_size`` items, so no more than ``batch_size`` images meet the model at once.
    """
    n_inputs = jax.tree.leaves(x)[0].shape[0]

    def step(carry, t, valid):
        n, p = t // nb, t % nb
        z, aux = jax.vmap(perturb)(take(x, n), p)
        s = score_fn(model_fn(params, z), take(y, n)).astype(jnp.float32)
        return contribution(carry, n, p, s, aux, valid)

    return scan_items(step, init, n_inputs * nb, batch_size)


def scores(model_fn, score_fn, params, x, y, *, batch_size) -> Float[Array, " N"]:
    """The explained score of each unperturbed input, chunked."""
    out = perturbation_accumulate(
        model_fn, score_fn, params, x, y, 1, lambda xi, p: (xi, None),
        lambda c, n, p, s, aux, valid: c.at[n].add(jnp.where(valid, s, 0.0)),
        jnp.zeros((x.shape[0],), jnp.float32), batch_size=batch_size)
    return out


def resize_maps(maps: Float[Array, "N h w"], size: tuple[int, int], method: str = "bilinear"):
    return jax.image.resize(maps, (maps.shape[0],) + tuple(size), method=method)

