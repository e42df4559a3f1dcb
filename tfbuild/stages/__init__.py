"""The build steps. Each module `tfbuild.stages.NAME` provides:

- `ARTIFACT`: the main file of its output (None: the whole directory),
- `build(ctx) -> dict`: write outputs into `ctx.out`, return metadata,
- optionally `check(cfg)` (cheap validation, no TensorFlow), `preflight(cfg)`
  (can this machine build it at all?) and `bench(cfg, artifact, meta)`.

Modules import TensorFlow inside `build`, never at import time.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Dict

from ..config import Config
from ..report import Reporter


def load(name: str) -> ModuleType:
    return importlib.import_module(f"{__name__}.{name}")


@dataclass
class StageContext:
    cfg: Config
    out: Path                    # private scratch dir: everything here gets published
    inputs: Dict[str, Path]      # upstream stage -> its published directory
    metadata: Dict[str, dict]    # upstream stage -> its recorded metadata
    files: Dict[str, list]       # external inputs by label (checkpoint, calibration)
    reporter: Reporter

    def checkpoint_prefix(self) -> str:
        """The checkpoint this stage reads: the nearest upstream one, else the user's."""
        for stage in ("placeholder", "train"):
            if stage in self.inputs:
                return str(self.inputs[stage] / self.metadata[stage]["checkpoint"])
        return str(self.files["checkpoint"][0])[: -len(".index")]
