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

from rich.cells import cell_len
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
        table.add_column("stage", no_wrap=True)
        table.add_column("status", no_wrap=True)
        table.add_column("reason", overflow="fold")   # the only column that wraps
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
        # Stage, status and time never wrap; the reason wraps only when it must;
        # a long artifact path is shortened in its middle to what is left.
        table.add_column("stage", no_wrap=True)
        table.add_column("status", no_wrap=True)
        table.add_column("reason", overflow="fold")
        table.add_column("time", justify="right", no_wrap=True)
        table.add_column("artifact, size", no_wrap=True, overflow="ellipsis")
        failed = [s for s in report["stages"] if s["status"] == "failed"]
        rows = []
        for s in report["stages"]:
            reason = "see below" if s in failed else s["reason"]  # too long for a table cell
            shown = s.get("link") or s.get("artifact")
            shown = os.path.relpath(shown, folder) if shown and folder else _short(shown)
            size = f" ({human_size(s['size'])})" if s.get("size") is not None and shown else ""
            rows.append((s, reason, shown or "", size, f"{s['seconds']:.1f}s"))
        room = _artifact_room(self.console.width, [(s["name"], s["status"], reason, secs, shown + size)
                                                   for s, reason, shown, size, secs in rows])
        for s, reason, shown, size, secs in rows:
            style = STATUS_STYLE.get(s["status"], "")
            shown = shorten_path(shown, max(room - cell_len(size), 1)) if shown else ""
            table.add_row(s["name"], f"[{style}]{s['status']}[/]", escape(reason), secs,
                          escape(shown) + size)
        self.console.print(table)
        for s in failed:
            self.console.print(f"[bold red]{s['name']} failed:[/] {escape(s['reason'])}", soft_wrap=True)
        if report.get("artifact"):
            link = _short(report["stages"][-1].get("link") or report["artifact"])
            room = self.console.width - cell_len(f"artifact: {link} -> ")
            self.console.print(f"artifact: {escape(link)} -> {escape(shorten_path(_short(report['artifact']), room))}",
                               soft_wrap=True)


def _short(path: Optional[str]) -> str:
    if not path:
        return ""
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path


_ELLIPSIS = "…"
_HEADERS = ("stage", "status", "reason", "time", "artifact, size")


def _artifact_room(width: int, rows: Sequence[Sequence[str]]) -> int:
    """Columns the summary's artifact cells may take so the table fits `width`.

    Stage, status and time take what they need; the reason gets the room it needs
    next, unless that leaves the artifact less than its file name and size (then
    the reason wraps, at its longest word at the narrowest); the artifact gets the rest.
    """
    need = [max([cell_len(h)] + [cell_len(r[i]) for r in rows]) for i, h in enumerate(_HEADERS)]
    avail = width - (3 * len(_HEADERS) + 1) - need[0] - need[1] - need[3]   # borders and padding
    reason, artifact = need[2], need[4]
    if reason + artifact <= avail:
        return artifact
    words = max([cell_len(w) for r in rows for w in r[2].split()] + [cell_len(_HEADERS[2])])
    floor = max([cell_len(_HEADERS[4])] + [cell_len(_tail(r[4])) for r in rows if r[4]])
    floor = min(floor, artifact, avail * 3 // 5, max(avail - words, cell_len(_HEADERS[4])))
    return max(avail - reason, floor, 1)


def _tail(cell: str) -> str:
    """The least an artifact cell shows: '…/' + its file name, and its size."""
    path, sep, size = cell.partition(" (")
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return f"{_ELLIPSIS}/{name}{sep}{size}" if "/" in path.rstrip("/") else cell


def shorten_path(path: str, width: int) -> str:
    """`path` in at most `width` columns, shortened in its middle: the first folder and the
    file name are kept first (`build/…/model.tflite`), then as many folders after the first
    and before the file name as fit (`build/store/…/model.tflite`); else `…/model.tflite`,
    else the file name shortened in its middle."""
    if cell_len(path) <= width:
        return path
    absolute = path.startswith("/")
    parts = [p for p in path.split("/") if p]
    if absolute and parts:
        parts[0] = "/" + parts[0]
    name = parts[-1] if parts else path
    if len(parts) >= 3:
        head, tail, i, j = [parts[0]], [name], 1, len(parts) - 2   # i, j: next folders to add
        if cell_len("/".join(head + [_ELLIPSIS] + tail)) <= width:
            grew = True
            while grew and i <= j:        # a folder more at the front, then one at the back
                grew = False
                if cell_len("/".join(head + [parts[i], _ELLIPSIS] + tail)) <= width:
                    head, i, grew = head + [parts[i]], i + 1, True
                if i <= j and cell_len("/".join(head + [_ELLIPSIS, parts[j]] + tail)) <= width:
                    tail, j, grew = [parts[j]] + tail, j - 1, True
            return path if i > j else "/".join(head + [_ELLIPSIS] + tail)
    if len(parts) >= 2 and cell_len(f"{_ELLIPSIS}/{name}") <= width:
        return f"{_ELLIPSIS}/{name}"
    if width < 3:
        return name[:max(width, 0)]
    keep = width - 1                      # the file name itself, shortened in its middle
    return name[:(keep + 1) // 2] + _ELLIPSIS + name[len(name) - keep // 2:]
