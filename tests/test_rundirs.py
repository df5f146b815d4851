"""Run directories that know their settings (xjax._internal.rundir): runs of other settings
refuse to mix, concurrent runs are kept out by a lock (stale locks taken over), damaged shards
are found, named and recomputed, temporary files never look like shards. The kill, mix and
concurrency scenarios run in subprocesses."""

import fnmatch
import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

import xjax
from tests.conftest import FASHION_MNIST_PRESENT
from xjax._internal.rundir import Lock, LockedError, RunDir, SettingsMismatch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SALIENCY = {"method": "saliency"}


@pytest.fixture(scope="module")
def setup(fmnist_cnn):
    import jax

    m = fmnist_cnn
    x = np.asarray(jax.random.uniform(jax.random.key(0), (50, 28, 28, 1)))
    y = np.asarray(m.model_fn(m.params, x).argmax(-1))
    return m, x, y, xjax.attributions.saliency(m.model_fn)


@pytest.fixture(scope="module")
def finished(setup, tmp_path_factory):
    """An uninterrupted run (7 steps of 8 rows) and its maps."""
    m, x, y, sal = setup
    out = str(tmp_path_factory.mktemp("whole"))
    assert xjax.runs.explain_dataset(sal, m.params, (x, y), out, batch_size=8,
                                     settings=SALIENCY, progress=False) == 7
    return out, xjax.runs.load_maps(out)


def _run(setup, out, **kw):
    m, x, y, sal = setup
    kw.setdefault("settings", SALIENCY)
    return xjax.runs.explain_dataset(kw.pop("explain", sal), kw.pop("params", m.params), (x, y),
                                     out, batch_size=8, progress=False, **kw)


def _shards(out):
    return sorted(glob.glob(os.path.join(out, "maps-h*-s*.npz")))


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return str(dst)


def test_manifest_records_settings_and_every_shard(finished):
    out, _ = finished
    with open(os.path.join(out, "manifest-h000.json")) as f:
        manifest = json.load(f)
    s = manifest["settings"]
    assert manifest["kind"] == "explain_dataset"
    assert s["user"] == SALIENCY and s["batch_size"] == 8 and s["devices"] == 8
    assert s["hosts"] == 1 and s["data"]["rows"] == 50 and s["xjax"] == xjax.__version__
    assert len(s["params_sha256"]) == 64
    files = manifest["files"]
    assert sorted(files) == [os.path.basename(p) for p in _shards(out)]
    assert [files[k]["rows"] for k in sorted(files)] == [[i, min(i + 8, 50)]
                                                         for i in range(0, 50, 8)]
    import hashlib

    for name, rec in files.items():
        with open(os.path.join(out, name), "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == rec["sha256"]


def test_other_settings_refuse_with_the_difference(setup, finished, tmp_path):
    """The measured failure: saliency, then gradient x input, on one directory. Before, the
    second run skipped the existing steps and load_maps mixed the two methods' rows."""
    m, x, y, _ = setup
    out = _copy(finished[0], tmp_path / "d")
    gi = xjax.attributions.gradient_input(m.model_fn)
    with pytest.raises(SettingsMismatch, match=r"method: stored 'saliency', requested "
                       r"'gradient_input'") as e:
        _run(setup, out, explain=gi, settings={"method": "gradient_input"})
    assert "overwrite" in str(e.value)
    np.testing.assert_array_equal(xjax.runs.load_maps(out), finished[1])   # untouched
    # weights are fingerprinted even when the caller's settings agree
    import jax

    other = jax.tree.map(lambda p: p * 1.01, m.params)
    with pytest.raises(SettingsMismatch, match="params_sha256"):
        _run(setup, out, params=other)
    # the batch size (hence the shards' row ranges) is a setting too
    with pytest.raises(SettingsMismatch, match="batch_size: stored 8, requested 16"):
        xjax.runs.explain_dataset(setup[3], m.params, (x, y), out,
                                  batch_size=16, settings=SALIENCY, progress=False)
    # overwrite: a fresh run whose rows are all gradient x input
    with open(os.path.join(out, "notes.txt"), "w") as f:
        f.write("a user's file")
    assert _run(setup, out, explain=gi, settings={"method": "gradient_input"},
                overwrite=True) == 7
    np.testing.assert_allclose(xjax.runs.load_maps(out), gi(m.params, x, y), rtol=1e-4,
                               atol=1e-6)
    assert os.path.exists(os.path.join(out, "notes.txt"))              # not the run's to delete


def test_damaged_shards_are_named_then_recomputed(setup, finished, tmp_path):
    """Before: a truncated shard gave BadZipFile naming no file, a 0-byte one EOFError, and a
    rerun printed '0 step(s) computed'."""
    out = _copy(finished[0], tmp_path / "d")
    shards = _shards(out)
    with open(shards[2], "r+b") as f:                                  # truncated
        f.truncate(os.path.getsize(shards[2]) // 2)
    open(shards[4], "wb").close()                                      # emptied
    with open(shards[5], "r+b") as f:                                  # one byte altered
        f.seek(os.path.getsize(shards[5]) - 40)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0xFF]))
    os.remove(shards[6])                                               # missing
    with pytest.raises(ValueError, match=os.path.basename(shards[2])):
        xjax.runs.load_maps(out)
    assert _run(setup, out) == 4                                       # exactly the four
    np.testing.assert_array_equal(xjax.runs.load_maps(out), finished[1])
    assert _run(setup, out) == 0


