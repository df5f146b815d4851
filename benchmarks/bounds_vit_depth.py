"""ViT-Tiny's blocks one by one: bounds of the top-2 logit margin over a radius-1e-4 box
around the chelsea photo (16 px, four tokens, random init) for ViTs of 1, 2, 3 ... encoder
blocks, with compile and run seconds, to see where bounds stop being finite and how full
CROWN's compile time grows with depth.

    python benchmarks/bounds_vit_depth.py 1,2,3 ibp,crown_ibp,crown,crown+eager

``--radius=R`` sets the box's radius (default 1e-4; a line at another radius names it);
``--sound-float`` bounds the float32 network (``sound_float=True``; its lines say so).
``METHOD+eager`` runs it without
``jax.jit`` (op by op: nothing is compiled as a whole, each primitive's kernel is compiled once
per shape and reused by the identical blocks), reporting the first call as "compile" and a
second call as "run" (with ``--once``, only the first call, its time compile included).
Prints one line per (depth, method); benchmarks/results/bounds_vit_depth_cpu.txt is its output.
"""
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from _common import vit_around_photo

import xjax

B = xjax.bounds
radius = next((float(a.split("=", 1)[1]) for a in sys.argv if a.startswith("--radius=")), 1e-4)
sound = "--sound-float" in sys.argv
for depth in [int(d) for d in sys.argv[1].split(",")]:
    m, x = vit_around_photo(depth)
    logits = m.model_fn(m.params, x)
    top2 = jnp.argsort(logits[0])[-2:]
    spec = jnp.zeros((1, 1000)).at[0, top2[1]].set(1.0).at[0, top2[0]].add(-1.0)
    r = radius
    for label in sys.argv[2].split(","):
        name, eager = label.removesuffix("+eager"), label.endswith("+eager")
        tag = (label if radius == 1e-4 else f"{label} radius {radius:g}") + \
            (" sound_float" if sound else "")
        f = (lambda p, lo, hi, m=m, method=name, spec=spec:
             B.bounds(m.model_fn, method=method, sound_float=sound)(p, lo, hi, spec))
        margin = float((spec @ logits[0])[0])
        t = time.perf_counter()
        if eager and "--once" in sys.argv:       # one call: its time includes the kernels' compile
            out = jax.block_until_ready(f(m.params, x - r, x + r))
            lo, hi = (np.asarray(v).ravel()[0] for v in (out.lower, out.upper))
            print(f"depth {depth} {tag}: first call {time.perf_counter() - t:.1f} s (no second "
                  f"call) lo {lo:.4g} hi {hi:.4g} width {hi - lo:.4g} margin {margin:.4g}",
                  flush=True)
            continue
        if eager:
            c = f
            jax.block_until_ready(c(m.params, x - r, x + r))
        else:
            c = jax.jit(f).lower(m.params, x - r, x + r).compile()
        ct = time.perf_counter() - t
        t = time.perf_counter()
        out = jax.block_until_ready(c(m.params, x - r, x + r))
        rt = time.perf_counter() - t
        lo, hi = (np.asarray(v).ravel()[0] for v in (out.lower, out.upper))
        print(f"depth {depth} {tag}: compile {ct:.1f} s run {rt:.2f} s lo {lo:.4g} "
              f"hi {hi:.4g} width {hi - lo:.4g} margin {margin:.4g}", flush=True)
