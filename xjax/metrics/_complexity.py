"""Complexity of explanations: how concentrated is the attribution mass?"""

import jax.numpy as jnp
from jaxtyping import Array, Float

from xjax._internal.validate import check_map_batch
from xjax.metrics._common import spatial

__all__ = ["complexity", "sparseness"]


def sparseness(maps: Float[Array, "N H W ..."]) -> Float[Array, " N"]:
    r"""Gini index of the absolute (channel-mean) map (Chalasani et al., 2020), in [0, 1]:
    0 for a uniform map, :math:`1 - 1/n` for a single non-zero pixel; higher is sparser.

    .. math:: G = \frac{\sum_{k=1}^n (2k - n - 1) v_{(k)}}{n \sum_k v_{(k)}}, \quad
       v_{(1)} \le \dots \le v_{(n)}
    """
    check_map_batch(maps, where="sparseness")
    v = jnp.sort(jnp.abs(spatial(maps)).reshape(maps.shape[0], -1).astype(jnp.float32), axis=1)
    n = v.shape[1]
    k = jnp.arange(1, n + 1, dtype=jnp.float32)
    total = v.sum(1)
    return jnp.where(total > 0, jnp.sum((2 * k[None] - n - 1) * v, 1) /
                     (n * jnp.where(total > 0, total, 1.0)), 0.0)


def complexity(maps: Float[Array, "N H W ..."]) -> Float[Array, " N"]:
    r"""Shannon entropy of the normalized absolute map (Bhatt et al., 2020), in
    ``[0, log(H W)]``; lower is simpler. :math:`-\sum_i p_i \log p_i`,
    :math:`p = |\phi| / \lVert \phi \rVert_1`."""
    check_map_batch(maps, where="complexity")
    v = jnp.abs(spatial(maps)).reshape(maps.shape[0], -1).astype(jnp.float32)
    p = v / jnp.maximum(v.sum(1, keepdims=True), 1e-12)
    return -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0), axis=1)
