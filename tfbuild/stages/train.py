"""train: a seeded, reproducible training checkpoint for a built-in model.

For demos, tests and CI: synthetic class-dependent images fed by tf.data, like
a real training job (tfbuild/tf/training.py). Real users point
`checkpoint.path` at their own checkpoint instead.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional

from ..engine.spec import StageSpec
from ..marks import key
from ..errors import ConfigError
from .common import at_least

if TYPE_CHECKING:
    from ..config import ModelCfg
    from .placeholder import PreprocessingCfg

PREFIX = "model.ckpt"


@dataclass
class TrainCfg:
    steps: int = 20
    batch_size: int = 8
    learning_rate: float = 0.05
    ema_decay: float = 0.99
    examples: int = 64
    seed: int = 0


@dataclass(frozen=True)
class Settings:
    model: ModelCfg
    train: TrainCfg
    # Training sees the same preprocessing and input shape the inference graph will.
    preprocessing: Optional[PreprocessingCfg] = field(metadata=key("placeholder.preprocessing"))
    input_shape: List[int] = field(metadata=key("placeholder.inputs[0].shape"))   # less the batch


def settings(cfg, deps) -> Settings:
    if cfg.placeholder is None or not cfg.placeholder.inputs:
        raise ConfigError("train needs placeholder.inputs to know the model's input shape")
    return Settings(cfg.model, cfg.train, cfg.placeholder.preprocessing,
                    list(cfg.placeholder.inputs[0].shape[1:]))


def check(s: Settings) -> None:
    t = s.train
    at_least("train.steps", t.steps, 0)
    at_least("train.batch_size", t.batch_size, 1)
    at_least("train.examples", t.examples, 1)


def run(inputs, s: Settings, out: Path, log) -> dict:
    from ..tf.training import train
    return {"checkpoint": PREFIX, **train(s.model, s.train, s.preprocessing, s.input_shape, out / PREFIX)}


SPEC = StageSpec("train", settings, run, tools=("tensorflow",), check=check,
                 present=lambda cfg: cfg.train is not None and not cfg.checkpoint.path)