def test_load_maps_names_each_kind_of_damage(finished, tmp_path):
    out = _copy(finished[0], tmp_path / "d")
    shard = _shards(out)[3]
    open(shard, "wb").close()
    with pytest.raises(ValueError, match=rf"{os.path.basename(shard)} is damaged \(0 bytes"):
        xjax.runs.load_maps(out)
    os.remove(shard)
    with pytest.raises(ValueError, match=rf"{os.path.basename(shard)} is damaged \(missing"):
        xjax.runs.load_maps(out)
    os.remove(os.path.join(out, "manifest-h000.json"))
    with pytest.raises(FileNotFoundError, match="no run manifest.*older xjax"):
        xjax.runs.load_maps(out)


def test_temporary_files_never_match_the_shard_pattern(setup, finished, tmp_path):
    """Before: ``maps-...npz.tmp.npz`` matched ``maps-h*-s*.npz`` and load_maps read it."""
    out = _copy(finished[0], tmp_path / "d")
    seen = []

    def writer(f):
        seen.append(sorted(os.listdir(out)))
        f.write(b"half")

    with RunDir(out, {"user": SALIENCY}, kind="probe", manifest="probe.json", lock="probe.lock",
                where="test") as rd:
        rd.write("maps-h000-s000099.npz", writer)
    tmp = [f for f in seen[0] if f not in os.listdir(finished[0]) and f != "probe.json"
           and f != "probe.lock"]
    assert tmp and all(f.startswith(".") for f in tmp)                 # hidden while written
    assert not [f for f in tmp if fnmatch.fnmatch(f, "maps-h*-s*.npz")]
    os.remove(os.path.join(out, "maps-h000-s000099.npz"))
    # stray temporaries of a killed writer, old-style and new-style, are never read
    np.savez(os.path.join(out, "maps-h000-s000003.npz.tmp.npz"), maps=np.zeros(1), index=[0])
    open(os.path.join(out, ".maps-h000-s000003.npz.tmp-1234"), "wb").close()
    np.testing.assert_array_equal(xjax.runs.load_maps(out), finished[1])


def test_a_directory_without_manifest_is_refused_then_overwritten(setup, finished, tmp_path):
    out = _copy(finished[0], tmp_path / "d")
    os.remove(os.path.join(out, "manifest-h000.json"))                 # as an older xjax left it
    with pytest.raises(SettingsMismatch, match="no manifest"):
        _run(setup, out)
    assert _run(setup, out, overwrite=True) == 7
    np.testing.assert_array_equal(xjax.runs.load_maps(out), finished[1])


def test_empty_source_and_bad_settings(setup, tmp_path):
    m, x, y, sal = setup
    with pytest.raises(ValueError, match="source is empty"):
        xjax.runs.explain_dataset(sal, m.params, (x[:0], y[:0]), str(tmp_path), batch_size=8)
    with pytest.raises(TypeError, match="settings must be a dict"):
        xjax.runs.explain_dataset(sal, m.params, (x, y), str(tmp_path), batch_size=8,
                                  settings=["saliency"])
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        xjax.runs.explain_dataset(sal, m.params, (x, y), str(tmp_path), batch_size=0)


# -- the lock ------------------------------------------------------------------------------------

def _dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _write_lock(path, **owner):
    with open(path, "w") as f:
        json.dump({"host": socket.gethostname(), "since": "then", **owner}, f)


def test_lock_refuses_a_live_owner_and_takes_over_a_stale_one(tmp_path, capsys):
    path = str(tmp_path / "lock")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _write_lock(path, pid=sleeper.pid, start=None)
        with pytest.raises(LockedError, match=f"in use by process {sleeper.pid}"):
            Lock(path, where="t").acquire()
    finally:
        sleeper.kill()
        sleeper.wait()
    dead = _dead_pid()
    _write_lock(path, pid=dead, start=None)
    with Lock(path, where="t"):
        with open(path) as f:
            assert json.load(f)["pid"] == os.getpid()
    assert f"stale lock of process {dead}" in capsys.readouterr().err
    assert not os.path.exists(path)                                    # released
    # a reused PID: alive, but not the process that took the lock (its start time differs)
    _write_lock(path, pid=os.getppid(), start="1")
    with Lock(path, where="t"):
        pass
    # another host's lock cannot be checked: refused, with how to remove it
    _write_lock(path, pid=1, start=None, host="elsewhere")
    with pytest.raises(LockedError, match="on host 'elsewhere'.*remove"):
        Lock(path, where="t").acquire()
    # an empty lock (a crash between creating and writing it): refused while fresh, stale later
    open(path, "w").close()
    with pytest.raises(LockedError):
        Lock(path, where="t").acquire()
    os.utime(path, (time.time() - 60, time.time() - 60))
    with Lock(path, where="t"):
        pass


