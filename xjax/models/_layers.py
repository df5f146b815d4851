"""Small building blocks shared by the zoo: convolutions with explicit padding rules, pooling.

The zoo writes its own convolution so that padding follows the framework the weights came from
(TensorFlow's asymmetric SAME for EfficientNet-Lite, torchvision's symmetric ``k // 2`` for ResNet)
and is computed from the actual input size at call time.
"""

import functools
import math

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax
from jax.custom_derivatives import SymbolicZero
from jaxtyping import Array, Float


def tf_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow SAME padding for one axis: ``p = max((ceil(i/s) - 1) s + k - i, 0)``, extra at the end."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class Conv2d(nnx.Module):
    """2-D convolution, NHWC, HWIO kernel, with ``padding`` "tf_same", "valid" or an int (symmetric).

    Args:
      in_features, out_features: channel counts.
      kernel_size: side of the square kernel.
      stride: stride on both axes.
      padding: "tf_same" (TensorFlow's asymmetric SAME), "valid", or an int number of pixels.
      groups: feature groups (``groups == in_features == out_features`` is a depthwise
        convolution, computed by :func:`depthwise_conv`).
      use_bias: add a bias.
      space_to_depth_gradient: differentiate a strided convolution through
        :func:`strided_conv` (its input gradient as a stride-1 convolution of space-to-depth
        blocks; same values). For image stems, where XLA:CPU's own input gradient is slow.
      rngs: ``nnx.Rngs`` for the He-normal initialization.
    """

    def __init__(self, in_features: int, out_features: int, kernel_size: int, *, stride: int = 1,
                 padding: str | int = "tf_same", groups: int = 1, use_bias: bool = False,
                 space_to_depth_gradient: bool = False, rngs: nnx.Rngs):
        if in_features % groups or out_features % groups:
            raise ValueError(f"Conv2d: groups={groups} must divide in_features={in_features} "
                             f"and out_features={out_features}")
        fan_in = kernel_size * kernel_size * (in_features // groups)
        init = jax.nn.initializers.variance_scaling(2.0, "fan_in", "normal")
        shape = (kernel_size, kernel_size, in_features // groups, out_features)
        self.kernel = nnx.Param(init(rngs.params(), shape, jnp.float32))
        self.bias = nnx.Param(jnp.zeros((out_features,), jnp.float32)) if use_bias else None
        self.kernel_size, self.stride, self.padding, self.groups = kernel_size, stride, padding, groups
        self.space_to_depth_gradient = space_to_depth_gradient and stride > 1 and groups == 1
        del fan_in

    def __call__(self, x: Float[Array, "B H W C"]) -> Float[Array, "B h w F"]:
        k, s = self.kernel_size, self.stride
        if self.padding == "tf_same":
            pad = [tf_same_padding(x.shape[1], k, s), tf_same_padding(x.shape[2], k, s)]
        elif self.padding == "valid":
            pad = [(0, 0), (0, 0)]
        else:
            pad = [(int(self.padding), int(self.padding))] * 2
        if self.groups > 1 and self.groups == x.shape[-1] == self.kernel.shape[-1]:
            y = depthwise_conv(x, self.kernel[...], stride=s, padding=pad)
        elif self.space_to_depth_gradient:
            y = strided_conv(x, self.kernel[...], s, tuple(tuple(int(v) for v in p) for p in pad))
        else:
            y = lax.conv_general_dilated(
                x, self.kernel[...], window_strides=(s, s), padding=pad,
                dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=self.groups)
        if self.bias is not None:
            y = y + self.bias[...].reshape(1, 1, 1, -1)
        return y


def depthwise_conv(x: Float[Array, "B H W C"], kernel: Float[Array, "k k 1 C"], *, stride: int,
                   padding: list[tuple[int, int]]) -> Float[Array, "B h w C"]:
    """A depthwise convolution (one ``k x k`` filter per channel) as ``k^2`` strided slices of
    the padded input, each scaled by its filter tap, summed.

    Equal to ``lax.conv_general_dilated(..., feature_group_count=C)`` up to float summation
    order, and much faster where XLA lowers grouped convolutions poorly: XLA:CPU runs them
    several to tens of times slower than the slices, forward and backward, at every depthwise
    shape of EfficientNet-Lite0 (``benchmarks/layers.py``, results in
    ``benchmarks/results/layers_cpu.json`` and docs/benchmarks.md). The gradient is pads and
    multiplies, and the bound transforms see slices, products with constants and sums (exact
    linear rules).

    Args:
      x: ``f32[B, H, W, C]``.
      kernel: ``f32[k, k, 1, C]`` (HWIO with one input channel per group).
      stride: on both axes.
      padding: ``[(top, bottom), (left, right)]`` pixels.

    The work is one ``jax.jit`` call named ``depthwise_conv_slices`` (inlined by XLA), so that
    ``xjax.bounds`` can bound it as the one grouped convolution it equals instead of 3k^2
    equations (its call-rule table, ``xjax.bounds._ibp.CALL_RULES``).
    """
    return depthwise_conv_slices(x, kernel, stride=int(stride),
                                 padding=tuple((int(a), int(b)) for a, b in padding))


@functools.partial(jax.jit, static_argnames=("stride", "padding"))
def depthwise_conv_slices(x, kernel, *, stride: int, padding: tuple):
    """The body of :func:`depthwise_conv` (hashable ``padding``)."""
    k = kernel.shape[0]
    (pt, pb), (pl, pr) = padding
    out_h = (x.shape[1] + pt + pb - k) // stride + 1
    out_w = (x.shape[2] + pl + pr - k) // stride + 1
    xp = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    taps = _window_slices(xp, k, stride, out_h, out_w)           # row-major (i, j)
    w = kernel.reshape(k * k, 1, 1, 1, kernel.shape[-1])          # tap t = (t // k, t % k)
    y = taps[0] * w[0]
    for tap, wt in zip(taps[1:], w[1:], strict=True):
        y = y + tap * wt
    return y


_NHWC = ("NHWC", "HWIO", "NHWC")


def space_to_depth_conv(x: Float[Array, "B H W C"], kernel: Float[Array, "k k C F"], *,
                        stride: int, padding) -> Float[Array, "B h w F"]:
    """A strided convolution computed as a stride-1 one: the padded input cut into
    ``stride x stride`` blocks stacked on the channels (space to depth), the kernel padded with
    zeros to a multiple of the stride and cut the same way. Same values as
    ``lax.conv_general_dilated(x, kernel, (stride, stride), padding)`` up to float rounding.

    ``padding``: ``((top, bottom), (left, right))`` pixels.
    """
    b, h, w, c = x.shape
    k1, k2, _, f = kernel.shape
    s = stride
    (pt, pb), (pl, pr) = padding
    oh, ow = (h + pt + pb - k1) // s + 1, (w + pl + pr - k2) // s + 1
    mh, mw = -(-k1 // s), -(-k2 // s)                      # kernel side in blocks
    lh, lw = s * (oh + mh - 1), s * (ow + mw - 1)          # input rows and columns read
    x = lax.pad(x, jnp.zeros((), x.dtype),
                ((0, 0, 0), (pt, lh - h - pt, 0), (pl, lw - w - pl, 0), (0, 0, 0)))
    x = x.reshape(b, lh // s, s, lw // s, s, c).transpose(0, 1, 3, 2, 4, 5)
    kernel = jnp.pad(kernel, ((0, s * mh - k1), (0, s * mw - k2), (0, 0), (0, 0)))
    kernel = kernel.reshape(mh, s, mw, s, c, f).transpose(0, 2, 1, 3, 4, 5)
    return lax.conv_general_dilated(x.reshape(b, lh // s, lw // s, s * s * c),
                                    kernel.reshape(mh, mw, s * s * c, f), (1, 1), "VALID",
                                    dimension_numbers=_NHWC)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def strided_conv(x: Float[Array, "B H W C"], kernel: Float[Array, "k k C F"], stride: int,
                 padding: tuple) -> Float[Array, "B h w F"]:
    """``lax.conv_general_dilated(x, kernel, (stride, stride), padding)``, NHWC / HWIO, whose
    derivative in ``x`` goes through :func:`space_to_depth_conv`.

    Forward it is the plain strided convolution. Its JVP in ``x`` is the space-to-depth form
    (the same linear map), which reverse mode transposes into a stride-1 convolution, a reshape
    and a transpose: on XLA:CPU the input gradient of ResNet's 7x7, stride-2 stem over three
    channels runs several times faster that way than as XLA's own input-dilated convolution
    (``benchmarks/stem_conv.py``). The JVP in ``kernel`` is the plain convolution. Gradients
    equal the plain convolution's up to float rounding; forward mode and higher derivatives
    work, and the bound transforms see the plain convolution.
    """
    return lax.conv_general_dilated(x, kernel, (stride, stride), padding,
                                    dimension_numbers=_NHWC)


def _strided_conv_jvp(stride, padding, primals, tangents):
    (x, kernel), (tx, tk) = primals, tangents
    y = strided_conv(x, kernel, stride, padding)
    terms = ([] if isinstance(tx, SymbolicZero) else
             [space_to_depth_conv(tx, kernel, stride=stride, padding=padding)])
    terms += [] if isinstance(tk, SymbolicZero) else [strided_conv(x, tk, stride, padding)]
    return y, sum(terms[1:], terms[0])         # at least one tangent is not a symbolic zero


strided_conv.defjvp(_strided_conv_jvp, symbolic_zeros=True)


def batch_norm(features: int, *, epsilon: float = 1e-5, rngs: nnx.Rngs) -> nnx.BatchNorm:
    """Batch norm in inference form by default (running averages); ``module.train()`` switches it."""
    return nnx.BatchNorm(features, use_running_average=True, epsilon=epsilon, momentum=0.9,
                         rngs=rngs)


def max_pool(x: Float[Array, "B H W C"], window: int, stride: int | None = None,
             padding: int = 0) -> Float[Array, "B h w C"]:
    """Max pooling whose gradient is fast on every backend.

    Non-overlapping windows are a reshape and a max. Other windows (ResNet's 3x3, stride 2) are
    ``reduce_window`` forward with a custom JVP: the tangent of each output is the tangent of
    the first maximal element of its window (row-major), gathered by ``window^2`` strided
    slices. Reverse mode transposes those slices into pads, so no select-and-scatter is ever
    emitted (XLA:CPU runs select-and-scatter as a slow scalar loop; the reshape form made a small
    CNN's forward+backward 1.65x faster). Gradients equal ``reduce_window``'s, forward mode and
    double backpropagation work, and the bound transforms see a plain ``reduce_window``.
    """
    stride = window if stride is None else stride
    b, h, w, c = x.shape
    if stride == window and padding == 0 and h % window == 0 and w % window == 0:
        return x.reshape(b, h // window, window, w // window, window, c).max(axis=(2, 4))
    return _max_pool_windows(x, window, stride, padding)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3))
def _max_pool_windows(x, window, stride, padding):
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, window, window, 1), (1, stride, stride, 1),
                             [(0, 0), (padding, padding), (padding, padding), (0, 0)])


def _window_slices(a, window, stride, out_h, out_w):
    """The ``window^2`` strided views ``a[:, i::stride, j::stride]`` of the padded input."""
    b, _, _, c = a.shape
    return [lax.slice(a, (0, i, j, 0), (b, i + (out_h - 1) * stride + 1,
                                        j + (out_w - 1) * stride + 1, c), (1, stride, stride, 1))
            for i in range(window) for j in range(window)]


@_max_pool_windows.defjvp
def _max_pool_jvp(window, stride, padding, primals, tangents):
    (x,), (t,) = primals, tangents
    out = _max_pool_windows(x, window, stride, padding)
    pad = ((0, 0), (padding, padding), (padding, padding), (0, 0))
    _, out_h, out_w, _ = out.shape
    xs = _window_slices(jnp.pad(x, pad, constant_values=-jnp.inf), window, stride, out_h, out_w)
    ts = _window_slices(jnp.pad(t, pad), window, stride, out_h, out_w)
    taken = jnp.zeros(out.shape, bool)
    t_out = jnp.zeros(out.shape, t.dtype)
    for xk, tk in zip(xs, ts, strict=True):
        first = (xk == out) & ~taken                      # the first maximum of each window
        t_out = t_out + jnp.where(first, tk, jnp.zeros((), t.dtype))
        taken = taken | first
    return out, t_out
