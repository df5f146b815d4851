"""alpha-CROWN (Xu et al., 2021): the free parameters of the final backward pass optimized.

Every relaxation with a free parameter in [0, 1] (:data:`xjax.bounds._relax.RELAXATIONS` entries
with ``free=True``: the rectifier's lower slope, a smooth function's tangent point, McCormick's
plane mix) gets one parameter per spec row and output element; they are optimized with projected
Adam to maximize the lower bounds of ``[lam; -lam]``. Every parameter value gives a sound bound,
so the elementwise best over the iterations (starting from CROWN's) is returned.
"""

import jax
import jax.numpy as jnp

from xjax.bounds._crown import backward, relaxed
from xjax.bounds._relax import RELAXATIONS

__all__ = ["optimize"]


def optimize(tape, out, lam, bounds_of, x_node, lower, upper, lo, hi, steps, lr, errs=None):
    """Best ``(lower, upper)`` ``[B, S]`` of ``lam . out`` over ``steps`` Adam steps (``errs``:
    as :func:`xjax.bounds._crown.backward`)."""
    import optax

    both = jnp.concatenate([lam, -lam], axis=0)
    free = [e for e in tape.eqns if e.outputs[0].index <= out.index and relaxed(e)
            and RELAXATIONS[e.prim.name].free]
    alphas = {e.outputs[0].index: jnp.full((both.shape[0],) + e.outputs[0].shape, 0.5, both.dtype)
              for e in free}
    if not alphas:
        return lo, hi
    s = lam.shape[0]

    def objective(a):
        return backward(tape, out, both, bounds_of, x_node, lower, upper, alphas=a, errs=errs)

    opt = optax.adam(lr)
    with jax.numpy_dtype_promotion("standard"):
        state = opt.init(alphas)

    def step(carry, _):
        a, st, best = carry
        grads = jax.grad(lambda a: -objective(a).sum())(a)
        with jax.numpy_dtype_promotion("standard"):
            updates, st = opt.update(grads, st, a)
        a = jax.tree.map(lambda v: jnp.clip(v, 0.0, 1.0), optax.apply_updates(a, updates))
        best = jnp.maximum(best, objective(a))
        return (a, st, best), None

    start = jnp.concatenate([lo.T, -hi.T], axis=0)
    (_, _, best), _ = jax.lax.scan(step, (alphas, state, jnp.maximum(start, objective(alphas))),
                                   None, length=steps)
    return best[:s].T, -best[s:].T
