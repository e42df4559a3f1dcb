"""The placeholder stage's graph: the model rebuilt for inference on named inputs
(`is_training=False`, one tower per device sharing variables, as in the post's
multi-GPU variant), restored from its training checkpoint (the EMA shadow values,
or the raw variables when `ema_decay` is null) and saved with its `.meta`."""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Dict, List

from tfbuild.errors import CheckpointError, ConfigError, first_line

_IGNORED = ("ExponentialMovingAverage", "Momentum", "Adam", "global_step", "beta1_power",
            "beta2_power", "RMSProp")


def rebuild(model, p, prefix: str, out_prefix: Path) -> dict:
    """Build the inference graph of `model` on the placeholder section `p`'s inputs, restore
    it from the checkpoint at `prefix` and save it at `out_prefix`, with its .meta; the
    stage's metadata, less the checkpoint's name."""
    import tensorflow as tf

    from tfbuild.tf.session import session

    stored = _checkpoint_shapes(prefix)
    graph = tf.Graph()
    with graph.as_default():
        towers = _build_towers(model, p)
        var_map = _restore_map(p.ema_decay)
        _check_variables(var_map, stored, prefix)
        restorer = tf.compat.v1.train.Saver(var_list=var_map)
        saver = tf.compat.v1.train.Saver(save_relative_paths=True)
        with session(graph, grappler=False) as sess:
            try:
                restorer.restore(sess, prefix)
            except (tf.errors.DataLossError, tf.errors.OpError) as e:
                raise CheckpointError(f"cannot restore {prefix}: {first_line(e)}") from None
            saver.save(sess, str(out_prefix), write_state=True)
    return {"inputs": towers["inputs"], "outputs": towers["outputs"],
            "ema_restored": p.ema_decay is not None, "devices": list(p.devices)}


def _build_towers(model, p) -> Dict[str, List]:
    import tensorflow as tf

    from tfbuild.tf.preprocess import preprocess

    devices = list(p.devices) or [None]
    inputs, outputs = [], []
    for i, device in enumerate(devices):
        scope = f"Card_{i}" if p.devices else None
        with tf.device(device), _maybe_scope(scope):
            feeds = [tf.compat.v1.placeholder(tf.as_dtype(s.dtype), s.shape, name=s.name) for s in p.inputs]
            try:
                logits = _logits(model, [preprocess(feeds[0], p.preprocessing), *feeds[1:]])
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


def _logits(m, tensors):
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
    from tfbuild.tf.models import build_logits
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
