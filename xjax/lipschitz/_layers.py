"""1-Lipschitz layers in Flax nnx, the power-iteration state update, and the export to plain
Dense/Conv layers.

Every layer stores a raw, freely trained kernel and builds its constrained kernel in the forward
pass (spectral normalization by warm-started power iteration, then Björck orthonormalization),
so any optimizer can train it. The power-iteration vector ``u`` is an ``nnx`` variable of type
:class:`PowerIterate`: it gets no gradient, and :func:`power_update` (a pure
``params -> params`` function, run after every optimizer step by ``xjax.train.fit(...,
post_update=...)``) carries it from one step to the next, as deel-lip does.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

from xjax._internal.validate import check_positive_int
from xjax.lipschitz._normalizers import (
    bjorck,
    conv_lipschitz_factor,
    frobenius_normalize,
    power_iteration,
    spectral_norm_bound,
    spectral_normalize,
)

__all__ = ["FrobeniusDense", "FullSort", "GroupSort", "GroupSort2", "InvertibleDownSampling",
           "L2NormPool", "OrthogonalConv", "PowerIterate", "ScaledGlobalL2NormPool",
           "SpectralConv", "SpectralDense", "export", "full_sort", "group_sort", "group_sort2",
           "invertible_downsampling", "l2_norm_pool", "power_update", "scaled_global_l2_norm_pool"]

_DN = ("NHWC", "HWIO", "NHWC")


class PowerIterate(nnx.Variable):
    """The warm-started power-iteration vector of a spectrally normalized layer (no gradient)."""


def _pair(v, name, where):
    v = (v, v) if isinstance(v, int) else tuple(v)
    if len(v) != 2 or any(isinstance(a, bool) or not isinstance(a, int) or a < 1 for a in v):
        raise ValueError(f"{where}: {name} must be a positive int or a pair of them, got {v}")
    return v


def _check_normalization(where, n_power, n_bjorck, beta):
    check_positive_int(n_power, "n_power", where=where)
    if n_bjorck is not None:
        check_positive_int(n_bjorck, "n_bjorck", where=where)
    if not 0.0 < beta <= 0.5:
        raise ValueError(f"{where}: beta must be in (0, 0.5], got {beta}")


def _dense(layer, x):
    """``x @ W + b`` with the layer's constrained matrix."""
    name = type(layer).__name__
    if not hasattr(x, "shape") or len(x.shape) < 1 or x.shape[-1] != layer.in_features:
        raise ValueError(f"{name}: x must have {layer.in_features} features in its last axis "
                         f"(in_features), got shape {getattr(x, 'shape', type(x).__name__)}")
    y = x @ layer.weight_matrix()
    if layer.bias is None:
        return y
    return y + layer.bias.get_value().reshape((1,) * (y.ndim - 1) + (-1,))


def _export_dense(layer) -> nnx.Linear:
    """A plain ``nnx.Linear`` holding the layer's constrained matrix and bias."""
    out = nnx.Linear(layer.in_features, layer.out_features, use_bias=layer.bias is not None,
                     rngs=nnx.Rngs(0))
    out.kernel.set_value(layer.weight_matrix())
    if layer.bias is not None:
        out.bias.set_value(layer.bias.get_value())
    return out


class _Spectral(nnx.Module):
    """Shared by SpectralDense and SpectralConv: the reshaped kernel ``[n_in, n_out]``."""

    n_power: int
    n_bjorck: int | None
    beta: float

    def _matrix(self) -> Float[Array, "n m"]:
        k = self.kernel.get_value()
        return k.reshape(-1, k.shape[-1])

    def weight_matrix(self) -> Float[Array, "n m"]:
        """The constrained reshaped kernel: orthonormal after Björck; without Björck, divided
        by a sound upper bound of its spectral norm (:func:`spectral_norm_bound`), so its norm
        is at most 1 (the power-iteration estimate approaches the norm from below: dividing by
        it measured up to 1.107 on a random 256x256 kernel)."""
        if self.n_bjorck is None:
            m = self._matrix()
            return m / spectral_norm_bound(m)
        w, _ = spectral_normalize(self._matrix(), self.u.get_value(), steps=self.n_power)
        return bjorck(w, steps=self.n_bjorck, beta=self.beta)

    def refresh(self) -> None:
        """Advance the power iteration on the current kernel (what :func:`power_update` runs)."""
        _, u = power_iteration(self._matrix(), self.u.get_value(), steps=self.n_power)
        self.u.set_value(u)


