"""What to build and why, decided before anything runs (ninja's DependencyScan).

The plan is a list of frozen `Decision`s (see resolver.py); what the build then
learns lives in `results.StageResult`, never in the plan.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, List

from ..errors import ConfigError, LockOutOfDate
from . import lockfile
from .fingerprint import StatCache
from .graph import make_graph
from .reasons import text
from .resolver import Decision, resolve
from .spec import Registry
from .store import Store


@dataclass(frozen=True)
class Options:
    """How to run, as opposed to what to build: none of it is part of any identity."""
    build_dir: Path
    lock_file: Path
    force: Any = False          # True, or a list of stage names
    dry_run: bool = False
    locked: bool = False        # fail (exit 1) before building when the lock file is out of date
    bench: Any = None           # the bench settings handed to each stage's `bench`; None: measure nothing
    bench_again: bool = False
    remote: Any = None          # a cache.Remote: fetch stale stages, push built ones
    signer: Any = None          # signs what is built (`key`, `sign(dir)`), checks (`public_key`, `problem(dir)`)
    # Accuracy on the user's data: `.identity` (a digest of its data, settings and code),
    # handed to each stage's `evaluate`; None: evaluate nothing. No part of any fingerprint.
    evaluation: Any = None


def parse_force(force, known: List[str], names: List[str]) -> List[str]:
    """The stages of this target that `force` names (True: all of them)."""
    if force is True:
        return list(names)
    if force in (False, None):
        return []
    items = [force] if isinstance(force, str) else list(force)
    unknown = [s for s in items if s not in known]
    if unknown:
        raise ConfigError(f"force names unknown stage {unknown[0]!r}: use force=true or "
                          f"force=[{','.join(names)}] (stages of this target)")
    return [s for s in items if s in names]


def plan(cfg: Any, registry: Registry, opts: Options, lock_key: str, target: str,
         cache: StatCache) -> List[Decision]:
    """One decision per stage, explained against the lock entry `lock_key` (else `target`'s)."""
    nodes = make_graph(cfg, registry)
    force = parse_force(opts.force, registry.names(), [n.name for n in nodes])
    previous = lockfile.read(opts.lock_file)
    entry = previous.get(lock_key) or previous.get(target) or {}
    return resolve(nodes, Store(opts.build_dir), cache, entry.get("stages"), force)


def check_locked(decisions: List[Decision], lock_file: Path, key: str) -> None:
    """Like cargo's --locked: CI proves the committed lock file is current, for free."""
    stale = [d for d in decisions if d.locked]
    if stale:
        d = stale[0]
        more = f" (and {len(stale) - 1} more)" if len(stale) > 1 else ""
        raise LockOutOfDate(f"{lock_file} is out of date for {key}: {d.name}: {text(d.locked[:2])}"
                            f"{more}: build it (without locked=true) and commit the lock file")
