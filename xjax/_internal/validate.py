"""Eager input validation: clear errors before anything is traced or compiled."""

import jax
import jax.numpy as jnp
import numpy as np

_CHANNEL_COUNTS = (1, 2, 3, 4)
# Images are in [0, 1]; values this far outside are another convention (0-255, mean/std), not
# the overshoot of a cubic or Lanczos resize.
UNIT_RANGE_TOLERANCE = 0.1


def check_images(x, name: str = "x", *, channels: int | None = None, where: str = "",
                 nonempty: bool = False, finite: bool = False, unit_range: bool = False) -> None:
    """Raise a clear error unless ``x`` looks like a batch of NHWC images.

    Works on NumPy arrays, JAX arrays and tracers (the static shape and dtype; ``finite`` reads
    the values of a concrete array only: a tracer cannot be checked before compilation).

    Args:
      nonempty: refuse an empty batch (N = 0).
      finite: refuse NaN or infinite pixels.
      unit_range: refuse values outside [0, 1] by more than ``UNIT_RANGE_TOLERANCE`` (images in
        [0, 255], or already normalized by a mean and standard deviation).
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
    if (finite or unit_range) and not isinstance(x, jax.core.Tracer):
        xp = jnp if isinstance(x, jax.Array) else np      # host arrays stay on the host
        try:
            with jax.ensure_compile_time_eval():          # a constant inside someone's jit
                a = xp.asarray(x)
                ok = xp.isfinite(a)
                bad, lo, hi = 0, 0.0, 0.0                 # an empty batch: nothing to read
                if a.size:
                    bad = int(xp.sum((~ok).reshape(shape[0], -1).any(1)))
                    finite_part = xp.where(ok, a, 0)
                    lo, hi = float(xp.min(finite_part)), float(xp.max(finite_part))
        except jax.errors.ConcretizationTypeError:
            bad, lo, hi = 0, 0.0, 0.0                     # traced: rows come out NaN instead
        if finite and bad:
            raise ValueError(f"{prefix}{name} holds NaN or infinite pixels in {bad} of its "
                             f"{shape[0]} images; under jax.jit their rows come out NaN")
        if unit_range and lo < -UNIT_RANGE_TOLERANCE:
            raise ValueError(f"{prefix}{name} holds values in [{lo:g}, {hi:g}]: xjax images are "
                             f"floats in [0, 1] and each model normalizes inside model_fn; give "
                             f"the images before their mean/std normalization, or wrap your "
                             f"model so that it normalizes its [0, 1] input itself")
        if unit_range and hi > 1.0 + UNIT_RANGE_TOLERANCE:
            raise ValueError(f"{prefix}{name} holds values in [{lo:g}, {hi:g}]: xjax images are "
                             f"floats in [0, 1] (each model normalizes inside model_fn); images "
                             f"in [0, 255] need x / 255")


def default_floats(tree):
    """``tree`` with its NumPy float64 arrays as float32 when JAX's x64 mode is off: what JAX would
    do with them anyway, without the truncation warnings that would point into xjax's source."""
    if jax.config.jax_enable_x64:
        return tree
    return jax.tree.map(lambda a: a.astype(np.float32)
                        if isinstance(a, np.ndarray) and a.dtype == np.float64 else a, tree)


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