HOLDER = """
import sys, time, numpy as np, jax
jax.config.update("jax_num_cpu_devices", 8)
import xjax
m = xjax.models.small_cnn(pretrained="fashion_mnist")
x = np.asarray(jax.random.uniform(jax.random.key(0), (50, 28, 28, 1)))
y = np.asarray(m.model_fn(m.params, x).argmax(-1))
xjax.runs.explain_dataset(xjax.attributions.saliency(m.model_fn), m.params, (x, y), sys.argv[1],
                          batch_size=8, settings={"method": "saliency"}, progress=False,
                          on_step=lambda s: time.sleep(2.0))
"""


def test_concurrent_run_refused_then_killed_run_resumes_bit_identical(setup, finished, tmp_path):
    """A run in another process holds the directory: a second run (same or other settings)
    refuses, naming the owner. After SIGKILL the lock is stale: a run of other settings is
    refused for its settings, one of the same settings resumes to the uninterrupted maps."""
    m, x, y, _ = setup
    out = str(tmp_path / "d")
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, out], cwd=ROOT)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and len(_shards(out)) < 2:
            time.sleep(0.1)
        assert len(_shards(out)) >= 2
        with pytest.raises(LockedError, match=f"in use by process {proc.pid}"):
            _run(setup, out)
        gi = xjax.attributions.gradient_input(m.model_fn)
        with pytest.raises(LockedError, match=f"in use by process {proc.pid}"):
            _run(setup, out, explain=gi, settings={"method": "gradient_input"})
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    written = len(_shards(out))
    assert 2 <= written < 7 and os.path.exists(os.path.join(out, "lock-h000"))
    with pytest.raises(SettingsMismatch, match="method"):
        _run(setup, out, explain=gi, settings={"method": "gradient_input"})
    assert _run(setup, out) == 7 - written
    np.testing.assert_array_equal(xjax.runs.load_maps(out), finished[1])


@pytest.mark.skipif(not FASHION_MNIST_PRESENT, reason="Fashion-MNIST not installed "
                    "(apt-get install dataset-fashion-mnist)")
def test_cli_mixed_methods_refused_and_overwrite_starts_fresh(tmp_path):
    """The issue's command lines: ``xjax explain --dataset fashion_mnist --method saliency``,
    killed, then ``--method gradient_input`` on the same --out."""
    out = str(tmp_path / "d")
    cmd = [sys.executable, "-m", "xjax.cli", "explain", "--model", "small_cnn", "--dataset",
           "fashion_mnist", "--batch-size", "256", "--out", out]

    def manifest():
        try:
            with open(os.path.join(out, "manifest-h000.json")) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def start_and_kill(method, *extra):         # killed once a shard of this method is written
        proc = subprocess.Popen(cmd + ["--method", method, *extra], cwd=ROOT,
                                stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        deadline = time.time() + 180
        while time.time() < deadline and proc.poll() is None and not (
                (m := manifest()) and m["settings"]["user"]["method"] == method and m["files"]):
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert manifest()["files"]

    start_and_kill("saliency")
    r = subprocess.run(cmd + ["--method", "gradient_input"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode != 0
    assert "method: stored 'saliency', requested 'gradient_input'" in r.stderr
    assert "--overwrite" in r.stderr
    start_and_kill("gradient_input", "--overwrite")
    m = manifest()
    assert m["settings"]["user"]["method"] == "gradient_input"
    assert sorted(m["files"]) == [os.path.basename(p) for p in _shards(out)]   # no saliency left


def test_a_hostile_manifest_is_refused_and_overwrite_deletes_only_run_files(setup, finished,
                                                                           tmp_path):
    """A manifest is a user's file: a record naming '../victim' must not make overwrite delete
    it, and malformed records are refused by name."""
    out = _copy(finished[0], tmp_path / "d")
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    path = os.path.join(out, "manifest-h000.json")
    with open(path) as f:
        good = json.load(f)
    for files, match in (({"../victim.txt": {"sha256": "0" * 64, "bytes": 1}}, "outside"),
                         ({"/etc/passwd": {"sha256": "0" * 64, "bytes": 1}}, "outside"),
                         ({"maps-h000-s000000.npz": {"sha256": 3}}, "malformed record"),
                         ({"maps-h000-s000000.npz": {"sha256": "0" * 64, "bytes": 1,
                                                     "rows": [5, 2]}}, "row range")):
        with open(path, "w") as f:
            json.dump({**good, "files": files}, f)
        for call in (lambda: xjax.runs.load_maps(out),
                     lambda: _run(setup, out, overwrite=True)):
            with pytest.raises(ValueError, match=match):
                call()
    assert victim.read_text() == "keep me"
    # a well-formed record of a file the run does not write is left by overwrite
    notes = os.path.join(out, "notes.txt")
    with open(notes, "w") as f:
        f.write("x")
    with open(path, "w") as f:
        json.dump({**good, "files": {**good["files"],
                                     "notes.txt": {"sha256": "0" * 64, "bytes": 1}},
                   "settings": {**good["settings"], "batch_size": 4}}, f)
    assert _run(setup, out, overwrite=True) == 7
    assert os.path.exists(notes)
