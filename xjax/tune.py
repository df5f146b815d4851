"""Batch sizes chosen by measurement.

Throughput of a compiled model is not monotone in the batch size: on XLA:CPU the 32 px CNN's
forward runs at 4225 images/s at batch 50 and 1148 at batch 64, and ResNet-18's
forward+backward changes by up to 3.7x over common sizes (issue 25, measured on a 2-core CPU).
:func:`batch_size` times the model's forward (perturbation methods) or forward+backward
(gradient methods) at candidate sizes, compilation excluded, and returns the fastest, caching
the choice on disk per model, backend and input shape so that it is measured once.

The cache key is a hash of the model's jaxpr at one input row (so two models with the same
computation share an entry and a changed model gets a new one), the mode, the candidates, the
backend, the device kind and the JAX version. The cache is a JSON file read through a
validating reader; a malformed file is reported (a warning) and replaced.

Library code elsewhere in xjax never calls this: choosing and caching a batch size is the
entry points' business (the ``xjax`` command, ``xjax lens build``, the experiment scripts), when
the user gives none.
"""

import datetime
import hashlib
import json
import os
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["CANDIDATES", "DEFAULT_CACHE", "MODES", "Choice", "batch_size", "choose", "throughput"]

DEFAULT_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "xjax", "batch_sizes.json")
# Candidate sizes per backend: small and dense on CPUs (cliffs between neighbouring sizes),
# powers of two up to 1024 on accelerators.
CANDIDATES: dict[str, tuple[int, ...]] = {
    "cpu": (8, 16, 24, 32, 48, 64, 96, 128),
    "gpu": (16, 32, 64, 128, 256, 512, 1024),
    "tpu": (16, 32, 64, 128, 256, 512, 1024),
}
_CACHE_VERSION = 1
_OFF = ("0", "off", "false", "no")


def _forward(model_fn: Callable) -> Callable:
    return lambda params, x: model_fn(params, x)


def _gradient(model_fn: Callable) -> Callable:
    def grad(params, x):             # one backward pass of the summed outputs w.r.t. the input
        return jax.grad(lambda x: model_fn(params, x).astype(jnp.float32).sum())(x)

    return grad


# mode -> the program timed (what the explainers' model calls cost)
MODES: dict[str, Callable[[Callable], Callable]] = {"forward": _forward, "gradient": _gradient}


def _check(example, mode: str, batch_sizes, where: str) -> np.ndarray:
    if mode not in MODES:
        raise ValueError(f"{where}: mode must be one of {', '.join(MODES)}, got {mode!r}")
    shape, dtype = getattr(example, "shape", None), getattr(example, "dtype", None)
    if shape is None or dtype is None:
        raise TypeError(f"{where}: example must be an array f32[B, ...] (a batch of inputs), got "
                        f"{type(example).__name__}")
    if len(shape) < 2 or shape[0] < 1:
        raise ValueError(f"{where}: example must be a non-empty batch f32[B, ...] with B >= 1, got "
                         f"shape {tuple(shape)}")
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{where}: example must be floating point, got dtype {np.dtype(dtype)}")
    if batch_sizes is not None:
        sizes = list(batch_sizes)
        if not sizes or any(not isinstance(b, int | np.integer) or isinstance(b, bool) or b < 1
                            for b in sizes):
            raise ValueError(f"{where}: candidates must be a non-empty sequence of positive ints, "
                             f"got {batch_sizes!r}")
    return np.asarray(example[:1])


def _out_of_memory(err: Exception) -> bool:
    return "RESOURCE_EXHAUSTED" in str(err) or "out of memory" in str(err).lower()


