"""Run directories that know what produced them: a manifest of settings, a lock against
concurrent runs, and files recorded with their checksums.

One mechanism behind every resumable output of xjax (``xjax.runs.explain_dataset``,
``xjax lens build``, the experiment scripts' results files):

- **Manifest.** ``<dir>/<manifest>`` (JSON) holds the run's ``settings`` (model and weights
  fingerprint, method and hyperparameters, data, batch size, seed, devices, xjax version: what
  the caller passes) and one record per finished file: its SHA-256, size and payload (for maps,
  the row range). A run opened with other settings on an existing manifest raises
  :class:`SettingsMismatch` listing each differing key with both values; ``overwrite=True``
  removes the recorded files (only those, never a user's other files) and starts fresh.
- **Lock.** ``<dir>/<lock>`` is created with ``O_EXCL`` and holds the owner's host name, PID and
  the PID's start time (``/proc``, so a reused PID is not mistaken for the owner). A second run
  refuses with the owner's identity; a lock whose process is gone on this host is stale and is
  taken over with a message. A lock from another host cannot be checked: the message says how
  to remove it.
- **Verified files.** A file counts as done only when its size and SHA-256 match the manifest
  record; a truncated, emptied or altered file is recomputed by the next run, and a reader
  (:meth:`RunDir.read` callers) names the bad file. Files are written to a hidden temporary
  name (``.<name>.tmp-<pid>``, which no file pattern of a run matches) and renamed.
"""

import contextlib
import fnmatch
import glob
import hashlib
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Lock", "LockedError", "RunDir", "SettingsMismatch", "fingerprint", "sha256_file"]


class SettingsMismatch(ValueError):
    """A run directory holds results of other settings."""


