"""Dataset-scale explanation runs: data parallel over every device (and host), streamed input,
incremental and resumable output.

``explain_dataset`` explains a whole indexable source (a tensorflow-datasets ``data_source``,
any object with ``__len__`` and ``__getitems__``, or arrays) in global batches. Each batch is
split over the mesh's ``"data"`` axis (``NamedSharding``), and the explainer runs as
per-device code (:func:`per_device`, ``shard_map``): every device explains only its share, in
one jitted computation compiled once, with no communication. The next batch is read on a
background thread (prefetch) while the current one runs. Each host writes its rows of each
step to its own file, ``<out>/maps-h<host>-s<step>.npz`` (written to a hidden temporary name
then renamed, so a file either exists whole or not at all), and records the file's SHA-256 and
row range in its manifest, ``<out>/manifest-h<host>.json``, beside the run's settings. A run
started again skips the steps whose shards match their checksums (a crash loses at most the
steps in flight, nothing is written twice, damaged shards are recomputed); a run with other
settings refuses the directory, and a lock keeps two runs out of one directory
(:mod:`xjax._internal.rundir`). ``load_maps`` verifies the recorded shards and reassembles the
rows in dataset order, checking that none is missing or repeated.

Multi-host: call :func:`initialize` first on every host. With the standard cluster environment
(SLURM, Open MPI, a Cloud TPU slice, or ``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES`` /
``JAX_PROCESS_ID``) it runs ``jax.distributed.initialize()``; the mesh then spans every host's
devices and each host reads only its rows of every global batch.

For arrays already in memory (an evaluation set), :func:`shard_rows` places them over the
devices, :func:`replicate` copies parameters to all of them, :func:`per_device` wraps any
explainer or metric and :func:`gather_rows` brings per-row results back to the host; the
experiments use these.
"""

import glob
import json
import os
import queue
import sys
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from xjax._internal.validate import check_positive_int

__all__ = ["MapsFile", "data_mesh", "explain_dataset", "gather_rows", "initialize", "load_maps",
           "load_maps_file", "per_device", "replicate", "save_maps_file", "shard_rows"]

_CLUSTER_VARS = ("JAX_COORDINATOR_ADDRESS", "SLURM_JOB_ID", "OMPI_COMM_WORLD_SIZE",
                 "TPU_WORKER_HOSTNAMES", "MEGASCALE_COORDINATOR_ADDRESS")


def initialize() -> bool:
    """``jax.distributed.initialize()`` when a cluster environment is detected (see the module
    docstring); returns whether it ran. Call it before any other JAX work."""
    if not any(v in os.environ for v in _CLUSTER_VARS):
        return False
    jax.distributed.initialize()
    return True


def data_mesh(devices=None) -> Mesh:
    """A 1-D mesh with axis ``"data"`` over ``devices`` (default: every device of every host)."""
    return Mesh(np.array(jax.devices() if devices is None else devices), ("data",))


def shard_rows(*arrays: np.ndarray, mesh: Mesh | None = None):
    """Place arrays that every host holds whole on the mesh, their first axis split over its
    ``"data"`` axis (``NamedSharding``). A model call jitted on them runs data parallel as is;
    an explainer or metric needs :func:`per_device` as well (see there). An array whose length
    is not a multiple of the device count is replicated instead (correct, not parallel). Works
    across hosts: each process contributes the shards its devices hold
    (``jax.make_array_from_callback``).

    Args:
      *arrays: host arrays with a common leading axis (``np.ndarray`` or anything ``np.asarray``
        accepts).
      mesh: a 1-D mesh (default :func:`data_mesh` over every device).

    Returns:
      One ``jax.Array`` per input (the array itself when one is given).
    """
    mesh = data_mesh() if mesh is None else mesh
    ndev = mesh.devices.size
    out = []
    for a in arrays:
        a = np.asarray(a)
        spec = P(mesh.axis_names[0]) if a.ndim and len(a) % ndev == 0 else P()
        sharding = NamedSharding(mesh, spec)
        out.append(jax.make_array_from_callback(a.shape, sharding, lambda idx, a=a: a[idx]))
    return out[0] if len(out) == 1 else tuple(out)


