"""How to run a validated `Config`: the engine's `Options`, and which keys say so.

Used by the build (cli.main) and by the commands that plan (inspect), so it
imports neither.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

from ..config import Config
from ..engine.cache import Remote
from ..engine.plan import Options
from ..evaluation import evaluation
from .report import Reporter

# Keys that say how to run, not what to build (marked RUN in the schema): not part
# of a sweep job's identity.
RUN_KEYS = tuple(f.name for f in dataclasses.fields(Config) if f.metadata.get("run"))


def options(cfg: Config, reporter: Optional[Reporter] = None) -> Options:
    """How to run `cfg`; the shared cache only for a build (one that reports its warnings)."""
    c = cfg.cache
    remote = Remote(c.url, c.options, push=c.push, pull=c.pull, warn=reporter.warn,
                    info=reporter.info) if c.url and reporter else None
    signer = None
    if cfg.sign.key or cfg.sign.public_key:
        from ..signing import Signer
        signer = Signer(cfg.sign.key, cfg.sign.public_key)
    return Options(build_dir=Path(cfg.build_dir), lock_file=Path(cfg.lock_file), force=cfg.force,
                   dry_run=cfg.dry_run, locked=cfg.locked, bench=cfg.bench if cfg.bench.enabled else None,
                   bench_again=cfg.bench.again, remote=remote, signer=signer,
                   evaluation=evaluation(cfg.evaluate))
