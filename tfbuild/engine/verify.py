"""verify=true: rebuild from scratch elsewhere, then compare with the lock file.

A stage passes when its rebuild has the recorded fingerprint and outputs, its
provenance statements hold, and (with a public key) this machine's copy of its
artifact carries a valid signature. Nothing is written to the project's store
or lock file.
"""
from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, List, Optional

from ..errors import UserError
from . import lockfile, provenance
from .build import build_target
from .output import Output
from .plan import Options
from .reasons import Reason
from .resolver import differences
from .results import BuildResult, StageResult
from .spec import Registry
from .store import PROVENANCE, Store


def verify(cfg: Any, registry: Registry, opts: Options, target: str, output: Output,
           lock_key: Optional[str] = None) -> BuildResult:
    """Rebuild `target` from scratch; a stage fails where it differs from the lock file."""
    lock_key = lock_key or target
    entry = lockfile.read(opts.lock_file).get(lock_key)
    if not entry:
        raise UserError(f"{opts.lock_file} has no entry for {lock_key!r}: build it once "
                        "(tfbuild target=...) and commit the lock file, then verify")
    recorded = entry.get("stages", {})
    with tempfile.TemporaryDirectory(prefix="tfbuild-verify-") as scratch:
        fresh = replace(opts, build_dir=Path(scratch), lock_file=Path(scratch) / "verify.lock",
                        force=False, dry_run=False, bench=None, remote=None)  # a proof builds
        rebuilt = build_target(cfg, registry, fresh, target, output, lock_key=lock_key,
                               link_dir=Path(scratch) / "links", write_lock=False)
        checks = _Checks(Store(Path(scratch)), Store(opts.build_dir), opts.signer)
        stages = [replace(_compare(s, recorded.get(s.name, {}), checks), scratch=True)  # the scratch is gone
                  for s in rebuilt.stages]
    names = {s.name for s in rebuilt.stages}
    stages += [StageResult(name, "failed", (Reason("not-in-target"),), None)
               for name in sorted(set(recorded) - names)]
    ok = rebuilt.ok and all(s.status != "failed" for s in stages)
    return replace(rebuilt, ok=ok, stages=tuple(stages))


def _compare(s: StageResult, recorded: dict, checks: _Checks) -> StageResult:
    """The rebuilt stage against its lock record."""
    if s.status in ("failed", "skipped"):
        return s  # its own reason says why
    if not recorded:
        return _failed(s, Reason("unlisted"))
    if recorded.get("fingerprint") != s.fingerprint:
        return _failed(s, Reason("differs", new=tuple(differences(recorded, s.record))))
    if s.status != "built":
        return s
    old = recorded.get("outputs", {})
    if s.outputs != old:
        changed = sorted(k for k in set(s.outputs) | set(old) if s.outputs.get(k) != old.get(k))
        return _failed(s, Reason("output-differs", new=tuple(changed)))
    problems = checks.provenance(s) + checks.signature(s)
    return _failed(s, problems[0]) if problems else replace(s, reasons=(Reason("identical"),))


def _failed(s: StageResult, reason: Reason) -> StageResult:
    return replace(s, status="failed", reasons=(reason,))


class _Checks:
    """The attestations of a rebuilt stage (`rebuilt`) and of this machine's copy (`local`)."""

    def __init__(self, rebuilt: Store, local: Store, signer):
        self.rebuilt, self.local, self.signer = rebuilt, local, signer

    def provenance(self, s: StageResult) -> List[Reason]:
        """The rebuilt artifact's statement must hold, and so must the one beside this
        machine's copy of the same artifact (the one a CI job would publish)."""
        stmt = self.rebuilt.manifest(s.name, s.fingerprint, PROVENANCE)
        problems = [Reason("provenance", p) for p in provenance.check(stmt, s.name, s.record, s.outputs)]
        mine = self.local.manifest(s.name, s.fingerprint, PROVENANCE)
        if mine is not None:  # absent: built by tfbuild < 0.3
            where = self.local.path(s.name, s.fingerprint) / PROVENANCE
            problems += [Reason("provenance", p, old=str(where))
                         for p in provenance.check(mine, s.name, s.record, s.outputs)]
        return problems

    def signature(self, s: StageResult) -> List[Reason]:
        """With a public key: this machine's copy of the artifact must carry a valid signature."""
        if not (self.signer and self.signer.public_key):
            return []
        if self.local.manifest(s.name, s.fingerprint) is None:
            return [Reason("signature", f"no copy in {self.local.root} to check: build or fetch it first")]
        problem = self.signer.problem(self.local.path(s.name, s.fingerprint))
        return [Reason("signature", problem)] if problem else []
