"""The schema of a target: structured configs that catch typos and wrong types.

Hydra merges `conf/config.yaml`, the target file and the command line onto
`Config`; OmegaConf then rejects unknown keys and ill-typed values before any
build work starts. `cli.to_config` turns the merged DictConfig into these plain
dataclasses, so the rest of tfbuild never sees OmegaConf, and `validate`
checks what types cannot say — the one validation layer besides each stage's
own `check`, all of it before any stage runs.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from .errors import ConfigError
from .marks import PATH
from .precision import check_precision

ONNX_OPSETS = (9, 18)   # what the pinned tf2onnx (1.17) writes
TRT_BACKENDS = ("auto", "tf-trt", "tensorrt")   # see tfbuild/trt_backend.py
SECTIONS = ("train", "placeholder", "freeze", "onnx", "trt", "tflite")   # stage sections


@dataclass
class InputSpec:
    name: str = "input"
    shape: List[Optional[int]] = field(default_factory=lambda: [None, 32, 32, 3])
    dtype: str = "float32"


@dataclass
class CheckpointCfg:
    path: Optional[str] = field(default=None, metadata=PATH)


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
    # Required for TF1 graphs; a SavedModel's or Keras model's outputs by default.
    outputs: List[str] = field(default_factory=list)
    signature: str = "serving_default"      # SavedModel signature to freeze
    graph: Optional[str] = field(default=None, metadata=PATH)   # a GraphDef file for a checkpoint without .meta
    initializer_nodes: List[str] = field(default_factory=list)  # run after restore, kept (lookup tables)
    clear_devices: bool = True
    constants: Dict[str, Any] = field(default_factory=dict)
    variable_denylist: List[str] = field(default_factory=list)
    # Dims beyond the batch that the model leaves free, pinned: {image: [null, 224, 224, 3]}.
    input_shapes: Dict[str, List[Optional[int]]] = field(default_factory=dict)
    # Values parity and benchmark inputs are drawn from: {ids: [0, 4999], image: [-1, 1]}.
    input_ranges: Dict[str, List[Any]] = field(default_factory=dict)   # numbers: ints stay ints
    tolerance: float = 1e-4


@dataclass
class CalibrationCfg:
    path: Optional[str] = field(default=None, metadata=PATH)   # identity: the files' content
    key: Optional[str] = None
    random: bool = False
    num_samples: int = 32


@dataclass
class TrtCfg:
    backend: str = "auto"                # auto: TF-TRT where TensorFlow has it, else a tensorrt engine
    precision: str = "FP32"
    max_batch_size: Optional[int] = 1
    max_workspace_size_bytes: int = 1 << 30
    minimum_segment_size: int = 3
    is_dynamic_op: bool = False
    maximum_cached_engines: int = 1
    calibration: CalibrationCfg = field(default_factory=CalibrationCfg)
    tolerance: Optional[float] = None    # null: the precision's default


@dataclass
class TfliteCfg:
    precision: str = "FP32"
    batch_size: int = 1
    calibration: CalibrationCfg = field(default_factory=CalibrationCfg)
    tolerance: Optional[float] = None    # null: the precision's default


@dataclass
class OnnxCfg:
    precision: str = "FP32"
    opset: int = 17
    batch_size: Optional[int] = 1        # null: a dynamic batch dimension
    calibration: CalibrationCfg = field(default_factory=CalibrationCfg)
    tolerance: Optional[float] = None    # null: the precision's default


@dataclass
class BenchCfg:
    enabled: bool = True
    warmup: int = 3
    runs: int = 20
    again: bool = False
    threads: Optional[int] = None        # null: every core, for every backend


@dataclass
class CacheCfg:
    url: Optional[str] = None            # fsspec URL: s3://bucket/prefix, gs://..., file:///mnt/...
    options: Dict[str, Any] = field(default_factory=dict)   # fsspec storage options
    push: bool = True
    pull: bool = True


@dataclass
class SignCfg:
    key: Optional[str] = None            # EC private key (PEM): sign what this run builds
    public_key: Optional[str] = None     # EC public key (PEM): verify=true checks signatures


@dataclass
class Config:
    build_dir: str = "build"
    lock_file: str = "tfbuild.lock"
    report_file: Optional[str] = None
    dry_run: bool = False
    force: Any = False
    verify: bool = False
    locked: bool = False       # exit 1 before building if the lock file is out of date (CI)
    verbose: bool = False      # show TensorFlow's own C++ log lines
    description: str = ""
    drop: List[str] = field(default_factory=list)   # stage sections left out (tflite=null, ~tflite)
    checkpoint: CheckpointCfg = field(default_factory=CheckpointCfg)
    train: Optional[TrainCfg] = None
    model: Optional[ModelCfg] = None
    placeholder: Optional[PlaceholderCfg] = None
    freeze: Optional[FreezeCfg] = field(default_factory=FreezeCfg)   # every target freezes
    onnx: Optional[OnnxCfg] = None
    trt: Optional[TrtCfg] = None
    tflite: Optional[TfliteCfg] = None
    bench: BenchCfg = field(default_factory=BenchCfg)
    cache: CacheCfg = field(default_factory=CacheCfg)
    sign: SignCfg = field(default_factory=SignCfg)


def validate(cfg: Config) -> Config:
    """Checks across keys and ranges; upper-cases precisions. Raises ConfigError."""
    for name in cfg.drop:
        if name not in SECTIONS:
            raise ConfigError(f"drop={name}: not a stage section; drop one of {', '.join(SECTIONS)}")
        setattr(cfg, name, None)
    _writable("build_dir", cfg.build_dir, directory=True)
    _writable("lock_file", cfg.lock_file, directory=False)
    if cfg.report_file:
        _writable("report_file", cfg.report_file, directory=False)
    if cfg.checkpoint.path and cfg.train is not None:
        raise ConfigError("set either checkpoint.path (your checkpoint) or train "
                          "(tfbuild trains a demo model), not both: add train=null")
    if not cfg.checkpoint.path and cfg.train is None:
        raise ConfigError("the target names no checkpoint: set checkpoint.path=DIR_OR_PREFIX "
                          "(or train: {...} for a built-in demo model)")
    if cfg.freeze is None:
        raise ConfigError("freeze is null: every target freezes its model (the other stages start from "
                          "the frozen graph): remove freeze: null")
    needs_model = "placeholder" if cfg.placeholder is not None else "train" if cfg.train is not None else None
    if needs_model and (cfg.model is None or not (cfg.model.name or cfg.model._target_)):
        raise ConfigError(f"the {needs_model} stage needs a model: add '- /model: tiny_densenet' "
                          "to the target's defaults, or model._target_=package.module.function")
    _at_least("freeze.tolerance", cfg.freeze.tolerance, 0)
    if cfg.train is not None:
        _at_least("train.steps", cfg.train.steps, 0)
        _at_least("train.batch_size", cfg.train.batch_size, 1)
        _at_least("train.examples", cfg.train.examples, 1)
    _at_least("bench.runs", cfg.bench.runs, 1)
    _at_least("bench.warmup", cfg.bench.warmup, 0)
    if cfg.bench.threads is not None:
        _at_least("bench.threads", cfg.bench.threads, 1)
    for name in ("onnx", "trt", "tflite"):
        section = getattr(cfg, name)
        if section is not None:
            c = section.calibration
            section.precision = check_precision(name, section.precision, c.path, c.random, c.num_samples)
            if section.tolerance is not None:
                _at_least(f"{name}.tolerance", section.tolerance, 0)
    if cfg.trt is not None:
        backend = cfg.trt.backend.lower()   # like precisions, written in any case
        if backend not in TRT_BACKENDS:
            raise ConfigError(f"trt.backend={cfg.trt.backend!r} is unknown: use one of {', '.join(TRT_BACKENDS)}")
        cfg.trt.backend = backend
    if cfg.tflite is not None:
        _at_least("tflite.batch_size", cfg.tflite.batch_size, 1)
    if cfg.onnx is not None:
        if cfg.onnx.batch_size is not None:
            _at_least("onnx.batch_size", cfg.onnx.batch_size, 1)
        lo, hi = ONNX_OPSETS
        if not lo <= cfg.onnx.opset <= hi:
            raise ConfigError(f"onnx.opset={cfg.onnx.opset}: tf2onnx converts to opsets {lo} to {hi}")
    return cfg


def _writable(key: str, value: str, directory: bool) -> None:
    """`value` is (or can become) a directory, or a file, that tfbuild can write; creates nothing."""
    path = Path(value).expanduser()
    if path.exists() and path.is_dir() != directory:
        kind, want = ("a file", "a directory") if directory else ("a directory", "a file path")
        raise ConfigError(f"{key}={value} is {kind}: give {want}")
    where = path if directory else path.parent
    while not where.exists() and where != where.parent:
        where = where.parent
    if not where.is_dir():
        raise ConfigError(f"{key}={value}: {where} is a file, so nothing can be created below it")
    try:  # the one sure test: create something there (and remove it)
        tempfile.TemporaryDirectory(dir=where, prefix=".tfbuild-probe-").cleanup()
    except OSError as e:
        raise ConfigError(f"{key}={value}: cannot write in {where} ({e.strerror}): "
                          f"choose a writable location") from None


def _at_least(key: str, value, minimum) -> None:
    if value < minimum:
        raise ConfigError(f"{key}={value} is out of range: use a value >= {minimum}")