class LockedError(RuntimeError):
    """Another live run holds the run directory's lock."""


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fingerprint(*arrays) -> str:
    """SHA-256 of arrays' dtypes, shapes and bytes (a pytree of parameters, a dataset): the
    identity of weights or data in a manifest."""
    import jax
    import numpy as np

    h = hashlib.sha256()
    for leaf in jax.tree.leaves(arrays):
        a = np.ascontiguousarray(jax.device_get(leaf))
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _canonical(value: Any) -> Any:
    """JSON-comparable form (tuples as lists, keys as strings)."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), None where unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    now = _start_time(pid)
    return start is None or now is None or now == start


def atomic_write(path: str, write: Callable[[Any], None]) -> str:
    """Write ``path`` through ``write(binary file object)`` to a hidden temporary name in the same
    folder, flush it to disk and rename it into place, so that an interrupted write never leaves
    a truncated file under the final name (the temporary file is removed on error). Every file
    xjax writes for a user goes through here. Returns ``path``."""
    folder, base = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".{base}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    return path


def _atomic_json(path: str, data: Any) -> None:
    text = json.dumps(data, indent=1, sort_keys=True).encode()
    atomic_write(path, lambda f: f.write(text))


_HELD: dict[str, int] = {}      # locks this process holds, by real path: re-entrant in-process


class Lock:
    """An exclusive lock file (``O_EXCL``) holding its owner's host, PID and the PID's start
    time; a lock whose process is gone on this host is stale and taken over with a message.
    Re-entrant within a process (sequential runs in one interpreter share it)."""

    def __init__(self, path: str, *, where: str = "run"):
        self.path = path
        self.where = where
        self.held = False

    def acquire(self) -> None:
        key = os.path.realpath(self.path)
        if _HELD.get(key):
            _HELD[key] += 1
            self.held = True
            return
        self._create()
        _HELD[key] = 1

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        key = os.path.realpath(self.path)
        _HELD[key] -= 1
        if not _HELD[key]:
            del _HELD[key]
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)

    def _create(self) -> None:
        here = os.path.dirname(self.path) or "."
        me = {"host": socket.gethostname(), "pid": os.getpid(), "start": _start_time(os.getpid()),
              "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                fd = None
            if fd is not None:
                with os.fdopen(fd, "w") as f:
                    json.dump(me, f)
                self.held = True
                return
            owner = self._owner()
            if owner is None:              # being written this moment, or left empty by a crash
                time.sleep(0.1)
                owner = self._owner()
            if owner == {}:                # released meanwhile
                continue
            if self._stale(owner, me["host"]):
                print(f"{self.where}: taking over the stale lock of process "
                      f"{(owner or {}).get('pid')} (no longer running): {self.path}",
                      file=sys.stderr)
                with contextlib.suppress(FileNotFoundError):
                    os.remove(self.path)
                continue
            owner = owner or {}
            if owner.get("host", me["host"]) != me["host"]:
                raise LockedError(
                    f"{self.where}: {here} is locked by process {owner.get('pid')} on host "
                    f"{owner.get('host')!r} (since {owner.get('since')}); if no run is active "
                    f"there, remove {self.path}")
            raise LockedError(
                f"{self.where}: {here} is in use by process {owner.get('pid')} (since "
                f"{owner.get('since')}); wait for it to finish, or give another directory")
        raise LockedError(f"{self.where}: could not take the lock {self.path}")

    def _stale(self, owner: dict | None, host: str) -> bool:
        """The owner is gone: a dead process of this host, or an unreadable lock over 10 s old
        (a crash between creating and writing it)."""
        if owner is None or not isinstance(owner.get("pid"), int):
            try:
                return time.time() - os.path.getmtime(self.path) > 10
            except FileNotFoundError:
                return True
        return owner.get("host") == host and not _alive(owner["pid"], owner.get("start"))

    def _owner(self) -> dict | None:
        try:
            with open(self.path) as f:
                owner = json.load(f)
            return owner if isinstance(owner, dict) else {}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            return None

    def __enter__(self) -> "Lock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class RunDir:
    """A run directory, opened as a context manager (the lock is held inside the ``with``).

    Args:
      path: the directory (created).
      settings: what produced the results (JSON-serializable); compared with the manifest's.
      kind: what the directory holds (``"explain"``, ``"lens"``, ``"results"``), stored and
        compared like a setting.
      manifest: the manifest's file name; lock: the lock's file name.
      owned: a glob (relative to ``path``) of the files such a run writes: found without a
        manifest (a directory from an older xjax, or copied without it), they are refused, or
        removed under ``overwrite``.
      overwrite: discard an existing run with other settings (its recorded files) instead of
        refusing.
      where: prefix of error messages.
    """

    def __init__(self, path: str, settings: dict, *, kind: str, manifest: str = "manifest.json",
                 lock: str = "lock", owned: str | None = None, overwrite: bool = False,
                 where: str = "run"):
        self.path = path
        self.settings = _canonical(settings)
        self.kind = kind
        self.manifest_path = os.path.join(path, manifest)
        self.lock = Lock(os.path.join(path, lock), where=where)
        self.overwrite = overwrite
        self.owned = owned
        self.where = where
        self.files: dict[str, dict] = {}

    # -- manifest -----------------------------------------------------------------------------
    def __enter__(self) -> "RunDir":
        os.makedirs(self.path, exist_ok=True)
        self.lock.acquire()
        try:
            self._open_manifest()
        except BaseException:
            self.lock.release()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.lock.release()

    def _open_manifest(self) -> None:
        stored = read_manifest(self.manifest_path, where=self.where)
        if stored is None:
            self.files = {}
            unknown = sorted(glob.glob(os.path.join(self.path, self.owned))) if self.owned else []
            if unknown and not self.overwrite:
                raise SettingsMismatch(
                    f"{self.where}: {self.path} holds {len(unknown)} file(s) like "
                    f"{os.path.basename(unknown[0])!r} but no manifest, so what produced them is "
                    f"unknown; use another directory, or overwrite=True (--overwrite) to discard "
                    f"them")
            self.discard({os.path.relpath(u, self.path): {} for u in unknown})
        else:
            diff = settings_diff({"kind": stored.get("kind"), **stored.get("settings", {})},
                                 {"kind": self.kind, **self.settings})
            if diff and not self.overwrite:
                raise SettingsMismatch(
                    f"{self.where}: {self.path} holds a run with other settings:\n"
                    + "\n".join(f"  {k}: stored {a!r}, requested {b!r}" for k, a, b in diff)
                    + "\nuse another directory, or overwrite=True (--overwrite) to discard it")
            self.files = {} if diff else dict(stored.get("files", {}))
            if diff:
                self.discard(stored.get("files", {}))
        self._write_manifest()

    def discard(self, files: dict) -> None:
        """Remove recorded files (overwrite); files the manifest does not name, or that are not
        of the kind this run writes (``owned``), are left."""
        for name in files:
            if self.owned is not None and not fnmatch.fnmatch(name, self.owned):
                continue
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(self.path, name))
        self.files = {}

    def _write_manifest(self) -> None:
        _atomic_json(self.manifest_path, {"format": 1, "kind": self.kind,
                                          "settings": self.settings, "files": self.files})

    # -- files --------------------------------------------------------------------------------
    def verified(self, name: str) -> bool:
        """Whether ``name`` is recorded and its size and SHA-256 match the record."""
        rec = self.files.get(name)
        return rec is not None and check_file(os.path.join(self.path, name), rec) is None

    def write(self, name: str, write: Callable[[Any], None], **payload) -> None:
        """Write ``name`` through ``write(binary file object)`` to a hidden temporary name,
        rename it into place and record its checksum (and ``payload``) in the manifest."""
        target = os.path.join(self.path, name)

        def checked(f):
            write(f)
            f.flush()
            rec.update(sha256=sha256_file(f.name), bytes=os.path.getsize(f.name), **payload)

        rec: dict = {}
        atomic_write(target, checked)
        self.files[name] = _canonical(rec)
        self._write_manifest()

    def forget(self, name: str) -> None:
        """Drop a file's record (it will be recomputed)."""
        if self.files.pop(name, None) is not None:
            self._write_manifest()


