"""tfbuild.lock: what each target's stages were built from and produced.

YAML, keys sorted, schema-versioned, meant to be committed and diffed. It is
read to explain staleness and written only after a target built successfully.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Optional

import yaml

from .errors import ConfigError

SCHEMA = 1


def read(path: Path) -> Dict[str, dict]:
    """{target key: {stage: entry}}; an absent file is an empty lock."""
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"lock file {path} is not valid YAML ({e.__class__.__name__}): "
                          "fix or delete it") from None
    if data.get("schema") != SCHEMA:
        raise ConfigError(f"lock file {path} has schema {data.get('schema')!r}, this tfbuild "
                          f"writes schema {SCHEMA}: delete it and rebuild")
    return data.get("targets") or {}


def dump(targets: Dict[str, dict]) -> str:
    return yaml.safe_dump({"schema": SCHEMA, "targets": targets}, sort_keys=True,
                          default_flow_style=False, width=100)


def update(path: Path, key: str, entry: Optional[dict]) -> None:
    """Replace one target's entry, keeping the others; atomic."""
    targets = read(path)
    targets[key] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(dump(targets))
    os.replace(tmp, path)
