r"""Bounds of an L-Lipschitz (l2) network: :math:`f(c) \pm L \|C_s\|_2 \, r` with c the box
centre and r its l2 radius (sound only if the network *is* L-Lipschitz, e.g. an exported
``xjax.lipschitz`` model)."""

import jax.numpy as jnp

from xjax.bounds._interval import Interval

__all__ = ["lipschitz_bounds"]


def lipschitz_bounds(model_fn, params, lower, upper, spec, constant) -> Interval:
    centre = (lower + upper) / 2.0
    radius = jnp.sqrt(jnp.sum(((upper - lower) / 2.0).reshape(lower.shape[0], -1) ** 2, axis=1))
    f = model_fn(params, centre)
    if spec is None:
        r = (constant * radius)[:, None]
        return Interval(f - r, f + r)
    c = jnp.asarray(spec, f.dtype)
    if c.ndim == 2:
        c = jnp.broadcast_to(c, (f.shape[0],) + c.shape)
    m = jnp.einsum("bsk,bk->bs", c, f)
    r = constant * radius[:, None] * jnp.linalg.norm(c, axis=-1)
    return Interval(m - r, m + r)
