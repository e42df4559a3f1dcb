"""Run frozen graphs and TFLite models, compare their outputs, time them.

Every TensorFlow call runs in a private `tf.Graph` and session, so these
functions behave the same whether or not eager execution was disabled.
"""

from __future__ import annotations

import collections
import contextlib
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from tfbuild.errors import NodeNotFound, ParityError, StageFailed, TfbuildError, first_line


def seeded_batch(shape_without_batch: Sequence[int], batch_size: int, seed: int = 0) -> np.ndarray:
    """Deterministic float32 input in 0..255 (raw pixel range) for parity checks.

    Sample i is the same for every batch_size >= i + 1, so results at batch 1
    and batch 4 can be compared sample by sample.
    """
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 255.0, size=(batch_size, *shape_without_batch)).astype(np.float32)


def node_of(name: str) -> str:
    """'probs:0' -> 'probs': the node a tensor name belongs to; node names pass through."""
    node, _, index = name.rpartition(":")
    return node if node and index.isdigit() else name


def run_frozen(frozen_pb: Path, feeds: Mapping[str, np.ndarray], outputs: Sequence[str]) -> list[np.ndarray]:
    """Run a frozen GraphDef once; node names with or without ':0' are accepted."""
    with frozen_session(frozen_pb, feeds, outputs) as (sess, fetches, feed_dict):
        return [np.asarray(r) for r in sess.run(fetches, feed_dict)]


@contextlib.contextmanager
def frozen_runner(frozen_pb: Path, inputs: Sequence[str], outputs: Sequence[str]):
    """Yield run(feeds by input name) -> outputs: one session for many runs."""
    with frozen_session(frozen_pb, dict.fromkeys(inputs), outputs) as (sess, fetches, feed_dict):
        tensors = dict(zip(inputs, feed_dict))
        yield lambda feeds: [np.asarray(r) for r in sess.run(fetches, {tensors[k]: v for k, v in feeds.items()})]


