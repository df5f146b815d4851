"""Image stems: the input gradient of a strided convolution over three channels, XLA's own
against :func:`xjax.models._layers.strided_conv` (space to depth), per stem shape and on
ResNet-18.

    python benchmarks/stem_conv.py --json benchmarks/results/stem_conv_cpu.json

Per stem shape (batch 8 and 1): forward and input-gradient milliseconds of the plain strided
convolution and of ``strided_conv``. Then ResNet-18 at 224 px, forward+backward (the gradient
of one logit with respect to the input) per image at batch 1, 8 and 25, with the stem as
shipped and with the option off on the same module ("plain"). Compilation excluded (one
untimed call); best of 3.
"""

import argparse
import json

import jax
from _common import provenance, timed
from flax import nnx
from jax import lax

from xjax.models._bridge import from_nnx
from xjax.models._layers import strided_conv
from xjax.models._resnet import BasicBlock, ResNet

# (input side, channels in, channels out, kernel, stride, padding): ResNet's stem,
# EfficientNet-Lite's, a 5x5 one
SHAPES = [(224, 3, 64, 7, 2, 3), (224, 3, 32, 3, 2, 1), (224, 3, 16, 5, 2, 2)]


def best(fn, *args):
    return timed(fn, *args, repeats=3, reduce=min)


def plain(x, w, stride, padding):
    return lax.conv_general_dilated(x, w, (stride, stride), padding,
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


def shape_rows():
    rows = []
    for side, cin, cout, k, s, p in SHAPES:
        for batch in (8, 1):
            x = jax.random.uniform(jax.random.key(0), (batch, side, side, cin))
            w = jax.random.normal(jax.random.key(1), (k, k, cin, cout))
            pad = ((p, p), (p, p))
            row = {"side": side, "in": cin, "out": cout, "kernel": k, "stride": s, "batch": batch}
            for name, f in (("plain", plain), ("space_to_depth", strided_conv)):
                fwd = jax.jit(lambda a, kern, f=f, s=s, pad=pad: f(a, kern, s, pad))
                dx = jax.jit(jax.grad(lambda a, kern, f=f, s=s, pad=pad: f(a, kern, s, pad).sum()))
                row[f"{name}_forward_ms"] = 1e3 * best(fwd, x, w)
                row[f"{name}_input_grad_ms"] = 1e3 * best(dx, x, w)
            print(row, flush=True)
            rows.append(row)
    return rows


def resnet_rows():
    module = ResNet(BasicBlock, (2, 2, 2, 2), num_classes=1000, rngs=nnx.Rngs(0))
    module.eval()
    out = {}
    for name, on in (("space_to_depth", True), ("plain", False)):
        module.conv1.space_to_depth_gradient = on
        model_fn, params = from_nnx(module)
        g = jax.jit(jax.grad(lambda p, a, f=model_fn: f(p, a)[:, 0].sum(), argnums=1))
        for batch in (1, 8, 25):
            x = jax.random.uniform(jax.random.key(0), (batch, 224, 224, 3))
            out[f"{name}_b{batch}_ms_per_img"] = 1e3 * best(g, params, x) / batch
        print(name, out, flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    result = {**provenance(), "stems": shape_rows(), "resnet18": resnet_rows()}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
