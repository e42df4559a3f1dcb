"""Decides, for each stage, fresh or stale and why (ninja's DependencyScan).

A stage's fingerprint hashes everything it depends on: its settings, its
upstream stages' fingerprints, the content of its input files, the source of
its code, and the TensorFlow version (plus, for trt, TensorRT and the GPU).
The fingerprint keys the artifact store. Reasons come from comparing the same
components with the lock file's record of the last build.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib import metadata
from typing import Dict, List, Optional, Sequence

from .digests import StatCache, sha256_json
from .graph import Stage
from .store import Store


@dataclass
class Decision:
    stage: Stage
    fingerprint: str
    stale: bool
    reasons: List[str]
    record: dict                      # the lock-file entry, less the outputs
    forced: bool = False
    status: str = "planned"
    seconds: float = 0.0
    outputs: Dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.stage.name

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)


def tensorflow_version() -> str:
    try:
        return metadata.version("tensorflow")
    except metadata.PackageNotFoundError:
        return "not installed"


def environment(stage: Stage) -> dict:
    env = {"tensorflow": tensorflow_version()}
    if stage.name == "trt":
        from .trt_convert import environment as trt_environment
        env.update(trt_environment())
    return env


def components(stage: Stage, upstream: Dict[str, str], cache: StatCache) -> dict:
    return {
        "settings": stage.settings,
        "inputs": {**{d: upstream[d] for d in stage.deps},
                   **{label: cache.digest_files(files) for label, files in stage.files.items()}},
        "code": sha256_json(cache.digest_files(stage.code)),
        "env": environment(stage),
    }


def resolve(stages: Sequence[Stage], store: Store, cache: StatCache,
            previous: Optional[dict], force: Sequence[str] = ()) -> List[Decision]:
    """One decision per stage, in build order; `force` names stages to rebuild regardless."""
    previous = previous or {}
    fingerprints: Dict[str, str] = {}
    forced: set = set()
    decisions = []
    for stage in stages:
        record = components(stage, fingerprints, cache)
        fp = fingerprints[stage.name] = sha256_json({"stage": stage.name, **record})
        record = {"fingerprint": fp, **record}
        damage = store.damage(stage.name, fp, cache)
        upstream = [d for d in stage.deps if d in forced]
        if stage.name in force or upstream:
            forced.add(stage.name)
            reasons = ["forced"] if stage.name in force else [f"upstream {upstream[0]} forced"]
        else:
            reasons = why(previous.get(stage.name), record, damage)
        stale = stage.name in forced or damage is not None
        decisions.append(Decision(stage, fp, stale, reasons, record, forced=stage.name in forced))
    return decisions


def why(before: Optional[dict], now: dict, damage: Optional[str]) -> List[str]:
    """Human reasons: what differs from the last recorded build."""
    if damage is None:
        if before and before.get("fingerprint") != now["fingerprint"]:
            return ["up to date (same inputs were built before; artifact reused)"]
        return ["up to date"]
    if not before:
        return ["not built yet"]
    if before.get("fingerprint") == now["fingerprint"]:
        return [damage]
    reasons = []
    for key in sorted(set(before["env"]) | set(now["env"])):
        if before["env"].get(key) != now["env"].get(key):
            reasons.append(f"{key} version changed: {before['env'].get(key)} → {now['env'].get(key)}")
    if before.get("code") != now["code"]:
        reasons.append("code of the stage changed")
    old, new = before.get("settings", {}), now["settings"]
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            reasons.append(f"{key} changed: {_show(old.get(key))} → {_show(new.get(key))}")
    old, new = before.get("inputs", {}), now["inputs"]
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            kind = "content" if isinstance(new.get(key), dict) else "artifact"
            reasons.append(f"input {key} {kind} changed")
    return reasons or [damage]


def _show(value) -> str:
    return "null" if value is None else str(value).replace("'", "")
