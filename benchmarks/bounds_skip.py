"""Full CROWN on EfficientNet-Lite0 (16 px, the chelsea photo, radius 1e-4, top-2 margin), op
by op, with the passes ``xjax.bounds._crown.FORWARD_EXACT`` lets it skip (``skip``) or with every
pass (``noskip``): seconds of the first call (each primitive's kernel compiled) and of a second.

    python benchmarks/bounds_skip.py skip; python benchmarks/bounds_skip.py noskip

benchmarks/results/bounds_skip_lite0_cpu.txt holds the two lines.
"""
import sys
import time

import jax
import jax.numpy as jnp
from bounds import _input, _model

import xjax
from xjax.bounds import _crown

skip = sys.argv[1] == "skip"
if not skip:
    _crown._exact_chain = lambda *a: None          # every relaxed input gets its own pass
m = _model("efficientnet_lite0", 16)
x = _input(m, 16)
logits = m.model_fn(m.params, x)[0]
top2 = jnp.argsort(logits)[-2:]
spec = jnp.zeros((1, logits.shape[0])).at[0, top2[1]].set(1.0).at[0, top2[0]].add(-1.0)
f = xjax.bounds.bounds(m.model_fn, method="crown")
out = []
for _ in range(2):                                  # the first call, then a second
    t = time.perf_counter()
    iv = jax.block_until_ready(f(m.params, x - 1e-4, x + 1e-4, spec))
    out.append(time.perf_counter() - t)
print(f"lite0 crown+eager skip={skip}: first call {out[0]:.1f} s second call {out[1]:.1f} s "
      f"lo {float(iv.lower[0, 0]):.6g} hi {float(iv.upper[0, 0]):.6g} "
      f"margin {float(spec[0] @ logits):.6g}", flush=True)
