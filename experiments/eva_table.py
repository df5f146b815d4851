"""EVA against the other attribution methods on Fashion-MNIST (the EVA paper's table, small scale).

    python experiments/eva_table.py            # 200 test images, both networks
    python experiments/eva_table.py --quick    # 4 images, reduced samples (CI)

For the shipped ``small_cnn`` and a 1-Lipschitz CNN (trained by the same recipe as
``lipschitz_fashion_mnist.py``, sharing its resumable checkpoint), every method explains the true
class of test images and is scored by Deletion and Insertion (probabilities, lower / higher is
better), MuFidelity (higher) and Robustness-S_r (l_inf, fractions 5..25%, lower), with the time
per explained image (second call, compilation excluded). Writes ``<out>/eva_table_<mode>.{json,md}``
(resumable per network and method).
"""

import os
import sys
import time

import jax
import numpy as np
from tqdm.auto import tqdm

sys.path.insert(0, os.path.dirname(__file__))
from _results import Results, fashion_mnist_args  # noqa: E402

import xjax  # noqa: E402

A, M, L = xjax.attributions, xjax.metrics, xjax.lipschitz

METHODS = {
    "eva": {"epsilon": 0.02, "grid_size": 7, "bound": "crown_ibp"},
    "eva_ibp": {"epsilon": 0.02, "grid_size": 7, "bound": "ibp"},
    "saliency": {}, "gradient_input": {}, "smoothgrad": {"nb_samples": 32},
    "integrated_gradients": {"steps": 32}, "grad_cam": {},
    "occlusion": {"patch_size": 4, "patch_stride": 4},
    "rise": {"nb_samples": 1000, "grid_size": 7}, "sobol": {"grid_size": 7, "nb_design": 16},
}


def build(name, model, kwargs):
    if name.startswith("eva"):
        return A.eva(model.model_fn, batch_size=64, **kwargs)
    return A.from_name(name, model, batch_size=256, **kwargs)


def lipschitz_model(args, quick):
    """The 1-Lipschitz CNN of lipschitz_fashion_mnist.py (same checkpoint: trained once)."""
    import lipschitz_fashion_mnist as lip

    return lip.trained_lipschitz_model(args.out, args.source_dir, quick)


def main(argv=None):
    args = fashion_mnist_args(__doc__, argv)
    quick = args.quick
    n = 4 if quick else 200
    tag = "quick" if quick else "full"
    results = Results(os.path.join(args.out, f"eva_table_{tag}.json"))
    results.drop(args.redo)
    xt, yt = xjax.data.fashion_mnist_arrays("test", source_dir=args.source_dir)
    x, y = xjax.runs.shard_rows(xt[:n], yt[:n].astype(np.int32))
    methods = dict(METHODS)
    if quick:
        methods = {k: v for k, v in methods.items()
                   if k in ("eva", "eva_ibp", "saliency", "occlusion", "rise")}
        methods["rise"] = {"nb_samples": 64, "grid_size": 7}

    nets = {"small_cnn": lambda: xjax.models.small_cnn(pretrained="fashion_mnist"),
            "lipschitz_cnn": lambda: lipschitz_model(args, quick)}
    for net, make in nets.items():
        todo = [m for m in methods if not results.done(f"{net}/{m}")]
        if not todo:
            continue
        model = make()
        fn, params = model.model_fn, xjax.runs.replicate(model.params)  # meets shard_rows' x
        dp = xjax.runs.per_device          # each device explains and scores its own images
        host = xjax.runs.gather_rows
        deletion = jax.jit(dp(M.deletion(fn, activation="softmax", batch_size=256)))
        insertion = jax.jit(dp(M.insertion(fn, activation="softmax", batch_size=256)))
        mu = jax.jit(dp(M.mu_fidelity(fn, grid_size=7, nb_samples=64 if quick else 128,
                                      batch_size=256)))
        rob = jax.jit(dp(M.robustness_sr(fn, epsilon_max=0.5, search_steps=6 if quick else 8,
                                         pgd_steps=5 if quick else 10, batch_size=256)))
        for name in tqdm(todo, desc=f"{net} methods"):
            e = dp(build(name, model, methods[name]))
            key = jax.random.key(1) if name in A.STOCHASTIC else None
            run = jax.jit(lambda p, a, b, e=e, key=key: e(p, a, b, key=key))
            run(params, x, y).block_until_ready()
            t = time.perf_counter()
            maps = run(params, x, y).block_until_ready()
            seconds = (time.perf_counter() - t) / n
            results.add(f"{net}/{name}", {
                # per-image scores come back to the host, then are averaged there
                "deletion": float(np.mean(host(deletion(params, x, y, maps)))),
                "insertion": float(np.mean(host(insertion(params, x, y, maps)))),
                "mu_fidelity": float(np.mean(host(mu(params, x, y, maps,
                                                     key=jax.random.key(2))))),
                "robustness_sr": float(np.mean(host(rob(params, x, y, maps)))),
                "seconds_per_image": seconds, "settings": str(methods[name])},
                meta={"n": n, "device": jax.devices()[0].device_kind})
    cols = ["deletion", "insertion", "mu_fidelity", "robustness_sr", "seconds_per_image",
            "settings"]
    cmd = "python experiments/eva_table.py" + (" --quick" if quick else "")
    title = (f"EVA and the attribution methods on Fashion-MNIST ({n} test images; Deletion lower, "
             "Insertion higher, MuFidelity higher, Robustness-S_r lower is better)")
    results.write_markdown(os.path.join(args.out, f"eva_table_{tag}.md"), cols, title, cmd)
    print(results.markdown(cols, title, cmd))
    return results


if __name__ == "__main__":
    main()
