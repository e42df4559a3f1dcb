"""What the engine says while it works, and to whom: the `Output` protocol.

The engine (and every stage's `run`, as its `log`) talks to this interface
only; `tfbuild.cli.report.Reporter` implements it on a rich console, the engine's
tests with a recorder. The engine never formats for a terminal.
"""
from __future__ import annotations

from typing import ContextManager, Protocol, Sequence, runtime_checkable

from .resolver import Decision


@runtime_checkable
class Output(Protocol):
    """Where progress, warnings, the plan and crash traces go."""

    def running(self, stage: str, detail: str = "") -> ContextManager[None]:
        """Around work on `stage` (a live line on a terminal)."""

    def info(self, text: str) -> None:
        """A line worth reading (e.g. waiting for another machine's build)."""

    def warn(self, text: str) -> None:
        """Something went wrong that did not fail the build."""

    def plan(self, target: str, decisions: Sequence[Decision]) -> None:
        """A dry run's plan: each stage, fresh or stale, and why."""

    def crashed(self, trace: str) -> None:
        """The traceback of an error no stage anticipated (the report keeps its first line)."""
