"""engine/files.py: atomic replacement, flock, and the temporaries of killed writers."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tfbuild.engine import lockfile
from tfbuild.engine.files import GRACE_S, atomic_write, dead_temps, flock

# The real atomic_write, with a rename that never comes: the child dies holding its temp.
STUCK_WRITER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from tfbuild.engine import files
    os.replace = lambda *a: (print("temp written", flush=True), time.sleep(600))
    files.atomic_write(Path(sys.argv[1]), "half of it")
""")


def test_atomic_write_creates_folders_replaces_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "a" / "b" / "f.txt"
    atomic_write(path, "one")
    atomic_write(path, "two")
    assert path.read_text() == "two"
    assert os.listdir(path.parent) == ["f.txt"]


def test_an_exclusive_lock_excludes_and_is_released(tmp_path):
    path = tmp_path / "meta" / "x.lock"
    with flock(path) as held:
        assert held and path.exists()
        with flock(path, wait=False) as other:
            assert other is False
        with flock(path, shared=True, wait=False) as reader:
            assert reader is False
    with flock(path, wait=False) as again:
        assert again is True


def test_shared_locks_share_but_exclude_a_writer(tmp_path):
    path = tmp_path / "x.lock"
    with flock(path, shared=True) as one, flock(path, shared=True, wait=False) as two:
        assert one and two
        with flock(path, wait=False) as writer:
            assert writer is False


@pytest.fixture
def live_pid():
    """The PID of a process that is alive all through the test (a writer, stopped mid-write)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield child.pid
    child.kill()
    child.wait()


def dead_pid() -> int:
    """The PID of a process that ran here and was killed (and reaped: a zombie still answers)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    child.send_signal(signal.SIGKILL)
    child.wait()
    return child.pid


def aged(*paths):
    """Make the temps older than the grace a writer on another host gets."""
    then = time.time() - GRACE_S - 5
    for path in paths:
        os.utime(path, (then, then), follow_symlinks=False)
    return paths


def test_dead_temps_takes_a_killed_writers_temps_and_nothing_else(tmp_path):
    dead, live = dead_pid(), os.getpid()
    doomed = [tmp_path / f".f.txt.{dead}.tmp", tmp_path / f".double.{dead}"]
    doomed[0].write_text("half")
    doomed[1].symlink_to("nowhere")                          # Store.link's temp
    aged(*doomed)
    kept = [tmp_path / f".f.txt.{live}.tmp",                 # a live writer's
            tmp_path / f".g.txt.{dead}.tmp",                 # too young: maybe another host's
            tmp_path / f".notes.{dead}",                     # a plain file without .tmp: not ours
            tmp_path / "f.txt"]
    for path in kept:
        path.write_text("x")
    aged(*kept[:1], *kept[2:])
    (tmp_path / f".dir.{dead}.tmp").mkdir()                  # a folder: not ours
    assert sorted(dead_temps(tmp_path, delete=False)) == sorted(doomed)
    assert all(p.is_symlink() or p.exists() for p in doomed)     # delete=False only lists
    assert dead_temps(tmp_path, "double") == [doomed[1]]         # only NAME's
    assert sorted(dead_temps(tmp_path)) == [doomed[0]]
    assert sorted(os.listdir(tmp_path)) == sorted([p.name for p in kept] + [f".dir.{dead}.tmp"])
    assert dead_temps(tmp_path / "absent") == []


def test_a_lock_file_write_killed_mid_way_is_swept_by_the_next_write(tmp_path, live_pid):
    lock = tmp_path / "tfbuild.lock"
    child = subprocess.Popen([sys.executable, "-c", STUCK_WRITER, str(lock)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "temp written\n"
    finally:
        child.send_signal(signal.SIGKILL)    # kill -9: no finally runs in the child
        child.wait()
    temp = tmp_path / f".tfbuild.lock.{child.pid}.tmp"
    assert temp.read_text() == "half of it"
    assert temp.exists() and not lock.exists()
    live = tmp_path / f".tfbuild.lock.{live_pid}.tmp"   # (os.getpid() would be this write's own)
    live.write_text("another writer's")
    other = tmp_path / f".report.json.{child.pid}.tmp"   # not the lock file's: the folder is the user's
    other.write_text("{}")
    aged(temp, live, other)
    lockfile.update(lock, "t", {"stages": {}})
    assert not temp.exists() and live.exists() and other.exists()
    assert lockfile.read(lock) == {"t": {"stages": {}}}