def run_tflite(model_path: Path, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """Run a .tflite model once; `feeds` keyed by input name (the frozen graph's input
    nodes, ':0' accepted: tflite_convert keeps those names).

    Outputs come in `get_output_details()` order, which is the order of the
    output names given to the converter (convert() checks and records them),
    so they line up with run_frozen(..., outputs) by position.
    """
    interpreter = load_interpreter(model_path=str(model_path))
    run = _tflite_runner(interpreter, feeds)
    return [np.copy(o) for o in run()]


def max_abs_diff(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> float:
    """Largest element-wise |a - b| over all outputs; NaN counts as infinitely different."""
    if len(a) != len(b):
        raise ParityError(f"got {len(a)} outputs to compare with {len(b)}: the models "
                          f"must have the same outputs")
    worst = 0.0
    for i, (x, y) in enumerate(zip(a, b)):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        if x.shape != y.shape:
            raise ParityError(f"output {i} has shape {list(x.shape)} in one model and "
                              f"{list(y.shape)} in the other: the conversion changed its shape")
        if x.size:
            diff = np.abs(x - y)
            # NaN would compare False against any tolerance and pass silently.
            worst = max(worst, float("inf") if np.isnan(diff).any() else float(diff.max()))
    return worst


def latency_frozen(frozen_pb: Path, feeds: Mapping[str, np.ndarray], outputs: Sequence[str],
                   *, warmup: int = 3, runs: int = 20, threads: int | None = None) -> dict:
    """Time `session.run` on a frozen graph (also TF-TRT graphs: same call path).

    Graph import and session creation are not timed; feeding and fetching are,
    as they are part of every real inference call.
    """
    import tensorflow as tf

    threads = threads or os.cpu_count() or 1
    with frozen_session(frozen_pb, feeds, outputs, threads=threads) as (sess, fetches, feed_dict):
        return {**_time(lambda: sess.run(fetches, feed_dict), _batch_size(feeds.values()), warmup, runs),
                "backend": f"tensorflow {tf.__version__}", "threads": threads}


def versus_frozen(figures: dict, frozen_pb: Path, inputs: Sequence[Mapping], outputs: Sequence[str], *,
                  warmup: int = 3, runs: int = 20) -> dict:
    """A deployed model's `figures` plus the frozen graph timed now, at the same batch
    size and threads: `frozen_ms` and `speedup` (its median over the model's).

    `inputs` are the graph's (name, shape, dtype). Where the graph cannot run at that
    batch size (a fixed batch dimension), both are None and `frozen_error` says why:
    the model's own figures stand.
    """
    try:
        frozen = latency_frozen(frozen_pb, model_feeds(inputs, figures["batch_size"]), outputs,
                                warmup=warmup, runs=runs, threads=figures.get("threads"))
    except TfbuildError as e:
        return {**figures, "frozen_ms": None, "speedup": None, "frozen_error": first_line(e)}
    return {**figures, "frozen_ms": frozen["median_ms"], "speedup": frozen["median_ms"] / figures["median_ms"]}


def model_feeds(inputs: Sequence[Mapping], batch_size: int | None = None) -> dict[str, np.ndarray]:
    """Seeded feeds by name for the frozen graph's recorded inputs (name, shape, dtype,
    range): at `batch_size`, else at the first batched input's own size (unknown: 1)."""
    from tfbuild.samples import one_batch
    batched = [i["shape"][0] for i in inputs if i["shape"]]
    return one_batch(inputs, batch_size or (batched[0] if batched else None) or 1)


def latency_tflite(model_path: Path, feeds: Mapping[str, np.ndarray], *, warmup: int = 3,
                   runs: int = 20, threads: int | None = None) -> dict:
    """Time set_tensor + invoke + get_tensor, the TFLite equivalent of session.run, on
    `feeds` keyed by input name; the batch size is that of the batched inputs."""
    threads = threads or os.cpu_count() or 1
    interpreter = load_interpreter(model_path=str(model_path), num_threads=threads)
    run = _tflite_runner(interpreter, feeds)
    run()  # a feed the model cannot take fails here, once, not inside the timing
    batch = _batch_size([f for f in feeds.values() if np.ndim(f)])
    return {**_time(run, batch, warmup, runs), "backend": tflite_runtime()[1],
            "threads": threads, **xnnpack_ops(interpreter)}


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
    session = onnx_session(model_path)
    feed = {node_of(k): v for k, v in feeds.items()}
    try:
        return session.run(None, feed)
    except Exception as e:  # noqa: BLE001  e.g. a missing feed, a feed of the wrong dtype or shape
        raise StageFailed(f"running {Path(model_path).name} failed: {first_line(e)}") from None


def latency_onnx(model_path: Path, feeds: Mapping[str, np.ndarray], *, warmup: int = 3, runs: int = 20,
                 threads: int | None = None) -> dict:
    """Time session.run on `feeds` keyed by input name; the batch size is that of the
    inputs that have one (scalar inputs have none)."""
    import onnxruntime as ort

    threads = threads or os.cpu_count() or 1
    session = onnx_session(model_path, threads)
    feed = {node_of(k): v for k, v in feeds.items()}
    try:
        session.run(None, feed)   # a bad feed fails here, once, not inside the timing
    except Exception as e:  # noqa: BLE001
        raise StageFailed(f"running {Path(model_path).name} failed: {first_line(e)}") from None
    batch = _batch_size([v for v in feed.values() if np.ndim(v)])
    return {**_time(lambda: session.run(None, feed), batch, warmup, runs),
            "backend": f"onnxruntime {ort.__version__}", "threads": threads}


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


@contextlib.contextmanager
def frozen_session(frozen_pb: Path, feeds: Mapping[str, np.ndarray], outputs: Sequence[str], *,
                   graph_def=None, grappler: bool = True, threads: int | None = None):
    """Yield (session, fetch tensors, feed dict) for a frozen graph.

    `graph_def`, when given, is the parsed content of `frozen_pb` (which then only
    names it in messages): the freeze stage has it in memory already.
    """
    import tensorflow as tf

    from tfbuild.tf.session import config

    if graph_def is None:
        graph_def = read_graph_def(frozen_pb)
    with tf.Graph().as_default() as graph:
        try:
            tf.compat.v1.import_graph_def(graph_def, name="")
        except (ValueError, tf.errors.OpError) as e:  # e.g. an op this TF build lacks
            raise StageFailed(f"cannot import {frozen_pb}: {first_line(e)}") from None

        def tensor(name):
            try:
                return graph.get_tensor_by_name(name if ":" in name else name + ":0")
            except (KeyError, ValueError):
                raise NodeNotFound(f"node {name!r} is not in {frozen_pb}: check the "
                                   f"input/output names in the target") from None

        feed_dict = {tensor(k): v for k, v in feeds.items()}
        fetches = [tensor(o) for o in outputs]
        del graph_def  # the graph holds its own copy; let the caller's go first
        pools = {"intra_op_parallelism_threads": threads, "inter_op_parallelism_threads": threads} \
            if threads else {}
        with tf.compat.v1.Session(graph=graph, config=config(grappler=grappler, **pools)) as sess:
            try:
                yield sess, fetches, feed_dict
            except (tf.errors.OpError, ValueError) as e:  # e.g. a feed of the wrong shape
                raise StageFailed(f"running {frozen_pb} failed: {first_line(e)}") from None


def read_graph_def(frozen_pb: Path):
    """The parsed GraphDef of `frozen_pb`; a missing or corrupt file is a StageFailed."""
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(Path(frozen_pb).read_bytes())
    except OSError as e:
        raise StageFailed(f"cannot read frozen graph {frozen_pb}: {e.strerror}: rebuild it") from None
    except Exception:  # protobuf DecodeError
        raise StageFailed(f"{frozen_pb} is not a binary GraphDef: rebuild the frozen graph") from None
    return graph_def


def _tflite_runner(interpreter, feeds: Mapping[str, np.ndarray]):
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


def _batch_size(feeds) -> int:
    feeds = list(feeds)
    return int(np.shape(feeds[0])[0]) if feeds and np.ndim(feeds[0]) else 1


def _time(call, batch_size: int, warmup: int, runs: int) -> dict:
    if runs < 1 or warmup < 0:
        raise ValueError(f"need runs >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    for _ in range(warmup):  # first calls allocate memory and pick kernels
        call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    median = float(np.median(times))
    return {
        "median_ms": median * 1e3,
        "p90_ms": float(np.percentile(times, 90)) * 1e3,
        "throughput_per_s": batch_size / median,
        "batch_size": batch_size,
        "runs": runs,
    }
