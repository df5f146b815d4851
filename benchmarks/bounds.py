"""Cost and tightness of the bound transform and of EVA.

    python benchmarks/bounds.py relaxations [--json benchmarks/results/bounds_relaxations_cpu.json]
    python benchmarks/bounds.py models --models small_cnn,resnet18,efficientnet_lite0,vit_tiny \
        --size 64 [--json benchmarks/results/bounds_models_cpu.json]

``relaxations``: for every activation family, the mean width of the logit bounds of a random
two-hidden-layer net (8-16-16-3) over l_inf boxes of radius 0.01 and 0.3 around two points, by
IBP, CROWN-IBP, CROWN and alpha-CROWN, and each width's ratio to IBP's.

``models``: per model, a box of radius ``--epsilon`` around a real photo (skimage's chelsea,
resized to ``--size``; the 28x28 models get a uniform random image), the margin of the top class
over the runner-up bounded by each method: compile time (ahead of time), the time of one bound
(best of 4 runs, or the one run when it takes a second or more), the compiled temporary memory,
the bound and its width relative to IBP's (a method written ``crown+eager`` runs without
``jax.jit``, op by op: its "compile" column is the first call, its time a second call); then
certified EVA (``--eva-bound``, CROWN-IBP by
default, on a ``--eva-grid`` grid, 7 x 7 by default; compiled once, bound passes batched) and its
empirical variant through ``features_fn`` / ``head_fn``. Rows are written as they are measured.
The results files are read by
``benchmarks/bounds_report.py``, which writes the bounds section of docs/bounds.md.
"""

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import xjax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from experiments._results import provenance  # noqa: E402

B = xjax.bounds
METHODS = ("ibp", "crown_ibp", "crown", "alpha_crown")


def _layer_norm(z):
    mu = z.mean(-1, keepdims=True)
    return (z - mu) * jax.lax.rsqrt(((z - mu) ** 2).mean(-1, keepdims=True) + 1e-3)


ACTIVATIONS = {
    "relu": jax.nn.relu, "leaky_relu": jax.nn.leaky_relu, "elu": jax.nn.elu,
    "hard_tanh": jax.nn.hard_tanh, "softplus": jax.nn.softplus, "silu": jax.nn.silu,
    "gelu (tanh)": jax.nn.gelu, "gelu (erf)": lambda z: jax.nn.gelu(z, approximate=False),
    "sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh, "exp": jnp.exp, "square": jnp.square,
    "x^3": lambda z: z ** 3, "1/(|x|+1)": lambda z: 1 / (jnp.abs(z) + 1),
    "sqrt(x^2+1)": lambda z: jnp.sqrt(z * z + 1), "log(x^2+1)": lambda z: jnp.log(z * z + 1),
    "abs": jnp.abs, "softmax": lambda z: jax.nn.softmax(z, -1), "layer norm": _layer_norm,
    "where": lambda z: jnp.where(z > 0.2, z * z, 0.5 * z),
}


def relaxations(args, save=lambda rows: None):
    rng = np.random.default_rng(0)
    w1 = jnp.asarray(rng.normal(size=(8, 16)) / 3, jnp.float32)
    w2 = jnp.asarray(rng.normal(size=(16, 16)) / 4, jnp.float32)
    w3 = jnp.asarray(rng.normal(size=(16, 3)) / 4, jnp.float32)
    x = jax.random.normal(jax.random.key(0), (2, 8))
    rows = []
    for name, act in ACTIVATIONS.items():
        f = lambda p, z, act=act: act(act(z @ p[0]) @ p[1]) @ p[2]
        for eps in (0.01, 0.3):
            row = {"activation": name, "epsilon": eps}
            for method in METHODS:
                iv = jax.jit(B.bounds(f, method=method))((w1, w2, w3), x - eps, x + eps)
                row[method] = float(jnp.mean(iv.upper - iv.lower))
            for method in METHODS[1:]:
                row[f"{method}/ibp"] = row[method] / row["ibp"]
            rows.append(row)
            save(rows)
            print(row, flush=True)
    return rows


