"""What every benchmark script shares: the timer and the provenance of a results file (and the
bound benchmarks' ViT)."""

import datetime
import os
import platform
import statistics
import subprocess
import sys
import time

import jax

HERE = os.path.dirname(os.path.abspath(__file__))


def timed(fn, *args, repeats: int, reduce=statistics.median) -> float:
    """Median (or ``reduce``) seconds of ``fn(*args)`` over ``repeats`` runs, after one untimed
    run (which compiles); results are waited for."""
    jax.block_until_ready(fn(*args))
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        out.append(time.perf_counter() - t)
    return reduce(out)


def timed_alternating(calls, *, repeats: int, reduce=statistics.median) -> list[float]:
    """Median (or ``reduce``) seconds of each ``(fn, args)`` in ``calls``, timed in turn within
    every repeat (after one untimed run of each), so that a machine whose speed drifts during a
    run (clock, caches, a neighbour) slows them alike and their ratio stays meaningful."""
    for fn, args in calls:
        jax.block_until_ready(fn(*args))
    out = [[] for _ in calls]
    for _ in range(repeats):
        for times, (fn, args) in zip(out, calls, strict=True):
            t = time.perf_counter()
            jax.block_until_ready(fn(*args))
            times.append(time.perf_counter() - t)
    return [reduce(times) for times in out]


def provenance() -> dict:
    """The command, commit, date, machine and JAX version a results file records."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, text=True,
                                capture_output=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    dev = jax.devices()[0]
    kind = getattr(dev, "device_kind", "")
    return {"command": "python " + " ".join(sys.argv), "commit": commit,
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {dev.platform}"
                       + (f" {kind}" if kind and kind != dev.platform else ""),
            "jax": jax.__version__}


def vit_around_photo(depth: int, size: int = 16):
    """The bound benchmarks' ViT (patch ``size // 2``: four tokens, random init, ``depth``
    encoder blocks) and the chelsea photo at ``size`` px: ``(model, x: f32[1, size, size, 3])``."""
    import jax.numpy as jnp

    import xjax
    from xjax.models._bridge import init_module, model_from_nnx
    from xjax.models._vit import VisionTransformer

    photo = xjax.data.sample_photos(["chelsea"])[0].image
    x = jnp.asarray(xjax.data.resize_center_crop(photo, size)[None])
    module = init_module(lambda rngs: VisionTransformer(
        image_size=size, patch_size=size // 2, depth=depth, num_classes=1000, rngs=rngs),
        jax.random.key(0))
    return model_from_nnx(module, input_shape=(size, size, 3)), x
