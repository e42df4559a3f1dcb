"""File primitives the engine relies on: atomic replacement, flock, and sweeping up
the temporaries of writers that were killed (kill -9 skips every `finally`)."""
from __future__ import annotations

import contextlib
import fcntl
import os
import re
import time
from pathlib import Path
from typing import Iterator, List, Optional

# atomic_write's `.NAME.PID.tmp`, and Store.link's `.NAME.PID` (a symlink)
_TEMP = re.compile(r"\.(?P<name>.+)\.(?P<pid>[1-9][0-9]{0,9})(?P<tmp>\.tmp)?")
# A shared build_dir may have writers on other hosts, whose PIDs mean nothing here;
# a write lasts milliseconds, so a temp this old whose PID is dead here is a leftover.
GRACE_S = 60


def atomic_write(path: Path, text: str) -> None:
    """A reader sees the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def flock(path: Path, *, shared: bool = False, wait: bool = True) -> Iterator[bool]:
    """Hold a lock on `path` (created if need be); yields False, holding nothing,
    when `wait` is off and someone else holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        try:
            fcntl.flock(f, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def dead_temps(folder: Path, name: Optional[str] = None, delete: bool = True) -> List[Path]:
    """The temporaries in `folder` (only NAME's, if given) whose writer is gone: its PID
    is not alive on this host and the temp is older than GRACE_S. Deleted unless `delete`
    is off; a live writer's are never touched."""
    found = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return found
    for entry in entries:
        m = _TEMP.fullmatch(entry.name)
        if not m or (name is not None and m["name"] != name):
            continue
        try:
            if entry.is_dir(follow_symlinks=False) or not (m["tmp"] or entry.is_symlink()):
                continue
            if time.time() - entry.stat(follow_symlinks=False).st_mtime < GRACE_S:
                continue
            if _alive(int(m["pid"])):
                continue
            if delete:
                os.unlink(entry.path)
        except OSError:  # gone meanwhile, or not ours to delete: tidying never fails a build
            continue
        found.append(Path(entry.path))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # someone else's process; or no PID we can judge
        return True
    return True