def replicate(tree: Any, mesh: Mesh | None = None) -> Any:
    """Copy a pytree (e.g. parameters trained elsewhere) to every device of the mesh, so it can
    meet arrays placed by :func:`shard_rows` in one jitted call."""
    mesh = data_mesh() if mesh is None else mesh
    return jax.device_put(tree, NamedSharding(mesh, P()))


def per_device(fn: Callable, mesh: Mesh | None = None, *, out_axis: int = 0) -> Callable:
    """Run a per-row function as per-device code: ``per_device(fn)(params, *rows, key=None)``
    calls ``fn(params, *rows_local[, key=key])`` on each device's share of the rows
    (``jax.shard_map`` over the mesh's data axis; ``params`` and ``key`` replicated), with no
    communication between devices.

    Why: an xjax explainer or metric evaluates its rows in ``batch_size`` blocks (a
    ``lax.scan`` over dynamic slices of the whole batch). Jitted on a sharded batch, XLA's
    partitioner gathers the batch on every device and each device computes *every* row: correct
    (the contract suite checks it) but not parallel. Under ``per_device`` each device scans only
    its rows. The result equals the single-device one because explainers are batch independent
    and draw their randomness from ``key`` alone, not from a row's position (contract suite).

    Args:
      fn: ``fn(params, *rows, [key=...]) -> pytree`` whose every output has the rows on axis
        ``out_axis`` (an explainer: ``f32[N, H, W]``; a metric: ``f32[N]``).
      mesh: a 1-D mesh (default :func:`data_mesh`).
      out_axis: the rows' axis in the outputs (1 for ``vmap`` over stacked models).

    Returns:
      ``run(params, *rows, key=None)``: rows whose length is not a multiple of the device count
      fall back to a plain call of ``fn``.
    """
    def run(params, *rows, key=None):
        m = data_mesh() if mesh is None else mesh
        ndev = m.devices.size
        n = rows[0].shape[0]
        def call(p, k, *r):
            return fn(p, *r) if k is None else fn(p, *r, key=k)

        if ndev == 1 or n % ndev:
            return call(params, key, *rows)
        axis = m.axis_names[0]
        # no collectives inside: each device's scans run on its rows alone, so the check of
        # varying-vs-replicated scan carries (initialized replicated, updated per device) is off
        return jax.shard_map(call, mesh=m, in_specs=(P(), P()) + (P(axis),) * len(rows),
                             out_specs=P(*([None] * out_axis), axis),
                             check_vma=False)(params, key, *rows)

    return run


def gather_rows(tree: Any) -> Any:
    """Every leaf as a whole host array (``np.ndarray``), gathering the rows that other devices
    or hosts hold (``process_allgather`` across hosts): for the host-side steps after a
    data-parallel computation, such as writing a table."""
    def one(a):
        if isinstance(a, jax.Array) and not a.is_fully_addressable:
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(a, tiled=True))
        return np.asarray(a)
    return jax.tree.map(one, tree)


def _rows(source, idx):
    if isinstance(source, tuple):
        return tuple(np.asarray(a)[idx] for a in source)
    return source.__getitems__([int(i) for i in idx])


def _source_identity(source, decode) -> dict:
    """What the manifest records of the data: its length and a fingerprint (every byte of
    arrays; the first and last decoded rows of an indexable source)."""
    from xjax._internal.rundir import fingerprint

    if isinstance(source, tuple):
        return {"rows": len(source[0]), "sha256": fingerprint(*source)}
    n = len(source)
    probe = decode(_rows(source, np.array([0, n - 1]))) if n else ()
    return {"rows": n, "type": type(source).__name__, "probe_sha256": fingerprint(*probe)}


def _shard_name(host: int, step: int) -> str:
    return f"maps-h{host:03d}-s{step:06d}.npz"


