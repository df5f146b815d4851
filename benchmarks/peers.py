"""xjax against Captum and Xplique on the same two networks: seconds per explained image.

    python benchmarks/peers.py --torch-python /path/to/torch-venv/bin/python \\
        --json benchmarks/results/peers_cpu.json
    python benchmarks/peers.py --models cnn --methods saliency,integrated_gradients  # a subset

Issue 25's side-by-side setting: a 3-conv CNN at 32x32 (inner batch 64, 8 images) and ResNet-18
at 224x224 (inner batch 32, 1 image); integrated gradients 50 steps, SmoothGrad 50 samples,
occlusion patch 8 / 16 with stride equal to the patch, RISE 1000 / 2000 masks, Sobol grid 8 x 32
designs, KernelSHAP and LIME 500 samples on an 8x8 grid of superpixels, Grad-CAM on the last
convolutional block.

With ``--torch-python`` (an environment with ``torch``, ``captum`` and ``scikit-learn``, with
which Captum fits LIME and KernelSHAP), benchmarks/peers_torch.py
first builds both networks in PyTorch, writes their random weights and inputs, and times Captum
on them in the same run; xjax then loads those weights (checking that its logits agree with
PyTorch's) and is timed on the very same networks. Without it, xjax runs on its own random
weights and only the reference table compares.

The reference table is issue 25's, measured on this 2-core machine on 2026-12-01 (Xplique 2.0.2
with TensorFlow 2.20, Captum 0.9 with PyTorch 2.13, and xjax of that day): the best peer's seconds
per image is xjax's of that day times the ratio reported. The widths of that run's CNN were not
recorded; the CNN here is conv 32-64-128 with 2x2 max pools and a dense(128) head, so its
reference ratios compare like with like only as far as the two CNNs cost the same per model call
(the live Captum columns have no such caveat).
"""

import argparse
import json
import os
import subprocess
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from _common import provenance, timed, timed_alternating
from flax import nnx

import xjax
from xjax._internal.batching import item_layout
from xjax._internal.canonical import canonical_convs
from xjax.models._layers import max_pool

A = xjax.attributions
HERE = os.path.dirname(os.path.abspath(__file__))

# Issue 25 (2026-12-01, this machine): method -> ((CNN: xjax s/img, xjax vs best peer),
# (ResNet-18: xjax s/img, xjax vs best peer)); > 1 means xjax was faster.
REFERENCE = {
    "saliency": ((0.00205, 0.47), (0.139, 0.58)),
    "gradient_input": ((0.00228, 0.40), (0.153, 0.65)),
    "integrated_gradients": ((0.105, 0.42), (11.3, 0.52)),
    "smoothgrad": ((0.113, 0.56), (12.1, 0.51)),
    "occlusion": ((0.014, 0.90), (10.5, 0.88)),
    "rise": ((0.20, 2.64), (106.0, 0.90)),
    "sobol": ((1.82, 0.65), (106.0, 0.92)),
    "kernel_shap": ((0.132, 2.53), (26.5, 0.96)),
    "lime": ((0.133, 2.55), (26.1, 0.98)),
    "grad_cam": ((0.00079, 0.76), (0.052, 0.87)),
}
REFERENCE_SOURCE = ("issue 25, measured 2026-12-01 on this 2-core CPU machine: Xplique 2.0.2 "
                    "(TensorFlow 2.20), Captum 0.9 (PyTorch 2.13); best peer = xjax's s/img of "
                    "that day x its ratio")
MODELS = {"cnn": {"side": 32, "batch": 64, "n": 8, "patch": 8, "rise": 1000},
          "resnet18": {"side": 224, "batch": 32, "n": 1, "patch": 16, "rise": 2000}}


