"""What the stages share that needs no TensorFlow: the checkpoint a stage reads, and
the range rule of a key. Apart from deploy.py on purpose: a stage's code identity is
every module it imports, so editing the deployment code rebuilds no train, placeholder
or freeze."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

from ..inputs.checkpoint import checkpoint_prefix, detect, model_files
from ..engine.spec import Artifact
from ..errors import ConfigError


def at_least(key: str, value, minimum) -> None:
    if value < minimum:
        raise ConfigError(f"{key}={value} is out of range: use a value >= {minimum}")


def checkpoint_input(path: Optional[str]) -> Dict[str, List[Path]]:
    """`files` of a stage that reads the user's checkpoint when no upstream stage gives one."""
    return {detect(path): model_files(path)} if path else {}   # labelled by format: reasons name it


def checkpoint_of(inputs: Dict[str, Artifact], path: Optional[str]) -> str:
    """The checkpoint prefix a stage reads: its upstream stage's, else the user's."""
    for artifact in inputs.values():
        if "checkpoint" in artifact.metadata:
            return str(artifact.path / artifact.metadata["checkpoint"])
    return str(checkpoint_prefix(path))
