"""What a build learned, as types: one `StageResult` per stage, one `BuildResult`.

`to_json()` gives the build report (docs/interface.md, "Build report"); the
stable links (build/<target>/<stage>) and the lock entry are made from results
too. A plan is never changed: results are new values.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from .reasons import Reason, text
from .resolver import Decision
from .store import MEASUREMENT, Store, read_json

PUBLISHED = ("built", "fresh", "planned")   # statuses whose artifact is (or would be) in the store


@dataclass(frozen=True)
class StageResult:
    """One stage after the build: status, why, and where its artifact is."""
    name: str
    status: str                          # built, fresh, failed, planned, skipped
    reasons: Tuple[Reason, ...]
    fingerprint: Optional[str]
    record: dict = field(default_factory=dict)     # the lock record, less the outputs
    outputs: Dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    artifact: Optional[Path] = None      # absolute, in the store; None: nothing published
    size: Optional[int] = None
    link: Optional[Path] = None          # the readable path shown to people
    scratch: bool = False                # built in a directory since deleted (verify): no paths
    evaluation: Optional[dict] = None    # accuracy on the user's data (Options.evaluation)

    @property
    def reason(self) -> str:
        return text(self.reasons)

    def to_json(self) -> dict:
        stage = {"name": self.name, "status": self.status, "reason": self.reason,
                 "fingerprint": self.fingerprint,
                 "artifact": None if self.scratch or self.artifact is None else str(self.artifact),
                 "seconds": round(self.seconds, 3), "size": self.size}
        if self.scratch:
            stage["link"] = None
        elif self.link is not None:
            stage["link"] = str(self.link)
        if self.evaluation is not None:
            stage["evaluation"] = self.evaluation
        return stage


def outcome(d: Decision, status: str, reasons: Sequence[Reason] = (), outputs: Optional[dict] = None,
            seconds: float = 0.0) -> StageResult:
    """What the build loop learned of one planned stage (paths come in `finish`)."""
    return StageResult(d.name, status, tuple(reasons), d.fingerprint, d.record, dict(outputs or {}),
                       seconds)


@dataclass(frozen=True)
class Final:
    """What the final artifact of a successful build says of itself."""
    metadata: Optional[dict]
    benchmark: Optional[dict]


@dataclass(frozen=True)
class BuildResult:
    """A target after the build (or plan, or verify); `to_json()` is the report."""
    target: str
    ok: bool
    stages: Tuple[StageResult, ...]
    final: Optional[Final] = None

    @property
    def metadata(self) -> Optional[dict]:
        return self.final.metadata if self.final else None

    @property
    def benchmark(self) -> Optional[dict]:
        return self.final.benchmark if self.final else None

    def to_json(self) -> dict:
        stages = [s.to_json() for s in self.stages]
        report = {"target": self.target, "ok": self.ok,
                  "artifact": stages[-1]["artifact"] if self.ok and stages else None, "stages": stages}
        if self.final:
            report["metadata"], report["benchmark"] = self.final.metadata, self.final.benchmark
        evaluated = [s.evaluation for s in self.stages if s.evaluation is not None]
        if evaluated:   # the final artifact's, else the last one evaluated
            report["evaluation"] = evaluated[-1]
        return report


def finish(target: str, decisions: List[Decision], outcomes: List[StageResult], store: Store,
           ok: bool, link_dir: Optional[Path]) -> BuildResult:
    """The outcomes with their artifacts' paths and sizes, and the final artifact's metadata."""
    stages = tuple(_placed(r, d, store, link_dir) for d, r in zip(decisions, outcomes))
    final = _final(store, decisions[-1]) if ok and decisions else None
    return BuildResult(target, ok, stages, final)


def _placed(r: StageResult, d: Decision, store: Store, link_dir: Optional[Path]) -> StageResult:
    # A failed or skipped stage published nothing: point at nothing.
    artifact = artifact_path(store.path(d.name, d.fingerprint), d) if r.status in PUBLISHED else None
    return replace(r, artifact=artifact.resolve() if artifact else None,
                   size=size(artifact) if artifact else None,
                   link=artifact_path(link_dir / d.name, d) if link_dir else None)


def _final(store: Store, last: Decision) -> Final:
    meta = store.manifest(last.name, last.fingerprint)
    return Final(meta["metadata"] if meta else None,
                 read_json(store.path(last.name, last.fingerprint) / MEASUREMENT))


def artifact_path(root: Path, d: Decision) -> Path:
    """The stage's main output file under `root`, or `root` when it names none."""
    name = d.node.spec.artifact
    return root / name if name else root


def link(store: Store, decisions: List[Decision], link_dir: Path) -> None:
    """build/<target>/<stage> -> the store entry each stage of this build used."""
    for d in decisions:
        store.link(link_dir / d.name, store.path(d.name, d.fingerprint))


def lock_entry(results: Sequence[StageResult]) -> dict:
    return {"stages": {r.name: {**r.record, "outputs": r.outputs} for r in results}}


def size(path: Path) -> Optional[int]:
    """Bytes of a file, or of every file under a directory; None when absent."""
    if path.is_file():
        return path.stat().st_size
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return None