class SpectralDense(_Spectral):
    r"""Dense layer with a 1-Lipschitz kernel: power iteration + Björck (gradient-norm preserving
    when orthonormal), :math:`y = x \bar W + b`.

    Args:
      in_features, out_features: sizes.
      n_power: power iterations per call, warm-started (3).
      n_bjorck: Björck iterations (15, deel-lip); ``None`` skips Björck: the kernel is then
        divided by a sound upper bound of its spectral norm (:func:`spectral_norm_bound`, at
        most 0.6% above the norm), so the layer is at most 1-Lipschitz, not norm preserving.
      beta: Björck step (0.5).

    References:
      M. Serrurier et al., "Achieving robustness in classification using optimal transport with
      hinge regularization", CVPR 2021 (deel-lip); C. Anil, J. Lucas, R. Grosse, "Sorting out
      Lipschitz function approximation", ICML 2019.
    """

    def __init__(self, in_features: int, out_features: int, *, n_power: int = 3,
                 n_bjorck: int | None = 15, beta: float = 0.5, use_bias: bool = True,
                 rngs: nnx.Rngs):
        _check_normalization("SpectralDense", n_power, n_bjorck, beta)
        check_positive_int(in_features, "in_features", where="SpectralDense")
        check_positive_int(out_features, "out_features", where="SpectralDense")
        self.in_features, self.out_features = in_features, out_features
        self.n_power, self.n_bjorck, self.beta = n_power, n_bjorck, beta
        self.kernel = nnx.Param(nnx.initializers.orthogonal()(rngs.params(),
                                                              (in_features, out_features)))
        self.bias = nnx.Param(jnp.zeros((out_features,))) if use_bias else None
        self.u = PowerIterate(jax.random.normal(rngs.params(), (out_features,)))

    def __call__(self, x: Float[Array, "... n"]) -> Float[Array, "... m"]:
        return _dense(self, x)

    def export(self) -> nnx.Linear:
        return _export_dense(self)


class FrobeniusDense(nnx.Module):
    r"""Dense layer normalized by Frobenius norms: with ``disjoint_neurons`` (default) every
    output column has norm 1, so each output is 1-Lipschitz on its own (certificates then use
    ``disjoint=True``); else :math:`W / \|W\|_F`."""

    def __init__(self, in_features: int, out_features: int, *, disjoint_neurons: bool = True,
                 use_bias: bool = True, rngs: nnx.Rngs):
        check_positive_int(in_features, "in_features", where="FrobeniusDense")
        check_positive_int(out_features, "out_features", where="FrobeniusDense")
        self.in_features, self.out_features = in_features, out_features
        self.disjoint_neurons = disjoint_neurons
        self.kernel = nnx.Param(nnx.initializers.lecun_normal()(rngs.params(),
                                                               (in_features, out_features)))
        self.bias = nnx.Param(jnp.zeros((out_features,))) if use_bias else None

    def weight_matrix(self):
        return frobenius_normalize(self.kernel.get_value(), disjoint_neurons=self.disjoint_neurons)

    def __call__(self, x):
        return _dense(self, x)

    def export(self) -> nnx.Linear:
        return _export_dense(self)


