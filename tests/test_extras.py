"""Every extra, alone: .ci/extras.py installs tfbuild's wheel with one extra into a fresh
virtual environment, for each user-facing extra, and smoke-builds what that extra serves
(docs/ci.md). Minutes, not seconds: the extras are what users install."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / ".ci" / "extras.py"
UNREACHABLE = 3   # the script's exit code when the package registry cannot be reached


def test_every_extra_installs_and_works_alone():
    p = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=1800)
    out = p.stdout + p.stderr
    if p.returncode == UNREACHABLE:   # only then: any real failure exits 1
        pytest.skip("the package registry is unreachable, so the extras cannot be installed:\n" + out[-2000:])
    assert p.returncode == 0, out