def throughput(model_fn: Callable, params: Any, example, *, batch_sizes: Sequence[int],
               mode: str = "forward", repeats: int = 3) -> dict[int, float | None]:
    """Images per second of the model's ``mode`` program at each batch size.

    Each size is compiled (not timed), run once, then timed ``repeats`` times on the default
    device; the best of those is kept (the least disturbed by other work on the machine). Sizes
    are tried in increasing order; from the first one that does not fit in memory on, the
    result is ``None``.

    Args:
      model_fn: ``model_fn(params, x) -> out[B, K]``.
      params: its parameters.
      example: a batch ``f32[B, ...]`` of inputs; its first row is repeated to each size.
      batch_sizes: the sizes timed.
      mode: ``"forward"`` (the model call of perturbation methods) or ``"gradient"`` (forward
        and backward to the input, the model call of gradient methods).
      repeats: timed runs per size.

    Returns:
      ``{batch size: images per second, or None where it ran out of memory}``.

    Raises:
      ValueError, TypeError: bad ``mode``, ``example`` or ``batch_sizes``.
    """
    row = _check(example, mode, batch_sizes, "throughput")
    if repeats < 1:
        raise ValueError(f"throughput: repeats must be >= 1, got {repeats}")
    fn = jax.jit(MODES[mode](model_fn))
    rates: dict[int, float | None] = {}
    full = False
    for b in sorted({int(b) for b in batch_sizes}):
        if full:
            rates[b] = None
            continue
        x = jax.device_put(np.ascontiguousarray(np.broadcast_to(row, (b,) + row.shape[1:])))
        try:
            compiled = fn.lower(params, x).compile()
            jax.block_until_ready(compiled(params, x))
            best = float("inf")
            for _ in range(repeats):
                t0 = time.perf_counter()
                jax.block_until_ready(compiled(params, x))
                best = min(best, time.perf_counter() - t0)
        except jax.errors.JaxRuntimeError as err:
            if not _out_of_memory(err):
                raise
            rates[b], full = None, True
            continue
        rates[b] = b / best
    return rates


def _cache_path(cache: str | None | bool) -> str | None:
    if cache is False or cache is None:
        return None
    if cache is not True:
        return str(cache)
    setting = os.environ.get("XJAX_TUNE_CACHE", "")
    if setting.lower() in _OFF:
        return None
    return setting or DEFAULT_CACHE


