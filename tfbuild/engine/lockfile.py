"""tfbuild.lock: what each target's stages were built from and produced.

YAML, keys sorted, schema-versioned, meant to be committed and diffed; it
holds content digests and relative names, never an absolute path. It is read
to explain staleness and written only after a target built successfully, by
read-merge-write under a file lock that sits beside the lock file itself, so
processes with different build_dirs sharing one lock file lose nothing.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

import yaml

from ..errors import ConfigError
from .files import atomic_write, dead_temps, flock

SCHEMA = 2   # 2: location-free inputs, code recorded per module
# libyaml when present: a big lock file is parsed and written while its lock is held.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def read(path: Path) -> Dict[str, dict]:
    """{target key: entry}; an absent file, or one of an older schema, is an empty lock."""
    if not path.is_file():
        return {}
    try:
        data = yaml.load(path.read_text(), Loader=_LOADER)
    except yaml.YAMLError as e:
        raise ConfigError(f"lock file {path} is not valid YAML ({e.__class__.__name__}): "
                          "fix or delete it") from None
    if data is None:
        return {}
    targets = data.get("targets") or {} if isinstance(data, dict) else None
    if not isinstance(targets, dict) or not all(_is_entry(e) for e in targets.values()):
        raise ConfigError(f"lock file {path} is not a tfbuild lock file (expected a mapping with "
                          "'schema' and 'targets': {name: {stages: ...}}): delete it and rebuild")
    schema = data.get("schema")
    if type(schema) is int and schema < SCHEMA:
        return {}  # rebuilt and rewritten by this version
    if schema != SCHEMA:
        raise ConfigError(f"lock file {path} has schema {schema!r}, this tfbuild writes schema "
                          f"{SCHEMA}: upgrade tfbuild, or delete the lock file and rebuild")
    return targets


def _is_entry(entry) -> bool:
    """{stages: {name: {fingerprint: ..., ...}}}"""
    stages = entry.get("stages", {}) if isinstance(entry, dict) else None
    return isinstance(stages, dict) and all(isinstance(s, dict) for s in stages.values())


def dump(targets: Dict[str, dict]) -> str:
    return yaml.dump({"schema": SCHEMA, "targets": targets}, Dumper=_DUMPER, sort_keys=True,
                     default_flow_style=False, width=100, allow_unicode=True)


def locked(path: Path):
    """Hold the lock file's own lock (`.NAME.flock` beside it)."""
    return flock(path.with_name(f".{path.name}.flock"))


def update(path: Path, key: str, entry: Optional[dict]) -> None:
    """Replace one target's entry, keeping everyone else's; atomic and safe under concurrency."""
    with locked(path):
        dead_temps(path.parent, path.name)  # only ours: the lock file's folder is the user's
        targets = read(path)
        if targets.get(key) == entry:
            return  # nothing changed: leave the file (and its mtime) alone
        targets[key] = entry
        atomic_write(path, dump(targets))
