"""engine/plan.py: force, the plan against the lock file (and its fallback key), frozen decisions.
(The `locked` check: test_locked.py.)"""
from __future__ import annotations

import dataclasses

import pytest

import fakes
from fakes import Cfg, DoubleCfg
from tfbuild.engine import lockfile
from tfbuild.engine.build import build_target
from tfbuild.engine.fingerprint import StatCache
from tfbuild.engine.plan import check_locked, parse_force, plan
from tfbuild.engine.reasons import Reason
from tfbuild.errors import ConfigError, LockOutOfDate


def stat(project) -> StatCache:
    return StatCache(project.opts.build_dir / ".tfbuild" / "state.json")


def test_parse_force():
    known, names = ["a", "b", "c", "d"], ["a", "b"]
    assert parse_force(True, known, names) == ["a", "b"]
    assert parse_force(False, known, names) == parse_force(None, known, names) == []
    assert parse_force("b", known, names) == ["b"]
    assert parse_force(("b", "c"), known, names) == ["b"]
    with pytest.raises(ConfigError):
        parse_force("z", known, names)


def test_lock_key_and_its_fallback_to_the_target(project):
    report = build_target(Cfg(), fakes.registry(), project.opts, "t", project.reporter,
                          lock_key="t[double.factor=2]")
    assert report.ok and list(lockfile.read(project.opts.lock_file)) == ["t[double.factor=2]"]
    project.build()   # key t
    decisions = plan(Cfg(double=DoubleCfg(factor=3)), fakes.registry(), project.opts, "t[double.factor=3]",
                     "t", stat(project))   # no entry of its own: explained against the target's
    assert decisions[1].reasons == (Reason("setting", "double.factor", 2, 3),)
    assert decisions[1].reason == "double.factor changed: 2 → 3"


def test_a_plan_is_frozen_and_builds_nothing(project):
    decisions = plan(Cfg(), fakes.registry(), project.opts, "t", "t", stat(project))
    assert [(d.name, d.stale, d.reason) for d in decisions] == \
        [(n, True, "not built yet") for n in ("source", "double", "tail")]
    with pytest.raises(dataclasses.FrozenInstanceError):
        decisions[0].stale = False
    assert fakes.CALLS == {} and not (project.opts.build_dir / "store").exists()


def test_force_marks_the_stage_and_its_downstream(project):
    project.build()
    decisions = plan(Cfg(), fakes.registry(), project.options(force=["double"]), "t", "t", stat(project))
    assert [(d.name, d.stale, d.forced) for d in decisions] == \
        [("source", False, False), ("double", True, True), ("tail", True, True)]
    assert [d.reason for d in decisions] == ["up to date", "forced", "upstream double forced"]


def test_check_locked_names_the_first_two_differences(project):
    project.build()
    decisions = plan(Cfg(double=DoubleCfg(factor=3)), fakes.registry(), project.opts, "t", "t", stat(project))
    assert [d.name for d in decisions if d.locked] == ["double", "tail"]
    with pytest.raises(LockOutOfDate, match=r"for t: double: double.factor changed: 2 → 3 \(and 1 more\)"):
        check_locked(decisions, project.opts.lock_file, "t")
    same = plan(Cfg(), fakes.registry(), project.opts, "t", "t", stat(project))
    check_locked(same, project.opts.lock_file, "t")   # current: no error
