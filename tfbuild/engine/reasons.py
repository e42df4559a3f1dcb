"""Why a stage is stale, fresh or failed, as data (kind, key, old, new).

The resolver, the build loop, `verify` and the `locked` check make reasons;
only `str()` turns them into the text people read (and tests and the README
quote), so comparing or re-joining them never parses a sentence.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Optional


@dataclass(frozen=True)
class Reason:
    """One reason: `kind` picks the sentence, `key`, `old` and `new` fill it in."""
    kind: str
    key: Optional[str] = None
    old: Any = None
    new: Any = None

    def __post_init__(self):
        if self.kind not in _TEXT:  # a typo would otherwise fail only when printed
            raise ValueError(f"unknown reason kind {self.kind!r}")

    def __str__(self) -> str:
        return _TEXT[self.kind](self)


def text(reasons: Iterable[Reason]) -> str:
    """Several reasons as one line (the report's `reason`)."""
    return "; ".join(str(r) for r in reasons)


def _show(value) -> str:
    return "null" if value is None else str(value).replace("'", "")


def _first(names, n: int = 3) -> str:
    return f"{', '.join(names[:n])}{' …' if len(names) > n else ''}"


def _differs(r: Reason) -> str:
    return f"differs from the lock file in {text(r.new) or 'its fingerprint'}: rebuild and commit it"


_TEXT: Dict[str, Callable[[Reason], str]] = {
    # the resolver: fresh or stale
    "up-to-date": lambda r: "up to date" + (f" ({r.key})" if r.key else ""),
    "not-built": lambda r: "not built yet",
    "damaged": lambda r: r.key,                       # the store's words: "output x missing"
    "forced": lambda r: "forced",
    "upstream-forced": lambda r: f"upstream {r.key} forced",
    "version": lambda r: f"{r.key} version changed: {r.old} → {r.new}",
    "code": lambda r: f"code changed: {_first(r.new)}",
    "setting": lambda r: f"{r.key} changed: {_show(r.old)} → {_show(r.new)}",
    "input-artifact": lambda r: f"input {r.key} artifact changed",
    "input-renamed": lambda r: f"input {r.key} changed: {r.old} → {r.new}",
    "input-content": lambda r: f"input {r.key} content changed",
    # the lock file's record against this plan
    "fingerprint": lambda r: "its fingerprint",
    "not-locked": lambda r: "not in the lock file",
    # the build loop
    "not-reached": lambda r: "not reached: an earlier stage failed",
    "failed": lambda r: r.key,                        # a TfbuildError's message
    "crashed": lambda r: f"{r.key}: {r.new}",         # exception type, its first line
    "meanwhile": lambda r: "built meanwhile by a parallel job",
    "fetched": lambda r: "fetched from cache",
    # verify
    "unlisted": lambda r: "not in the lock file: rebuild and commit it",
    "differs": _differs,
    "output-differs": lambda r: f"output differs from the lock file: {', '.join(r.new)}",
    "identical": lambda r: "rebuilt from scratch: identical to the lock file",
    "provenance": lambda r: f"provenance: {f'{r.old}: ' if r.old else ''}{r.key}",
    "signature": lambda r: f"signature: {r.key}",
    "not-in-target": lambda r: "in the lock file but not in this target: rebuild and commit it",
}
