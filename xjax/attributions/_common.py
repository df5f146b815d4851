"""Machinery shared by explainers: eager validation, channel reduction, the gradient and
perturbation engines (blocks of ``batch_size`` items spanning inputs and samples)."""

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from xjax._internal.batching import add_items, add_rows, item_layout, scan_items, take
from xjax._internal.validate import check_images, check_positive_int, default_floats

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


def check_inputs(x, y, where: str, model_fn=None, params=None, score_fn=None) -> None:
    """``x`` a non-empty batch of finite NHWC floating images (finiteness is checked when ``x``
    is concrete; see :func:`guarded` for traced inputs); ``y`` one label per image: integer
    class indices when ``score_fn`` is a class-index score (:data:`CLASS_INDEX_SCORES`), and,
    when ``model_fn`` is given, in ``[0, K)`` (K from an abstract evaluation; traced labels are
    not checked)."""
    from xjax.attributions._score import CLASS_INDEX_SCORES

    check_images(x, "x", where=where, nonempty=True, finite=True,
                 unit_range=True)
    leaves = jax.tree.leaves(y)
    if not leaves:
        raise TypeError(f"{where}: y must be i32[N] labels or a per-example pytree, got {y!r}")
    for leaf in leaves:
        if getattr(leaf, "shape", ())[:1] != (x.shape[0],):
            raise ValueError(f"{where}: y must have one entry per image (leading axis "
                             f"{x.shape[0]}), got shape {getattr(leaf, 'shape', ())}")
    if score_fn in CLASS_INDEX_SCORES:
        dtype = getattr(leaves[0], "dtype", None)
        if len(leaves) != 1 or leaves[0].ndim != 1 or dtype is None or \
                not jnp.issubdtype(dtype, jnp.integer):
            raise TypeError(f"{where}: y must be integer class indices i32[N] for score_fn="
                            f"{score_fn.__name__}, got {type(y).__name__} of dtype "
                            f"{dtype} (float labels would be truncated; cast with "
                            f"y.astype(int) if that is meant)")
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


def nan_rows(x, out):
    """``out`` (a pytree of per-row results) with NaN in every row whose image ``x[n]`` holds a
    NaN or an infinity: under ``jit`` such an image cannot be refused, and a model that drops
    NaN (``max(NaN, 0)`` in a ReLU or a pooling) would otherwise give a plausible map."""
    bad = ~jnp.isfinite(x).reshape(x.shape[0], -1).all(axis=1)

    def one(a):
        if not jnp.issubdtype(a.dtype, jnp.floating) or a.shape[:1] != x.shape[:1]:
            return a
        return jnp.where(bad.reshape((-1,) + (1,) * (a.ndim - 1)), jnp.nan, a).astype(a.dtype)

    return jax.tree.map(one, out)


def guarded(where: str, model_fn, score_fn) -> Callable:
    """Decorate an explainer or metric ``fn(params, x, y, ...)``: inputs are validated eagerly
    (:func:`check_inputs`, before tracing), and rows of non-finite images are NaN in the output
    (:func:`nan_rows`); NumPy float64 arguments become float32 unless x64 is on
    (:func:`default_floats`), and host images become JAX arrays. The one boundary every public
    explainer and metric goes through."""
    def wrap(fn):
        @functools.wraps(fn)
        def run(params, x, y, *args, **kwargs):
            x, y, args, kwargs = default_floats((x, y, args, kwargs))
            check_inputs(x, y, where, model_fn, params, score_fn)
            x = jnp.asarray(x)                 # host images are indexed by traced rows inside
            return nan_rows(x, fn(params, x, y, *args, **kwargs))
        return run
    return wrap


def reduce_channels(maps: Float[Array, "N H W C"], reduction: str | None):
    """``"max"``, ``"mean"``, ``"sum"`` over the channel axis, or ``None`` to keep it."""
    if reduction == "max":
        return maps.max(axis=-1)
    if reduction == "mean":
        return maps.mean(axis=-1)
    if reduction == "sum":
        return maps.sum(axis=-1)
    return maps


def _no_sample(s):
    return s


