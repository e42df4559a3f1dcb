"""Content digests with a stat cache, like doit's MD5 checker or DVC's state db.

A file's sha256 is reused while its size, mtime and inode are unchanged, so a
no-op run stats files instead of reading gigabytes. Touching a file only costs
one re-hash, after which the new mtime is cached.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Dict, Iterable

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256_json(obj) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class StatCache:
    """Maps absolute path -> [size, mtime_ns, inode, sha256], persisted as JSON."""

    def __init__(self, path: Path):
        self.path = path
        self.entries: Dict[str, list] = {}
        self._dirty = False
        try:
            self.entries = json.loads(path.read_text())
        except (OSError, ValueError):
            self.entries = {}

    def digest(self, path: Path) -> str:
        path = Path(os.path.abspath(path))
        st = path.stat()
        key = str(path)
        stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
        entry = self.entries.get(key)
        if entry and entry[:3] == stamp:
            return entry[3]
        digest = sha256_file(path)
        self.entries[key] = stamp + [digest]
        self._dirty = True
        return digest

    def remember(self, path: Path, digest: str) -> None:
        """Record a digest computed elsewhere (e.g. before an atomic rename)."""
        path = Path(os.path.abspath(path))
        st = path.stat()
        self.entries[str(path)] = [st.st_size, st.st_mtime_ns, st.st_ino, digest]
        self._dirty = True

    def digest_files(self, files: Iterable[Path]) -> Dict[str, str]:
        """{path: sha256}, sorted."""
        return {str(f): self.digest(Path(f)) for f in sorted(files, key=str)}

    def save(self) -> None:
        if not self._dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Merge with what parallel jobs wrote meanwhile, then replace atomically.
        try:
            merged = json.loads(self.path.read_text())
        except (OSError, ValueError):
            merged = {}
        merged.update(self.entries)
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(merged, sort_keys=True))
        os.replace(tmp, self.path)
        self._dirty = False
