"""A 1-Lipschitz CNN on Fashion-MNIST next to the standard small_cnn: certified robustness, and
the quality of their saliency maps (MeGe/ReCo, stability, MuFidelity).

    python experiments/lipschitz_fashion_mnist.py            # full: 60k images, 6 epochs
    python experiments/lipschitz_fashion_mnist.py --quick    # 2k images, 1 epoch, k=2 (CI)

Robustness (test set): clean accuracy; certified accuracy at l2 radii 0.1, 0.5, 1.0 (pixels in
[0, 1]) from ``xjax.lipschitz.certificate`` -- for small_cnn with a sound but loose Lipschitz
bound (product of the layers' operator norms; ReLU and 2x2 max pooling are 1-Lipschitz); and the
accuracy under a PGD l2 attack at the same radii (``robustness_sr``, an empirical upper bound).
Explanations: MeGe/ReCo of saliency, SmoothGrad and Integrated Gradients over k = 4 folds (both
architectures trained the same way on the same folds), and on the fully trained models the
saliency stability (1 - Spearman between the maps of x and x + U[0, 0.1)) and MuFidelity.
Writes ``<out>/lipschitz_<mode>.{json,md}``; resumable per unit, and training resumes from its
per-epoch checkpoints.
"""

import functools
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh
from tqdm.auto import tqdm

sys.path.insert(0, os.path.dirname(__file__))
from _results import Results, fashion_mnist_args, run_settings  # noqa: E402

import xjax  # noqa: E402

A, M, L = xjax.attributions, xjax.metrics, xjax.lipschitz
RADII = (0.1, 0.5, 1.0)
EXPLAINERS = {"saliency": {}, "smoothgrad": {"nb_samples": 16},
              "integrated_gradients": {"steps": 16}}
DN = ("NHWC", "HWIO", "NHWC")


def small_cnn_lipschitz_bound(params) -> float:
    """Product of the operator norms of small_cnn's linear layers (an upper bound of its l2
    Lipschitz constant on 28x28x1 inputs)."""
    bound = 1.0
    for name, shape in (("conv1", (1, 28, 28, 1)), ("conv2", (1, 14, 14, 32))):
        k = jnp.asarray(params[name]["kernel"][...])
        f = lambda z, k=k: jax.lax.conv_general_dilated(z, k, (1, 1), "SAME", dimension_numbers=DN)
        bound *= float(L.operator_norm(f, shape, steps=200)) * 1.001   # power iteration: from below
    for name in ("fc1", "fc2"):
        bound *= float(np.linalg.svd(np.asarray(params[name]["kernel"][...]), compute_uv=False)[0])
    return bound


HKR = functools.partial(L.multiclass_hkr, alpha=10.0, margin=1.0)


def settings(quick):
    """(n_train, epochs, n_eval, n_attack, n_mege, mege_epochs, k)."""
    return (2000, 1, 500, 32, 160, 2, 2) if quick else (60000, 6, 10000, 500, 1000, 5, 4)


def train_lipschitz(xs, ys, key, n_epochs, *, mesh=None, checkpoint_dir=None, progress=False,
                    module_only=False):
    """Train a LipschitzCNN with HKR (power iteration carried across steps) and export it.

    Returns ``(model_fn, params)`` of the plain exported network (or the exported module)."""
    module = L.lipschitz_cnn(key=key)
    model_fn, params = xjax.models.from_nnx(module)
    state = xjax.train.fit(model_fn, params, xs, ys, optimizer=optax.adam(1e-3),
                           epochs=n_epochs, batch_size=128 if len(xs) >= 128 else 40,
                           key=jax.random.fold_in(key, 1), loss_fn=HKR, mesh=mesh,
                           post_update=L.power_update(module), progress=progress,
                           checkpoint_dir=checkpoint_dir)
    nnx.update(module, state.params)
    exported = L.export(module)
    return exported if module_only else xjax.models.from_nnx(exported)


def checkpoint_dir(out, tag):
    return os.path.abspath(os.path.join(out, f"lipschitz_cnn_{tag}_ckpt"))


def trained_lipschitz_model(out, source_dir, quick):
    """The experiment's fully trained 1-Lipschitz CNN as a Model (resumes from, or reuses, the
    checkpoint this script writes)."""
    n_train, epochs = settings(quick)[:2]
    x, y = xjax.data.fashion_mnist_arrays("train", source_dir=source_dir)
    mesh = Mesh(np.array(jax.devices()[:1]), ("data",)) if quick else None
    module = train_lipschitz(x[:n_train], y[:n_train], jax.random.key(0), epochs, mesh=mesh,
                             checkpoint_dir=checkpoint_dir(out, "quick" if quick else "full"),
                             progress=not quick, module_only=True)
    return xjax.models.model_from_nnx(module, input_shape=(28, 28, 1))


