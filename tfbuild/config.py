"""The schema of a target: structured configs that catch typos and wrong types.

Hydra merges `conf/config.yaml`, the target file and the command line onto
`Config`; OmegaConf then rejects unknown keys and ill-typed values before any
build work starts. `cli.main.to_config` turns the merged DictConfig into these plain
dataclasses, so the rest of tfbuild never sees OmegaConf.

Each stage's section is declared next to the stage that reads it (Hydra's
structured-config pattern) and checked there; this module holds `Config`, the
run-level sections, and `validate`: the rules across sections and those of
the run-level keys. All of it runs before any stage does.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from .errors import ConfigError
from .evaluation import EvaluateCfg, check as check_evaluate
from .marks import PATH, RUN
# Each stage declares its section; every section class is a name here too, as an
# unknown key's hint finds the class by name (cli.config_errors.unknown_key).
from .stages.common import at_least
from .stages.deploy import CalibrationCfg  # noqa: F401
from .stages.freeze import FreezeCfg
from .stages.onnx import OnnxCfg
from .stages.placeholder import InputSpec, PlaceholderCfg, PreprocessingCfg  # noqa: F401
from .stages.tflite import TfliteCfg
from .stages.train import TrainCfg
from .stages.trt import TrtCfg

SECTIONS = ("train", "placeholder", "freeze", "onnx", "trt", "tflite")   # stage sections


@dataclass
class CheckpointCfg:
    path: Optional[str] = field(default=None, metadata=PATH)


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
class BenchCfg:
    enabled: bool = True
    warmup: int = 3
    runs: int = 20                       # timed calls per window (tfbuild/measure.py)
    windows: int = 10                    # at most, until the last 3 window medians agree within margin
    margin: float = 0.05
    budget_s: float = 60.0               # per measured batch size; past it the figures say settled: false
    batches: List[int] = field(default_factory=list)   # more batch sizes, where the artifact's batch is free
    again: bool = False
    threads: Optional[int] = None        # null: every core, for every backend


@dataclass
class SelectCfg:
    minimize: str = "ms"                 # what a sweep's `best` minimizes among the jobs within their goals: ms | size


SELECT = ("ms", "size")


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
    build_dir: str = field(default="build", metadata=RUN)
    lock_file: str = field(default="tfbuild.lock", metadata=RUN)
    report_file: Optional[str] = field(default=None, metadata=RUN)
    dry_run: bool = field(default=False, metadata=RUN)
    force: Any = field(default=False, metadata=RUN)
    verify: bool = field(default=False, metadata=RUN)
    locked: bool = field(default=False, metadata=RUN)   # exit 1 before building if the lock file is out of date (CI)
    verbose: bool = field(default=False, metadata=RUN)  # show TensorFlow's own C++ log lines
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
    evaluate: Optional[EvaluateCfg] = None   # accuracy on the user's labelled data (evaluation.py)
    bench: BenchCfg = field(default_factory=BenchCfg, metadata=RUN)
    cache: CacheCfg = field(default_factory=CacheCfg, metadata=RUN)
    sign: SignCfg = field(default_factory=SignCfg, metadata=RUN)
    select: SelectCfg = field(default_factory=SelectCfg, metadata=RUN)


def validate(cfg: Config) -> Config:
    """Checks across sections, and of the run-level keys; raises ConfigError. Each stage
    checks its own section (its `settings` and `check`), all before any stage runs."""
    if cfg.select.minimize not in SELECT:
        raise ConfigError(f"select.minimize={cfg.select.minimize!r}: a sweep's best minimizes one of "
                          f"{', '.join(SELECT)}")
    for name in cfg.drop:
        if name not in SECTIONS:
            raise ConfigError(f"drop={name}: not a stage section; drop one of {', '.join(SECTIONS)}")
        setattr(cfg, name, None)
    _writable("build_dir", cfg.build_dir, directory=True)
    _writable("lock_file", cfg.lock_file, directory=False)
    if cfg.evaluate is not None:
        check_evaluate(cfg.evaluate)
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
    at_least("bench.runs", cfg.bench.runs, 1)
    at_least("bench.warmup", cfg.bench.warmup, 0)
    at_least("bench.windows", cfg.bench.windows, 1)
    for n in cfg.bench.batches:
        at_least("bench.batches[]", n, 1)
    if not 0 < cfg.bench.margin < 1:
        raise ConfigError(f"bench.margin={cfg.bench.margin}: give a share in (0, 1), e.g. 0.05")
    if cfg.bench.threads is not None:
        at_least("bench.threads", cfg.bench.threads, 1)
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

