"""Eager input validation: clear errors before anything is traced or compiled."""

import jax
import jax.numpy as jnp
import numpy as np

_CHANNEL_COUNTS = (1, 2, 3, 4)


def check_images(x, name: str = "x", *, channels: int | None = None, where: str = "",
                 nonempty: bool = False, finite: bool = False) -> None:
    """Raise a clear error unless ``x`` looks like a batch of NHWC images.

    Works on NumPy arrays, JAX arrays and tracers (the static shape and dtype; ``finite`` reads
    the values of a concrete array only: a tracer cannot be checked before compilation).

    Args:
      nonempty: refuse an empty batch (N = 0).
      finite: refuse NaN or infinite pixels.
    """
    prefix = f"{where}: " if where else ""
    shape = getattr(x, "shape", None)
    dtype = getattr(x, "dtype", None)
    if shape is None or dtype is None:
        raise TypeError(f"{prefix}{name} must be an array of images f32[N, H, W, C], "
                        f"got {type(x).__name__}")
    if not jnp.issubdtype(dtype, jnp.floating):  # bfloat16 included (not a NumPy floating)
        raise TypeError(f"{prefix}{name} must be floating point images in [0, 1], got dtype "
                        f"{np.dtype(dtype).name}; convert uint8 images with x / 255")
    if len(shape) != 4:
        raise ValueError(f"{prefix}{name} must have rank 4 (N, H, W, C), got shape {tuple(shape)}"
                         + ("; add a batch axis with x[None]" if len(shape) == 3 else ""))
    if channels is not None and shape[-1] != channels:
        if shape[1] == channels:
            raise ValueError(f"{prefix}{name} looks channel-first (shape {tuple(shape)}); xjax "
                             f"expects channels-last NHWC: use x.transpose(0, 2, 3, 1)")
        raise ValueError(f"{prefix}{name} must have {channels} channels in its last axis, got "
                         f"shape {tuple(shape)}")
    if channels is None and shape[-1] not in _CHANNEL_COUNTS and shape[1] in _CHANNEL_COUNTS:
        raise ValueError(f"{prefix}{name} looks channel-first (shape {tuple(shape)}); xjax expects "
                         f"channels-last NHWC: use x.transpose(0, 2, 3, 1)")
    if nonempty and shape[0] == 0:
        raise ValueError(f"{prefix}{name} is an empty batch (shape {tuple(shape)}); give at least "
                         f"one image")
    if nonempty and 0 in shape[1:]:
        raise ValueError(f"{prefix}{name} has an empty axis (shape {tuple(shape)})")
    if finite and not isinstance(x, jax.core.Tracer):
        xp = jnp if isinstance(x, jax.Array) else np      # host arrays stay on the host
        try:
            with jax.ensure_compile_time_eval():          # a constant inside someone's jit
                bad = int(xp.sum((~xp.isfinite(xp.asarray(x))).reshape(shape[0], -1).any(1)))
        except jax.errors.ConcretizationTypeError:
            bad = 0                                       # traced: rows come out NaN instead
        if bad:
            raise ValueError(f"{prefix}{name} holds NaN or infinite pixels in {bad} of its "
                             f"{shape[0]} images; under jax.jit their rows come out NaN")


def check_positive_int(value, name: str, *, where: str = "", minimum: int = 1) -> int:
    prefix = f"{where}: " if where else ""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{prefix}{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{prefix}{name} must be >= {minimum}, got {value}")
    return int(value)


def check_float(value, name: str, *, where: str = "", minimum: float | None = None,
                maximum: float | None = None, strict: bool = False) -> float:
    """A finite real number (in ``[minimum, maximum]``; ``strict``: the ends excluded)."""
    prefix = f"{where}: " if where else ""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{prefix}{name} must be a number, got {type(value).__name__}")
    v = float(value)
    if not np.isfinite(v):
        raise ValueError(f"{prefix}{name} must be finite, got {value}")
    low = minimum is not None and (v <= minimum if strict else v < minimum)
    high = maximum is not None and (v >= maximum if strict else v > maximum)
    if low or high:
        op = ">" if strict else ">="
        if maximum is None:
            raise ValueError(f"{prefix}{name} must be {op} {minimum}, got {value}")
        if minimum is None:
            raise ValueError(f"{prefix}{name} must be {'<' if strict else '<='} {maximum}, got "
                             f"{value}")
        lo, hi = ("(" if strict else "["), (")" if strict else "]")
        raise ValueError(f"{prefix}{name} must be in {lo}{minimum}, {maximum}{hi}, got {value}")
    return v


def check_map_batch(maps, name: str = "maps", *, where: str = "") -> None:
    """A non-empty batch of maps ``[N >= 1, H >= 1, W >= 1, ...]`` (an array)."""
    prefix = f"{where}: " if where else ""
    shape = getattr(maps, "shape", None)
    if shape is None:
        raise TypeError(f"{prefix}{name} must be an array f32[N, H, W], got "
                        f"{type(maps).__name__}")
    if len(shape) < 3:
        raise ValueError(f"{prefix}{name} must be [N, H, W] (or with channels), got shape "
                         f"{tuple(shape)}")
    if 0 in shape:
        raise ValueError(f"{prefix}{name} is empty (shape {tuple(shape)}); give at least one "
                         f"map of at least one pixel")


def check_iterations(where: str, *, tol=None, **counts) -> None:
    """Iteration counts (``max_iter=...``) are ints >= 1 and ``tol`` a finite number >= 0."""
    for name, v in counts.items():
        check_positive_int(v, name, where=where)
    if tol is not None:
        check_float(tol, "tol", where=where, minimum=0.0)
