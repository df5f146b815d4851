"""Chunked evaluation: bound the number of images in any single model call."""

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
