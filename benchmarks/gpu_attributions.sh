#!/usr/bin/env bash
# GPU check of the attribution suite (under 5 minutes on an H100/H200): every method at its
# paper defaults on EfficientNet-Lite0 224x224, 4 images per call, batch_size 256.
# Usage: bash benchmarks/gpu_attributions.sh OUT_DIR      (fails loudly without a GPU)
set -uo pipefail
out=${1:-.}
python3 - <<'PY' || { echo "no GPU visible to JAX" >&2; exit 1; }
import jax
assert jax.devices()[0].platform == "gpu", jax.devices()
PY
python3 benchmarks/attributions.py --model efficientnet_lite0 --n 4 --batch-size 256 \
  --repeats 1 --json "$out/gpu_attributions_lite0.json"
