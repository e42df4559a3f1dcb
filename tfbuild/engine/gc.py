"""Garbage collection of a build_dir: what no lock entry and no link uses.

Deleted: store entries that neither the lock file nor any link under build_dir
(build/<target>/<stage>, sweep job folders) points at; scratch directories
left by killed runs; per-fingerprint lock files with no store entry; dangling
links; sweep folders beyond the newest `keep_sweeps`; temporary files of killed
writers (files.dead_temps) under build_dir and beside the lock file. It runs
only while no build uses the build_dir (builds hold the store's shared lock).
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, List, Set

from ..errors import UserError
from . import lockfile
from .files import dead_temps
from .fingerprint import StatCache
from .store import BUILD_LOCK, Store


@dataclass
class Garbage:
    paths: List[Path] = field(default_factory=list)
    size: int = 0
    temps: int = 0   # how many of `paths` are temporary files of killed runs

    def add(self, path: Path) -> None:
        self.paths.append(path)
        self.size += _size(path)


def collect(store: Store, lock_file: Path, keep_sweeps: int) -> Garbage:
    """What gc would delete (nothing is deleted here)."""
    garbage = Garbage()
    sweeps = sorted(p for p in (store.root / "sweeps").glob("*") if p.is_dir())
    for old in sweeps[:max(0, len(sweeps) - keep_sweeps)]:
        garbage.add(old)
    doomed = set(garbage.paths)
    used = _locked(lock_file) | _linked(store, doomed)
    keys = set()
    for entry in store.entries():
        keys.add(entry.name)
        if entry.name not in used:
            garbage.add(entry)
    for scratch in sorted((store.root / "tmp").glob("*")):
        garbage.add(scratch)
    for lock in sorted(store.meta_dir.glob("*.lock")):
        if len(lock.stem) == 24 and lock.stem not in keys - {p.name for p in garbage.paths}:
            garbage.add(lock)
    for link in _links(store):
        if not link.exists() and not any(d in link.parents for d in doomed):
            garbage.add(link)
    temps = {t for d in _folders(store.root, set(garbage.paths)) for t in dead_temps(d, delete=False)}
    temps.update(dead_temps(lock_file.parent, lock_file.name, delete=False))
    temps -= set(garbage.paths)   # a dangling link temp is listed once, as a dangling link
    for temp in sorted(temps):
        garbage.add(temp)
    garbage.temps = len(temps)
    return garbage


def delete(garbage: Garbage) -> None:
    for path in garbage.paths:
        if path.is_symlink() or path.is_file():
            path.unlink(missing_ok=True)
        else:
            shutil.rmtree(path, ignore_errors=True)


def run(store: Store, lock_file: Path, keep_sweeps: int, dry_run: bool) -> Garbage:
    with store.lock(BUILD_LOCK, wait=False) as free:
        if not free:
            raise UserError(f"a build is running in {store.root}: run gc when it has finished")
        garbage = collect(store, lock_file, keep_sweeps)
        if not dry_run:
            delete(garbage)
            cache = StatCache(store.meta_dir / "state.json")
            cache.prune()
            cache.save(merge=False)  # no build runs meanwhile: we hold the build lock
    return garbage


def _locked(lock_file: Path) -> Set[str]:
    """Store keys (fingerprint prefixes) that the lock file records."""
    keys = set()
    for entry in lockfile.read(lock_file).values():
        for stage in (entry.get("stages") or {}).values():
            keys.add(str(stage.get("fingerprint", ""))[:24])
    return keys


def _links(store: Store) -> List[Path]:
    """Every symlink under build_dir, outside the store's own folders."""
    skip = {store.root / "store", store.root / "tmp", store.meta_dir}
    found = []
    for dirpath, dirnames, filenames in os.walk(store.root):
        here = Path(dirpath)
        found += [here / n for n in (*dirnames, *filenames) if (here / n).is_symlink()]
        dirnames[:] = [d for d in dirnames if here / d not in skip]
    return found


def _folders(root: Path, skip: Set[Path]) -> Iterator[Path]:
    """Every folder under `root` (itself included), not descending into `skip`."""
    for dirpath, dirnames, _ in os.walk(root):
        yield Path(dirpath)
        dirnames[:] = [d for d in dirnames if Path(dirpath, d) not in skip]


def _linked(store: Store, doomed: Set[Path]) -> Set[str]:
    """Store keys that a link under build_dir points at (links inside doomed folders don't count)."""
    keys = set()
    root = (store.root / "store").resolve()
    for link in _links(store):
        if any(d in link.parents for d in doomed):
            continue
        target = link.resolve()
        if root in target.parents:
            keys.add(target.relative_to(root).parts[1])
    return keys


def _size(path: Path) -> int:
    if path.is_symlink():
        return 0
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