def explain_dataset(explain: Callable, params, source: Any, out: str, *, batch_size: int = 256,
                    decode: Callable | None = None, mesh: Mesh | None = None,
                    settings: dict | None = None, overwrite: bool = False,
                    progress: bool = True, on_step: Callable[[int], None] | None = None) -> int:
    """Explain every row of ``source``, writing per-host, per-step shard files in ``out``.

    The run directory carries a manifest per host (``manifest-h<host>.json``): the run's
    settings (``settings``, the weights' and data's fingerprints, the batch size, the device
    and host counts, the xjax version) and each shard's SHA-256 and row range. A run started
    on a directory holding other settings raises :class:`~xjax._internal.rundir.SettingsMismatch`
    with the differences (``overwrite=True`` discards the old run); a second concurrent run on
    the same directory raises :class:`~xjax._internal.rundir.LockedError` (stale locks of dead
    processes are taken over). Finished steps are skipped only when their shard matches its
    checksum: truncated, emptied or missing shards are computed again.

    Args:
      explain: ``explain(params, x, y) -> f32[B, H, W]`` (an xjax explainer with its key bound,
        or any per-row function of a batch); it is jitted once with the batch sharded.
      params: replicated on every device.
      source: ``(x, y)`` arrays, or an indexable source (``__len__``, ``__getitems__``) such as
        ``xjax.data.fashion_mnist(split)``, decoded by ``decode(items) -> (x, y)``.
      out: the run directory (created).
      batch_size: the global batch; a multiple of the mesh size. The last batch is padded by
        repeating its last row (the padding is not written).
      mesh: a 1-D ``"data"`` mesh (default :func:`data_mesh`).
      settings: what else identifies the run (method and hyperparameters, model name, seed,
        dataset and split): ``explain`` is a function, so only the caller can name it. Runs
        differing in it refuse to share a directory.
      overwrite: discard an existing run with other settings instead of refusing.
      on_step: called with each written step (progress hooks, tests).

    Returns:
      The number of steps computed by this call (finished steps are skipped).
    """
    from tqdm.auto import tqdm

    import xjax
    from xjax._internal.rundir import RunDir, fingerprint

    mesh = data_mesh() if mesh is None else mesh
    ndev = mesh.devices.size
    batch_size = check_positive_int(batch_size, "batch_size", where="explain_dataset")
    if batch_size % ndev:
        raise ValueError(f"explain_dataset: batch_size={batch_size} must be a multiple of the "
                         f"{ndev} devices of the mesh")
    if settings is not None and not isinstance(settings, dict):
        raise TypeError(f"explain_dataset: settings must be a dict, got {type(settings).__name__}")
    n = len(source[0]) if isinstance(source, tuple) else len(source)
    if n == 0:
        raise ValueError("explain_dataset: source is empty (0 rows)")
    if isinstance(source, tuple) and decode is None:
        decode = lambda rows: rows
    if decode is None:
        raise ValueError("explain_dataset: give decode(items) -> (x, y) for a data source")
    host, hosts = jax.process_index(), jax.process_count()
    per_host = batch_size // hosts
    steps = -(-n // batch_size)
    path = lambda s: os.path.join(out, _shard_name(host, s))
    run_settings = {"user": settings or {}, "params_sha256": fingerprint(params),
                    "data": _source_identity(source, decode), "batch_size": int(batch_size),
                    "devices": int(ndev), "hosts": int(hosts), "xjax": xjax.__version__}
    rundir = RunDir(out, run_settings, kind="explain_dataset",
                    manifest=f"manifest-h{host:03d}.json", lock=f"lock-h{host:03d}",
                    owned=f"maps-h{host:03d}-s*.npz", overwrite=overwrite,
                    where="explain_dataset")
    with rundir:
        todo = [s for s in range(steps) if not rundir.verified(_shard_name(host, s))]
        damaged = [s for s in todo if _shard_name(host, s) in rundir.files or
                   os.path.exists(path(s))]
        if damaged:
            print(f"explain_dataset: {len(damaged)} shard(s) damaged or unrecorded, computing "
                  f"them again: {', '.join(_shard_name(host, s) for s in damaged[:5])}"
                  + (" ..." if len(damaged) > 5 else ""), file=sys.stderr)
        sharding = NamedSharding(mesh, P("data"))
        params = replicate(params, mesh)
        run = jax.jit(per_device(explain, mesh), out_shardings=sharding)   # per-device scans

        def host_rows(s):
            start = s * batch_size + host * per_host
            idx = np.arange(start, start + per_host)
            valid = idx < n
            return np.minimum(idx, n - 1), valid

        def load(s):
            idx, valid = host_rows(s)
            x, y = decode(_rows(source, idx))
            return s, idx, valid, np.asarray(x, np.float32), np.asarray(y)

        q: queue.Queue = queue.Queue(maxsize=2)

        def reader():
            try:
                for s in todo:
                    q.put(load(s))
            except BaseException as e:        # re-raised by the main thread, never a hang
                q.put(e)
            q.put(None)

        threading.Thread(target=reader, daemon=True).start()
        bar = tqdm(total=steps, initial=steps - len(todo), desc="explain", disable=not progress)
        done = 0
        while (item := q.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            s, idx, valid, x, y = item
            xg = jax.make_array_from_process_local_data(sharding, x)
            yg = jax.make_array_from_process_local_data(sharding, y)
            maps = run(params, xg, yg)
            local = np.concatenate([np.asarray(sh.data) for sh in sorted(
                maps.addressable_shards, key=lambda sh: sh.index[0].start or 0)])
            rows = idx[valid]
            lo = int(rows[0]) if len(rows) else int(idx[0])
            rundir.write(_shard_name(host, s),
                         lambda f, m=local[valid], r=rows: np.savez(f, maps=m, index=r),
                         rows=[lo, lo + len(rows)])
            done += 1
            bar.update()
            if on_step is not None:
                on_step(s)
        bar.close()
        return done


def load_maps(out: str, n: int | None = None) -> np.ndarray:
    """Every row written by :func:`explain_dataset` in ``out``, in dataset order.

    Only the shards the manifests record are read, each checked against its SHA-256 first; the
    manifests of all hosts must hold the same settings.

    Args:
      out: the run directory.
      n: the expected number of rows (default: the data's length in the manifest).

    Raises:
      FileNotFoundError: ``out`` has no manifest.
      ValueError: a shard is damaged or missing (named), a row is missing or written twice, or
        the hosts' manifests disagree.
    """
    from xjax._internal.rundir import check_file, read_manifest

    manifests = sorted(glob.glob(os.path.join(out, "manifest-h*.json")))
    if not manifests:
        hint = (" (shards without a manifest: written by an older xjax; run again with "
                "overwrite=True)" if glob.glob(os.path.join(out, "maps-h*-s*.npz")) else "")
        raise FileNotFoundError(f"load_maps: no run manifest in {out!r}{hint}")
    records = [read_manifest(m, where="load_maps") for m in manifests]
    if any(r["settings"] != records[0]["settings"] for r in records):
        raise ValueError(f"load_maps: the host manifests in {out!r} hold different settings")
    expected = records[0]["settings"]["data"]["rows"] if n is None else n
    maps, index = [], []
    for rec in records:
        for name, meta in sorted(rec["files"].items()):
            f = os.path.join(out, name)
            why = check_file(f, meta)
            if why is not None:
                raise ValueError(f"load_maps: shard {f} is damaged ({why}); run explain_dataset "
                                 f"again on {out!r} to recompute it")
            try:
                with np.load(f, allow_pickle=False) as part:
                    maps.append(part["maps"])
                    index.append(part["index"])
            except (OSError, ValueError, KeyError, EOFError) as e:
                raise ValueError(f"load_maps: shard {f} is unreadable ({e})") from e
            lo, hi = meta["rows"]
            if len(index[-1]) != hi - lo or len(maps[-1]) != hi - lo:
                raise ValueError(f"load_maps: shard {f} holds {len(index[-1])} rows, its record "
                                 f"says [{lo}, {hi})")
    index = np.concatenate(index) if index else np.zeros((0,), np.int64)
    maps = np.concatenate(maps) if maps else np.zeros((0,), np.float32)
    if len(np.unique(index)) != len(index):
        raise ValueError(f"load_maps: rows written twice in {out!r}")
    if len(index) != expected:
        raise ValueError(f"load_maps: {len(index)} rows in {out!r}, expected {expected} "
                         f"(an unfinished run: start it again to complete it)")
    return maps[np.argsort(index)]


MAPS_FORMAT = "xjax-maps-1"


class MapsFile(NamedTuple):
    """Explanations of named images, as ``xjax explain --save-maps`` writes them.

    Attributes:
      names: the image names, in order.
      maps: method name -> ``f32[N, H, W]`` maps, row ``i`` for ``names[i]``.
      settings: how they were made (model, hyperparameters per method, target, seed, ...).
    """

    names: tuple[str, ...]
    maps: dict[str, np.ndarray]
    settings: dict


def save_maps_file(path: str, names, maps: dict, settings: dict) -> str:
    """Write a :class:`MapsFile` to ``path`` (``.npz``, no pickled objects), atomically.

    The archive holds ``format`` (``"xjax-maps-1"``), ``names`` (a string array),
    ``maps.<method>`` (``float32[N, H, W]``) per method and ``settings`` (a JSON string), so that
    any NumPy reads it with ``np.load(path, allow_pickle=False)``.

    Raises:
      ValueError: a map array is not ``[N, H, W]`` with one row per name.
    """
    from xjax._internal.rundir import atomic_write

    names = np.asarray(list(names), dtype=np.str_)
    arrays = {"format": np.asarray(MAPS_FORMAT), "names": names,
              "settings": np.asarray(json.dumps(settings, sort_keys=True, default=repr))}
    for method, m in maps.items():
        m = np.asarray(m, np.float32)
        if m.ndim != 3 or len(m) != len(names):
            raise ValueError(f"save_maps_file: maps[{method!r}] must be f32[N, H, W] with "
                             f"N = {len(names)} names, got shape {m.shape}")
        arrays[f"maps.{method}"] = m
    return atomic_write(path, lambda f: np.savez_compressed(f, **arrays))


def load_maps_file(path: str) -> MapsFile:
    """Read and validate a file written by :func:`save_maps_file` (``xjax explain --save-maps``).

    Raises:
      FileNotFoundError: no file at ``path``.
      ValueError: not an xjax maps file, or its arrays have the wrong kinds or shapes (named).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load_maps_file: no file at {path!r}")
    where = f"load_maps_file: {path!r}"
    import zipfile

    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{where} is not a readable .npz archive ({e})") from e
    if "format" not in arrays or arrays["format"].shape != () or str(arrays["format"]) != MAPS_FORMAT:
        raise ValueError(f"{where} is not an xjax maps file (no format {MAPS_FORMAT!r})")
    names, settings = arrays.get("names"), arrays.get("settings")
    if names is None or names.ndim != 1 or names.dtype.kind != "U":
        raise ValueError(f"{where}: 'names' must be a 1-D string array")
    try:
        settings = json.loads(str(settings)) if settings is not None else None
    except ValueError:
        settings = None
    if not isinstance(settings, dict):
        raise ValueError(f"{where}: 'settings' must be a JSON object")
    maps = {}
    for key, m in arrays.items():
        if key.startswith("maps."):
            if m.dtype != np.float32 or m.ndim != 3 or len(m) != len(names):
                raise ValueError(f"{where}: {key!r} must be float32[{len(names)}, H, W], got "
                                 f"{m.dtype}{list(m.shape)}")
            maps[key[len("maps."):]] = m
    if not maps:
        raise ValueError(f"{where} holds no maps")
    return MapsFile(tuple(str(n) for n in names), maps, settings)
