"""Human-centred utility of attribution methods with automated meta-predictors (Colin, Fel et
al., NeurIPS 2022, "What I Cannot Predict, I Do Not Understand"), on a known shortcut.

    python experiments/utility.py            # 10 seeds, 30 exemplars, 3 sessions
    python experiments/utility.py --quick    # 2 seeds, 12 exemplars, 3 methods (CI)

A ``small_cnn`` is trained on Pullover-vs-Coat Fashion-MNIST images carrying a corner patch that
matches the label 95% of the time (``xjax.data.decoy_patch``). The meta-predictors then learn the
model's *decisions* on images whose patch corner is random (so the model's errors come from the
shortcut): in the baseline from images alone, in each method's condition from images with the
method's explanation, plus a control with random maps. They are tested on images alone.
Utility = mean session accuracy / baseline's, per seed; mean and 95% bootstrap interval over
seeds. Writes ``<out>/utility_<mode>.{json,md}`` (resumable per meta-predictor).
"""

import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh
from tqdm.auto import tqdm

sys.path.insert(0, os.path.dirname(__file__))
from _results import Results, fashion_mnist_args, run_settings  # noqa: E402

import xjax  # noqa: E402

A, M = xjax.attributions, xjax.metrics

# the six methods of the paper's psychophysics study, plus Sobol and RISE
METHODS = {
    "saliency": {}, "gradient_input": {}, "integrated_gradients": {"steps": 16},
    "smoothgrad": {"nb_samples": 16}, "grad_cam": {},
    "occlusion": {"patch_size": 4, "patch_stride": 4},
    "rise": {"nb_samples": 500, "grid_size": 7}, "sobol": {"grid_size": 7, "nb_design": 16},
}


def main(argv=None):
    args = fashion_mnist_args(__doc__, argv)
    quick = args.quick
    seeds, exemplars, n_test, n_train = (2, 12, 200, 4000) if quick else (10, 30, 1000, 12000)
    methods = {k: METHODS[k] for k in ("saliency", "grad_cam", "occlusion")} if quick else METHODS
    tag = "quick" if quick else "full"
    results = Results(os.path.join(args.out, f"utility_{tag}.json"), run_settings(args),
                      overwrite=args.overwrite)
    results.drop(args.redo)

    x, y = xjax.data.fashion_mnist_arrays("train", source_dir=args.source_dir)
    xt, yt = xjax.data.fashion_mnist_arrays("test", source_dir=args.source_dir)
    x_tr, y_tr, _ = xjax.data.decoy_patch(x[:n_train * 5], y[:n_train * 5], correlation=0.95,
                                           seed=0)
    x_tr, y_tr = x_tr[:n_train], y_tr[:n_train]
    # meta-predictor images: the corner is independent of the garment
    x_m, y_m, corner = xjax.data.decoy_patch(xt, yt, correlation=0.5, seed=1)

    model = xjax.models.small_cnn(num_classes=2, key=jax.random.key(0))
    t0 = time.perf_counter()
    mesh = Mesh(np.array(jax.devices()[:1]), ("data",))
    state = xjax.train.fit(model.model_fn, model.params, x_tr, y_tr, optimizer=optax.adam(1e-3),
                           epochs=2, batch_size=64, key=jax.random.key(1), progress=False,
                           mesh=mesh)
    params = state.params
    decisions = np.asarray(jax.jit(lambda p, a: jnp.argmax(model.model_fn(p, a), -1))(
        params, jnp.asarray(x_m))).astype(np.int32)
    info = {"train_seconds": time.perf_counter() - t0,
            "accuracy_vs_label": float(np.mean(decisions == y_m)),
            "agreement_with_corner": float(np.mean(decisions == corner))}
    print(f"model: {info}", flush=True)
    x_pool, d_pool = x_m[n_test:], decisions[n_test:]
    x_test, d_test = x_m[:n_test], decisions[:n_test]

    explainers = {}
    for name, kw in methods.items():
        explainers[name] = jax.jit(A.from_name(name, model._replace(params=params), **kw))

    def explain(name, xs, ds):
        if name == "control":              # random maps: explanations that carry nothing
            return jax.random.uniform(jax.random.key(int(ds.sum())), xs.shape[:3])
        e = explainers[name]
        key = jax.random.key(2) if name in A.STOCHASTIC else None
        return e(params, xs, ds, key=key)

    conditions = ["baseline", "control", *methods]
    metas = {"similarity": M.similarity_meta_predictor(num_classes=2),
             "cnn": M.cnn_meta_predictor(num_classes=2, width=8 if quick else 16,
                                         steps=60 if quick else 150)}
    cols = ["utility", "low", "high", "session_accuracy"]
    for meta_name, meta in metas.items():
        todo = [c for c in conditions if not results.done(f"{meta_name}/{c}")]
        if not todo:
            continue
        # Every condition of a seed sees the same exemplars and keys, so a condition's row does not
        # depend on which others run with it: missing rows are computed with the baseline, which
        # must come out as stored (else the rows would mix two different runs).
        run = ["baseline"] + [c for c in todo if c != "baseline"]
        bar = tqdm(total=seeds * len(run), desc=f"{meta_name} meta-predictor")
        t = time.perf_counter()
        out = M.utility_protocol(meta, explain, x_pool, d_pool, x_test, d_test,
                                 conditions=run, exemplars=exemplars, sessions=3,
                                 seeds=seeds, key=jax.random.key(3),
                                 progress=lambda s, c, bar=bar: bar.update())
        bar.close()
        stored = results.rows.get(f"{meta_name}/baseline")
        again = " / ".join(f"{100 * a:.1f}" for a in out.accuracy["baseline"].mean(0))
        if stored is not None and stored["session_accuracy"] != again:
            raise RuntimeError(f"{meta_name}: the baseline came out {again}, the stored rows have "
                               f"{stored['session_accuracy']}; rerun every row (delete the JSON)")
        order = sorted(todo, key=lambda c: -out.mean[c])
        for c in order:
            results.add(f"{meta_name}/{c}", {
                "utility": out.mean[c], "low": out.low[c], "high": out.high[c],
                "session_accuracy": " / ".join(f"{100 * a:.1f}"
                                               for a in out.accuracy[c].mean(0))},
                meta=dict(info, seeds=seeds, exemplars=exemplars, sessions=3, n_test=n_test,
                          seconds=time.perf_counter() - t))
    cmd = "python experiments/utility.py" + (" --quick" if quick else "")
    title = (f"Utility of explanations for automated meta-predictors (decoy-patch Fashion-MNIST, "
             f"{seeds} seeds, {exemplars} exemplars over 3 sessions; > 1 = explanations helped)")
    results.write_markdown(os.path.join(args.out, f"utility_{tag}.md"), cols, title, cmd)
    print(results.markdown(cols, title, cmd))
    return results


if __name__ == "__main__":
    main()
