#!/usr/bin/env bash
# GPU check of a Lens build (about 3 minutes on a GPU): the per-class time of make demo's
# ImageNet atlas (EfficientNet-Lite0 over crops of the bundled photos, benchmarks/lens.py's
# settings), phase by phase, so that the README can state the time for 1000 classes on one GPU.
# Fails loudly without a GPU. Usage: bash benchmarks/gpu_lens.sh OUT_DIR
# Then copy OUT_DIR/lens_lite0_gpu.json to benchmarks/results/ and run benchmarks/report.py.
set -uo pipefail
out=${1:-.}
python3 - <<'PY' || { echo "no GPU visible to JAX" >&2; exit 1; }
import jax
assert jax.devices()[0].platform == "gpu", jax.devices()
print(jax.devices()[0].device_kind, "jax", jax.__version__)
PY
python3 benchmarks/lens.py --json "$out/lens_lite0_gpu.json"
