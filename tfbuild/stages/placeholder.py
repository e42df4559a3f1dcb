"""placeholder: the inference graph with named inputs, restored from training.

Rebuilds the model with `is_training=False` on named placeholders (one tower
per device, sharing variables, as in the post's multi-GPU variant), restores
the EMA shadow values (or the raw variables when `ema_decay` is null) and
saves a new checkpoint with its `.meta`: tfbuild/tf/placeholder_graph.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional

from ..engine.spec import StageSpec, section
from ..marks import PATH
from ..inputs.checkpoint import TF1, detect
from ..errors import ConfigError
from .common import checkpoint_input, checkpoint_of

if TYPE_CHECKING:
    from ..config import ModelCfg

PREFIX = "model.ckpt"


@dataclass
class InputSpec:
    name: str = "input"
    shape: List[Optional[int]] = field(default_factory=lambda: [None, 32, 32, 3])
    dtype: str = "float32"


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


@dataclass(frozen=True)
class Settings:
    model: ModelCfg
    placeholder: PlaceholderCfg
    checkpoint: Optional[str] = field(default=None, metadata=PATH)   # when no train stage


def settings(cfg, deps) -> Settings:
    return Settings(cfg.model, cfg.placeholder, None if deps else cfg.checkpoint.path)


def check(s: Settings) -> None:
    p = s.placeholder
    kind = detect(s.checkpoint) if s.checkpoint else TF1
    if kind != TF1:
        raise ConfigError(f"checkpoint.path {s.checkpoint} is a {kind}: it is frozen as it is, through "
                          "its signature; set placeholder: null")
    if not p.inputs:
        raise ConfigError("placeholder.inputs is empty: name at least one input, e.g. "
                          "{name: input, shape: [null, 224, 224, 3], dtype: float32}")
    for i, spec in enumerate(p.inputs):
        if any(d is not None and d <= 0 for d in spec.shape):
            raise ConfigError(f"placeholder.inputs[{i}].shape {spec.shape}: dimensions must be > 0 or null")
    mean, channels = p.preprocessing.mean, p.inputs[0].shape[-1] if p.inputs[0].shape else None
    if mean and channels is not None and len(mean) not in (1, channels):
        raise ConfigError(f"placeholder.preprocessing.mean has {len(mean)} values but "
                          f"placeholder.inputs[0] has {channels} channel(s) (shape {p.inputs[0].shape}): "
                          "give one mean per channel, or fix the input shape")
    if s.model._target_:
        _check_importable(s.model._target_)
    if p.ema_decay is not None and not 0 < p.ema_decay < 1:
        raise ConfigError(f"placeholder.ema_decay={p.ema_decay}: use a decay in (0, 1) or null")


def run(inputs, s: Settings, out: Path, log) -> dict:
    from ..tf.placeholder_graph import rebuild
    meta = rebuild(s.model, s.placeholder, checkpoint_of(inputs, s.checkpoint), out / PREFIX)
    return {"checkpoint": PREFIX, **meta}


def _check_importable(target: str) -> None:
    """The builder's module exists (found, not imported: it may import TensorFlow)."""
    import importlib.util
    module, _, fn = target.rpartition(".")
    try:
        found = bool(module and fn) and importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise ConfigError(f"model._target_={target!r}: no module {module or target!r} is importable "
                          "from here: give package.module.function, importable from where tfbuild runs")


def preflight(s: Settings) -> None:
    """The user's builder imported and callable, before any stage spends time (its module
    may import TensorFlow: here, not in `check`, which every no-op run pays for)."""
    target = s.model._target_
    if not target:
        return
    import importlib
    module, _, name = target.rpartition(".")
    try:
        fn = getattr(importlib.import_module(module), name)
    except AttributeError:
        raise ConfigError(f"model._target_={target!r}: module {module} has no {name!r}: give "
                          "package.module.function") from None
    except Exception as e:  # noqa: BLE001  the user's module failing as it is imported
        from ..errors import first_line
        raise ConfigError(f"model._target_={target!r}: importing {module} failed: {type(e).__name__}: "
                          f"{first_line(e)}") from None
    if not callable(fn):
        raise ConfigError(f"model._target_={target!r} is not callable ({type(fn).__name__} "
                          f"{repr(fn)[:40]}): give a function fn(*input_tensors, **params) -> logits")


def _builder_input(m: ModelCfg) -> Dict[str, List[Path]]:
    """The user's builder module is an input: editing it rebuilds the graph (what it
    imports in turn is not followed)."""
    import importlib.util
    if not m._target_:
        return {}
    spec = importlib.util.find_spec(m._target_.rpartition(".")[0])
    origin = spec.origin if spec else None
    return {"model_code": [Path(origin)]} if origin and origin.endswith(".py") else {}


SPEC = StageSpec("placeholder", settings, run, present=section("placeholder"), upstream=(("train",),),
                 files=lambda s: {**checkpoint_input(s.checkpoint), **_builder_input(s.model)},
                 tools=("tensorflow",), check=check, preflight=preflight)
