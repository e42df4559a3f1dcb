"""All terminal output goes through one Reporter (one rich Console).

It implements the engine's output interface (`tfbuild.engine.output.Output`).

Tests build a Reporter on a plain-text console and read what a person sees.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
import warnings
from pathlib import Path
from typing import Iterator, Optional, Sequence

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

# TensorFlow's and TFLite's native start-up chatter, written by C++ straight to
# file descriptor 2: nothing in it is actionable (verbose=true shows it).
_NATIVE_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog|[IW]0000 \S+ \S+ \d+ \S+\] |"
    r"INFO: Created TensorFlow Lite XNNPACK delegate|fully_quantize: |"
    r".*(oneDNN custom operations|cudart_stub|cpu_feature_guard|Could not find cuda drivers))")

# Python loggers of TensorFlow and the converters: deprecation notes and progress lines.
_CHATTY_LOGGERS = ("tensorflow", "absl", "tf2onnx", "onnxruntime", "keras")


@contextlib.contextmanager
def _quiet_python_logs() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in _CHATTY_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


STATUS_STYLE = {"built": "green", "fresh": "dim", "failed": "bold red",
                "planned": "yellow", "skipped": "dim red"}


def human_size(n: Optional[int]) -> str:
    if n is None:
        return ""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


class Reporter:
    """The engine's `Output` on a rich console, plus the summary table and errors of the shell."""

    def __init__(self, console: Optional[Console] = None, verbose: bool = False):
        # emoji off: user text such as ':name:' must print as written.
        self.console = console or Console(highlight=False, emoji=False)
        self.err = Console(stderr=True, highlight=False, emoji=False) if console is None else console
        self.verbose = verbose

    def info(self, text: str) -> None:
        self.console.print(text)

    def warn(self, text: str) -> None:
        self.err.print(f"[yellow]warning:[/] {escape(text)}")

    def error(self, text: str) -> None:
        self.err.print(f"[bold red]tfbuild: error:[/] {escape(text)}", soft_wrap=True)

    def crashed(self, trace: str) -> None:
        self.err.print(trace, markup=False)

    @contextlib.contextmanager
    def running(self, stage: str, detail: str = "") -> Iterator[None]:
        """A live line with the stage name and elapsed time while it runs (on a terminal)."""
        with self._native_stderr():
            if not self.console.is_terminal:
                yield
                return
            columns = [SpinnerColumn(), TextColumn("[bold]{task.description}"), TimeElapsedColumn()]
            with Progress(*columns, console=self.console, transient=True) as progress:
                progress.add_task(f"building {stage} {detail}".rstrip(), total=None)
                yield

    @contextlib.contextmanager
    def _native_stderr(self) -> Iterator[None]:
        """Pass what is written to fd 2 meanwhile on, line by line as it comes, less
        TensorFlow's start-up noise (live: a native crash's last words still show)."""
        if self.verbose:
            yield
            return
        with _quiet_python_logs(), warnings.catch_warnings():
            warnings.simplefilter("ignore")   # deprecation notes of TF, Keras and converters
            with self._filtered_fd2():
                yield

    @contextlib.contextmanager
    def _filtered_fd2(self) -> Iterator[None]:
        sys.stderr.flush()
        saved, (read_end, write_end) = os.dup(2), os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)

        def forward() -> None:
            with os.fdopen(read_end, "rb") as pipe:
                for line in pipe:
                    text = line.decode(errors="replace")
                    if text.strip() and not _NATIVE_NOISE.match(text):
                        os.write(saved, line)

        thread = threading.Thread(target=forward, daemon=True)
        thread.start()
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)   # closes the pipe's last write end: the thread drains and ends
            thread.join(timeout=5)
            os.close(saved)

    def plan(self, target: str, decisions: Sequence) -> None:
        table = Table(title=f"plan for {target}", title_justify="left")
        for col in ("stage", "status", "reason"):
            table.add_column(col)
        for d in decisions:
            status = "stale" if d.stale else "fresh"
            table.add_row(d.name, f"[{'yellow' if d.stale else 'dim'}]{status}[/]", escape(d.reason))
        self.console.print(table)

    def summary(self, report: dict) -> None:
        links = [s.get("link") for s in report["stages"] if s.get("link")]
        # One folder for the title, paths inside it in the table: fits 80 columns.
        folder = os.path.commonpath([str(Path(l).parent) for l in links]) if len(links) > 1 else ""
        where = f" (in {_short(folder)}/)" if folder else ""
        table = Table(title=f"{report['target']}: {'ok' if report['ok'] else 'FAILED'}{where}",
                      title_justify="left")
        for col, kw in (("stage", {}), ("status", {}), ("reason", {"overflow": "fold", "ratio": 1}),
                        ("time", {"justify": "right", "no_wrap": True}), ("artifact, size", {"no_wrap": True})):
            table.add_column(col, **kw)
        failed = [s for s in report["stages"] if s["status"] == "failed"]
        for s in report["stages"]:
            style = STATUS_STYLE.get(s["status"], "")
            reason = "see below" if s in failed else s["reason"]  # too long for a table cell
            shown = s.get("link") or s.get("artifact")
            shown = os.path.relpath(shown, folder) if shown and folder else _short(shown)
            size = f" ({human_size(s['size'])})" if s.get("size") is not None and shown else ""
            table.add_row(s["name"], f"[{style}]{s['status']}[/]", escape(reason),
                          f"{s['seconds']:.1f}s", escape(shown or "") + size)
        self.console.print(table)
        for s in failed:
            self.console.print(f"[bold red]{s['name']} failed:[/] {escape(s['reason'])}", soft_wrap=True)
        if report.get("artifact"):
            final = report["stages"][-1].get("link") or report["artifact"]
            self.console.print(f"artifact: {escape(_short(final))} -> {escape(report['artifact'])}",
                               soft_wrap=True)


def _short(path: Optional[str]) -> str:
    if not path:
        return ""
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path
