"""How much the bound benchmarks' ViT itself moves over its box: the spread (largest minus
smallest value, widest element) of every layer norm's ``var + eps`` (each ``rsqrt``'s input)
and of the top-2 margin over 1,024 uniform points, 1,024 random corners and the centre of the
radius-1e-4 box around the chelsea photo. Compare with the bounds' widths per block
(``benchmarks/bounds_vit_widths.py``): a bound much wider than the spread is the method's
looseness, not the network's.

    python benchmarks/bounds_vit_spread.py 12 > benchmarks/results/bounds_vit_spread_depth12_cpu.txt
"""
import sys

import jax
import jax.numpy as jnp
import numpy as np
from _common import provenance, vit_around_photo

from xjax._internal.jaxpr import walk

depth, r, n = int(sys.argv[1]), 1e-4, 1024
m, x = vit_around_photo(depth)
logits = m.model_fn(m.params, x)
top2 = jnp.argsort(logits[0])[-2:]
k1, k2 = jax.random.split(jax.random.key(1))
u = jax.random.uniform(k1, (n,) + x.shape[1:], minval=-r, maxval=r)
c = jnp.where(jax.random.bernoulli(k2, 0.5, (n,) + x.shape[1:]), r, -r)
pts = jnp.concatenate([x + u, x + c, x])
closed = jax.make_jaxpr(m.model_fn)(m.params, pts)
seen = []


def visit(eqn, invals):
    if eqn.primitive.name == "rsqrt":
        seen.append(np.asarray(invals[0]))
    return None


(out,) = walk(closed.jaxpr, closed.consts, jax.tree.leaves((m.params, pts)), visit)
margin = np.asarray(out[:, top2[1]] - out[:, top2[0]])
p = provenance()
print(f"# ViT of {depth} blocks (bounds_vit_depth.py's), radius {r:g}, {n} uniform points + {n} "
      f"corners + the centre; {p['command']} at {p['commit']} on {p['machine']}, {p['date']}")
print(f"margin {margin[-1]:.6g} spread {margin.max() - margin.min():.4g}")
for i, v in enumerate(seen):           # every rsqrt: layer norms in order (two per block, final)
    b = v.shape[0]
    assert b == 2 * n + 1, v.shape
    spread = (v.max(0) - v.min(0)).max()
    print(f"rsqrt {i:3d} (block {i // 2 + 1 if i < 2 * depth else 'final'}) var+eps in "
          f"[{v.min():.4g}, {v.max():.4g}] spread {spread:.4g}")
