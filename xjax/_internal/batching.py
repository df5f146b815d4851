"""Chunked evaluation: bound the number of images in any single model call.

Explainers evaluate the model on ``T = N x P`` items (N inputs, P perturbed copies or samples
each). The items are flattened, cut into chunks of ``batch_size`` and run by one ``lax.scan``:
each chunk builds its own images from item indices (so no ``[N, P, H, W, C]`` tensor is ever
materialized), calls the model once, and adds its contribution to accumulators indexed by the
input ``n``. Memory is bounded by ``batch_size`` images plus the accumulators, whatever N and P.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp


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
            return fn(*xs)
        chunks = -(-n // batch_size)
        pad = chunks * batch_size - n

        def split(a):
            if pad:
                a = jnp.concatenate([a, jnp.repeat(a[-1:], pad, axis=0)], axis=0)
            return a.reshape((chunks, batch_size) + a.shape[1:])

        out = jax.lax.map(lambda c: fn(*c), jax.tree.map(split, xs))
        return jax.tree.map(lambda a: a.reshape((chunks * batch_size,) + a.shape[2:])[:n], out)

    return run


def scan_items(step: Callable[[Any, jax.Array, jax.Array], Any], carry: Any, total: int,
               batch_size: int | None) -> Any:
    """Fold ``step(carry, t: i32[b], valid: bool[b]) -> carry`` over the item indices
    ``0 .. total-1`` in chunks of ``b = min(batch_size, total)``, as one ``lax.scan``.

    The last chunk is padded with copies of the last index and ``valid`` marks the real items;
    ``step`` must weight its contributions by ``valid``.
    """
    b = total if batch_size is None else min(batch_size, total)
    chunks = -(-total // b)
    t = jnp.arange(chunks * b, dtype=jnp.int32).reshape(chunks, b)
    valid = t < total
    t = jnp.minimum(t, total - 1)
    if chunks == 1:
        return step(carry, t[0], valid[0])
    carry, _ = jax.lax.scan(lambda c, xs: (step(c, *xs), None), carry, (t, valid))
    return carry


def take(tree: Any, index: jax.Array) -> Any:
    """``tree[index]`` on every leaf (per-item labels from per-input labels)."""
    return jax.tree.map(lambda a: jnp.take(a, index, axis=0), tree)
