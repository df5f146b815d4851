"""EVA against the attribution methods on Fashion-MNIST, at radii where the bounds mean something.

    python experiments/eva_table.py                    # 100 test images, three networks
    python experiments/eva_table.py --target photos    # EVA's empirical variant on Lite0 (GPU)
    python experiments/eva_table.py --quick [--target photos]   # tiny (CI)

The EVA paper's protocol (Fel et al., CVPR 2023) at the scale of this machine, on three networks
trained on Fashion-MNIST: a 2 x 100 ReLU MLP (the size of the MNIST networks of the verification
literature; the paper's own architectures were not retrieved), the shipped ``small_cnn``, and a
1-Lipschitz CNN (the recipe and checkpoint of ``lipschitz_fashion_mnist.py``).

For each network the radius is chosen from the bounds themselves: for every epsilon of a sweep,
the fraction of test images whose l_inf ball is certified by CROWN-IBP (every margin's lower bound
> 0) and the median width of the margin bounds are recorded, and EVA uses the largest epsilon at
which at least half of the balls are certified. There, freezing one cell of the grid can move a
ball across the decision boundary of the bound, so the verified overlaps carry information; at the
earlier setting (0.02 on ``small_cnn``, logit intervals about 155 wide) every bound was vacuous.

Every method explains the true class and is scored by Deletion and Insertion (probabilities;
lower / higher is better), MuFidelity (higher) and Robustness-S_r (l_inf, fractions 5..25%, lower),
with the time per explained image (one execution after ahead-of-time compilation). Greedy-AS (Hsieh et al.,
ICLR 2021) is the paper's robustness baseline. Writes ``<out>/eva_table_<mode>.{json,md}``
(resumable per network and row).

``--target photos`` runs the paper's scaling variant (empirical EVA: the box pushed through the
features by sampling, bounded through the head; not certified) on EfficientNet-Lite0 over the
bundled photos at 224 px, explaining the predicted class, against the attribution methods at
their defaults; it writes ``<out>/eva_table_photos_<mode>.{json,md}`` and is a GPU run (one photo
is minutes on a 2-core CPU).
"""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

sys.path.insert(0, os.path.dirname(__file__))
from _results import Results, fashion_mnist_args, run_settings, run_timed  # noqa: E402

import xjax  # noqa: E402

A, M, B = xjax.attributions, xjax.metrics, xjax.bounds

EPSILONS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05)
CERTIFIED_TARGET = 0.5       # EVA's radius: the largest epsilon certifying at least this share

METHODS = {
    "eva": {"grid_size": 7, "bound": "crown_ibp"},
    "eva_ibp": {"grid_size": 7, "bound": "ibp"},
    "saliency": {}, "gradient_input": {}, "smoothgrad": {"nb_samples": 32},
    "vargrad": {"nb_samples": 32}, "integrated_gradients": {"steps": 32}, "grad_cam": {},
    "grad_cam_pp": {},
    "occlusion": {"patch_size": 4, "patch_stride": 4},
    "rise": {"nb_samples": 1000, "grid_size": 7}, "sobol": {"grid_size": 7, "nb_design": 16},
    "greedy_as": {"grid_size": 7, "nb_samples": 64, "fraction_per_step": 0.1,
                  "max_fraction": 0.5, "epsilon_max": 0.5, "search_steps": 5, "pgd_steps": 6},
}
# the MLP has no feature map for the CAMs; Greedy-AS on the 1-Lipschitz CNN would take about
# an hour of a 2-core CPU at these settings (7 s per small_cnn image; this network is slower)
SKIP = {("mlp", "grad_cam"), ("mlp", "grad_cam_pp"), ("lipschitz_cnn", "greedy_as")}
# The suite's run (the slowest test of the suite, 466 s on the CI clone of 2026-12-03): EVA (both
# bounds), one gradient and one search method; occlusion and RISE run in the full table and in
# the attribution tests.
QUICK = {"eva": METHODS["eva"], "eva_ibp": METHODS["eva_ibp"], "saliency": {},
         "greedy_as": {"grid_size": 4, "nb_samples": 16, "fraction_per_step": 0.25,
                       "max_fraction": 0.5, "epsilon_max": 0.5, "search_steps": 3,
                       "pgd_steps": 3}}