class SpectralConv(_Spectral):
    r"""Convolution with a 1-Lipschitz operator: the reshaped kernel
    :math:`\tilde K \in \mathbb{R}^{k_h k_w c_{in} \times c_{out}}` is spectrally normalized and
    Björck-orthonormalized ("RKO"), then scaled by :func:`conv_lipschitz_factor` (the strict
    bound :math:`1/\sqrt{\lceil k_h/s_h \rceil \lceil k_w/s_w \rceil}`). Zero padding (``"SAME"``
    or ``"VALID"``) never increases the norm.

    Args:
      in_features, out_features: channels; kernel_size: (3, 3); strides: 1; padding: ``"SAME"``.
      n_power, n_bjorck, beta: as :class:`SpectralDense`.
    """

    def __init__(self, in_features: int, out_features: int, kernel_size=(3, 3), strides=1, *,
                 padding: str = "SAME", n_power: int = 3, n_bjorck: int | None = 15,
                 beta: float = 0.5, use_bias: bool = True, rngs: nnx.Rngs):
        where = "SpectralConv"
        _check_normalization(where, n_power, n_bjorck, beta)
        self.kernel_size = _pair(kernel_size, "kernel_size", where)
        self.strides = _pair(strides, "strides", where)
        if padding not in ("SAME", "VALID"):
            raise ValueError(f"{where}: padding must be 'SAME' or 'VALID' (zero padding), got "
                             f"{padding!r}")
        kh, kw = self.kernel_size
        check_positive_int(in_features, "in_features", where=where)
        check_positive_int(out_features, "out_features", where=where)
        self.in_features, self.out_features, self.padding = in_features, out_features, padding
        self.n_power, self.n_bjorck, self.beta = n_power, n_bjorck, beta
        self.factor = conv_lipschitz_factor(self.kernel_size, self.strides)
        flat = nnx.initializers.orthogonal()(rngs.params(), (kh * kw * in_features, out_features))
        self.kernel = nnx.Param(flat.reshape(kh, kw, in_features, out_features))
        self.bias = nnx.Param(jnp.zeros((out_features,))) if use_bias else None
        self.u = PowerIterate(jax.random.normal(rngs.params(), (out_features,)))

    def conv_kernel(self) -> Float[Array, "kh kw ci co"]:
        return (self.weight_matrix() * self.factor).reshape(self.kernel.get_value().shape)

    def __call__(self, x: Float[Array, "B H W C"]) -> Float[Array, "B h w D"]:
        if not hasattr(x, "shape") or len(x.shape) != 4 or x.shape[-1] != self.in_features:
            raise ValueError(f"SpectralConv: x must be [B, H, W, {self.in_features}] "
                             f"(in_features channels last), got shape "
                             f"{getattr(x, 'shape', type(x).__name__)}")
        y = jax.lax.conv_general_dilated(x, self.conv_kernel(), self.strides, self.padding,
                                         dimension_numbers=_DN)
        return y if self.bias is None else y + self.bias.get_value().reshape(1, 1, 1, -1)

    def export(self) -> nnx.Conv:
        out = nnx.Conv(self.in_features, self.out_features, self.kernel_size, self.strides,
                       padding=self.padding, use_bias=self.bias is not None, rngs=nnx.Rngs(0))
        out.kernel.set_value(self.conv_kernel())
        if self.bias is not None:
            out.bias.set_value(self.bias.get_value())
        return out


