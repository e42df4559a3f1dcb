"""Fixtures for the engine's unit tests: a temporary project with one input file,
fake stages (fakes.py) and a helper that builds a target with them."""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

# pytest's default (prepend) import mode puts this folder on sys.path; do it here too
# so that `import fakes` also works under --import-mode=importlib.
if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))

import fakes  # noqa: E402
from tfbuild.engine.build import build_target
from tfbuild.engine.plan import Options


@pytest.fixture(autouse=True)
def _fresh_fakes():
    fakes.reset()
    yield
    fakes.reset()


class Project:
    """A project directory (the cwd) with data/in.txt, a build dir and a lock file."""

    def __init__(self, root: Path):
        self.root = root
        self.input = root / "data" / "in.txt"
        self.input.parent.mkdir()
        self.input.write_text("ab")
        self.opts = Options(build_dir=root / "build", lock_file=root / "tfbuild.lock")
        self.reporter = fakes.FakeReporter()

    def options(self, **changes) -> Options:
        return dataclasses.replace(self.opts, **changes)

    def build(self, cfg=None, registry=None, target: str = "t", **changes) -> dict:
        """build_target with the fake stages, its report; `changes` go to Options."""
        self.reporter = fakes.FakeReporter()
        return build_target(cfg or fakes.Cfg(), registry or fakes.registry(), self.options(**changes),
                            target, self.reporter).to_json()

    def store_dirs(self, stage: str) -> list:
        root = self.opts.build_dir / "store" / stage
        return sorted(root.iterdir()) if root.is_dir() else []


@pytest.fixture
def project(tmp_path, monkeypatch) -> Project:
    monkeypatch.chdir(tmp_path)
    return Project(tmp_path)

