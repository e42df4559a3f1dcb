"""placeholder: the inference graph with named inputs, restored from training.

Rebuilds the model with `is_training=False` on named placeholders (one tower
per device, sharing variables, as in the post's multi-GPU variant), restores
the EMA shadow values (or the raw variables when `ema_decay` is null) and
saves a new checkpoint with its `.meta`.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional

from ..engine.spec import StageSpec, section
from ..marks import PATH
from ..checkpoint import TF1, detect
from ..errors import CheckpointError, ConfigError, first_line
from .common import checkpoint_input, checkpoint_of

if TYPE_CHECKING:
    from ..config import ModelCfg, PlaceholderCfg

PREFIX = "model.ckpt"
_IGNORED = ("ExponentialMovingAverage", "Momentum", "Adam", "global_step", "beta1_power",
            "beta2_power", "RMSProp")


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
    import tensorflow as tf

    from ..tf.session import session

    p = s.placeholder
    prefix = checkpoint_of(inputs, s.checkpoint)
    stored = _checkpoint_shapes(prefix)
    graph = tf.Graph()
    with graph.as_default():
        towers = _build_towers(s)
        var_map = _restore_map(p.ema_decay)
        _check_variables(var_map, stored, prefix)
        restorer = tf.compat.v1.train.Saver(var_list=var_map)
        saver = tf.compat.v1.train.Saver(save_relative_paths=True)
        with session(graph, grappler=False) as sess:
            try:
                restorer.restore(sess, prefix)
            except (tf.errors.DataLossError, tf.errors.OpError) as e:
                raise CheckpointError(f"cannot restore {prefix}: {first_line(e)}") from None
            saver.save(sess, str(out / PREFIX), write_state=True)
    return {"checkpoint": PREFIX, "inputs": towers["inputs"], "outputs": towers["outputs"],
            "ema_restored": p.ema_decay is not None, "devices": list(p.devices)}


def _build_towers(s: Settings) -> Dict[str, List]:
    import tensorflow as tf

    from ..tf.preprocess import preprocess

    p = s.placeholder
    devices = list(p.devices) or [None]
    inputs, outputs = [], []
    for i, device in enumerate(devices):
        scope = f"Card_{i}" if p.devices else None
        with tf.device(device), _maybe_scope(scope):
            feeds = [tf.compat.v1.placeholder(tf.as_dtype(s.dtype), s.shape, name=s.name) for s in p.inputs]
            try:
                logits = _logits(s.model, [preprocess(feeds[0], p.preprocessing), *feeds[1:]])
            except (ValueError, TypeError) as e:
                raise ConfigError(f"placeholder.inputs shape {list(p.inputs[0].shape)} does not fit "
                                  f"the model: {first_line(e)}") from None
            logits = tf.identity(logits, name="logits")
            probs = tf.nn.softmax(logits, name=p.output)
        inputs += [{"name": f.op.name, "shape": f.shape.as_list(), "dtype": f.dtype.name} for f in feeds]
        outputs += [logits.op.name, probs.op.name]
    return {"inputs": inputs, "outputs": outputs}


def _maybe_scope(scope):
    import contextlib

    import tensorflow as tf
    return tf.name_scope(scope) if scope else contextlib.nullcontext()


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


def _builder_input(m: ModelCfg) -> Dict[str, List[Path]]:
    """The user's builder module is an input: editing it rebuilds the graph (what it
    imports in turn is not followed)."""
    import importlib.util
    if not m._target_:
        return {}
    spec = importlib.util.find_spec(m._target_.rpartition(".")[0])
    origin = spec.origin if spec else None
    return {"model_code": [Path(origin)]} if origin and origin.endswith(".py") else {}


def _logits(m: ModelCfg, tensors):
    if m._target_:
        module_name, _, fn_name = m._target_.rpartition(".")
        try:
            fn = getattr(importlib.import_module(module_name), fn_name)
        except (ImportError, AttributeError, ValueError) as e:
            raise ConfigError(f"model._target_={m._target_!r} cannot be imported ({e}): give "
                              "package.module.function, importable from where tfbuild runs") from None
        logits = fn(*tensors, **dict(m.params))
        if not hasattr(logits, "op") or not hasattr(logits, "shape"):
            raise ConfigError(f"model._target_={m._target_!r} returned {type(logits).__name__}, not a "
                              "logits tensor: give a function fn(*input_tensors, **params) -> logits")
        return logits
    from ..tf.models import build_logits
    return build_logits(m, tensors[0], is_training=False)


def _restore_map(ema_decay) -> dict:
    import tensorflow as tf
    if ema_decay is None:
        return {v.op.name: v for v in tf.compat.v1.global_variables()}
    # Trainable weights come from their shadow copies; BN moving stats as they are.
    return tf.compat.v1.train.ExponentialMovingAverage(ema_decay).variables_to_restore()


def _checkpoint_shapes(prefix: str) -> Dict[str, List[int]]:
    import tensorflow as tf
    try:
        return dict(tf.train.list_variables(prefix))
    except Exception as e:  # DataLossError, NotFoundError, OutOfRangeError...
        raise CheckpointError(f"checkpoint {prefix} is corrupt or truncated: {first_line(e)}") from None


def _check_variables(var_map: dict, stored: Dict[str, List[int]], prefix: str) -> None:
    missing = sorted(name for name in var_map if name not in stored)
    wrong = sorted(f"{n} (model {var_map[n].shape.as_list()}, checkpoint {stored[n]})"
                   for n in var_map if n in stored and var_map[n].shape.as_list() != list(stored[n]))
    if not missing and not wrong:
        return
    used = set(var_map) | {n.rsplit("/", 1)[0] for n in var_map if n.endswith("/ExponentialMovingAverage") and n in stored}
    unexpected = sorted(n for n in stored if n not in used and not any(s in n for s in _IGNORED))
    parts = []
    if missing:
        parts.append(f"missing {len(missing)}: {', '.join(missing[:4])}{' …' if len(missing) > 4 else ''}")
    if unexpected:
        parts.append(f"unexpected: {', '.join(unexpected[:4])}{' …' if len(unexpected) > 4 else ''}")
    if wrong:
        parts.append(f"shape mismatch: {', '.join(wrong[:3])}")
    raise CheckpointError(f"checkpoint {prefix} does not match the model ({'; '.join(parts)}): "
                          "check model.* and placeholder.inputs, or placeholder.ema_decay "
                          "(null restores raw variables)")


SPEC = StageSpec("placeholder", settings, run, present=section("placeholder"), upstream=(("train",),),
                 files=lambda s: {**checkpoint_input(s.checkpoint), **_builder_input(s.model)},
                 tools=("tensorflow",), check=check)
