"""The runtimes deployed models run in: the TFLite interpreter (LiteRT or tf.lite) and
onnxruntime, each with a one-shot run and a runner for repeated calls."""
from __future__ import annotations

import collections
import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from tfbuild.errors import StageFailed, first_line
from tfbuild.tf.graph_io import node_of


def tflite_runtime():
    """(Interpreter class, backend name with version) that runs .tflite models:
    LiteRT's where `ai-edge-litert` is installed (tf.lite.Interpreter is deprecated
    in its favour), TensorFlow's otherwise."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf
        return tf.lite.Interpreter, f"tf.lite {tf.__version__}"
    from importlib.metadata import version
    return Interpreter, f"litert {version('ai-edge-litert')}"


def load_interpreter(**kwargs):
    """An interpreter of `tflite_runtime()` for `Interpreter(**kwargs)`, tensors allocated
    (which applies the XNNPACK delegate).

    tf.lite.Interpreter warns on every construction that it moves to LiteRT; without
    LiteRT installed that is not actionable here, so exactly that warning is silenced.
    """
    interpreter_class, _ = tflite_runtime()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"\s*Warning: tf\.lite\.Interpreter is deprecated")
        interpreter = interpreter_class(**kwargs)
    interpreter.allocate_tensors()
    return interpreter


def tflite_runner(interpreter, feeds: Mapping[str, np.ndarray]):
    """run() -> outputs, with each feed set on the model input of its name: the
    converter does not keep the graph's input order."""
    if not isinstance(feeds, Mapping):
        raise TypeError("TFLite feeds must map input names to arrays")
    inputs = interpreter.get_input_details()
    given = {node_of(k): v for k, v in feeds.items()}
    names = [node_of(d["name"]) for d in inputs]
    if sorted(given) != sorted(names):
        raise StageFailed(f"the TFLite model takes inputs {sorted(names)}, got arrays for {sorted(given)}")
    feeds = [np.asarray(given[n], dtype=d["dtype"]) for n, d in zip(names, inputs)]
    if any(list(f.shape) != list(d["shape"]) for f, d in zip(feeds, inputs)):
        # e.g. batch 1 data on a batch-4 model: resize batched inputs rather than refuse;
        # a scalar input is never resized.
        try:
            for f, d in zip(feeds, inputs):
                if len(d["shape"]) == 0 and f.ndim:
                    raise ValueError(f"input {d['name']!r} is a scalar")
                interpreter.resize_tensor_input(d["index"], list(f.shape))
            interpreter.allocate_tensors()
        except (RuntimeError, ValueError) as e:
            shapes = {n: list(map(int, d["shape"])) for n, d in zip(names, inputs)}
            raise StageFailed(f"the TFLite model takes inputs of shape {shapes} and cannot be "
                              f"resized to {dict(zip(names, (list(f.shape) for f in feeds)))}: "
                              f"{first_line(e)}") from None
    outputs = [d["index"] for d in interpreter.get_output_details()]

    def run():
        for f, d in zip(feeds, inputs):
            interpreter.set_tensor(d["index"], f)
        try:
            interpreter.invoke()
        except RuntimeError as e:  # e.g. a loop whose shapes were fixed to the built batch
            raise StageFailed(f"running the TFLite model failed: {first_line(e)}") from None
        return [interpreter.get_tensor(i) for i in outputs]

    return run


def run_tflite(model_path: Path, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """Run a .tflite model once; `feeds` keyed by input name (the frozen graph's input
    nodes, ':0' accepted: tflite_convert keeps those names).

    Outputs come in `get_output_details()` order, which is the order of the
    output names given to the converter (convert() checks and records them),
    so they line up with run_frozen(..., outputs) by position.
    """
    return tflite_predictor(model_path)(feeds)


def tflite_predictor(model_path: Path):
    """run(feeds by input name) -> outputs, as run_tflite, on one interpreter for many
    runs (parity, evaluation): loading a model per batch costs more than running it."""
    interpreter = load_interpreter(model_path=str(model_path))
    return lambda feeds: [np.copy(o) for o in tflite_runner(interpreter, feeds)()]


def xnnpack_ops(interpreter) -> dict:
    """How many of the model's ops the XNNPACK delegate runs: `xnnpack_ops` of
    `total_ops`, and `undelegated` ({op name: count}) for those left to TFLite's
    own kernels, which explain a slow model (e.g. INT8 ops XNNPACK lacks).

    The interpreter applies its default delegate (XNNPACK on CPU; our models have
    no Flex ops) when tensors are allocated: each partition it takes becomes one
    DELEGATE node appended after the model's ops, with the partition's input and
    output tensors. The ops between them are the ones it took.
    """
    nodes = interpreter._get_ops_details()  # experimental, in tf.lite and LiteRT alike
    ops = [n for n in nodes if n["op_name"] != "DELEGATE"]
    # -1 marks an omitted optional tensor (a WHILE's unused output, a bias-less FC): no edge.
    producer = {t: op["index"] for op in ops for t in op["outputs"] if t >= 0}
    taken = set()
    for partition in (n for n in nodes if n["op_name"] == "DELEGATE"):
        bound, todo = set(partition["inputs"]), list(partition["outputs"])
        while todo:  # back from the partition's outputs to its inputs
            t = todo.pop()
            op = producer.get(t)
            if t not in bound and op is not None and op not in taken:
                taken.add(op)
                todo.extend(nodes[op]["inputs"])
    undelegated = collections.Counter(op["op_name"] for op in ops if op["index"] not in taken)
    return {"xnnpack_ops": len(taken), "total_ops": len(ops), "undelegated": dict(sorted(undelegated.items()))}


def onnx_session(model: Path | bytes, threads: int | None = None):
    """An onnxruntime CPU session using `threads` threads (default: all cores), on a
    .onnx file or a serialized model; one that cannot load is a StageFailed."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    options.log_severity_level = 3  # warnings about unused initializers say nothing actionable
    try:
        return ort.InferenceSession(model if isinstance(model, bytes) else str(model), options,
                                    providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001  onnxruntime raises its own classes (InvalidGraph, Fail, ...)
        where = "the ONNX model" if isinstance(model, bytes) else Path(model).name
        raise StageFailed(f"onnxruntime cannot load {where}: {first_line(e)}") from None


def run_onnx(model_path: Path, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """Run an ONNX model once; `feeds` keyed by input name (the frozen graph's input
    nodes, ':0' accepted); outputs in the model's output order."""
    return onnx_predictor(model_path)(feeds)


def onnx_predictor(model_path: Path):
    """run(feeds by input name) -> outputs, as run_onnx, on one session for many runs."""
    session = onnx_session(model_path)

    def run(feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        try:
            return session.run(None, {node_of(k): v for k, v in feeds.items()})
        except Exception as e:  # noqa: BLE001  e.g. a missing feed, a feed of the wrong dtype or shape
            raise StageFailed(f"running {Path(model_path).name} failed: {first_line(e)}") from None
    return run
