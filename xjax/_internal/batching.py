"""Chunked evaluation: bound the number of images in any single model call.

Explainers evaluate the model on ``N x P`` items (N inputs, P perturbed copies or samples
each), in blocks run by one ``lax.scan``: each block builds its own images from indices (so no
``[N, P, H, W, C]`` tensor is ever materialized), calls the model once, reduces over its items
and adds the result to the block's rows of per-input accumulators. Memory is bounded by
``batch_size`` images plus the accumulators, whatever N and P. A block is a run of consecutive
items of the flattened ``N x P`` list (:func:`scan_items`); blocks span inputs, so every call
runs at nearly the full ``batch_size`` whatever P is, and :func:`add_items` adds a block's
per-item values to the rows of the inputs they belong to.

Every block body goes through :func:`~xjax._internal.canonical.canonical_convs`, without which
XLA:CPU runs the backward pass of a conv net inside a loop about 2-3x slower than outside one.

Progress: a computation traced inside ``with progress(sink):`` reports its blocks to ``sink``
(see :func:`progress`); outside it, nothing is added to the program.
"""

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from xjax._internal.canonical import canonical_convs


class ProgressSink(Protocol):
    """Receives block progress: ``planned(blocks)`` when a loop is traced, ``done()`` on the host
    each time one of its blocks has been computed."""

    def planned(self, blocks: int) -> None: ...

    def done(self) -> None: ...


_SINK: contextvars.ContextVar[tuple[ProgressSink, bool] | None] = contextvars.ContextVar(
    "xjax_progress", default=None)


@contextlib.contextmanager
def progress(sink: ProgressSink, *, report: bool = True) -> Iterator[None]:
    """Report the model-call blocks of every block loop traced inside this context to ``sink``.

    ``sink.planned(blocks)`` runs at trace time. With ``report=True`` the program also reports
    each computed block (a ``jax.debug.callback`` after each block, fed by the block's result so
    it runs once the block is computed), so a function jitted and first called here keeps
    reporting on later calls, and one traced elsewhere never reports. A program holding a host
    callback is not written to JAX's persistent compilation cache; ``report=False`` only counts
    the blocks and leaves the program as it would be outside the context. The command line uses
    both: it counts, estimates the step's time and only then decides whether to report.
    """
    token = _SINK.set((sink, report))
    try:
        yield
    finally:
        _SINK.reset(token)


def _reporting(body: Callable[..., Any], blocks: int) -> Callable[..., Any]:
    """``body`` followed by a host report to the active sink, or ``body`` itself when none (or
    when the sink only counts)."""
    active = _SINK.get()
    if active is None:
        return body
    sink, report_blocks = active
    sink.planned(blocks)
    if not report_blocks:
        return body

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

        body = _reporting(canonical_convs(lambda c: fn(*c)), chunks)
        out = jax.lax.map(body, jax.tree.map(split, xs))
        return jax.tree.map(lambda a: a.reshape((chunks * batch_size,) + a.shape[2:])[:n], out)

    return run


def scan_chunks(body: Callable[[Any, jax.Array], tuple[Any, Any]], carry: Any, chunks: int):
    """``lax.scan(body, carry, arange(chunks))`` as a block loop: the body's convolutions made
    canonical and each chunk reported to the active progress sink. For chunk loops whose later
    chunks read what earlier ones computed (``chunked`` maps independent chunks)."""
    return jax.lax.scan(_reporting(canonical_convs(body), chunks), carry, jnp.arange(chunks))


def item_layout(n_total: int, s_total: int, batch_size: int | None) -> tuple[int, int, int, int]:
    """Blocks of consecutive items of the ``N x S`` item list (input-major), for
    :func:`scan_items`: ``(block, blocks, span, rows)``.

    ``blocks = ceil(N S / batch_size)`` blocks of ``block = ceil(N S / blocks) <= batch_size``
    items each (fewer than ``blocks`` padding items in all), so every model call runs at nearly the
    full batch whatever S is. A block touches at most ``span`` consecutive inputs, and per-input
    accumulators need ``rows`` rows (the last block's first input plus ``span``).
    """
    items = n_total * s_total
    cap = items if batch_size is None else min(batch_size, items)
    blocks = -(-items // cap)
    block = -(-items // blocks)
    starts = np.arange(blocks, dtype=np.int64) * block
    first = starts // s_total
    last = (np.minimum(starts + block, items) - 1) // s_total
    span = int((last - first).max()) + 1
    return block, blocks, span, int(first[-1]) + span


def scan_items(step: Callable, carry: Any, n_total: int, s_total: int,
               batch_size: int | None) -> Any:
    """Fold ``step(carry, first, n, s, valid) -> carry`` over the blocks of :func:`item_layout`,
    as one ``lax.scan``: item ``i`` of a block is input ``n[i]`` with sample ``s[i]``
    (``i32[block]`` each; ``valid: bool[block]`` marks real items, padding repeats the last one)
    and ``first`` is the block's first input, so ``n - first`` lies in ``[0, span)``.

    Accumulators indexed by input need ``rows`` rows and are updated at ``first`` with
    :func:`add_rows` on ``span`` rows (for example a ``segment_sum`` over ``n - first``).
    """
    block, blocks, _, _ = item_layout(n_total, s_total, batch_size)
    items = n_total * s_total

    def body(carry, j):
        i = j * block + jnp.arange(block, dtype=jnp.int32)
        valid = i < items
        i = jnp.minimum(i, items - 1)
        return step(carry, (j * block) // s_total, i // s_total, i % s_total, valid)

    if blocks == 1:
        return _reporting(body, 1)(carry, jnp.int32(0))
    body = _reporting(canonical_convs(body), blocks)
    carry, _ = jax.lax.scan(lambda c, j: (body(c, j), None), carry,
                            jnp.arange(blocks, dtype=jnp.int32))
    return carry


def slice_rows(tree: Any, start: jax.Array, size: int) -> Any:
    return jax.tree.map(lambda a: jax.lax.dynamic_slice_in_dim(a, start, size, axis=0), tree)


def add_rows(acc: jax.Array, start: jax.Array, update: jax.Array) -> jax.Array:
    """``acc[start:start + len(update)] += update`` with dynamic slices (no scatter)."""
    cur = jax.lax.dynamic_slice_in_dim(acc, start, update.shape[0], axis=0)
    return jax.lax.dynamic_update_slice_in_dim(acc, cur + update, start, axis=0)


def per_input(offsets: jax.Array, values: jax.Array, span: int) -> jax.Array:
    """``out[k] = sum of values[i] over the items with offsets[i] == k``, for ``k < span``:
    a block's per-item values summed per input (``offsets = n - first``, sorted, as items are
    input-major). A sorted ``segment_sum``: a non-finite value stays in its own input's row (a
    one-hot product would spread it to every row), and nothing of size ``span x B`` is built
    (a masked sum over the items was 80x slower with a ``span x B`` temporary of 38 MB for 32
    ResNet-sized images). Padding items must carry zeros."""
    return jax.ops.segment_sum(values, offsets, num_segments=span, indices_are_sorted=True)


def add_items(acc: jax.Array, first: jax.Array, offsets: jax.Array, values: jax.Array,
              span: int) -> jax.Array:
    """``acc[first + offsets[i]] += values[i]`` for a block's items (:func:`per_input`, then
    :func:`add_rows` on ``span`` rows)."""
    return add_rows(acc, first, per_input(offsets, values, span))


def take(tree: Any, index: jax.Array) -> Any:
    """``tree[index]`` on every leaf (per-item labels from per-input labels)."""
    return jax.tree.map(lambda a: jnp.take(a, index, axis=0), tree)
