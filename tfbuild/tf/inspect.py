"""What a model on disk looks like, before anyone names its nodes: inputs, likely
outputs, signatures, variables and random ops. Builds nothing."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List

import tensorflow as tf

from ..inputs.checkpoint import KERAS, SAVED_MODEL, TF1, TF2, checkpoint_prefix, detect

# Ops that are never an inference output: saving, summaries, training, initialisation.
_SAVER = re.compile(r"^save(_\d+)?/")   # tf.train.Saver's own nodes
_NOT_OUTPUTS = ("Saver", "summary", "Summary", "gradients", "Momentum", "Adam", "RMSProp",
                "ExponentialMovingAverage", "init", "Initializer", "IsInitialized", "report_uninitialized",
                "global_step", "train", "loss", "assert", "Assert")
_RANDOM = {"RandomUniform", "RandomUniformInt", "RandomStandardNormal", "TruncatedNormal", "Multinomial",
           "RandomShuffle"}
_BOOKKEEPING = {"NoOp", "Assign", "AssignVariableOp", "VarHandleOp", "VariableV2", "Const", "SaveV2",
                "RestoreV2", "MergeV2Checkpoints", "Placeholder", "PlaceholderWithDefault", "ReadVariableOp",
                "VarIsInitializedOp", "Shape", "Size", "Rank"}
# Likely outputs first: what inference graphs end in.
_HEADS = ("Softmax", "Sigmoid", "ArgMax", "TopKV2", "Identity")


def describe(path: str) -> Dict[str, object]:
    kind = detect(path)
    if kind == SAVED_MODEL:
        return {"format": kind, **_saved_model(path)}
    if kind == KERAS:
        from .savedmodel import keras_file, keras_signature
        model = keras_file(path)
        _, inputs, keys = keras_signature(model)
        return {"format": kind, "inputs": [_spec(k, s.dtype, s.shape) for k, s in inputs.items()],
                "outputs": [_spec(k, t.dtype, t.shape) for k, t in zip(keys, model.outputs)],
                "variables": _sizes([(None, v.shape) for v in model.weights])}
    prefix = str(checkpoint_prefix(path))
    info = {"format": kind, "variables": _sizes(tf.train.list_variables(prefix))}
    meta = Path(prefix + ".meta")
    if kind == TF1 and meta.is_file():
        graph = tf.compat.v1.MetaGraphDef()
        graph.ParseFromString(meta.read_bytes())
        info.update(graph_def(graph.graph_def))
    elif kind == TF2:
        info["note"] = "an object-based checkpoint holds weights only: set model._target_ to its builder"
    else:
        info["note"] = "no .meta graph beside the checkpoint: give the placeholder stage a model"
    return info


def graph_def(gd) -> Dict[str, object]:
    nodes = list(gd.node)
    consumed = {i.split(":")[0].lstrip("^") for n in nodes for i in n.input}
    shape = lambda n: [d.size if d.size >= 0 else None for d in n.attr["shape"].shape.dim] \
        if "shape" in n.attr and not n.attr["shape"].shape.unknown_rank else None  # noqa: E731
    inputs = [_spec(n.name, tf.as_dtype(n.attr["dtype"].type), shape(n)) | {"default": n.op != "Placeholder"}
              for n in nodes if n.op in ("Placeholder", "PlaceholderWithDefault") and not _SAVER.match(n.name)]
    sinks = [n for n in nodes if n.name not in consumed and n.op not in _BOOKKEEPING
             and not _SAVER.match(n.name) and not any(s in n.name for s in _NOT_OUTPUTS)]
    sinks.sort(key=lambda n: (n.op not in _HEADS, n.name))
    random = sorted(n.name for n in nodes if n.op in _RANDOM and "Initializer" not in n.name)
    return {"inputs": inputs, "likely_outputs": [n.name for n in sinks], "random_ops": random,
            "nodes": len(nodes)}


def _saved_model(path: str) -> Dict[str, object]:
    try:
        loaded = tf.saved_model.load(path)
    except Exception as e:  # noqa: BLE001  a SavedModel TF cannot read
        from ..errors import CheckpointError, first_line
        raise CheckpointError(f"cannot load SavedModel {path}: {first_line(e)}") from None
    signatures = {}
    for name, fn in loaded.signatures.items():
        signatures[name] = {
            "inputs": [_spec(k, s.dtype, s.shape) for k, s in sorted(fn.structured_input_signature[1].items())],
            "outputs": [_spec(k, s.dtype, s.shape) for k, s in sorted(fn.structured_outputs.items())]}
    return {"signatures": signatures,
            "variables": _sizes([(v.name, v.shape) for v in getattr(loaded, "variables", [])])}


def _spec(name, dtype, shape) -> dict:
    dims = None if shape is None else [None if d is None else int(d) for d in list(shape)]
    return {"name": str(name).split(":")[0], "dtype": tf.as_dtype(dtype).name, "shape": dims}


def _sizes(pairs: List) -> Dict[str, int]:
    count = sum(int(tf.TensorShape(s).num_elements() or 0) for _, s in pairs)
    return {"count": len(pairs), "elements": count}
