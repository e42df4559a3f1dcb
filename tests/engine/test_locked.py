"""locked=true: CI's proof that the committed lock file is current (cargo's --locked)."""
from __future__ import annotations

import pytest

import fakes
from fakes import Cfg, DoubleCfg, statuses
from tfbuild.errors import LockOutOfDate


def test_a_current_lock_file_passes_and_builds_what_is_missing(project):
    project.build()
    assert set(statuses(project.build(locked=True)).values()) == {"fresh"}
    project.opts.build_dir.rename(project.root / "elsewhere")   # a fresh CI runner: empty build_dir
    report = project.build(locked=True)
    assert report["ok"] and set(statuses(report).values()) == {"built"}


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_changed_setting_fails_before_anything_runs(project, dry_run):
    project.build()
    fakes.reset()
    with pytest.raises(LockOutOfDate, match=r"tfbuild.lock is out of date for t: double: double.factor "
                                            r"changed: 2 → 3 \(and 1 more\): build it"):
        project.build(Cfg(double=DoubleCfg(factor=3)), locked=True, dry_run=dry_run)
    assert fakes.CALLS == {}


def test_a_target_missing_from_the_lock_file_fails(project):
    with pytest.raises(LockOutOfDate, match="out of date for t: source: not in the lock file"):
        project.build(locked=True)
    assert not project.opts.lock_file.exists() and fakes.CALLS == {}