def main(argv=None):
    args = fashion_mnist_args(__doc__, argv)
    quick = args.quick
    n_train, epochs, n_eval, n_attack, n_mege, mege_epochs, k = settings(quick)
    explainers = {"saliency": {}} if quick else EXPLAINERS
    tag = "quick" if quick else "full"
    results = Results(os.path.join(args.out, f"lipschitz_{tag}.json"), run_settings(args),
                      overwrite=args.overwrite)
    x, y = xjax.data.fashion_mnist_arrays("train", source_dir=args.source_dir)
    xt, yt = xjax.data.fashion_mnist_arrays("test", source_dir=args.source_dir)
    xt, yt = xt[:n_eval], yt[:n_eval]
    mesh = Mesh(np.array(jax.devices()[:1]), ("data",)) if quick else None

    standard = xjax.models.small_cnn(pretrained="fashion_mnist")
    t0 = time.perf_counter()
    lip_fn, lip_params = train_lipschitz(x[:n_train], y[:n_train], jax.random.key(0), epochs,
                                         mesh=mesh, checkpoint_dir=checkpoint_dir(args.out, tag),
                                         progress=not quick)
    train_seconds = time.perf_counter() - t0
    # replicated on every device, to meet the evaluation set that shard_rows splits over them
    models = {"small_cnn": (standard.model_fn, xjax.runs.replicate(standard.params)),
              "lipschitz_cnn": (lip_fn, xjax.runs.replicate(lip_params))}
    meta = {"n_train": n_train, "epochs": epochs, "n_eval": n_eval, "n_attack": n_attack,
            "lipschitz_train_seconds": train_seconds, "loss": "multiclass_hkr(alpha=10, m=1)"}

    xj, yj = xjax.runs.shard_rows(xt, yt.astype(np.int32))
    for name, (fn, params) in models.items():
        key = f"{name}/robustness"
        if results.done(key):
            continue
        lip = 1.0 if name == "lipschitz_cnn" else small_cnn_lipschitz_bound(params)
        # per-row results come back to the host before any reduction (no cross-device ops)
        logits, y_host = xjax.runs.gather_rows((jax.jit(fn)(params, xj), yj))
        row = {"lipschitz_bound": lip,
               "clean_accuracy": float(L.certified_accuracy(logits, y_host, 0.0, lipschitz=lip))}
        for r in RADII:
            row[f"certified@{r}"] = float(L.certified_accuracy(logits, y_host, r, lipschitz=lip))
        attack = M.robustness_sr(fn, fractions=(1.0,), norm="l2", epsilon_max=max(RADII) * 1.01,
                                 search_steps=8, pgd_steps=20, clip=(0.0, 1.0), batch_size=250)
        # per-device code (xjax.runs.per_device): each device attacks its own images
        radius = xjax.runs.gather_rows(jax.jit(xjax.runs.per_device(attack))(
            params, xj[:n_attack], yj[:n_attack], jnp.ones(xj[:n_attack].shape[:3])))
        for r in RADII:
            row[f"pgd@{r}"] = float(np.mean(radius > r))
        results.add(key, row, meta=meta)

    # explanations of the fully trained models
    for name, (fn, params) in models.items():
        key = f"{name}/saliency"
        if results.done(key):
            continue
        sal = A.saliency(fn, batch_size=256)
        one_minus_spearman = lambda a, b: 1.0 - M._common.spearman(a.reshape(a.shape[0], -1),
                                                                   b.reshape(b.shape[0], -1))
        stab = M.average_stability(sal, radius=0.1, nb_samples=8, distance=one_minus_spearman)
        mu = M.mu_fidelity(fn, grid_size=7, nb_samples=64, batch_size=256)
        xs, ys = xj[:n_attack], yj[:n_attack]
        dp, host = xjax.runs.per_device, xjax.runs.gather_rows
        maps = jax.jit(dp(sal))(params, xs, ys)
        results.add(key, {
            "stability_1-spearman": float(np.mean(host(jax.jit(dp(stab))(
                params, xs, ys, key=jax.random.key(5))))),
            "mu_fidelity": float(np.mean(host(jax.jit(dp(mu))(
                params, xs, ys, maps, key=jax.random.key(6)))))},
            meta=meta)

    # MeGe / ReCo over k folds, both architectures trained the same way
    xm, ym = x[:n_mege], y[:n_mege]

    def train_standard(xs, ys, key, epochs=mege_epochs):
        model = xjax.models.small_cnn(key=key)
        return xjax.train.fit(model.model_fn, model.params, xs, ys, optimizer=optax.adam(1e-3),
                              epochs=epochs, batch_size=40, key=jax.random.fold_in(key, 1),
                              progress=False, mesh=mesh).params

    # every exported LipschitzCNN has the same structure: one plain model function serves all
    lip_template_fn = xjax.models.from_nnx(L.export(L.lipschitz_cnn()))[0]
    archs = {"small_cnn": (train_standard, standard.model_fn),
             "lipschitz_cnn": (lambda xs, ys, k: train_lipschitz(xs, ys, k, mege_epochs,
                                                                 mesh=mesh)[1],
                               lip_template_fn)}
    for name, (train, fn) in archs.items():
        todo = [e for e in explainers if not results.done(f"{name}/mege:{e}")]
        if not todo:
            continue
        folds = M.train_folds(train, fn, xm, ym, k=k, key=jax.random.key(7))
        for e in tqdm(todo, desc=f"MeGe {name}"):
            explainer = getattr(A, e)(fn, **dict(explainers[e], batch_size=256))
            out = M.explain_folds(folds, fn, explainer,
                                  key=jax.random.key(8) if e in A.STOCHASTIC else None)
            results.add(f"{name}/mege:{e}", {
                "mege": float(out.mege), "reco": float(out.reco),
                "pairs_dropped": int(out.n_dropped),
                "held_out_accuracy": float(np.mean(folds.held_out_accuracy))}, meta=meta)

    # MeGe at matched accuracy: the standard architecture trained for the number of epochs
    # (1..mege_epochs) whose held-out accuracy is closest to the Lipschitz folds'
    target = results.rows["lipschitz_cnn/mege:saliency"]["held_out_accuracy"]
    todo = [e for e in explainers if not results.done(f"small_cnn_matched/mege:{e}")]
    if todo:
        candidates = []
        for epochs in range(1, mege_epochs + 1):
            folds = M.train_folds(lambda xs, ys, key, ep=epochs: train_standard(xs, ys, key, ep),
                                  standard.model_fn, xm, ym, k=k, key=jax.random.key(7))
            candidates.append((abs(float(np.mean(folds.held_out_accuracy)) - target), epochs,
                               folds))
        _, epochs, folds = min(candidates, key=lambda c: c[:2])
        for e in tqdm(todo, desc="MeGe small_cnn at matched accuracy"):
            explainer = getattr(A, e)(standard.model_fn, **dict(explainers[e], batch_size=256))
            out = M.explain_folds(folds, standard.model_fn, explainer,
                                  key=jax.random.key(8) if e in A.STOCHASTIC else None)
            results.add(f"small_cnn_matched/mege:{e}", {
                "mege": float(out.mege), "reco": float(out.reco),
                "pairs_dropped": int(out.n_dropped), "epochs": epochs,
                "held_out_accuracy": float(np.mean(folds.held_out_accuracy))}, meta=meta)

    cmd = "python experiments/lipschitz_fashion_mnist.py" + (" --quick" if quick else "")
    rob_cols = ["lipschitz_bound", "clean_accuracy"] + [f"certified@{r}" for r in RADII] + \
        [f"pgd@{r}" for r in RADII]
    md = [_table(results, "/robustness", rob_cols,
                 f"Certified (l2) and PGD robust accuracy, Fashion-MNIST test ({n_eval} images; "
                 f"PGD on {n_attack})", cmd),
          _table(results, "/saliency", ["stability_1-spearman", "mu_fidelity"],
                 f"Saliency of the fully trained models ({n_attack} test images; stability lower "
                 "is better, MuFidelity higher)", cmd),
          _table(results, "/mege:", ["mege", "reco", "held_out_accuracy"],
                 f"MeGe / ReCo over k={k} folds of {n_mege} training images, {mege_epochs} epochs "
                 "per model (higher is better)", cmd)]
    text = "\n".join(md)
    with open(os.path.join(args.out, f"lipschitz_{tag}.md"), "w") as f:
        f.write(text)
    print(text)
    return results


def _table(results, marker, columns, title, command):
    return results.subset({k: v for k, v in results.rows.items() if marker in k}).markdown(
        columns, title, command)


if __name__ == "__main__":
    main()
