"""Latency of frozen graphs, TFLite and ONNX models: median, p90 and throughput of the
call a user makes, and the frozen graph timed alongside for a speed-up."""
from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from tfbuild.errors import StageFailed, TfbuildError, first_line
from tfbuild.tf.graph_io import frozen_session, node_of
from tfbuild.tf.runtimes import load_interpreter, onnx_session, tflite_runner, tflite_runtime, xnnpack_ops


def time_call(call, batch_size: int, warmup: int, runs: int) -> dict:
    """Median and p90 of `runs` calls of `call()` after `warmup` untimed ones; throughput
    counts `batch_size` samples a call."""
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


def batch_of(feeds) -> int:
    """The batch size of the first feed (1 where it is a scalar or there is none)."""
    feeds = list(feeds)
    return int(np.shape(feeds[0])[0]) if feeds and np.ndim(feeds[0]) else 1


def model_feeds(inputs: Sequence[Mapping], batch_size: int | None = None) -> dict[str, np.ndarray]:
    """Seeded feeds by name for the frozen graph's recorded inputs (name, shape, dtype,
    range): at `batch_size`, else at the first batched input's own size (unknown: 1)."""
    from tfbuild.inputs.samples import one_batch
    batched = [i["shape"][0] for i in inputs if i["shape"]]
    return one_batch(inputs, batch_size or (batched[0] if batched else None) or 1)


def latency_frozen(frozen_pb: Path, feeds: Mapping[str, np.ndarray], outputs: Sequence[str],
                   *, warmup: int = 3, runs: int = 20, threads: int | None = None) -> dict:
    """Time `session.run` on a frozen graph (also TF-TRT graphs: same call path).

    Graph import and session creation are not timed; feeding and fetching are,
    as they are part of every real inference call.
    """
    import tensorflow as tf

    threads = threads or os.cpu_count() or 1
    with frozen_session(frozen_pb, feeds, outputs, threads=threads) as (sess, fetches, feed_dict):
        return {**time_call(lambda: sess.run(fetches, feed_dict), batch_of(feeds.values()), warmup, runs),
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


def latency_tflite(model_path: Path, feeds: Mapping[str, np.ndarray], *, warmup: int = 3,
                   runs: int = 20, threads: int | None = None) -> dict:
    """Time set_tensor + invoke + get_tensor, the TFLite equivalent of session.run, on
    `feeds` keyed by input name; the batch size is that of the batched inputs."""
    threads = threads or os.cpu_count() or 1
    interpreter = load_interpreter(model_path=str(model_path), num_threads=threads)
    run = tflite_runner(interpreter, feeds)
    run()  # a feed the model cannot take fails here, once, not inside the timing
    batch = batch_of([f for f in feeds.values() if np.ndim(f)])
    return {**time_call(run, batch, warmup, runs), "backend": tflite_runtime()[1],
            "threads": threads, **xnnpack_ops(interpreter)}


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
    batch = batch_of([v for v in feed.values() if np.ndim(v)])
    return {**time_call(lambda: session.run(None, feed), batch, warmup, runs),
            "backend": f"onnxruntime {ort.__version__}", "threads": threads}
