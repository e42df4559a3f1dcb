"""`tfbuild gc [dry_run=true] [keep_sweeps=N]`: delete what no lock entry and no link uses."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List

from ...errors import ConfigError
from ..report import Reporter, human_size


def run(args: List[str], reporter: Reporter) -> int:
    from ...engine import gc as collector
    from ...engine.store import Store

    opts = _keys(args, {"build_dir": "build", "lock_file": "tfbuild.lock", "dry_run": "false",
                        "keep_sweeps": "10"})
    dry_run = _bool("dry_run", opts["dry_run"])
    try:
        keep = int(opts["keep_sweeps"])
        if keep < 0:
            raise ValueError
    except ValueError:
        raise ConfigError(f"keep_sweeps={opts['keep_sweeps']!r}: give a whole number >= 0") from None
    root = Path(opts["build_dir"])
    if not root.is_dir():
        reporter.info(f"nothing to collect: {root} does not exist")
        return 0
    garbage = collector.run(Store(root), Path(opts["lock_file"]), keep, dry_run)
    verb = "would free" if dry_run else "freed"
    for path in garbage.paths:
        reporter.info(f"{'would delete' if dry_run else 'deleted'} {path}")
    temps = f" ({garbage.temps} temp files of killed runs)" if garbage.temps else ""
    reporter.info(f"gc: {verb} {human_size(garbage.size)} in {len(garbage.paths)} paths{temps}")
    return 0


def _keys(args: List[str], defaults: Dict[str, str]) -> Dict[str, str]:
    out = dict(defaults)
    for arg in args:
        key, eq, value = arg.partition("=")
        if not eq or key not in defaults:
            raise ConfigError(f"gc takes {', '.join(f'{k}=' for k in defaults)}; got {arg!r}")
        out[key] = value
    return out


def _bool(key: str, value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise ConfigError(f"{key}={value!r}: use true or false")
    return value.lower() == "true"