def gradient_moments(model_fn, score_fn, params, x: Float[Array, "N H W C"], y,
                     make_input: Callable, weights: Float[Array, " S"], *, batch_size,
                     second: bool = False, sample: Callable = _no_sample):
    """Weighted first (and second) moments of input gradients over S samples per input.

    For item ``(n, s)``: ``z = make_input(x[n], sample(s))``,
    ``g = d score(model(z), y[n]) / dz``; returns ``m1[n] = sum_s w_s g`` and, if ``second``,
    ``m2[n] = sum_s w_s g^2``. The ``N x S`` items run in blocks of nearly ``batch_size`` that
    span inputs (:func:`~xjax._internal.batching.scan_items`); each block's weighted gradients
    are summed per input by :func:`~xjax._internal.batching.add_items` (a non-finite gradient
    stays in its own row).
    """
    n, nb = x.shape[0], weights.shape[0]
    span, rows = accumulator_rows(n, nb, batch_size)
    zeros = jnp.zeros((rows,) + x.shape[1:], x.dtype)
    acc = (zeros, zeros) if second else (zeros,)

    def step(carry, first, idx, s, valid):
        z = jax.vmap(make_input)(take(x, idx), jax.vmap(sample)(s))
        yb = take(y, idx)
        g = jax.grad(lambda zs: score_fn(model_fn(params, zs), yb).astype(jnp.float32).sum())(z)
        w = jnp.take(weights, s).astype(x.dtype).reshape((-1,) + (1,) * (g.ndim - 1))
        mask = valid.reshape(w.shape)                  # padding items add nothing, not even NaN

        def add(acc_, v):
            return add_items(acc_, first, idx - first, jnp.where(mask, w * v, 0.0), span)

        out = (add(carry[0], g),)
        if second:
            out += (add(carry[1], g * g),)
        return out

    out = scan_items(step, acc, n, nb, batch_size)
    return tuple(a[:n] for a in out)


def accumulator_rows(n: int, nb: int, batch_size) -> tuple[int, int]:
    """``(span, rows)`` of :func:`perturbation_accumulate`'s blocks for ``n`` inputs x ``nb``
    perturbations: a block touches at most ``span`` consecutive inputs, and accumulators indexed
    by input need ``rows >= n`` rows (the caller slices the first ``n``)."""
    _, _, span, rows = item_layout(n, nb, batch_size)
    return span, rows


def perturbation_accumulate(model_fn, score_fn, params, x, y, nb: int, sample: Callable,
                            apply: Callable, contribution: Callable, init, *, batch_size):
    """Fold model scores of ``nb`` perturbed copies per input into accumulators.

    Item ``(n, p)`` is perturbation ``p`` (``aux = sample(p)``: a mask, a coalition) of input
    ``n``: ``z = apply(x[n], aux)``. The ``N x nb`` items run in blocks of nearly
    ``batch_size`` consecutive items that span inputs
    (:func:`~xjax._internal.batching.scan_items`), so every model call runs at nearly the full
    batch whatever ``nb`` is. Each block gives ``scores: f32[B]``, then
    ``carry = contribution(carry, first, n: i32[B], p: i32[B], scores, aux: [B, ...],
    valid: bool[B])``: ``first`` is the block's first input, ``n - first`` lies in
    ``[0, span)`` and :func:`~xjax._internal.batching.add_items` adds per-item values to the
    inputs' rows (padding items, ``valid`` false, repeat the last item and must add nothing).
    Accumulators indexed by input need ``rows`` rows (:func:`accumulator_rows`). ``x`` is the
    images or any pytree with leading axis N (images with their segmentations, say). No more
    than ``batch_size`` images meet the model at once.
    """
    n_total = jax.tree.leaves(x)[0].shape[0]

    def step(carry, first, n, p, valid):
        aux = jax.vmap(sample)(p)
        z = jax.vmap(apply)(take(x, n), aux)
        s = score_fn(model_fn(params, z), take(y, n)).astype(jnp.float32)
        return contribution(carry, first, n, p, s, aux, valid)

    return scan_items(step, init, n_total, nb, batch_size)


def score_table(model_fn, score_fn, params, x, y, nb: int, sample: Callable, apply: Callable, *,
                batch_size) -> Float[Array, "N P"]:
    """``f32[N, nb]``: the score of every input under each of ``nb`` perturbations
    (``apply(x[n], sample(p))``), through :func:`perturbation_accumulate`."""
    n = jax.tree.leaves(x)[0].shape[0]
    span, rows = accumulator_rows(n, nb, batch_size)

    def contribution(acc, first, idx, p, s, aux, valid):
        block = jnp.zeros((span, nb), jnp.float32).at[idx - first, p].add(
            jnp.where(valid, s, 0.0))                    # a small [span, nb] scatter
        return add_rows(acc, first, block)

    return perturbation_accumulate(model_fn, score_fn, params, x, y, nb, sample, apply,
                                   contribution, jnp.zeros((rows, nb), jnp.float32),
                                   batch_size=batch_size)[:n]


def scores(model_fn, score_fn, params, x, y, *, batch_size) -> Float[Array, " N"]:
    """The explained score of each unperturbed input, chunked."""
    n = x.shape[0]
    span, rows = accumulator_rows(n, 1, batch_size)
    out = perturbation_accumulate(
        model_fn, score_fn, params, x, y, 1, _no_sample, lambda xi, aux: xi,
        lambda c, first, idx, p, s, aux, valid: add_items(c, first, idx - first,
                                                          jnp.where(valid, s, 0.0), span),
        jnp.zeros((rows,), jnp.float32), batch_size=batch_size)
    return out[:n]


def resize_maps(maps: Float[Array, "N h w"], size: tuple[int, int], method: str = "bilinear"):
    return jax.image.resize(maps, (maps.shape[0],) + tuple(size), method=method)

