"""The shared cache as the build loop sees it: one `lookup` per stale stage.

`lookup(stage, fingerprint, into)` gives a handle: a hit, which `publish`es the
cache's copy into the store, or a miss, whose `store` pushes what was then
built. `release` (on leaving the `with`) drops a lease this run took, so a
failed build lets waiting machines try. Without a cache, `NO_CACHE` answers
every lookup with a miss that stores nothing: the loop never asks whether
there is one.
"""
from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Iterator, Optional

from .fingerprint import StatCache
from .output import Output
from .store import MEASUREMENT, PROVENANCE, SIGNATURE, Store, read_json, write_json


class Miss:
    """Not in the cache: build it, then `store` it (a no-op without a cache)."""
    hit = False

    def __init__(self, remote=None, stage: str = "", fingerprint: str = "", output: Optional[Output] = None):
        self._remote, self._stage, self._fingerprint, self._output = remote, stage, fingerprint, output

    def store(self, root: Path, manifest: dict) -> None:
        """Push the published artifact `root` with its manifest and attestations."""
        if self._remote is not None:
            with self._output.running(self._stage, "(pushing to the cache)"):
                self._remote.push(self._stage, self._fingerprint, root, {**manifest, **attestations(root)})


class Hit:
    """A whole, verified entry downloaded into the scratch dir: publish it."""
    hit = True

    def __init__(self, entry: dict, figures: Optional[dict], stage: str, fingerprint: str, scratch: Path):
        self.entry, self._figures = entry, figures
        self._stage, self._fingerprint, self._scratch = stage, fingerprint, scratch

    def publish(self, store: Store, cache: StatCache) -> dict:
        """Move the entry into the store, with its statement, signature and measurement; its outputs."""
        stmt, sig = self.entry.get("provenance"), self.entry.get("signature")
        store.publish(self._stage, self._fingerprint, self._scratch, self.entry["metadata"], cache,
                      (lambda _: stmt) if stmt else None, outputs=self.entry["outputs"],
                      seal=(lambda built: (built / SIGNATURE).write_text(sig)) if sig else None)
        if self._figures:
            write_json(store.path(self._stage, self._fingerprint) / MEASUREMENT, self._figures)
        return self.entry["outputs"]


class NoCache:
    """No shared cache: every lookup misses and nothing is pushed."""

    def open(self) -> None:
        pass

    @contextlib.contextmanager
    def lookup(self, stage: str, fingerprint: str, into: Path, *, pull: bool = True) -> Iterator[Miss]:
        yield Miss()

    def push_measurement(self, stage: str, fingerprint: str, figures: dict) -> None:
        pass


NO_CACHE = NoCache()


class RemoteCache:
    """A `cache.Remote` behind the lookup handle; progress goes to `output`."""

    def __init__(self, remote, output: Output):
        self.remote, self.output = remote, output

    def open(self) -> None:
        """Load the backend now: a missing library is a bad request, said before building."""
        self.remote.open()

    @contextlib.contextmanager
    def lookup(self, stage: str, fingerprint: str, into: Path, *, pull: bool = True):
        """`pull` off (a forced rebuild): a miss without asking, its build still pushed."""
        try:
            entry = self._fetch(stage, fingerprint, into) if pull else None
            if entry is None:
                yield Miss(self.remote, stage, fingerprint, self.output)
            else:
                yield Hit(entry, self.remote.fetch_measurement(stage, fingerprint), stage, fingerprint, into)
        finally:
            self.remote.release(stage, fingerprint)  # a failed build lets the waiters try

    def _fetch(self, stage: str, fingerprint: str, into: Path) -> Optional[dict]:
        with self.output.running(stage, "(looking in the cache)"):
            entry = self.remote.fetch(stage, fingerprint, into)
        if entry is None:  # a refused entry may have left files: the stage builds into an empty dir
            shutil.rmtree(into)
            into.mkdir()
        return entry

    def push_measurement(self, stage: str, fingerprint: str, figures: dict) -> None:
        self.remote.push_measurement(stage, fingerprint, figures)


def shared_cache(remote, output: Output):
    """The handle for `Options.remote` (a cache.Remote, or None)."""
    return NO_CACHE if remote is None else RemoteCache(remote, output)


def attestations(root: Path) -> dict:
    """What travels with a cache entry besides the manifest: statement and signature."""
    sig = root / SIGNATURE
    return {"provenance": read_json(root / PROVENANCE), "signature": sig.read_text() if sig.is_file() else None}
