"""Latency of frozen graphs, TFLite and ONNX models as a caller sees it, each beside
the frozen graph it came from: timed in turns until both settle (tfbuild/measure.py),
with their spread and the memory each runtime takes."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np

from tfbuild import measure
from tfbuild.measure import Timed, batch_of
from tfbuild.errors import StageFailed, TfbuildError, first_line
from tfbuild.tf.graph_io import frozen_session, node_of
from tfbuild.tf.memory import session_memory
from tfbuild.tf.runtimes import load_interpreter, onnx_session, tflite_runner, tflite_runtime, xnnpack_ops


Timer = Callable[[int], "contextlib.AbstractContextManager[Timed]"]   # batch size -> a Timed, while open


def own_batch(inputs: Sequence[Mapping]) -> int:
    """The first batched input's own batch size (unknown: 1)."""
    return next((i["shape"][0] for i in inputs if i["shape"]), None) or 1


def model_feeds(inputs: Sequence[Mapping], batch_size: int | None = None) -> dict[str, np.ndarray]:
    """Seeded feeds by name for the frozen graph's recorded inputs (name, shape, dtype,
    range): at `batch_size`, else at the inputs' own (own_batch)."""
    from tfbuild.inputs.samples import one_batch
    return one_batch(inputs, batch_size or own_batch(inputs))


def plan(b) -> measure.Plan:
    """The bench settings (config.BenchCfg) as a measurement plan."""
    return measure.Plan(warmup=b.warmup, runs=b.runs, windows=b.windows, margin=b.margin, budget_s=b.budget_s)


# ----------------------------------------------------------------------------- timers

@contextlib.contextmanager
def frozen_timer(frozen_pb: Path, feeds: Mapping[str, np.ndarray], outputs: Sequence[str],
                 threads: int | None = None) -> Iterator[Timed]:
    """`session.run` on a frozen graph (also TF-TRT graphs: same call path); graph import
    and session creation are not timed, feeding and fetching are."""
    import tensorflow as tf

    threads = threads or os.cpu_count() or 1
    memory = session_memory("frozen", frozen_pb, feeds, outputs, threads)
    with frozen_session(frozen_pb, feeds, outputs, threads=threads) as (sess, fetches, feed_dict):
        call = lambda: sess.run(fetches, feed_dict)   # noqa: E731
        call()
        yield Timed(call, batch_of(feeds.values()), {"backend": f"tensorflow {tf.__version__}", "threads": threads},
                    memory)


@contextlib.contextmanager
def tflite_timer(model_path: Path, feeds: Mapping[str, np.ndarray], threads: int | None = None) -> Iterator[Timed]:
    """set_tensor + invoke + get_tensor, the TFLite equivalent of session.run."""
    threads = threads or os.cpu_count() or 1
    interpreter = load_interpreter(model_path=str(model_path), num_threads=threads)
    call = tflite_runner(interpreter, feeds)
    call()   # a feed the model cannot take fails here, once, not inside the timing
    yield Timed(call, batch_of([f for f in feeds.values() if np.ndim(f)]),
                {"backend": tflite_runtime()[1], "threads": threads, **xnnpack_ops(interpreter)},
                session_memory("tflite", model_path, feeds, threads=threads))


@contextlib.contextmanager
def onnx_timer(model_path: Path, feeds: Mapping[str, np.ndarray], threads: int | None = None) -> Iterator[Timed]:
    """onnxruntime's session.run."""
    import onnxruntime as ort

    threads = threads or os.cpu_count() or 1
    feed = {node_of(k): v for k, v in feeds.items()}
    session = onnx_session(model_path, threads)
    try:
        session.run(None, feed)   # a bad feed fails here, once, not inside the timing
    except Exception as e:  # noqa: BLE001
        raise StageFailed(f"running {Path(model_path).name} failed: {first_line(e)}") from None
    yield Timed(lambda: session.run(None, feed), batch_of([v for v in feed.values() if np.ndim(v)]),
                {"backend": f"onnxruntime {ort.__version__}", "threads": threads},
                session_memory("onnx", model_path, feeds, threads=threads))


# ----------------------------------------------------------------------------- measuring

def versus_frozen(timer: Timer, batch: int, b, frozen_pb: Optional[Path], inputs: Sequence[Mapping],
                  outputs: Sequence[str], *, free_batch: bool = False) -> dict:
    """The model `timer` makes, at `batch`, and the frozen graph (None: it is the frozen
    graph) at the same batch and threads, timed in turns until both settle. `frozen_ms`,
    `speedup` (the graph's median over the model's) and `frozen` (its figures) come with
    the model's; where the graph cannot run at that batch, `frozen_error` says why.
    With `free_batch`, each of `bench.batches` is measured too, under `batches`."""
    figures = _pair(timer, batch, b, frozen_pb, inputs, outputs)
    extra = [n for n in (b.batches or []) if n != batch] if free_batch else []
    if extra:
        figures["batches"] = [_pair(timer, n, b, frozen_pb, inputs, outputs) for n in extra]
    return figures


def _pair(timer: Timer, batch: int, b, frozen_pb, inputs, outputs) -> dict:
    with contextlib.ExitStack() as stack:
        model = stack.enter_context(timer(batch))
        calls, reference, error = {"model": model.call}, None, None
        if frozen_pb is not None:
            try:
                reference = stack.enter_context(
                    frozen_timer(frozen_pb, model_feeds(inputs, model.batch), outputs, model.info.get("threads")))
                calls["frozen"] = reference.call
            except TfbuildError as e:   # e.g. a graph with a fixed batch: the model's own figures stand
                error = first_line(e)
        series = measure.interleaved(calls, plan(b))
    figures = {**measure.figures(series["model"], model.batch, b.margin), **model.info, "memory_mb": model.memory_mb}
    if frozen_pb is None:
        return {**figures, "speedup": 1.0}
    if reference is None:
        return {**figures, "frozen_ms": None, "speedup": None, "frozen_error": error}
    frozen = {**measure.figures(series["frozen"], reference.batch, b.margin), "memory_mb": reference.memory_mb}
    return {**figures, "frozen_ms": frozen["median_ms"], "speedup": measure.speedup(frozen, figures),
            "settled": figures["settled"] and frozen["settled"], "frozen": frozen}   # the ratio needs both
