"""Decides, for each stage, fresh or stale and why (ninja's DependencyScan).

A stage's fingerprint hashes everything it depends on: its settings, its
upstream stages' fingerprints, the content of its input files, its code and
the versions of the tools it uses. The fingerprint keys the artifact store.
Reasons come from diffing those same parts against the lock file's record.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from .fingerprint import StatCache, code_record, files_record, settings_record, sha256_json, versions
from .graph import Node
from .store import Store


@dataclass
class Decision:
    node: Node
    fingerprint: str
    stale: bool
    reasons: List[str]
    record: dict                      # the lock-file entry, less the outputs
    forced: bool = False
    locked: List[str] = field(default_factory=list)   # how the lock file's record differs; [] same
    status: str = "planned"
    seconds: float = 0.0
    outputs: Dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)


def components(node: Node, upstream: Dict[str, str], cache: StatCache) -> dict:
    spec = node.spec
    return {
        "settings": settings_record(node.settings),
        "inputs": {**{d: upstream[d] for d in node.deps},
                   **{label: files_record(files, cache) for label, files in node.files.items()}},
        "code": code_record(spec.module, cache),
        "env": {**versions(*spec.tools), **spec.environment(node.settings)},
    }


def resolve(nodes: Sequence[Node], store: Store, cache: StatCache,
            previous: Optional[dict], force: Sequence[str] = ()) -> List[Decision]:
    """One decision per stage, in build order; `force` names stages to rebuild regardless."""
    previous = previous or {}
    fingerprints: Dict[str, str] = {}
    forced: set = set()
    decisions = []
    for node in nodes:
        record = components(node, fingerprints, cache)
        fp = fingerprints[node.name] = sha256_json({"stage": node.name, **record})
        record = {"fingerprint": fp, **record}
        damage = store.damage(node.name, fp, cache)
        upstream = [d for d in node.deps if d in forced]
        if node.name in force or upstream:
            forced.add(node.name)
            reasons = ["forced"] if node.name in force else [f"upstream {upstream[0]} forced"]
        else:
            reasons = why(previous.get(node.name), record, damage)
        stale = node.name in forced or damage is not None
        before = previous.get(node.name)
        unlocked = [] if before and before.get("fingerprint") == fp else \
            (differences(before, record) or ["its fingerprint"]) if before else ["not in the lock file"]
        decisions.append(Decision(node, fp, stale, reasons, record, forced=node.name in forced,
                                  locked=unlocked))
    return decisions


def why(before: Optional[dict], now: dict, damage: Optional[str]) -> List[str]:
    """Human reasons: what differs from the last recorded build."""
    if damage is None:
        if before and before.get("fingerprint") != now["fingerprint"]:
            return ["up to date (built before)"]
        return ["up to date"]
    if not before:
        return ["not built yet"]
    if before.get("fingerprint") == now["fingerprint"]:
        return [damage]
    return differences(before, now) or [damage]


def differences(before: dict, now: dict) -> List[str]:
    """What differs between two records of one stage, most fundamental first."""
    reasons = []
    old_env = before.get("env") or {}
    for key in _changed(old_env, now["env"]):
        reasons.append(f"{key} version changed: {old_env.get(key)} → {now['env'].get(key)}")
    changed = _changed(before.get("code"), now["code"])
    if changed:
        reasons.append(f"code changed: {', '.join(changed[:3])}{' …' if len(changed) > 3 else ''}")
    old = before.get("settings") or {}
    for key in _changed(old, now["settings"]):
        reasons.append(f"{key} changed: {_show(old.get(key))} → {_show(now['settings'].get(key))}")
    old = before.get("inputs") or {}
    for key in _changed(old, now["inputs"]):
        new = now["inputs"].get(key)
        if not isinstance(new, dict):
            reasons.append(f"input {key} artifact changed")
        elif isinstance(old.get(key), dict) and _stem(old[key]) != _stem(new):
            reasons.append(f"input {key} changed: {_stem(old[key])} → {_stem(new)}")  # another file
        else:
            reasons.append(f"input {key} content changed")
    return reasons


def _stem(files: dict) -> str:
    """What a set of input files is called: model.ckpt-300 for its .index and .data-* files."""
    names = sorted(files)
    common = os.path.commonprefix(names).rstrip(".-_") if names else ""
    return common or ", ".join(names[:2]) + (" …" if len(names) > 2 else "")


def _changed(old: Optional[dict], new: dict) -> List[str]:
    old = old if isinstance(old, dict) else {}
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def _show(value) -> str:
    return "null" if value is None else str(value).replace("'", "")