def build(name, model, kwargs, epsilon):
    if name.startswith("eva"):
        return A.eva(model.model_fn, epsilon=epsilon, batch_size=64, **kwargs)
    if name == "greedy_as":
        return A.greedy_as(model.model_fn, batch_size=256, **kwargs)
    return A.from_name(name, model, batch_size=256, **kwargs)


def mlp_fn(params, x):
    h = x.reshape(x.shape[0], -1)
    for i, layer in enumerate(params):
        h = h @ layer["w"] + layer["b"][None, :]
        if i < len(params) - 1:
            h = jax.nn.relu(h)
    return h


def trained_mlp(source_dir, quick, *, widths=(784, 100, 100, 10), epochs=10):
    """The 2 x 100 ReLU MLP, trained here (a few seconds; nothing is downloaded)."""
    keys = jax.random.split(jax.random.key(0), len(widths) - 1)
    params = [{"w": jax.random.normal(k, (a, b)) * jnp.sqrt(2.0 / a), "b": jnp.zeros((b,))}
              for k, a, b in zip(keys, widths[:-1], widths[1:], strict=True)]
    x, y = xjax.data.fashion_mnist_arrays("train", source_dir=source_dir)
    n = 2000 if quick else len(x)
    epochs = 1 if quick else epochs
    steps = epochs * (n // 128)
    state = xjax.train.fit(mlp_fn, params, x[:n], y[:n], epochs=epochs, batch_size=128,
                           optimizer=optax.adam(optax.cosine_decay_schedule(1e-3, steps)),
                           key=jax.random.key(1), progress=not quick)
    return xjax.typing.Model(mlp_fn, state.params, None, None, (28, 28, 1), None)


def lipschitz_model(args, quick):
    """The 1-Lipschitz CNN of lipschitz_fashion_mnist.py (same checkpoint: trained once)."""
    import lipschitz_fashion_mnist as lip

    return lip.trained_lipschitz_model(args.out, args.source_dir, quick)


def epsilon_sweep(model, params, x, y):
    """Per epsilon: the share of balls CROWN-IBP certifies and the median margin-bound width."""
    k = jax.eval_shape(model.model_fn, params, x[:1]).shape[-1]
    spec = jnp.eye(k)[y][:, None, :] - jnp.eye(k)[None, :, :]           # f_y - f_c, [N, K, K]
    rival = ~jax.nn.one_hot(y, k, dtype=jnp.bool_)
    g = jax.jit(B.bounds(model.model_fn, method="crown_ibp"))
    sweep = {}
    for eps in EPSILONS:
        iv = g(params, jnp.clip(x - eps, 0, 1), jnp.clip(x + eps, 0, 1), spec)
        certified = jnp.all(jnp.where(rival, iv.lower > 0, True), axis=1)
        width = (iv.upper - iv.lower)[rival]
        sweep[str(eps)] = {"certified": float(certified.mean()),
                           "median_width": float(jnp.median(width))}
    ok = [e for e in EPSILONS if sweep[str(e)]["certified"] >= CERTIFIED_TARGET]
    chosen = max(ok) if ok else min(EPSILONS)
    return sweep, chosen


def accuracy(model, params, x, y):
    return float(np.mean(np.argmax(np.asarray(jax.jit(model.model_fn)(params, x)), -1) == y))


PHOTO_METHODS = {
    "eva_empirical": {"empirical": True, "epsilon": 0.05, "grid_size": 7, "nb_samples": 64},
    "saliency": {}, "integrated_gradients": {}, "grad_cam": {},
    "occlusion": {"patch_size": 32, "patch_stride": 32}, "rise": {}, "sobol": {},
}
PHOTO_QUICK = {"eva_empirical": {"empirical": True, "epsilon": 0.05, "grid_size": 4,
                                 "nb_samples": 4},
               "saliency": {}}


def photos(args):
    """EVA's empirical variant on EfficientNet-Lite0 over the photos (see the module text)."""
    quick = args.quick
    tag = "quick" if quick else "full"
    results = Results(os.path.join(args.out, f"eva_table_photos_{tag}.json"), run_settings(args),
                      overwrite=args.overwrite)
    results.drop(args.redo)
    model = xjax.models.efficientnet_lite0()
    size = 64 if quick else 224
    names = ["coffee", "camera"] if quick else None
    xh = np.stack([xjax.data.resize_center_crop(p.image, size)
                   for p in xjax.data.sample_photos(names)])
    yh = np.argmax(np.asarray(jax.jit(model.model_fn)(model.params, xh)), -1).astype(np.int32)
    n = len(xh)
    params = xjax.runs.replicate(model.params)
    x, y = xjax.runs.shard_rows(xh, yh)
    fn, dp, host = model.model_fn, xjax.runs.per_device, xjax.runs.gather_rows
    bs = 32 if quick else 128
    metrics = {"deletion": jax.jit(dp(M.deletion(fn, activation="softmax", batch_size=bs))),
               "insertion": jax.jit(dp(M.insertion(fn, activation="softmax", batch_size=bs))),
               "mu_fidelity": jax.jit(dp(M.mu_fidelity(fn, grid_size=7,
                                                       nb_samples=16 if quick else 128,
                                                       batch_size=bs)))}
    if not quick:
        metrics["robustness_sr"] = jax.jit(dp(M.robustness_sr(
            fn, epsilon_max=0.5, search_steps=8, pgd_steps=10, batch_size=bs)))
    methods = PHOTO_QUICK if quick else PHOTO_METHODS
    for name in tqdm([m for m in methods if not results.done(m)], desc="Lite0 methods"):
        kw = dict(methods[name])
        if name == "eva_empirical":
            e = A.eva(fn, features_fn=model.features_fn, head_fn=model.head_fn, batch_size=bs,
                      **kw)
        else:
            e = A.from_name(name, model, batch_size=bs, **kw)
        key = jax.random.key(1) if name in A.STOCHASTIC or name == "eva_empirical" else None
        maps, compile_seconds, seconds = run_timed(
            lambda p, a, b, e=e, key=key: dp(e)(p, a, b, key=key), params, x, y)
        seconds /= n
        row = {k: float(np.mean(host(m(params, x, y, maps, key=jax.random.key(2))
                                     if k == "mu_fidelity" else m(params, x, y, maps))))
               for k, m in metrics.items()}
        results.add(name, {**row, "seconds_per_image": seconds,
                           "compile_seconds": compile_seconds, "settings": str(kw)},
                    meta={"n": n, "size": size, "model": "efficientnet_lite0",
                          "device": jax.devices()[0].device_kind})
    cols = list(metrics) + ["seconds_per_image", "compile_seconds", "settings"]
    cmd = "python experiments/eva_table.py --target photos" + (" --quick" if quick else "")
    results.write_markdown(os.path.join(args.out, f"eva_table_photos_{tag}.md"), cols,
                           f"Empirical EVA on EfficientNet-Lite0 ({n} photos at {size} px)", cmd)
    return results


def main(argv=None):
    args = fashion_mnist_args(__doc__, argv, targets=("fmnist", "photos"))
    if args.target == "photos":
        return photos(args)
    quick = args.quick
    n = 4 if quick else 100
    tag = "quick" if quick else "full"
    results = Results(os.path.join(args.out, f"eva_table_{tag}.json"), run_settings(args),
                      overwrite=args.overwrite)
    results.drop(args.redo)
    xt, yt = xjax.data.fashion_mnist_arrays("test", source_dir=args.source_dir)
    xh, yh = xt[:n], yt[:n].astype(np.int32)
    x, y = xjax.runs.shard_rows(xh, yh)
    methods = QUICK if quick else METHODS

    nets = {"mlp": lambda: trained_mlp(args.source_dir, quick),
            "small_cnn": lambda: xjax.models.small_cnn(pretrained="fashion_mnist"),
            "lipschitz_cnn": lambda: lipschitz_model(args, quick)}
    for net, make in nets.items():
        names = [m for m in methods if (net, m) not in SKIP or quick]
        todo = [m for m in names if not results.done(f"{net}/{m}")]
        if not todo and results.done(f"{net}/bounds"):
            continue
        model = make()
        fn, params = model.model_fn, xjax.runs.replicate(model.params)  # meets shard_rows' x
        if not results.done(f"{net}/bounds"):
            sweep, chosen = epsilon_sweep(model, model.params, jnp.asarray(xh), jnp.asarray(yh))
            results.add(f"{net}/bounds", {
                "epsilon": chosen, "certified": sweep[str(chosen)]["certified"],
                "median_width": sweep[str(chosen)]["median_width"], "sweep": sweep,
                "accuracy": accuracy(model, model.params, xt[:2000], yt[:2000])},
                meta={"n": n})
        epsilon = results.rows[f"{net}/bounds"]["epsilon"]
        dp = xjax.runs.per_device          # each device explains and scores its own images
        host = xjax.runs.gather_rows
        deletion = jax.jit(dp(M.deletion(fn, activation="softmax", batch_size=256)))
        insertion = jax.jit(dp(M.insertion(fn, activation="softmax", batch_size=256)))
        mu = jax.jit(dp(M.mu_fidelity(fn, grid_size=7, nb_samples=64 if quick else 128,
                                      batch_size=256)))
        rob = jax.jit(dp(M.robustness_sr(fn, epsilon_max=0.5, search_steps=6 if quick else 8,
                                         pgd_steps=5 if quick else 10, batch_size=256)))
        for name in tqdm(todo, desc=f"{net} methods"):
            kwargs = dict(methods[name])
            e = dp(build(name, model, kwargs, epsilon))
            if name.startswith("eva"):
                kwargs["epsilon"] = epsilon
            key = jax.random.key(1) if name in A.STOCHASTIC else None
            maps, compile_seconds, seconds = run_timed(
                lambda p, a, b, e=e, key=key: e(p, a, b, key=key), params, x, y)
            seconds /= n
            results.add(f"{net}/{name}", {
                # per-image scores come back to the host, then are averaged there
                "deletion": float(np.mean(host(deletion(params, x, y, maps)))),
                "insertion": float(np.mean(host(insertion(params, x, y, maps)))),
                "mu_fidelity": float(np.mean(host(mu(params, x, y, maps,
                                                     key=jax.random.key(2))))),
                "robustness_sr": float(np.mean(host(rob(params, x, y, maps)))),
                "seconds_per_image": seconds, "compile_seconds": compile_seconds,
                "settings": str(kwargs)},
                meta={"n": n, "device": jax.devices()[0].device_kind})
    cols = ["deletion", "insertion", "mu_fidelity", "robustness_sr", "seconds_per_image",
            "settings"]
    cmd = "python experiments/eva_table.py" + (" --quick" if quick else "")
    title = (f"EVA and the attribution methods on Fashion-MNIST ({n} test images; Deletion lower, "
             "Insertion higher, MuFidelity higher, Robustness-S_r lower is better)")
    table = results.subset({k: v for k, v in results.rows.items() if not k.endswith("/bounds")})
    text = table.markdown(cols, title, cmd)
    bounds = results.subset({k: v for k, v in results.rows.items() if k.endswith("/bounds")})
    text += "\n" + bounds.markdown(["epsilon", "certified", "median_width", "accuracy"],
                                   "EVA's radius per network (CROWN-IBP)", cmd)
    with open(os.path.join(args.out, f"eva_table_{tag}.md"), "w") as f:
        f.write(text)
    print(text)
    return results


if __name__ == "__main__":
    main()
