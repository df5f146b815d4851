"""Where full CROWN's bounds grow in a deep ViT: the width of every intermediate bound that a
relaxation needs, block by block (issue 20's open item: ViT-Tiny's bound is vacuous).

    python benchmarks/bounds_vit_widths.py 9 > benchmarks/results/bounds_vit_widths_cpu.txt

``--sound-float``: the float32 network's bounds (``sound_float=True``).

The setting of benchmarks/bounds_vit_depth.py (16 px, patch 8: four tokens, random init, the
chelsea photo, radius 1e-4), run op by op. One line per bounded node, in tape order: the
relaxed primitive that needed it, its shape, the largest width, the smallest lower end and the
largest upper end, and the seconds since the start.
"""

import sys
import time

import jax
import jax.numpy as jnp
from _common import provenance, vit_around_photo

from xjax.bounds._crown import tighten
from xjax.bounds._ibp import trace


def main(depth: int, sound: bool = False) -> None:
    m, x = vit_around_photo(depth)
    r = 1e-4
    tape, x_node, _ = trace(m.model_fn, m.params, x - r, x + r, sound=sound)
    start, position = time.perf_counter(), {id(e): i for i, e in enumerate(tape.eqns)}
    p = provenance()
    print(f"# {p['command']} at commit {p['commit']} on {p['date']} ({p['machine']}, jax "
          f"{p['jax']})", flush=True)
    print(f"# depth {depth}, {len(tape.eqns)} equations{', sound_float' if sound else ''}; jax "
          f"{jax.__version__}", flush=True)

    def report(eqn, node, lo, hi):
        print(f"eqn {position[id(eqn)]:5d} {eqn.prim.name:12s} node {node.index:5d} "
              f"shape {'x'.join(map(str, node.shape)):12s} width {float(jnp.max(hi - lo)):.3g} "
              f"lo {float(jnp.min(lo)):.3g} hi {float(jnp.max(hi)):.3g} "
              f"t {time.perf_counter() - start:.0f} s", flush=True)

    tighten(tape, x_node, x - r, x + r, on_bound=report)


if __name__ == "__main__":
    main(int(sys.argv[1]), "--sound-float" in sys.argv)
