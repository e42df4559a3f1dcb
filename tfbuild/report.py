"""All terminal output goes through one Reporter (one rich Console).

Tests build a Reporter on a plain-text console and read what a person sees.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator, Optional, Sequence

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

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
    def __init__(self, console: Optional[Console] = None):
        self.console = console or Console(highlight=False)
        self.err = Console(stderr=True, highlight=False) if console is None else console

    def info(self, text: str) -> None:
        self.console.print(text)

    def warn(self, text: str) -> None:
        self.err.print(f"[yellow]warning:[/] {escape(text)}")

    def error(self, text: str) -> None:
        self.err.print(f"[bold red]tfbuild: error:[/] {escape(text)}", soft_wrap=True)

    @contextlib.contextmanager
    def running(self, stage: str, detail: str = "") -> Iterator[None]:
        """A live line with the stage name and elapsed time while it runs."""
        columns = [SpinnerColumn(), TextColumn("[bold]{task.description}"), TimeElapsedColumn()]
        with Progress(*columns, console=self.console, transient=True) as progress:
            progress.add_task(f"building {stage} {detail}".rstrip(), total=None)
            yield

    def plan(self, target: str, decisions: Sequence) -> None:
        table = Table(title=f"plan for {target}", title_justify="left")
        for col in ("stage", "status", "reason"):
            table.add_column(col)
        for d in decisions:
            status = "stale" if d.stale else "fresh"
            table.add_row(d.name, f"[{'yellow' if d.stale else 'dim'}]{status}[/]", escape(d.reason))
        self.console.print(table)

    def summary(self, report: dict) -> None:
        table = Table(title=f"{report['target']}: {'ok' if report['ok'] else 'FAILED'}",
                      title_justify="left")
        for col, kw in (("stage", {}), ("status", {}), ("reason", {"overflow": "fold"}),
                        ("seconds", {"justify": "right"}), ("artifact", {"overflow": "fold"}),
                        ("size", {"justify": "right"})):
            table.add_column(col, **kw)
        failed = [s for s in report["stages"] if s["status"] == "failed"]
        for s in report["stages"]:
            style = STATUS_STYLE.get(s["status"], "")
            reason = "see below" if s in failed else s["reason"]  # too long for a table cell
            table.add_row(s["name"], f"[{style}]{s['status']}[/]", escape(reason),
                          f"{s['seconds']:.1f}", _short(s.get("link") or s.get("artifact")),
                          human_size(s.get("size")))
        self.console.print(table)
        for s in failed:
            self.console.print(f"[bold red]{s['name']} failed:[/] {escape(s['reason'])}", soft_wrap=True)
        if report.get("artifact"):
            final = report["stages"][-1].get("link") or report["artifact"]
            self.console.print(f"artifact: {_short(final)} -> {report['artifact']}")


def _short(path: Optional[str]) -> str:
    if not path:
        return ""
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path
