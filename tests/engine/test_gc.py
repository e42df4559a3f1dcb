"""engine/gc.py: what no lock entry and no link uses goes; a running build stops gc."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from fakes import Cfg, DoubleCfg
from tfbuild.engine import gc
from tfbuild.engine.files import GRACE_S
from tfbuild.engine.store import BUILD_LOCK, Store
from tfbuild.errors import UserError


def store(project) -> Store:
    return Store(project.opts.build_dir)


def test_a_fresh_build_leaves_no_garbage(project):
    project.build()
    assert gc.collect(store(project), project.opts.lock_file, keep_sweeps=3).paths == []


def test_an_entry_no_lock_entry_and_no_link_uses_is_garbage(project):
    project.build()
    old_double, old_tail = project.store_dirs("double"), project.store_dirs("tail")
    project.build(Cfg(double=DoubleCfg(factor=3)))   # the lock entry and links move on
    garbage = gc.collect(store(project), project.opts.lock_file, keep_sweeps=3)
    locks = [store(project).meta_dir / f"{d.name}.lock" for d in old_double + old_tail]  # their build locks
    assert sorted(garbage.paths) == sorted(old_double + old_tail + locks)
    assert garbage.size == sum(f.stat().st_size for d in old_double + old_tail for f in d.iterdir())


def test_a_link_keeps_its_entry(project):
    project.build()
    kept = project.store_dirs("double")[0]
    project.build(Cfg(double=DoubleCfg(factor=3)))
    store(project).link(project.opts.build_dir / "pinned" / "double", kept)
    entries = [p for p in gc.collect(store(project), project.opts.lock_file, keep_sweeps=3).paths
               if "store" in p.parts]
    assert len(entries) == 1 and entries[0].parent.name == "tail"   # the old double is kept by its link


def test_scratch_orphan_locks_dangling_links_and_old_sweeps(project):
    project.build()
    s = store(project)
    scratch = s.scratch("double")
    orphan = s.meta_dir / ("0" * 24 + ".lock")
    orphan.write_text("")
    dangling = project.opts.build_dir / "gone"
    os.symlink(project.root / "nowhere", dangling)
    sweeps = [project.opts.build_dir / "sweeps" / name for name in ("2026-01-01", "2026-02-01", "2026-03-01")]
    for folder in sweeps:
        folder.mkdir(parents=True)
    garbage = gc.collect(s, project.opts.lock_file, keep_sweeps=2)
    assert set(garbage.paths) == {scratch, orphan, dangling, sweeps[0]}


def test_run_deletes_and_dry_run_only_lists(project):
    project.build()
    old = project.store_dirs("double")[0]
    project.build(Cfg(double=DoubleCfg(factor=3)))
    listed = gc.run(store(project), project.opts.lock_file, keep_sweeps=3, dry_run=True)
    assert old in listed.paths and old.exists()
    gc.run(store(project), project.opts.lock_file, keep_sweeps=3, dry_run=False)
    assert not old.exists() and len(project.store_dirs("double")) == 1
    assert project.build(Cfg(double=DoubleCfg(factor=3)))["stages"][1]["status"] == "fresh"


def test_gc_waits_for_no_running_build(project):
    project.build()
    with store(project).lock(BUILD_LOCK, shared=True):   # a build is running
        with pytest.raises(UserError, match="a build is running"):
            gc.run(store(project), project.opts.lock_file, keep_sweeps=3, dry_run=False)


# The real atomic_write, with a rename that never comes: the child dies holding its temp.
STUCK_WRITER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from tfbuild.engine import files
    os.replace = lambda *a: (print("temp written", flush=True), time.sleep(600))
    files.atomic_write(Path(sys.argv[1]), "half of it")
""")


def killed_mid_write(path) -> int:
    """kill -9 a process writing `path` between its temp and its rename; its (dead) PID."""
    child = subprocess.Popen([sys.executable, "-c", STUCK_WRITER, str(path)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "temp written\n"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()   # reaped: a zombie's PID would still answer
    return child.pid


def leftovers(project):
    """A killed run's temps wherever one can be left, aged past the grace; and a live writer's."""
    s, build = store(project), project.opts.build_dir
    entry = project.store_dirs("source")[0]
    dead = killed_mid_write(s.meta_dir / "state.json")
    temps = [s.meta_dir / f".state.json.{dead}.tmp", entry / f".bench.json.{dead}.tmp",
             project.opts.lock_file.with_name(f".tfbuild.lock.{dead}.tmp"), build / "t" / f".double.{dead}"]
    temps[1].write_text("{")
    temps[2].write_text("schema:")
    temps[3].symlink_to(entry)                   # Store.link's temp
    live = entry / f".bench.json.{os.getpid()}.tmp"
    live.write_text("{")
    then = time.time() - GRACE_S - 5
    for path in (*temps, live):
        os.utime(path, (then, then), follow_symlinks=False)
    return temps, live


def test_gc_removes_temp_files_of_killed_runs_and_dry_run_lists_them(project):
    project.build()
    temps, live = leftovers(project)
    listed = gc.run(store(project), project.opts.lock_file, keep_sweeps=3, dry_run=True)
    assert sorted(listed.paths) == sorted(temps) and listed.temps == 4
    assert all(os.path.lexists(p) for p in temps)
    done = gc.run(store(project), project.opts.lock_file, keep_sweeps=3, dry_run=False)
    assert done.temps == 4 and not any(os.path.lexists(p) for p in temps)
    assert live.exists() and (store(project).meta_dir / "state.json").exists()
    assert gc.collect(store(project), project.opts.lock_file, keep_sweeps=3).paths == []


def test_the_next_run_removes_the_temps_where_it_works(project):
    project.build()
    temps, live = leftovers(project)
    project.build(Cfg(double=DoubleCfg(factor=3)))  # reads source's entry, saves the stat cache,
    assert not any(os.path.lexists(p) for p in temps)   # writes the lock file, links double
    assert live.exists()