class OrthogonalConv(nnx.Module):
    r"""Orthogonal convolution by the Cayley transform in the Fourier domain (Trockman & Kolter,
    ICLR 2021): stride 1, circular padding, ``channels -> channels``.

    With :math:`\hat K[f] \in \mathbb{C}^{c \times c}` the DFT of the (zero-padded) kernel at
    frequency f, :math:`A = \hat K - \hat K^H` is skew-Hermitian and
    :math:`Q[f] = (I + A)^{-1}(I - A)` unitary, so :math:`y = \mathcal{F}^{-1}(Q\, \mathcal{F} x)`
    is an exactly orthogonal (norm-preserving, gradient-norm-preserving) linear map of the whole
    image; :math:`Q[-f] = \overline{Q[f]}` keeps it real. The operator is a circular convolution
    with an ``H x W`` kernel, which :meth:`export` writes into a plain ``nnx.Conv``
    (``padding="CIRCULAR"``).

    Args:
      channels: input = output channels.
      input_size: (H, W) of the images it will see (the Fourier grid).
      kernel_size: support of the trained kernel (3, 3).

    References:
      A. Trockman, J. Z. Kolter, "Orthogonalizing Convolutional Layers with the Cayley
      Transform", ICLR 2021, arXiv:2104.07167.
    """

    def __init__(self, channels: int, *, input_size, kernel_size=(3, 3), use_bias: bool = True,
                 rngs: nnx.Rngs):
        where = "OrthogonalConv"
        check_positive_int(channels, "channels", where=where)
        self.input_size = _pair(input_size, "input_size", where)
        self.kernel_size = _pair(kernel_size, "kernel_size", where)
        if any(k > n for k, n in zip(self.kernel_size, self.input_size, strict=True)):
            raise ValueError(f"{where}: kernel_size {self.kernel_size} larger than input_size "
                             f"{self.input_size}")
        self.channels = channels
        kh, kw = self.kernel_size
        self.kernel = nnx.Param(0.1 * jax.random.normal(rngs.params(), (kh, kw, channels,
                                                                        channels)))
        self.bias = nnx.Param(jnp.zeros((channels,))) if use_bias else None

    def frequency_response(self) -> Array:
        """``c64[H, W, c_out, c_in]``: the unitary matrix Q at every frequency."""
        h, w = self.input_size
        kh, kw = self.kernel_size
        k = jnp.pad(self.kernel.get_value(), ((0, h - kh), (0, w - kw), (0, 0), (0, 0)))
        khat = jnp.fft.fft2(k, axes=(0, 1)).transpose(0, 1, 3, 2)         # [H, W, out, in]
        a = khat - jnp.conj(khat.swapaxes(-1, -2))
        eye = jnp.eye(self.channels, dtype=a.dtype)[None, None]
        return jnp.linalg.solve(eye + a, eye - a)

    def _linear(self, x):
        if tuple(x.shape[1:3]) != self.input_size:
            raise ValueError(f"OrthogonalConv: built for input_size {self.input_size}, got images "
                             f"of shape {tuple(x.shape)}")
        xf = jnp.fft.fft2(x.astype(jnp.complex64), axes=(1, 2))
        yf = jnp.einsum("hwoi,bhwi->bhwo", self.frequency_response(), xf)
        return jnp.real(jnp.fft.ifft2(yf, axes=(1, 2))).astype(x.dtype)

    def __call__(self, x: Float[Array, "B H W C"]) -> Float[Array, "B H W C"]:
        y = self._linear(x)
        return y if self.bias is None else y + self.bias.get_value().reshape(1, 1, 1, -1)

    def conv_kernel(self) -> Float[Array, "H W C C"]:
        """The equivalent cross-correlation kernel for a circularly padded ``H x W`` convolution
        (pad before = ``(H - 1) // 2``, as Flax's ``"CIRCULAR"``): ``K[m] = q[(p - m) mod N]``
        with ``q`` the inverse DFT of Q."""
        h, w = self.input_size
        q = jnp.real(jnp.fft.ifft2(self.frequency_response(), axes=(0, 1)))   # [H, W, out, in]
        rows = (jnp.arange(h)[::-1] + (h - 1) // 2 + 1) % h
        cols = (jnp.arange(w)[::-1] + (w - 1) // 2 + 1) % w
        return q[rows][:, cols].transpose(0, 1, 3, 2)

    def export(self) -> nnx.Conv:
        out = nnx.Conv(self.channels, self.channels, self.input_size, padding="CIRCULAR",
                       use_bias=self.bias is not None, rngs=nnx.Rngs(0))
        out.kernel.set_value(self.conv_kernel())
        if self.bias is not None:
            out.bias.set_value(self.bias.get_value())
        return out


# ---- activations and pooling (1-Lipschitz, parameter free) ------------------------------------

def group_sort(x: Float[Array, "... C"], group_size: int) -> Float[Array, "... C"]:
    """Sort consecutive groups of ``group_size`` channels ascending (Anil et al., 2019)."""
    c = x.shape[-1]
    if c % group_size:
        raise ValueError(f"group_sort: group_size={group_size} must divide the {c} channels")
    return jnp.sort(x.reshape(x.shape[:-1] + (c // group_size, group_size)), axis=-1
                    ).reshape(x.shape)


def group_sort2(x: Float[Array, "... C"]) -> Float[Array, "... C"]:
    """GroupSort with groups of 2, as ``min``/``max`` of channel pairs (2i, 2i + 1)."""
    c = x.shape[-1]
    if c % 2:
        raise ValueError(f"group_sort2: needs an even number of channels, got {c}")
    pairs = x.reshape(x.shape[:-1] + (c // 2, 2))
    a, b = pairs[..., 0], pairs[..., 1]
    return jnp.stack([jnp.minimum(a, b), jnp.maximum(a, b)], axis=-1).reshape(x.shape)


def full_sort(x: Float[Array, "... C"]) -> Float[Array, "... C"]:
    """Sort all channels (GroupSort with one group)."""
    return jnp.sort(x, axis=-1)


@jax.custom_jvp
def _sqrt(s):
    return jnp.sqrt(s)


@_sqrt.defjvp
def _sqrt_jvp(primals, tangents):
    (s,), (ds,) = primals, tangents
    r = jnp.sqrt(s)
    return r, ds / (2.0 * (r + 1e-6))          # finite at 0 (deel-lip's L2 pooling gradient)


def l2_norm_pool(x: Float[Array, "B H W C"], window=(2, 2)) -> Float[Array, "B h w C"]:
    r"""Euclidean norm of each non-overlapping window, per channel:
    :math:`\sqrt{\sum_{window} x^2}` (deel-lip's ``ScaledL2NormPooling2D``); 1-Lipschitz and
    gradient-norm preserving."""
    wh, ww = _pair(window, "window", "l2_norm_pool")
    s = jax.lax.reduce_window(x * x, 0.0, jax.lax.add, (1, wh, ww, 1), (1, wh, ww, 1), "VALID")
    return _sqrt(s)


def scaled_global_l2_norm_pool(x: Float[Array, "B H W C"]) -> Float[Array, "B C"]:
    r""":math:`\sqrt{\sum_{h w} x_{hwc}^2}` per channel (1-Lipschitz, gradient-norm preserving)."""
    return _sqrt(jnp.sum(x * x, axis=(1, 2)))


def invertible_downsampling(x: Float[Array, "B H W C"], pool=2) -> Float[Array, "B h w D"]:
    """Space to depth: ``(H, W, C) -> (H/p, W/p, p p C)``, a permutation (Anil et al., 2019)."""
    ph, pw = _pair(pool, "pool", "invertible_downsampling")
    b, h, w, c = x.shape
    if h % ph or w % pw:
        raise ValueError(f"invertible_downsampling: pool {(ph, pw)} must divide the image size "
                         f"{(h, w)}")
    return x.reshape(b, h // ph, ph, w // pw, pw, c).transpose(0, 1, 3, 2, 4, 5).reshape(
        b, h // ph, w // pw, ph * pw * c)


class GroupSort2(nnx.Module):
    def __call__(self, x):
        return group_sort2(x)


class GroupSort(nnx.Module):
    def __init__(self, group_size: int):
        self.group_size = check_positive_int(group_size, "group_size", where="GroupSort")

    def __call__(self, x):
        return group_sort(x, self.group_size)


class FullSort(nnx.Module):
    def __call__(self, x):
        return full_sort(x)


class L2NormPool(nnx.Module):
    def __init__(self, window=(2, 2)):
        self.window = _pair(window, "window", "L2NormPool")

    def __call__(self, x):
        return l2_norm_pool(x, self.window)


class ScaledGlobalL2NormPool(nnx.Module):
    def __call__(self, x):
        return scaled_global_l2_norm_pool(x)


class InvertibleDownSampling(nnx.Module):
    def __init__(self, pool=2):
        self.pool = _pair(pool, "pool", "InvertibleDownSampling")

    def __call__(self, x):
        return invertible_downsampling(x, self.pool)


# ---- state update and export ------------------------------------------------------------------

def _lipschitz_layers(module):
    return [m for _, m in nnx.iter_graph(module) if isinstance(m, _Spectral)]


def power_update(module: nnx.Module) -> Callable:
    """``update(params) -> params``: one power-iteration advance of every spectrally normalized
    layer of ``module`` on the current kernels, for the ``params`` pytree of
    :func:`xjax.models.from_nnx` (pure; pass it to ``xjax.train.fit(post_update=...)``)."""
    graphdef, _ = nnx.split(module)

    def update(params):
        m = nnx.merge(graphdef, params)
        for layer in _lipschitz_layers(m):
            layer.refresh()
        return nnx.split(m)[1]

    return update


def _replace(node):
    if isinstance(node, (_Spectral, FrobeniusDense, OrthogonalConv)):
        return node.export()
    if isinstance(node, nnx.Module):
        for name, value in list(vars(node).items()):
            new = _replace(value)
            if new is not value:
                setattr(node, name, new)
        return node
    if isinstance(node, (list, nnx.List)):
        for i, value in enumerate(node):
            new = _replace(value)
            if new is not value:
                node[i] = new
        return node
    if isinstance(node, tuple):
        items = [_replace(v) for v in node]
        return node if all(a is b for a, b in zip(items, node, strict=True)) else type(node)(items)
    if isinstance(node, dict):
        for k, value in list(node.items()):
            node[k] = _replace(value)
        return node
    return node


def export(module: nnx.Module) -> nnx.Module:
    """A copy of ``module`` in which every Lipschitz layer is replaced by the plain ``nnx.Linear``
    / ``nnx.Conv`` holding its constrained weights (materialized once), so the result is an
    ordinary network: no power iteration, no Björck, nothing to carry; it runs through
    ``xjax.bounds`` and every explainer. Outputs equal the training-time module's."""
    return _replace(nnx.clone(module))
