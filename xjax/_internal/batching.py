"""Chunked evaluation: bound the number of images in any single model call.

Explainers evaluate the model on ``N x P`` items (N inputs, P perturbed copies or samples
each). The items are cut into blocks of ``n_c`` inputs x ``s_c`` samples with
``n_c s_c <= batch_size`` and run by one ``lax.scan``: each block builds its own images from
indices (so no ``[N, P, H, W, C]`` tensor is ever materialized), calls the model once, reduces
over its samples and adds the result to the block's rows of per-input accumulators. Memory is
bounded by ``batch_size`` images plus the accumulators, whatever N and P.

Progress: a computation traced inside ``with progress(sink):`` reports its blocks to ``sink``
(see :func:`progress`); outside it, nothing is added to the program.
"""

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import jax
import jax.numpy as jnp


class ProgressSink(Protocol):
    """Receives block progress: ``planned(blocks)`` when a loop is traced, ``done()`` on the host
    each time one of its blocks has been computed."""

    def planned(self, blocks: int) -> None: ...

    def done(self) -> None: ...


_SINK: contextvars.ContextVar[ProgressSink | None] = contextvars.ContextVar("xjax_progress",
                                                                           default=None)


@contextlib.contextmanager
def progress(sink: ProgressSink) -> Iterator[None]:
    """Report the model-call blocks of every block loop traced inside this context to ``sink``.

    The report is part of the traced program (a ``jax.debug.callback`` after each block, fed by
    the block's result so it runs once the block is computed), so a function jitted and first
    called here keeps reporting on later calls, and one traced elsewhere never reports. The
    command line uses it for progress inside an image.
    """
    token = _SINK.set(sink)
    try:
        yield
    finally:
        _SINK.reset(token)


def _reporting(body: Callable[..., Any], blocks: int) -> Callable[..., Any]:
    """``body`` followed by a host report to the active sink, or ``body`` itself when none."""
    sink = _SINK.get()
    if sink is None:
        return body
    sink.planned(blocks)

    def report(_):
        sink.done()

    def wrapped(*args):
        out = body(*args)
        first = jax.tree.leaves(out)[0]
        jax.debug.callback(report, jnp.ravel(first)[:1], ordered=False)
        return out

    return wrapped


def chunked(fn: Callable[..., Any], batch_size: int | None) -> Callable[..., Any]:
    """``chunked(fn, b)(*xs)`` equals ``fn(*xs)`` for a function that maps leading-axis batches
    to leading-axis batches independently per row, but calls ``fn`` on at most ``b`` rows at a
    time (one ``lax.map`` over chunks; the last chunk is padded by repeating the last row and the
    padding is dropped). ``batch_size=None`` calls ``fn`` once on everything.
    """
    if batch_size is None:
        return fn

    def run(*xs):
        n = jax.tree.leaves(xs)[0].shape[0]
        if n <= batch_size:
            return _reporting(fn, 1)(*xs)
        chunks = -(-n // batch_size)
        pad = chunks * batch_size - n

        def split(a):
            if pad:
                a = jnp.concatenate([a, jnp.repeat(a[-1:], pad, axis=0)], axis=0)
            return a.reshape((chunks, batch_size) + a.shape[1:])

        out = jax.lax.map(_reporting(lambda c: fn(*c), chunks), jax.tree.map(split, xs))
        return jax.tree.map(lambda a: a.reshape((chunks * batch_size,) + a.shape[2:])[:n], out)

    return run


def block_layout(n_total: int, s_total: int, batch_size: int | None) -> tuple[int, int]:
    """Block sizes ``(n_c, s_c)`` with ``n_c * s_c <= batch_size``: whole inputs (all their
    samples) per block when the samples fit, else one input and an even share of its samples."""
    b = n_total * s_total if batch_size is None else batch_size
    if s_total <= b:
        return max(1, min(n_total, b // s_total)), s_total
    s_blocks = -(-s_total // b)
    return 1, -(-s_total // s_blocks)


def scan_blocks(step: Callable, carry: Any, n_total: int, s_total: int,
                batch_size: int | None) -> Any:
    """Fold ``step(carry, n0, s, valid) -> carry`` over blocks of ``n_c`` consecutive inputs
    (starting at ``n0``) times ``s_c`` samples (indices ``s: i32[s_c]``, ``valid: bool[s_c]``
    marks real samples; padding repeats the last one), as one ``lax.scan``.

    Accumulators in ``carry`` indexed by input must have ``n_blocks * n_c`` rows (see
    :func:`padded_rows`) and be updated with ``dynamic_update_slice`` at ``n0``: contiguous
    blocks need no scatter, which is slow on XLA:CPU.
    """
    n_c, s_c = block_layout(n_total, s_total, batch_size)
    n_blocks, s_blocks = -(-n_total // n_c), -(-s_total // s_c)
    nb = jnp.repeat(jnp.arange(n_blocks, dtype=jnp.int32) * n_c, s_blocks)
    sb = jnp.tile(jnp.arange(s_blocks, dtype=jnp.int32), n_blocks)
    s = sb[:, None] * s_c + jnp.arange(s_c, dtype=jnp.int32)[None, :]
    valid = s < s_total
    s = jnp.minimum(s, s_total - 1)
    step = _reporting(step, n_blocks * s_blocks)
    if n_blocks * s_blocks == 1:
        return step(carry, nb[0], s[0], valid[0])
    carry, _ = jax.lax.scan(lambda c, xs: (step(c, *xs), None), carry, (nb, s, valid))
    return carry


def padded_rows(n_total: int, s_total: int, batch_size: int | None) -> int:
    """Rows of a per-input accumulator for :func:`scan_blocks` (a multiple of ``n_c``)."""
    n_c, _ = block_layout(n_total, s_total, batch_size)
    return -(-n_total // n_c) * n_c


def pad_rows(tree: Any, rows: int) -> Any:
    """Pad every leaf's leading axis to ``rows`` by repeating its last row."""
    def pad(a):
        extra = rows - a.shape[0]
        return a if extra == 0 else jnp.concatenate([a, jnp.repeat(a[-1:], extra, axis=0)])
    return jax.tree.map(pad, tree)


def slice_rows(tree: Any, start: jax.Array, size: int) -> Any:
    return jax.tree.map(lambda a: jax.lax.dynamic_slice_in_dim(a, start, size, axis=0), tree)


def add_rows(acc: jax.Array, start: jax.Array, update: jax.Array) -> jax.Array:
    """``acc[start:start + len(update)] += update`` with dynamic slices (no scatter)."""
    cur = jax.lax.dynamic_slice_in_dim(acc, start, update.shape[0], axis=0)
    return jax.lax.dynamic_update_slice_in_dim(acc, cur + update, start, axis=0)


def take(tree: Any, index: jax.Array) -> Any:
    """``tree[index]`` on every leaf (per-item labels from per-input labels)."""
    return jax.tree.map(lambda a: jnp.take(a, index, axis=0), tree)
