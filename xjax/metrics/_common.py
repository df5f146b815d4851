"""Validation and small numerical helpers shared by the metrics."""

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

ACTIVATIONS = (None, "softmax", "sigmoid")


def check_maps(x, maps, where: str) -> None:
    """``maps`` must be ``[N, H, W]`` or ``[N, H, W, C]`` matching the images ``x``."""
    shape = getattr(maps, "shape", None)
    if shape is None:
        raise TypeError(f"{where}: maps must be an array f32[N, H, W], got {type(maps).__name__}")
    if tuple(shape[:3]) != tuple(x.shape[:3]) or len(shape) not in (3, 4):
        raise ValueError(f"{where}: maps must have shape (N, H, W) = {tuple(x.shape[:3])} (or with "
                         f"the channels), got {tuple(shape)}")


def check_baseline(baseline, x, where: str):
    b = np.asarray(baseline, np.float32) if not isinstance(baseline, jax.Array) else baseline
    if b.ndim not in (0, 3) or (b.ndim == 3 and tuple(b.shape) != tuple(x.shape[1:])):
        raise ValueError(f"{where}: baseline must be a scalar or an array of shape "
                         f"{tuple(x.shape[1:])} (H, W, C), got shape {tuple(b.shape)}")
    return jnp.broadcast_to(jnp.asarray(b, x.dtype), x.shape[1:])


def with_activation(model_fn, activation, where: str):
    if activation not in ACTIVATIONS:
        raise ValueError(f"{where}: activation must be one of {ACTIVATIONS}, got {activation!r}")
    if activation is None:
        return model_fn
    act = jax.nn.softmax if activation == "softmax" else jax.nn.sigmoid
    return lambda p, x: act(model_fn(p, x).astype(jnp.float32))


def spatial(maps: Float[Array, "N H W ..."]) -> Float[Array, "N H W"]:
    """Channel-mean of ``[N, H, W, C]`` maps; ``[N, H, W]`` unchanged."""
    return maps.mean(-1) if maps.ndim == 4 else maps


def ranks(v: Float[Array, "... n"]) -> Float[Array, "... n"]:
    """0-based ranks along the last axis (ties broken by position)."""
    return jnp.argsort(jnp.argsort(v, axis=-1), axis=-1).astype(jnp.float32)


def pearson(a: Float[Array, "... n"], b: Float[Array, "... n"]) -> Float[Array, "..."]:
    """Pearson correlation along the last axis; 0 where either side is constant, NaN where
    either side has a NaN (it must show, not read as "uncorrelated")."""
    ac = a - a.mean(-1, keepdims=True)
    bc = b - b.mean(-1, keepdims=True)
    den = jnp.sqrt(jnp.sum(ac * ac, -1) * jnp.sum(bc * bc, -1))
    rho = jnp.where(den > 0, jnp.sum(ac * bc, -1) / jnp.where(den > 0, den, 1.0), 0.0)
    return jnp.where(jnp.isnan(den), jnp.nan, rho)


def average_ranks(v: Float[Array, "... n"]) -> Float[Array, "... n"]:
    """Ranks along the last axis with ties given their average rank (as scipy.stats.rankdata)."""
    flat = v.reshape(-1, v.shape[-1])
    srt = jnp.sort(flat, axis=-1)
    lo = jax.vmap(lambda s, q: jnp.searchsorted(s, q, side="left"))(srt, flat)
    hi = jax.vmap(lambda s, q: jnp.searchsorted(s, q, side="right"))(srt, flat)
    return ((lo + hi - 1).astype(jnp.float32) / 2.0).reshape(v.shape)


def spearman(a, b):
    """Spearman rank correlation along the last axis: Pearson of the average ranks (ties
    shared, as ``scipy.stats.spearmanr``); NaN where either side has a NaN (NaN has no rank)."""
    rho = pearson(average_ranks(a), average_ranks(b))
    return jnp.where(jnp.isnan(a).any(-1) | jnp.isnan(b).any(-1), jnp.nan, rho)
