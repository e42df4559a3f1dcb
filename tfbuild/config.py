"""The schema of a target: structured configs that catch typos and wrong types.

Hydra merges `conf/config.yaml`, the target file and the command line onto
`Config`; OmegaConf then rejects unknown keys and ill-typed values before any
build work starts. `to_target` turns the merged DictConfig into these plain
dataclasses, so the rest of tfbuild never sees OmegaConf.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import MISSING

STAGES = ("train", "placeholder", "freeze", "trt", "tflite")
PRECISIONS = ("FP32", "FP16", "INT8")


@dataclass
class InputSpec:
    name: str = "input"
    shape: List[Optional[int]] = field(default_factory=lambda: [None, 32, 32, 3])
    dtype: str = "float32"


@dataclass
class CheckpointCfg:
    path: Optional[str] = None


@dataclass
class TrainCfg:
    steps: int = 20
    batch_size: int = 8
    learning_rate: float = 0.05
    ema_decay: float = 0.99
    examples: int = 64
    seed: int = 0


@dataclass
class ModelCfg:
    name: Optional[str] = None
    # The user's own builder: fn(*input_tensors, **params) -> logits.
    _target_: Optional[str] = None
    params: Dict[str, Any] = field(default_factory=dict)
    num_classes: int = 2
    growth_rate: int = 32
    init_filters: int = 64
    blocks: List[int] = field(default_factory=lambda: [6, 12, 32, 32])
    reduction: float = 0.5
    bn_decay: float = 0.99
    bn_epsilon: float = 1.1e-5
    weight_decay: float = 1e-4


@dataclass
class PreprocessingCfg:
    mean: Optional[List[float]] = None
    scale: float = 1.0


@dataclass
class PlaceholderCfg:
    inputs: List[InputSpec] = field(default_factory=lambda: [InputSpec()])
    preprocessing: PreprocessingCfg = field(default_factory=PreprocessingCfg)
    output: str = "probs"
    ema_decay: Optional[float] = 0.99
    devices: List[str] = field(default_factory=list)


@dataclass
class FreezeCfg:
    outputs: List[str] = MISSING
    clear_devices: bool = True
    constants: Dict[str, Any] = field(default_factory=dict)
    variable_denylist: List[str] = field(default_factory=list)
    tolerance: float = 1e-4


@dataclass
class CalibrationCfg:
    path: Optional[str] = None
    key: Optional[str] = None
    random: bool = False
    num_samples: int = 32


@dataclass
class TrtCfg:
    precision: str = "FP32"
    max_batch_size: Optional[int] = 1
    max_workspace_size_bytes: int = 1 << 30
    minimum_segment_size: int = 3
    is_dynamic_op: bool = False
    maximum_cached_engines: int = 1
    calibration: CalibrationCfg = field(default_factory=CalibrationCfg)


@dataclass
class TfliteCfg:
    precision: str = "FP32"
    batch_size: int = 1
    calibration: CalibrationCfg = field(default_factory=CalibrationCfg)


@dataclass
class BenchCfg:
    enabled: bool = True
    warmup: int = 3
    runs: int = 20
    again: bool = False


@dataclass
class Config:
    build_dir: str = "build"
    lock_file: str = "tfbuild.lock"
    report_file: Optional[str] = None
    dry_run: bool = False
    force: Any = False
    verify: bool = False
    description: str = ""
    checkpoint: CheckpointCfg = field(default_factory=CheckpointCfg)
    train: Optional[TrainCfg] = None
    model: Optional[ModelCfg] = None
    placeholder: Optional[PlaceholderCfg] = None
    freeze: Optional[FreezeCfg] = None
    trt: Optional[TrtCfg] = None
    tflite: Optional[TfliteCfg] = None
    bench: BenchCfg = field(default_factory=BenchCfg)