def _model(name, size):
    if name == "small_cnn":
        return xjax.models.small_cnn(pretrained="fashion_mnist")
    if name == "lipschitz_cnn":
        module = xjax.lipschitz.lipschitz_cnn(key=jax.random.key(0))
        return xjax.models.model_from_nnx(xjax.lipschitz.export(module), input_shape=(28, 28, 1))
    # ViT-Tiny with 2 x 2 patches of size // 2 (four tokens), so that attention mixes tokens
    kw = {"image_size": size, "patch_size": size // 2} if name == "vit_tiny" else {}
    return xjax.models.get_model(name, **kw)


def _input(m, size):
    if tuple(m.input_shape[:2]) == (28, 28):
        return jax.random.uniform(jax.random.key(0), (1,) + tuple(m.input_shape))
    photo = xjax.data.sample_photos(["chelsea"])[0].image
    return jnp.asarray(xjax.data.resize_center_crop(photo, size)[None])


def _compiled(fn, *args, eager=False):
    """``(output, compile_s, best run s, temp bytes)``. ``eager``: no ``jax.jit``, op by op;
    "compile" is then the first call (each primitive's kernel compiled once per shape), the run
    a later call, and no memory analysis exists."""
    t = time.perf_counter()
    if eager:
        compiled, temp = fn, None
        jax.block_until_ready(fn(*args))
    else:
        compiled = jax.jit(fn).lower(*args).compile()
        mem = compiled.memory_analysis()
        temp = None if mem is None else int(getattr(mem, "temp_size_in_bytes", 0))
    compile_s = time.perf_counter() - t
    t = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    best = time.perf_counter() - t
    for _ in range(3 if best < 1.0 else 0):        # a second or more: one run is enough
        t = time.perf_counter()
        out = jax.block_until_ready(compiled(*args))
        best = min(best, time.perf_counter() - t)
    return out, compile_s, best, temp


def _bound_fn(model_fn, method, spec):
    return lambda p, lo, hi: B.bounds(model_fn, method=method)(p, lo, hi, spec)


def _eva_fn(explain, y):
    return lambda p, x: explain(p, x, y, key=jax.random.key(0))


def models(args, save=lambda rows: None):
    rows = []
    for name in args.models.split(","):
        m = _model(name, args.size)
        x = _input(m, args.size)
        logits = m.model_fn(m.params, x)
        top2 = jnp.argsort(logits[0])[-2:]
        y, rival = int(top2[1]), int(top2[0])
        spec = jnp.zeros((1, logits.shape[-1])).at[0, y].set(1.0).at[0, rival].add(-1.0)
        _, _, fwd, _ = _compiled(m.model_fn, m.params, x)
        eps = args.epsilon
        ibp_width = None
        for label in [m for m in args.methods.split(",") if m]:
            method, eager = label.removesuffix("+eager"), label.endswith("+eager")
            iv, compile_s, run_s, temp = _compiled(_bound_fn(m.model_fn, method, spec), m.params,
                                                   x - eps, x + eps, eager=eager)
            lo, hi = float(iv.lower[0, 0]), float(iv.upper[0, 0])
            width = hi - lo
            ibp_width = width if method == "ibp" else ibp_width
            rows.append({"model": name, "size": int(x.shape[1]), "epsilon": eps, "method": label,
                         "margin": float(logits[0, y] - logits[0, rival]), "lower": lo,
                         "upper": hi, "width": width,
                         "width/ibp": None if ibp_width is None else width / ibp_width,
                         "compile_s": compile_s, "s_per_box": run_s, "forward_s": fwd,
                         "temp_bytes": temp})
            save(rows)
            print(rows[-1], flush=True)
        yv = jnp.asarray([y], jnp.int32)
        variants = ("certified",) if args.no_empirical else ("certified", "empirical")
        for variant in () if args.no_eva else variants:
            top_k = (3 if logits.shape[-1] > 10 else None) if args.eva_top_k == "auto" else \
                (None if args.eva_top_k == "none" else int(args.eva_top_k))
            kw = dict(epsilon=eps, grid_size=args.eva_grid, bound=args.eva_bound,
                      top_k_rivals=top_k,
                      batch_size=args.eva_batch_size)
            if variant == "empirical":
                kw.update(empirical=True, features_fn=m.features_fn, head_fn=m.head_fn)
            explain = xjax.attributions.eva(m.model_fn, **kw)
            maps, compile_s, run_s, temp = _compiled(_eva_fn(explain, yv), m.params, x)
            label = "eva (empirical)" if variant == "empirical" else \
                f"eva (certified, {args.eva_bound}, {args.eva_grid}x{args.eva_grid})"
            rows.append({"model": name, "size": int(x.shape[1]), "epsilon": eps,
                         "method": label, "compile_s": compile_s,
                         "s_per_image": run_s, "forward_s": fwd, "temp_bytes": temp,
                         "finite_map": bool(jnp.isfinite(maps).all()),
                         "map_max": float(jnp.max(maps)),
                         "map_positive": float(jnp.mean(maps > 0)), "top_k_rivals": top_k})
            save(rows)
            print(rows[-1], flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("relaxations", "models"))
    parser.add_argument("--models", default="small_cnn,resnet18,efficientnet_lite0,vit_tiny")
    parser.add_argument("--methods", default="ibp,crown_ibp,alpha_crown")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epsilon", type=float, default=1e-4)
    parser.add_argument("--eva-bound", default="crown_ibp")
    parser.add_argument("--eva-grid", type=int, default=7)
    parser.add_argument("--eva-batch-size", type=int, default=16,
                        help="boxes per bound pass (full CROWN on ResNet-18 holds ~3 GiB per box)")
    parser.add_argument("--no-empirical", action="store_true", help="certified EVA only")
    parser.add_argument("--eva-top-k", default="auto",
                        help="top_k_rivals: auto (3 above ten classes), none (every rival in "
                             "one pass per box: full CROWN's cost is its intermediate bounds, "
                             "paid once per pass) or a number")
    parser.add_argument("--no-eva", action="store_true", help="bound rows only")
    parser.add_argument("--note", help="a remark stored with the provenance (e.g. the load)")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    meta = {"provenance": provenance()}
    if args.note:
        meta["note"] = args.note

    def save(rows):                 # after every row: a long run keeps what it measured
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"meta": meta, "rows": rows}, f, indent=1)

    return relaxations(args, save) if args.what == "relaxations" else models(args, save)


if __name__ == "__main__":
    main()
