"""Decides, for each stage, fresh or stale and why (ninja's DependencyScan).

A stage's fingerprint hashes everything it depends on: its settings, its
upstream stages' fingerprints, the content of its input files, its code and
the versions of the tools it uses. The fingerprint keys the artifact store.
Reasons come from diffing those same parts against the lock file's record.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from .fingerprint import StatCache, code_record, files_record, settings_record, sha256_json, versions
from .graph import Node
from .reasons import Reason, text
from .store import Store


@dataclass(frozen=True)
class Decision:
    """One stage of the plan: its identity, fresh or stale, and why; the build never changes it."""
    node: Node
    fingerprint: str
    stale: bool
    reasons: Tuple[Reason, ...]
    record: dict                      # the lock-file entry, less the outputs
    forced: bool = False
    locked: Tuple[Reason, ...] = ()   # how the lock file's record differs; () same

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def reason(self) -> str:
        return text(self.reasons)


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
            reasons = [Reason("forced")] if node.name in force else [Reason("upstream-forced", upstream[0])]
        else:
            reasons = why(previous.get(node.name), record, damage)
        stale = node.name in forced or damage is not None
        decisions.append(Decision(node, fp, stale, tuple(reasons), record, forced=node.name in forced,
                                  locked=tuple(unlocked(previous.get(node.name), record))))
    return decisions


def unlocked(before: Optional[dict], record: dict) -> List[Reason]:
    """How the lock file's record of a stage differs from its plan ([]: not at all)."""
    if not before:
        return [Reason("not-locked")]
    if before.get("fingerprint") == record["fingerprint"]:
        return []
    return differences(before, record) or [Reason("fingerprint")]


def why(before: Optional[dict], now: dict, damage: Optional[str]) -> List[Reason]:
    """What differs from the last recorded build (`damage`: the store's words, or None)."""
    if damage is None:
        if before and before.get("fingerprint") != now["fingerprint"]:
            return [Reason("up-to-date", "built before")]
        return [Reason("up-to-date")]
    if not before:
        return [Reason("not-built")]
    if before.get("fingerprint") == now["fingerprint"]:
        return [Reason("damaged", damage)]
    return differences(before, now) or [Reason("damaged", damage)]


def differences(before: dict, now: dict) -> List[Reason]:
    """What differs between two records of one stage, most fundamental first."""
    old_env = before.get("env") or {}
    reasons = [Reason("version", key, old_env.get(key), now["env"].get(key))
               for key in _changed(old_env, now["env"])]
    changed = _changed(before.get("code"), now["code"])
    if changed:
        reasons.append(Reason("code", new=tuple(changed)))
    old = before.get("settings") or {}
    reasons += [Reason("setting", key, old.get(key), now["settings"].get(key))
                for key in _changed(old, now["settings"])]
    old = before.get("inputs") or {}
    return reasons + [_input(key, old.get(key), now["inputs"].get(key))
                      for key in _changed(old, now["inputs"])]


def _input(key: str, old, new) -> Reason:
    if not isinstance(new, dict):
        return Reason("input-artifact", key)
    if isinstance(old, dict) and _stem(old) != _stem(new):
        return Reason("input-renamed", key, _stem(old), _stem(new))  # another file
    return Reason("input-content", key)


def _stem(files: dict) -> str:
    """What a set of input files is called: model.ckpt-300 for its .index and .data-* files."""
    names = sorted(files)
    common = os.path.commonprefix(names).rstrip(".-_") if names else ""
    return common or ", ".join(names[:2]) + (" …" if len(names) > 2 else "")


def _changed(old: Optional[dict], new: dict) -> List[str]:
    old = old if isinstance(old, dict) else {}
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
