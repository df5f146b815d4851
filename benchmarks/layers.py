"""Depthwise convolutions on this backend: the grouped convolution against the slices form of
``xjax.models._layers.depthwise_conv``, per layer shape and on EfficientNet-Lite0.

    python benchmarks/layers.py --json benchmarks/results/layers_cpu.json

Per EfficientNet-Lite0 depthwise shape (batch 8): forward and input-gradient milliseconds of
``lax.conv_general_dilated(..., feature_group_count=C)`` and of the slices. Then the whole
model at batch 8, forward and forward+backward (gradient of one logit with respect to the
input), with the zoo's layer as shipped (slices) and with the grouped convolution put back in
the same process ("before"). Compilation excluded (one untimed call); best of 3.
"""

import argparse
import json

import jax
from _common import provenance, timed
from jax import lax

import xjax
from xjax.models import _layers

# (channels, input side, kernel, stride) of EfficientNet-Lite0's depthwise convolutions at 224 px
SHAPES = [(32, 112, 3, 1), (96, 112, 3, 2), (144, 56, 3, 1), (144, 56, 5, 2), (240, 28, 5, 1),
          (240, 28, 3, 2), (480, 14, 3, 1), (480, 14, 5, 1), (672, 14, 5, 2), (1152, 7, 5, 1),
          (1152, 7, 3, 1)]


def best(fn, *args):
    return timed(fn, *args, repeats=3, reduce=min)


def grouped(x, kernel, *, stride, padding):
    return lax.conv_general_dilated(x, kernel, (stride, stride), padding,
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                    feature_group_count=x.shape[-1])


def layer_rows(batch):
    rows = []
    for c, side, k, s in SHAPES:
        x = jax.random.normal(jax.random.key(0), (batch, side, side, c))
        w = jax.random.normal(jax.random.key(1), (k, k, 1, c))
        pad = [_layers.tf_same_padding(side, k, s)] * 2
        row = {"channels": c, "side": side, "kernel": k, "stride": s}
        for name, f in (("grouped", grouped), ("slices", _layers.depthwise_conv)):
            fwd = jax.jit(lambda a, kern, f=f, s=s, pad=pad: f(a, kern, stride=s, padding=pad))
            dx = jax.jit(jax.grad(lambda a, kern, f=f, s=s, pad=pad: f(a, kern, stride=s, padding=pad).sum()))
            row[f"{name}_forward_ms"] = 1e3 * best(fwd, x, w)
            row[f"{name}_input_grad_ms"] = 1e3 * best(dx, x, w)
        print(row, flush=True)
        rows.append(row)
    return rows


def model_rows(batch):
    m = xjax.models.efficientnet_lite0()
    x = jax.random.uniform(jax.random.key(0), (batch,) + tuple(m.input_shape))
    out, shipped = {}, _layers.depthwise_conv
    try:
        for name, f in (("slices", shipped), ("grouped", grouped)):
            _layers.depthwise_conv = f              # the zoo's Conv2d looks it up at call time
            fwd = jax.jit(lambda p, v: m.model_fn(p, v))     # new functions: traced again
            grad = jax.jit(jax.grad(lambda p, v: m.model_fn(p, v)[:, 0].sum(), argnums=1))
            out[name] = {"forward_img_s": batch / best(fwd, m.params, x),
                         "forward_backward_img_s": batch / best(grad, m.params, x)}
            print(name, out[name], flush=True)
    finally:
        _layers.depthwise_conv = shipped
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    result = {**provenance(), "batch": args.batch, "layers": layer_rows(args.batch),
              "efficientnet_lite0": model_rows(args.batch)}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
