"""engine/output.py: the Reporter and the tests' recorder both are the engine's Output."""
from __future__ import annotations

import io

from rich.console import Console

import fakes
from fakes import BoomCfg, Cfg
from tfbuild.engine.build import build_target
from tfbuild.engine.output import Output
from tfbuild.cli.report import Reporter


def test_the_reporter_and_the_recorder_implement_output():
    assert isinstance(Reporter(Console(file=io.StringIO())), Output)
    assert isinstance(fakes.FakeReporter(), Output)


def test_something_without_crashed_is_not_an_output():
    class Partial:
        def running(self, stage, detail=""): ...
        def info(self, text): ...
        def warn(self, text): ...
        def plan(self, target, decisions): ...
    assert not isinstance(Partial(), Output)


def test_a_crash_prints_its_trace_as_written(project):
    out = io.StringIO()
    reporter = Reporter(Console(file=out, width=200, color_system=None))
    cfg = Cfg(boom=BoomCfg(message="[bold]not markup[/bold]", kind="bug"))
    result = build_target(cfg, fakes.registry(), project.opts, "t", reporter)
    assert not result.ok
    text = out.getvalue()
    assert "Traceback" in text and "RuntimeError: [bold]not markup[/bold]" in text


def test_the_engine_reports_progress_through_output(project):
    project.build()
    assert project.reporter.ran() == ["source", "double", "tail"]
    project.build(bench={})   # a failing benchmark warns
    assert [e[1] for e in project.reporter.events if e[0] == "running"] == ["benchmark"]
    assert any(e[0] == "warn" for e in project.reporter.events)