def settings_diff(stored: dict, requested: dict, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """``(key, stored, requested)`` for every key whose values differ; nested settings by
    dotted keys (``user.method``)."""
    out = []
    for k in sorted(set(stored) | set(requested)):
        a, b = stored.get(k), requested.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += settings_diff(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append((prefix + k, a, b))
    return out


def read_manifest(path: str, *, where: str) -> dict | None:
    """A manifest's contents (None when absent); a damaged one raises ``ValueError``."""
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise ValueError(f"{where}: the manifest {path} is unreadable ({e}); remove the run "
                         f"directory or start it again with overwrite=True") from e
    if not isinstance(data, dict) or data.get("format") != 1 or \
            not isinstance(data.get("files"), dict) or not isinstance(data.get("settings"), dict):
        raise ValueError(f"{where}: {path} is not an xjax run manifest (format 1)")
    for name, rec in data["files"].items():           # a manifest is a user's file too
        parts = name.replace("\\", "/").split("/")
        if not name or os.path.isabs(name) or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"{where}: {path} names a file outside its directory: {name!r}")
        if not isinstance(rec, dict) or not isinstance(rec.get("sha256"), str) or \
                len(rec["sha256"]) != 64 or not isinstance(rec.get("bytes"), int):
            raise ValueError(f"{where}: {path} has a malformed record for {name!r}")
        rows = rec.get("rows")
        if rows is not None and not (isinstance(rows, list) and len(rows) == 2 and
                                     all(isinstance(r, int) and r >= 0 for r in rows) and
                                     rows[0] <= rows[1]):
            raise ValueError(f"{where}: {path} has a malformed row range for {name!r}: {rows!r}")
    return data


def check_file(path: str, rec: dict) -> str | None:
    """Why ``path`` does not match its record (None when it does)."""
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        return "missing"
    if size != rec.get("bytes"):
        return f"{size} bytes, recorded {rec.get('bytes')}"
    if sha256_file(path) != rec.get("sha256"):
        return "checksum differs from the manifest"
    return None
