r"""Image parameterizations for feature visualization: Fourier (Lucid) and MACO.

``fourier``: a learned complex spectrum ``S`` (real and imaginary parts ~ N(0, std^2)) scaled
by :math:`\sqrt{HW} / \max(f, 1/\max(H, W))^{d}` (1/f whitening), inverse real FFT, divided by
4 (Lucid's constant), colour recorrelation and a sigmoid into ``values_range``.

``maco``: the magnitude ``r`` is fixed (a natural-image average) and only the phase is learned:
:math:`\tilde\varphi = (\varphi - \bar\varphi) / (\sigma_\varphi + \epsilon)`,
:math:`x_0 = \mathcal F^{-1}(r e^{i\tilde\varphi})`, ``x_1`` = ``x_0`` standardized over all
pixels and channels, then colour recorrelation and a sigmoid into ``values_range``.

References:
  C. Olah, A. Mordvintsev, L. Schubert, "Feature Visualization", Distill 2017.
  T. Fel et al., "Unlocking Feature Visualization for Deeper Networks with MAgnitude
  Constrained Optimization", NeurIPS 2023.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from xjax.featviz._spectrum import COLOR_CORRELATION, sample_photo_magnitude

__all__ = ["Parameterization", "fourier", "maco", "maco_standardized"]


class Parameterization(NamedTuple):
    """``init(key) -> params`` and ``render(params) -> f32[H, W, C]`` (values in
    ``values_range``), plus the image ``shape`` and a ``name``."""

    init: Callable[[jax.Array], Any]
    render: Callable[[Any], Float[Array, "H W C"]]
    shape: tuple[int, int, int]
    name: str


def _check_shape(shape, where):
    if (not isinstance(shape, tuple) or len(shape) != 3
            or not all(isinstance(v, int) and v > 0 for v in shape) or shape[2] not in (1, 3)):
        raise ValueError(f"{where}: shape must be (H, W, C) positive ints with C in (1, 3), "
                         f"got {shape!r}")


def _to_range(x, values_range):
    lo, hi = values_range
    c = x.shape[-1]
    if c == 3:
        x = x @ jnp.asarray(COLOR_CORRELATION.T)
    return jax.nn.sigmoid(x) * (hi - lo) + lo


def _freqs(h, w):
    return np.sqrt(np.fft.fftfreq(h)[:, None] ** 2 + np.fft.rfftfreq(w)[None] ** 2)


def fourier(shape: tuple[int, int, int], *, decay: float = 1.0, std: float = 0.01,
            values_range: tuple[float, float] = (0.0, 1.0)) -> Parameterization:
    """Lucid's Fourier parameterization with colour decorrelation (Olah et al. 2017).

    Args:
      shape: ``(H, W, C)`` of the optimized image, C in (1, 3).
      decay: the spectrum's 1/f^decay whitening (Lucid 1, Xplique 0.85).
      std: the initial spectrum's standard deviation.
      values_range: the sigmoid's output range (xjax models take [0, 1]).
    """
    _check_shape(shape, "fourier")
    h, w, c = shape
    scale = 1.0 / np.maximum(_freqs(h, w), 1.0 / max(h, w)) ** decay * np.sqrt(h * w)
    scale = jnp.asarray(scale, jnp.float32)

    def init(key):
        return std * jax.random.normal(key, (2, c, h, w // 2 + 1), jnp.float32)

    def render(p):
        spec = jax.lax.complex(p[0] * scale[None], p[1] * scale[None])
        x = jnp.fft.irfft2(spec, s=(h, w)) / 4.0                       # [C, H, W]
        return _to_range(jnp.moveaxis(x, 0, -1), values_range)

    return Parameterization(init, render, shape, "fourier")


def maco_standardized(phase: Float[Array, "C H W2"], magnitude: Float[Array, "C H W2"],
                      shape: tuple[int, int], eps: float = 1e-5) -> Float[Array, "H W C"]:
    """MACO's image before colour and sigmoid: ``irfft2(r exp(i standardized phase))``,
    standardized over all pixels and channels. Its ``|rfft2|`` is proportional to ``r`` (up to
    the Hermitian columns), whatever the phase."""
    ph = (phase - phase.mean()) / (phase.std() + eps)
    spec = jax.lax.complex(magnitude * jnp.cos(ph), magnitude * jnp.sin(ph))
    x = jnp.fft.irfft2(spec, s=shape)                                  # [C, H, W]
    x = (x - x.mean()) / (x.std() + eps)
    return jnp.moveaxis(x, 0, -1)


def maco(shape: tuple[int, int, int], *, magnitude: Float[Array, "C H W2"] | None = None,
         values_range: tuple[float, float] = (0.0, 1.0)) -> Parameterization:
    """MACO: fixed natural-image magnitude, optimized phase (Fel et al. 2023).

    Args:
      shape: ``(H, W, C)``; Xplique uses 512x512 images from which crops are taken.
      magnitude: ``f32[C, H, W // 2 + 1]``; ``None`` uses the spectrum computed from the sample
        photos (:func:`sample_photo_magnitude`), resized to ``shape``.
      values_range: the sigmoid's output range (xjax models take [0, 1]).
    """
    _check_shape(shape, "maco")
    h, w, c = shape
    mag = sample_photo_magnitude((h, w), c) if magnitude is None else jnp.asarray(magnitude)
    if mag.shape != (c, h, w // 2 + 1):
        raise ValueError(f"maco: magnitude must have shape (C, H, W // 2 + 1) = "
                         f"{(c, h, w // 2 + 1)}, got {mag.shape}")

    def init(key):
        return jax.random.normal(key, (c, h, w // 2 + 1), jnp.float32)

    def render(phase):
        return _to_range(maco_standardized(phase, mag, (h, w)), values_range)

    return Parameterization(init, render, shape, "maco")
