"""Shared fixtures: run tfbuild in-process (TensorFlow is imported once per
pytest process) inside a temporary project directory."""
from __future__ import annotations

import json
import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


class Run:
    def __init__(self, code: int, out: str, err: str, report: dict | None):
        self.code, self.out, self.err, self.report = code, out, err, report

    def status(self) -> dict:
        """{stage: status}"""
        return {s["name"]: s["status"] for s in self.report["stages"]}

    def reasons(self) -> dict:
        return {s["name"]: s["reason"] for s in self.report["stages"]}

    def built(self) -> list:
        return [s["name"] for s in self.report["stages"] if s["status"] == "built"]


@pytest.fixture
def project(tmp_path, monkeypatch):
    """An empty project directory as cwd."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def tfbuild(project, capsys):
    """tfbuild(*args) -> Run, with the JSON report parsed."""
    from tfbuild.cli import main

    def run(*args: str) -> Run:
        report = project / "report.json"
        if report.exists():
            report.unlink()
        code = main([*args, f"report_file={report}", "bench.enabled=false"])
        captured = capsys.readouterr()
        data = json.loads(report.read_text()) if report.exists() else None
        return Run(code, captured.out, captured.err, data)

    return run


@pytest.fixture(scope="session")
def shared_build(tmp_path_factory):
    """A build_dir shared across tests so tiny models train once per session."""
    return tmp_path_factory.mktemp("shared-build")