class CNN(nnx.Module):
    """conv3x3(32)-ReLU-maxpool2, conv3x3(64)-ReLU-maxpool2, conv3x3(128)-ReLU-maxpool2 |
    flatten, dense(128)-ReLU, dense(10); PyTorch names (benchmarks/peers_torch.py's CNN)."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(3, 32, (3, 3), padding="SAME", rngs=rngs)
        self.conv2 = nnx.Conv(32, 64, (3, 3), padding="SAME", rngs=rngs)
        self.conv3 = nnx.Conv(64, 128, (3, 3), padding="SAME", rngs=rngs)
        self.fc1 = nnx.Linear(4 * 4 * 128, 128, rngs=rngs)
        self.fc2 = nnx.Linear(128, 10, rngs=rngs)

    def features(self, x):
        for conv in (self.conv1, self.conv2, self.conv3):
            x = max_pool(jax.nn.relu(conv(x)), 2)
        return x

    def head(self, a):
        return self.fc2(jax.nn.relu(self.fc1(a.reshape(a.shape[0], -1))))

    def __call__(self, x):
        return self.head(self.features(x))


def build(name: str, weights: dict | None):
    if name == "resnet18":
        return xjax.models.resnet18(state_dict=weights)
    module = CNN(rngs=nnx.Rngs(0))
    if weights is not None:
        xjax.models.load_state_dict(module, weights)
    return xjax.models.model_from_nnx(module, input_shape=(32, 32, 3))


def methods(s):
    b, grid = s["batch"], {"segmentation": "grid", "grid_size": 8}
    return {  # name: (kwargs, model calls per image, unit)
        "saliency": ({}, 1, "grad"),
        "gradient_input": ({}, 1, "grad"),
        "integrated_gradients": ({"steps": 50}, 50, "grad"),
        "smoothgrad": ({"nb_samples": 50}, 50, "grad"),
        "occlusion": ({"patch_size": s["patch"], "patch_stride": s["patch"]},
                      (s["side"] // s["patch"]) ** 2 + 1, "fwd"),
        "rise": ({"nb_samples": s["rise"]}, s["rise"], "fwd"),
        "sobol": ({"grid_size": 8, "nb_design": 32}, 32 * (8 * 8 + 2), "fwd"),
        "kernel_shap": ({"nb_samples": 500, **grid}, 500, "fwd"),
        "lime": ({"nb_samples": 500, **grid}, 500, "fwd"),
        "grad_cam": ({}, 1, "grad"),
    }, b


def rows_per_call(n: int, calls: int, b: int) -> int:
    """Images per model call of a method making ``calls`` calls per image on ``n`` images at
    ``batch_size=b``: gradient and perturbation methods alike run blocks of consecutive
    (image, sample) items that span images (``item_layout``; occlusion's unperturbed image is
    its perturbation 0)."""
    return item_layout(n, calls, b)[0]


def _read_npz(path: str) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as f:          # arrays only, never pickles
        return {k: f[k] for k in f.files}


def run_xjax(name: str, torch_dir: str | None, only, repeats: int) -> dict:
    s = MODELS[name]
    weights = _read_npz(os.path.join(torch_dir, f"{name}_weights.npz")) if torch_dir else None
    model = build(name, weights)
    if torch_dir:
        data = _read_npz(os.path.join(torch_dir, f"{name}_inputs.npz"))
        x = jnp.asarray(data["images"])
        logits = np.asarray(jax.jit(model.model_fn)(model.params, x))
        parity = float(np.max(np.abs(logits - data["logits"])) /
                       max(float(np.max(np.abs(data["logits"]))), 1e-12))
        if parity > 1e-3:
            raise SystemExit(f"peers: {name}'s logits differ from PyTorch's by {parity:.2e} "
                             f"(relative): not the same network")
    else:
        x = jnp.asarray(np.random.default_rng(0).random((s["n"], s["side"], s["side"], 3)),
                        jnp.float32)
        parity = None
    table, b = methods(s)
    fwd = jax.jit(model.model_fn)
    grad = jax.jit(jax.grad(lambda p, z: model.model_fn(p, z).max(-1).sum(), argnums=1))
    programs, units = {"fwd": fwd, "grad": grad}, {}

    def in_scan(kind: str):
        """The model calls (``kind``) in a ``lax.scan`` over blocks, the block body made
        canonical like the methods'; each block's input differs (scaled by ``1 + 1e-7 i``) so
        XLA cannot hoist the call out of the loop."""
        one = {"fwd": lambda p, z: model.model_fn(p, z).sum(),
               "grad": lambda p, z: jax.grad(
                   lambda zz: model.model_fn(p, zz).max(-1).sum())(z).sum()}[kind]

        def run(p, z, blocks):
            body = canonical_convs(lambda c, i: (c + one(p, z * (1 + 1e-7 * i)), None))
            return jax.lax.scan(body, jnp.float32(0), blocks.astype(jnp.float32))[0]
        return jax.jit(run)

    looped = {"fwd": in_scan("fwd"), "grad": in_scan("grad")}

    def unit_input(rows: int):
        return jnp.asarray(np.random.default_rng(1).random((rows, s["side"], s["side"], 3)),
                           jnp.float32)

    def unit_at(kind: str, rows: int) -> float:
        """Seconds per image of the model call alone (forward, or forward+backward to the
        input) at ``rows`` images per call."""
        if (kind, rows) not in units:
            units[kind, rows] = timed(programs[kind], model.params, unit_input(rows),
                                      repeats=repeats) / rows
        return units[kind, rows]

    unit = {"fwd": unit_at("fwd", b), "grad": unit_at("grad", b)}
    print(f"# xjax {name}: forward {unit['fwd'] * 1e3:.3f} ms/img, forward+backward "
          f"{unit['grad'] * 1e3:.3f} ms/img at batch {b}; logits vs PyTorch {parity}", flush=True)
    y = jnp.asarray(np.asarray(fwd(model.params, x)).argmax(-1), jnp.int32)
    rows = {}
    for method, (kw, calls, kind) in table.items():
        if only and method not in only:
            continue
        e = A.from_name(method, model, batch_size=b, **kw)
        key = jax.random.key(0) if method in A.STOCHASTIC else None
        run = jax.jit(lambda p, xs, ys, e=e, key=key: e(p, xs, ys, key=key))
        t0 = time.perf_counter()
        jax.block_until_ready(run(model.params, x, y))
        first = time.perf_counter() - t0
        per_call = rows_per_call(len(x), calls, b)
        # The model calls without the method's own work, timed in turn with the method within
        # each repeat (so the machine's drift slows all alike), in two forms: up to 16 calls in
        # a row (one call after the method would find its weights evicted), and the same calls
        # in a scan like the method's blocks. The faster is the unit, so that the ratio bounds
        # the overhead from above.
        k = min(16, -(-len(x) * calls // per_call))

        def alone(p, z, fn=programs[kind], k=k):
            for _ in range(k):              # one after the other, as the method's blocks run
                out = jax.block_until_ready(fn(p, z))
            return out

        t, t_alone, t_loop = timed_alternating(
            [(run, (model.params, x, y)), (alone, (model.params, unit_input(per_call))),
             (looped[kind], (model.params, unit_input(per_call), jnp.arange(k)))],
            repeats=repeats)
        t, t_alone, t_loop = t / len(x), t_alone / (k * per_call), t_loop / (k * per_call)
        rows[method] = {"kwargs": kw, "seconds_per_image": t, "model_calls": calls,
                        "unit": kind, "rows_per_call": per_call,
                        "unit_seconds_alone": t_alone, "unit_seconds_in_scan": t_loop,
                        "overhead_ratio": t / (calls * min(t_alone, t_loop)),
                        "first_call_seconds": first}
        print(f"xjax {method:22s} {t:10.5f} s/image  ratio {rows[method]['overhead_ratio']:.3f}",
              flush=True)
    return {**s, "unit_seconds": unit, "logits_vs_torch": parity, "rows": rows}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="cnn,resnet18")
    parser.add_argument("--methods", default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--torch-python", default=None,
                        help="python of an environment with torch and captum (live Captum)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    only = args.methods.split(",") if args.methods else None
    captum = None
    with tempfile.TemporaryDirectory() as tmp:
        if args.torch_python:
            cmd = [args.torch_python, os.path.join(HERE, "peers_torch.py"), "--out", tmp,
                   "--models", args.models, "--repeats", str(args.repeats)]
            subprocess.run(cmd + (["--methods", args.methods] if args.methods else []),
                           check=True)
            with open(os.path.join(tmp, "captum.json")) as f:
                captum = json.load(f)
        models = {m: run_xjax(m, tmp if captum else None, only, args.repeats)
                  for m in args.models.split(",")}
    result = {
        **provenance(),
        "reference": {"source": REFERENCE_SOURCE,
                      "best_peer_seconds": {m: {"cnn": r[0][0] * r[0][1],
                                                "resnet18": r[1][0] * r[1][1]}
                                            for m, r in REFERENCE.items()}},
        "xjax": models,
        "captum": captum,
    }
    for name, model in models.items():
        for method, row in model["rows"].items():
            row["vs_reference_best_peer"] = (
                result["reference"]["best_peer_seconds"][method][name] / row["seconds_per_image"])
            live = ((captum or {}).get("models", {}).get(name, {}).get("rows", {}).get(method))
            row["vs_captum"] = (live["seconds_per_image"] / row["seconds_per_image"]
                                if live else None)
            print(f"{name:9s} {method:22s} vs reference best peer "
                  f"{row['vs_reference_best_peer']:.2f}x" +
                  (f", vs Captum (this run) {row['vs_captum']:.2f}x" if live else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
