"""verify=true with fake stages: rebuild from scratch and compare with the lock file."""
from __future__ import annotations

import shutil

import pytest

import fakes
from fakes import Cfg, DoubleCfg, reasons, statuses
from tfbuild.engine import lockfile
from tfbuild.engine.build import build_target
from tfbuild.engine.fingerprint import StatCache
from tfbuild.engine.plan import Options, plan
from tfbuild.engine.verify import verify
from tfbuild.errors import UserError

ALL_BUILT = {"source": "built", "double": "built", "tail": "built"}


def test_verify_an_identical_rebuild(project):
    project.build()
    lock = project.opts.lock_file.read_text()
    fakes.CALLS.clear()
    report = verify(Cfg(), fakes.registry(), project.opts, "t", project.reporter).to_json()
    assert report["ok"], report
    assert statuses(report) == ALL_BUILT
    assert set(reasons(report).values()) == {"rebuilt from scratch: identical to the lock file"}
    assert report["artifact"] is None and all(s["artifact"] is None for s in report["stages"])
    assert len(fakes.CALLS["source"]) == 1   # rebuilt from scratch, not taken from the store
    assert project.opts.lock_file.read_text() == lock   # verify writes no lock entry
    assert len(project.store_dirs("tail")) == 1        # and nothing into the project's store


def test_verify_names_the_setting_that_differs(project):
    project.build()
    report = verify(Cfg(double=DoubleCfg(factor=3)), fakes.registry(), project.opts, "t",
                    project.reporter).to_json()
    assert not report["ok"]
    assert statuses(report) == {"source": "built", "double": "failed", "tail": "failed"}
    assert reasons(report)["double"] == \
        "differs from the lock file in double.factor changed: 2 → 3: rebuild and commit it"
    assert "input double artifact changed" in reasons(report)["tail"]


def test_verify_catches_a_nondeterministic_stage(project):
    runs = []

    def noisy(inputs, s, out, log):
        runs.append(1)
        return fakes._write(out, f"run {len(runs)}")

    reg = fakes.registry(source=fakes.variant(fakes.SOURCE, run=noisy))
    project.build(registry=reg)
    report = verify(Cfg(), reg, project.opts, "t", project.reporter).to_json()
    assert not report["ok"]
    assert statuses(report)["source"] == "failed"
    assert reasons(report)["source"] == f"output differs from the lock file: {fakes.OUT}"


def test_verify_a_stage_not_in_the_lock_file(project):
    project.build(Cfg(tail=None))
    report = verify(Cfg(), fakes.registry(), project.opts, "t", project.reporter).to_json()
    assert not report["ok"]
    assert reasons(report)["tail"] == "not in the lock file: rebuild and commit it"
    assert statuses(report)["double"] == "built"


def test_verify_needs_a_lock_entry(project):
    with pytest.raises(UserError, match="has no entry for 't'"):
        verify(Cfg(), fakes.registry(), project.opts, "t", project.reporter)


def test_verify_a_clone_of_the_project(project, tmp_path_factory, monkeypatch):
    """Identity is location-free: a copy of the inputs and the lock file elsewhere verifies."""
    relative = Options(build_dir=project.opts.build_dir.relative_to(project.root),
                       lock_file=project.opts.lock_file.relative_to(project.root))
    original = build_target(Cfg(), fakes.registry(), relative, "t", project.reporter)
    assert original.ok

    clone = tmp_path_factory.mktemp("clone") / "deeper" / "checkout"
    (clone / "data").mkdir(parents=True)
    shutil.copy2(project.input, clone / "data" / "in.txt")
    shutil.copy2(project.opts.lock_file, clone / "tfbuild.lock")
    monkeypatch.chdir(clone)
    report = verify(Cfg(), fakes.registry(), relative, "t", fakes.FakeReporter()).to_json()
    assert report["ok"], report
    # And planning there gives the same fingerprints as the lock file.
    cache = StatCache(clone / "state.json")
    decisions = plan(Cfg(), fakes.registry(), relative, "t", "t", cache)
    locked = lockfile.read(clone / "tfbuild.lock")["t"]["stages"]
    assert {d.name: d.fingerprint for d in decisions} == {n: s["fingerprint"] for n, s in locked.items()}
    assert {d.name: d.reason for d in decisions} == {n: "output missing" for n in locked}
    # An absolute input path gives the same identity too.
    absolute = Cfg(source=fakes.SourceCfg(path=str(clone / "data" / "in.txt")))
    assert verify(absolute, fakes.registry(), relative, "t", fakes.FakeReporter()).ok




def test_verify_names_a_locked_stage_the_target_no_longer_has(project):
    project.build()
    report = verify(Cfg(tail=None), fakes.registry(), project.opts, "t", project.reporter).to_json()
    assert not report["ok"]
    assert statuses(report)["tail"] == "failed"
    assert "in the lock file but not in this target" in reasons(report)["tail"]
