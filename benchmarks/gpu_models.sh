#!/usr/bin/env bash
# One short GPU check (under 5 minutes): zoo throughput in float32 and bfloat16, then the
# EfficientNet-Lite0 parity/classification tests on the GPU. Fails loudly without a GPU.
# Usage: bash benchmarks/gpu_models.sh OUT_DIR
set -uo pipefail
out=${1:-.}
python3 - <<'PY' || { echo "no GPU visible to JAX" >&2; exit 1; }
import jax
assert jax.devices()[0].platform == "gpu", jax.devices()
print(jax.devices()[0].device_kind, "jax", jax.__version__)
PY
[ -n "${SKIP_F32:-}" ] || python3 benchmarks/models.py --models small_cnn --batch-sizes 256,4096 --repeats 10 \
  --json "$out/gpu_small_f32.json"
[ -n "${SKIP_F32:-}" ] || python3 benchmarks/models.py --models efficientnet_lite0,resnet18,resnet50,vit_tiny \
  --batch-sizes 1,64 --repeats 10 --json "$out/gpu_f32.json"
python3 benchmarks/models.py --models efficientnet_lite0,resnet18,resnet50,vit_tiny \
  --batch-sizes 64 --precision bfloat16 --repeats 10 --json "$out/gpu_bf16.json"
python3 -m pytest -p no:cacheprovider -q tests/models/test_efficientnet.py -o addopts="" 2>&1 | tail -15