def _read_cache(path: str) -> dict[str, dict]:
    """The cache's entries, validated; an unreadable or malformed file warns and reads empty."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (FileNotFoundError, NotADirectoryError):        # no cache yet (or no folder for one)
        return {}
    except (OSError, ValueError) as err:
        warnings.warn(f"xjax.tune: ignoring the unreadable batch-size cache {path} ({err}); it "
                      f"will be rewritten", stacklevel=3)
        return {}
    ok = (isinstance(data, dict) and data.get("version") == _CACHE_VERSION
          and isinstance(data.get("entries"), dict))
    entries = data["entries"] if ok else {}
    good = {k: v for k, v in entries.items()
            if isinstance(k, str) and isinstance(v, dict)
            and isinstance(v.get("batch_size"), int) and not isinstance(v["batch_size"], bool)
            and v["batch_size"] >= 1}
    if not ok or len(good) != len(entries):
        warnings.warn(f"xjax.tune: the batch-size cache {path} is not a version-{_CACHE_VERSION} "
                      f"xjax cache (or has malformed entries); ignoring what is malformed",
                      stacklevel=3)
    return good


def _write_cache(path: str, entries: dict[str, dict]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"version": _CACHE_VERSION, "entries": entries}, f, indent=1, sort_keys=True)
    os.replace(tmp, path)                   # atomic: a concurrent reader sees old or new


def _key(model_fn, params, row, mode: str, sizes: tuple[int, ...]) -> tuple[str, dict]:
    jaxpr = str(jax.make_jaxpr(model_fn)(params, jnp.asarray(row)))
    device = jax.devices()[0]
    about = {"mode": mode, "candidates": list(sizes), "backend": jax.default_backend(),
             "device": device.device_kind, "jax": jax.__version__,
             "input": [list(row.shape[1:]), str(row.dtype)]}
    digest = hashlib.sha256(json.dumps(about, sort_keys=True).encode() + jaxpr.encode())
    return digest.hexdigest(), about


class Choice(NamedTuple):
    """What :func:`choose` decided.

    Attributes:
      batch_size: the chosen size.
      images_per_second: ``{size: images/s or None (out of memory)}`` as measured (now, or when
        the cached entry was written).
      cached: read from the cache rather than measured by this call.
      cache: the cache file, or ``None`` when caching is off.
    """

    batch_size: int
    images_per_second: dict[int, float | None]
    cached: bool
    cache: str | None


def choose(model_fn: Callable, params: Any, example, *, mode: str = "forward",
           candidates: Sequence[int] | None = None, tolerance: float = 0.05, repeats: int = 3,
           cache: str | bool | None = True) -> Choice:
    """:func:`batch_size` with what it measured and whether it came from the cache."""
    if not 0 <= tolerance < 1:
        raise ValueError(f"batch_size: tolerance must be in [0, 1), got {tolerance}")
    row = _check(example, mode, candidates, "batch_size")
    sizes = tuple(sorted({int(b) for b in candidates or
                          CANDIDATES.get(jax.default_backend(), CANDIDATES["gpu"])}))
    path = _cache_path(cache)
    key, about = _key(model_fn, params, row, mode, sizes)
    entry = (_read_cache(path) if path else {}).get(key)
    if entry is not None:
        rates = entry.get("images_per_second")
        rates = ({int(b): r for b, r in rates.items() if str(b).isdigit()}
                 if isinstance(rates, dict) else {})
        return Choice(entry["batch_size"], rates, True, path)
    rates = throughput(model_fn, params, row, batch_sizes=sizes, mode=mode, repeats=repeats)
    fitted = {b: r for b, r in rates.items() if r is not None}
    if not fitted:
        raise RuntimeError(f"batch_size: not even {sizes[0]} rows fit in the device's memory "
                           f"({mode}); give smaller candidates")
    best = max(fitted.values())
    chosen = min(b for b, r in fitted.items() if r >= (1 - tolerance) * best)
    if path:
        entries = _read_cache(path)            # another process may have written meanwhile
        entries[key] = {**about, "batch_size": chosen,
                        "images_per_second": {str(b): r for b, r in rates.items()},
                        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
        try:
            _write_cache(path, entries)
        except OSError as err:                     # the measurement stands; say it is not kept
            warnings.warn(f"xjax.tune: could not write the batch-size cache {path} ({err}); "
                          f"the choice will be measured again next time", stacklevel=2)
            path = None
    return Choice(chosen, rates, False, path)


def batch_size(model_fn: Callable, params: Any, example, *, mode: str = "forward",
               candidates: Sequence[int] | None = None, tolerance: float = 0.05,
               repeats: int = 3, cache: str | bool | None = True) -> int:
    """The batch size at which ``model_fn`` runs fastest per image, measured (and cached).

    The choice is the smallest candidate within ``tolerance`` of the best measured throughput
    (smaller batches hold less memory and pad less). The result is cached on disk, keyed by
    the model's computation (its jaxpr at one row), ``mode``, the candidates, the backend,
    device kind and JAX version, so a second call returns at once. :func:`choose` returns the
    measurements too.

    Args:
      model_fn: ``model_fn(params, x) -> out[B, K]``.
      params: its parameters.
      example: a batch ``f32[B, ...]`` of inputs (its first row is used).
      mode: ``"forward"`` for perturbation methods, ``"gradient"`` for gradient methods.
      candidates: sizes tried (default: :data:`CANDIDATES` of the backend).
      tolerance: relative throughput within which a smaller size is preferred.
      repeats: timed runs per size.
      cache: ``True``: the file ``$XJAX_TUNE_CACHE`` (``off`` disables it) or
        ``~/.cache/xjax/batch_sizes.json``; a path: that file; ``None``/``False``: measure
        every time.

    Returns:
      The chosen batch size.

    Raises:
      ValueError, TypeError: bad arguments.
      RuntimeError: not even the smallest candidate fits in memory.
    """
    return choose(model_fn, params, example, mode=mode, candidates=candidates,
                  tolerance=tolerance, repeats=repeats, cache=cache).batch_size
