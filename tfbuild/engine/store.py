"""The artifact store: one directory per (stage, fingerprint) under build_dir.

A stage builds into a private temporary directory; `publish` writes the
manifest (output digests and the stage's metadata) and renames the directory
into place, so a directory in the store is either complete or absent. Two
targets or sweep jobs that need the same artifact find it under the same key;
a per-key file lock makes parallel jobs build it once.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, List, Optional

from .files import atomic_write, dead_temps, flock
from .fingerprint import StatCache, sha256_file

MANIFEST = "tfbuild.json"
EVALUATION = "evaluation.json"  # nor is its accuracy on the user's data (Options.evaluation)
MEASUREMENT = "bench.json"  # not an output: re-measuring changes no fingerprint
PROVENANCE = "provenance.json"  # nor is the statement of how it was built
SIGNATURE = "model.sig"         # nor its signature (tfbuild.signing)
BUILD_LOCK = "build"        # held shared by every build, exclusively by gc


class Store:
    """The content-addressed artifact directories under build_dir, and their locks."""

    def __init__(self, build_dir: Path):
        self.root = build_dir
        self.meta_dir = build_dir / ".tfbuild"

    def path(self, stage: str, fingerprint: str) -> Path:
        return self.root / "store" / stage / fingerprint[:24]

    def manifest(self, stage: str, fingerprint: str, name: str = MANIFEST) -> Optional[dict]:
        """The entry's manifest (or another of its JSON files: PROVENANCE, MEASUREMENT)."""
        try:
            return json.loads((self.path(stage, fingerprint) / name).read_text())
        except (OSError, ValueError):
            return None

    def damage(self, stage: str, fingerprint: str, cache: StatCache) -> Optional[str]:
        """Why the published artifact can't be trusted, or None if it is intact."""
        manifest = self.manifest(stage, fingerprint)
        if manifest is None:
            return "output missing"
        root = self.path(stage, fingerprint)
        dead_temps(root)  # e.g. a bench.json write that was killed
        for name, digest in manifest["outputs"].items():
            f = root / name
            if not f.is_file():
                return f"output {name} missing"
            if cache.digest(f) != digest:
                return f"output {name} altered since it was built"
        return None

    def scratch(self, stage: str) -> Path:
        tmp = self.root / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{stage}-", dir=tmp))

    def publish(self, stage: str, fingerprint: str, built: Path, metadata: dict,
                cache: StatCache, provenance: Optional[Callable[[dict], dict]] = None,
                outputs: Optional[dict] = None, seal: Optional[Callable[[Path], None]] = None
                ) -> dict:
        """Move `built` into place; `provenance(outputs)` gives its statement, `seal(built)`
        may add a signature last. `outputs`: digests the caller already verified."""
        if outputs is None:
            files = sorted(p for p in built.rglob("*") if p.is_file())
            outputs = {str(f.relative_to(built)): sha256_file(f) for f in files}
        manifest = {"stage": stage, "fingerprint": fingerprint, "outputs": outputs,
                    "metadata": metadata}
        (built / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
        if provenance:
            (built / PROVENANCE).write_text(json.dumps(provenance(outputs), indent=1, sort_keys=True))
        if seal:
            seal(built)
        final = self.path(stage, fingerprint)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():  # forced rebuild or a damaged copy: move it aside first
            doomed = self.scratch(stage + "-old")
            os.replace(final, doomed / "x")
            shutil.rmtree(doomed, ignore_errors=True)
        os.replace(built, final)
        # The rename keeps inodes and mtimes: record digests under the final paths.
        for name, digest in outputs.items():
            cache.remember(final / name, digest)
        return manifest

    def lock(self, name: str, *, shared: bool = False, wait: bool = True):
        """Hold `.tfbuild/NAME.lock` (see files.flock)."""
        return flock(self.meta_dir / f"{name}.lock", shared=shared, wait=wait)

    def entries(self) -> List[Path]:
        """Every published artifact directory, store/<stage>/<key>."""
        return sorted(p for p in (self.root / "store").glob("*/*") if p.is_dir())

    def link(self, link: Path, target: Path) -> None:
        """A stable, readable path (build/<target>/<stage>) to a store entry."""
        link.parent.mkdir(parents=True, exist_ok=True)
        dead_temps(link.parent, link.name)
        tmp = link.with_name(f".{link.name}.{os.getpid()}")
        if tmp.is_symlink():
            tmp.unlink()
        tmp.symlink_to(os.path.relpath(target, link.parent))
        os.replace(tmp, link)


def read_json(path: Path) -> Optional[dict]:
    """A JSON file's content, or None when it is absent or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_json(path: Path, data: dict) -> None:
    atomic_write(path, json.dumps(data, indent=2) + "\n")
