"""The peak resident memory a model's runtime session takes, measured in a fresh process:
in the building process, memory freed earlier (other models, the converter) is reused
by the next session and would hide it.

    python -m tfbuild.tf.memory KIND MODEL FEEDS.pickle THREADS [OUTPUT ...]

KIND: frozen (TensorFlow session), tflite (LiteRT or tf.lite), onnx (onnxruntime);
a TensorRT engine's memory is the GPU's, not measured here. Prints {"memory_mb": ...}: the high-water mark
after loading the model and one call, less the resident memory once the runtime is
imported (so the runtime library itself does not count).
"""
from __future__ import annotations

import json
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np


def session_memory(kind: str, model: Path, feeds: Mapping[str, np.ndarray], outputs: Sequence[str] = (),
                   threads: Optional[int] = None) -> Optional[float]:
    """MiB, or None where it cannot be measured here (not Linux, the child failed)."""
    if not sys.platform.startswith("linux"):
        return None
    with tempfile.TemporaryDirectory(prefix="tfbuild-memory-") as tmp:
        (Path(tmp) / "feeds.pickle").write_bytes(pickle.dumps(dict(feeds)))
        args = [sys.executable, "-m", "tfbuild.tf.memory", kind, str(model), str(Path(tmp) / "feeds.pickle"),
                str(threads or 0), *outputs]
        done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    try:
        return float(json.loads(done.stdout.strip().splitlines()[-1])["memory_mb"])
    except (IndexError, KeyError, ValueError, TypeError):
        return None


def _load(kind: str):
    """Import the runtime (before the baseline: the library is not the session); return
    open(model, feeds, outputs, threads) -> a call."""
    if kind == "onnx":
        import onnxruntime  # noqa: F401
        from tfbuild.tf.runtimes import onnx_session
        from tfbuild.tf.graph_io import node_of
        return lambda m, f, o, t: (lambda s, feed: lambda: s.run(None, feed))(
            onnx_session(m, t), {node_of(k): v for k, v in f.items()})
    if kind == "tflite":
        from tfbuild.tf.runtimes import load_interpreter, tflite_runner, tflite_runtime
        tflite_runtime()
        return lambda m, f, o, t: tflite_runner(load_interpreter(model_path=str(m), num_threads=t), f)
    if kind == "frozen":
        import contextlib

        import tensorflow  # noqa: F401
        from tfbuild.tf.graph_io import frozen_session
        stack = contextlib.ExitStack()

        def open_frozen(m, f, o, t):
            sess, fetches, feed_dict = stack.enter_context(frozen_session(m, f, o, threads=t))
            return lambda: sess.run(fetches, feed_dict)
        return open_frozen
    raise ValueError(f"unknown runtime {kind!r}")


def main(argv: Sequence[str]) -> None:
    import os
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from tfbuild.measure import PeakMemory
    kind, model, feeds, threads, *outputs = argv
    opened = _load(kind)
    data = pickle.loads(Path(feeds).read_bytes())   # written by session_memory, in this process's tree
    with PeakMemory() as memory:
        opened(Path(model), data, outputs, int(threads) or None)()
    print(json.dumps({"memory_mb": memory.mb}))


if __name__ == "__main__":
    main(sys.argv[1:])
