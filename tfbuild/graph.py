"""The build graph as plain data: which stages a target has, what each reads.

Nothing here imports TensorFlow: deciding what is stale must stay cheap.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Tuple

from .config import Config
from .errors import CheckpointError, ConfigError

_PKG = Path(__file__).resolve().parent

# The modules whose source is each stage's code: editing them rebuilds the stage.
CODE = {
    "train": ("stages/train.py", "models.py", "preprocess.py"),
    "placeholder": ("stages/placeholder.py", "models.py", "preprocess.py"),
    "freeze": ("stages/freeze.py", "measure.py"),
    "trt": ("stages/trt.py", "trt_convert.py", "calibration.py", "measure.py"),
    "tflite": ("stages/tflite.py", "tflite_convert.py", "calibration.py", "measure.py"),
}


@dataclass(frozen=True)
class Stage:
    name: str
    settings: Dict[str, Any]          # flattened "freeze.outputs" -> value, only what it reads
    deps: Tuple[str, ...] = ()        # upstream stages
    files: Dict[str, List[Path]] = field(default_factory=dict)  # external inputs by label

    @property
    def code(self) -> Tuple[Path, ...]:
        return tuple(_PKG / rel for rel in CODE[self.name])


def flatten(prefix: str, value: Any) -> Dict[str, Any]:
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    if isinstance(value, dict) and value:
        out: Dict[str, Any] = {}
        for k, v in value.items():
            out.update(flatten(f"{prefix}.{k}", v))
        return out
    return {prefix: value}


def make_graph(cfg: Config) -> List[Stage]:
    """The target's stages in build order."""
    if cfg.freeze is None:
        raise ConfigError("the target has no freeze section: set freeze.outputs=[NODE,...]")
    stages: List[Stage] = []
    ckpt_dep: Tuple[str, ...] = ()
    ckpt_files: Dict[str, List[Path]] = {}
    if cfg.checkpoint.path:
        if cfg.train is not None:
            raise ConfigError("set either checkpoint.path (your checkpoint) or train "
                              "(tfbuild trains a demo model), not both: add train=null")
        ckpt_files = {"checkpoint": checkpoint_files(cfg.checkpoint.path)}
    elif cfg.train is not None:
        _need_model(cfg, "train")
        # Training sees the same preprocessing and input shape the inference graph will.
        pre = cfg.placeholder.preprocessing if cfg.placeholder else None
        stages.append(Stage("train", {**flatten("model", cfg.model), **flatten("train", cfg.train),
                                      **flatten("placeholder.preprocessing", pre),
                                      "train.input_shape": train_input_shape(cfg)}))
        ckpt_dep = ("train",)
    else:
        raise ConfigError("the target names no checkpoint: set checkpoint.path=DIR_OR_PREFIX "
                          "(or train: {...} for a built-in demo model)")
    freeze_dep = ckpt_dep
    if cfg.placeholder is not None:
        _need_model(cfg, "placeholder")
        stages.append(Stage("placeholder",
                            {**flatten("model", cfg.model), **flatten("placeholder", cfg.placeholder)},
                            ckpt_dep, ckpt_files))
        freeze_dep, ckpt_files = ("placeholder",), {}
    stages.append(Stage("freeze", flatten("freeze", cfg.freeze), freeze_dep, ckpt_files))
    for name in ("trt", "tflite"):
        section = getattr(cfg, name)
        if section is not None:
            files = {}
            if section.calibration.path:
                from .calibration import calibration_files
                files = {"calibration": calibration_files(section.calibration.path)}
            stages.append(Stage(name, flatten(name, section), ("freeze",), files))
    return stages


def train_input_shape(cfg: Config) -> List[int]:
    if cfg.placeholder is None or not cfg.placeholder.inputs:
        raise ConfigError("train needs placeholder.inputs to know the model's input shape")
    return list(cfg.placeholder.inputs[0].shape[1:])


def _need_model(cfg: Config, stage: str) -> None:
    m = cfg.model
    if m is None or not (m.name or m._target_):
        raise ConfigError(f"the {stage} stage needs a model: add '- /model: tiny_densenet' "
                          "to the target's defaults, or model._target_=package.module.function")


_STATE_LINE = re.compile(r'^model_checkpoint_path:\s*"(.*)"\s*$', re.M)


def checkpoint_prefix(path: str) -> Path:
    """A checkpoint prefix from a prefix or a directory with a `checkpoint` state file."""
    p = Path(path).expanduser()
    if p.is_dir():
        state = p / "checkpoint"
        if not state.is_file():
            found = sorted(str(i.with_suffix("")) for i in p.glob("*.index"))
            hint = f" (found: {', '.join(found[:3])})" if found else ""
            raise CheckpointError(
                f"checkpoint directory {p} has no 'checkpoint' state file: give the prefix "
                f"instead, e.g. checkpoint.path={found[0] if found else p / 'model.ckpt-1000'}{hint}")
        m = _STATE_LINE.search(state.read_text(errors="replace"))
        if not m:
            raise CheckpointError(f"{state} names no model_checkpoint_path: give the prefix instead")
        named = Path(m.group(1))
        # State files often hold absolute paths from the training machine.
        p = named if named.is_absolute() and Path(f"{named}.index").exists() else p / named.name
    if not Path(f"{p}.index").is_file():
        raise CheckpointError(
            f"checkpoint not found: {p}.index does not exist; set checkpoint.path to a prefix "
            "(dir/model.ckpt-1000) or a directory holding a 'checkpoint' file")
    return p


def checkpoint_files(path: str) -> List[Path]:
    prefix = checkpoint_prefix(path)
    files = [Path(f"{prefix}.index"), *sorted(prefix.parent.glob(prefix.name + ".data-*"))]
    if Path(f"{prefix}.meta").is_file():
        files.append(Path(f"{prefix}.meta"))
    if len(files) < 2 or files[1].suffix == ".meta":
        raise CheckpointError(f"checkpoint {prefix} has an .index but no .data-* shard: "
                              "copy the whole checkpoint (index, data and meta files)")
    return files

