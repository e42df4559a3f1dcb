"""Converters' chatter kept off the terminal, and kept for the error message.

tf2onnx, TFLite's converter, onnxruntime and TensorFlow write through Python
logging, Python warnings and native writes to fd 2 (MLIR diagnostics, grappler,
an optimizer's traceback). None of it is actionable when the conversion works;
when it fails, the cause is often in it.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings
from typing import Iterator, List, Optional

LOGGERS = ("tf2onnx", "tensorflow", "absl", "onnxruntime", "")   # "": the root logger


class Captured:
    def __init__(self):
        self.lines: List[str] = []        # what was logged at WARNING or above, first line each
        self._sink: Optional[object] = None

    def stderr(self) -> str:
        """What was written to fd 2 so far."""
        if self._sink is None:
            return ""
        sys.stderr.flush()
        self._sink.seek(0)
        return self._sink.read().decode(errors="replace")


@contextlib.contextmanager
def captured(verbose: bool) -> Iterator[Captured]:
    """Hold the chatter back while converting; `verbose`: let it all through."""
    from ..errors import first_line
    seen = Captured()
    if verbose:
        yield seen
        return

    class Keep(logging.Handler):
        def emit(self, record):
            if record.levelno >= logging.WARNING:
                seen.lines.append(first_line(Exception(record.getMessage())))

    loggers = [logging.getLogger(n) for n in LOGGERS]
    saved = [(lg, lg.handlers[:], lg.propagate, lg.level) for lg in loggers]
    for lg in loggers:
        lg.handlers, lg.propagate = [Keep()], False
        lg.setLevel(max(lg.level, logging.WARNING))   # INFO chatter is not even formatted
    sys.stderr.flush()
    fd2 = os.dup(2)
    try:
        with tempfile.TemporaryFile() as sink, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            seen._sink = sink
            os.dup2(sink.fileno(), 2)
            try:
                yield seen
            finally:
                sys.stderr.flush()
                os.dup2(fd2, 2)
                seen._sink = None
    finally:
        os.close(fd2)
        for lg, handlers, propagate, level in saved:
            lg.handlers, lg.propagate = handlers, propagate
            lg.setLevel(level)
