"""The build loop with fake stages: build, fresh, partial rebuild, failures, preflight,
bench, dry runs, force (plan and verify: test_plan.py, test_verify.py)."""
from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys

import pytest
from rich.console import Console

import fakes
from fakes import BoomCfg, Cfg, DoubleCfg, GpuCfg, reasons, statuses
from tfbuild.engine import lockfile
from tfbuild.engine.build import build_target
from tfbuild.engine.store import BUILD_LOCK, MEASUREMENT, Store
from tfbuild.errors import BackendUnavailable, ConfigError
from tfbuild.cli.report import Reporter

ALL_BUILT = {"source": "built", "double": "built", "tail": "built"}
ALL_FRESH = {"source": "fresh", "double": "fresh", "tail": "fresh"}
# boom with its bug fixed (its fake code identity is the same: fakes.py is outside tfbuild)
FIXED_BOOM = fakes.variant(fakes.BOOM, run=lambda inputs, s, out, log: fakes._write(
    out, fakes._text(inputs["double"])))


def entry(project, key: str = "t") -> dict:
    return lockfile.read(project.opts.lock_file)[key]


def test_build_then_fresh(project):
    report = project.build()
    assert report["ok"] and statuses(report) == ALL_BUILT
    assert reasons(report) == {"source": "not built yet", "double": "not built yet", "tail": "not built yet"}
    assert project.reporter.ran() == ["source", "double", "tail"]

    final = report["stages"][-1]
    assert report["artifact"] == final["artifact"]
    assert open(report["artifact"]).read() == "abab!"
    assert report["metadata"] == {"file": fakes.OUT, "length": 5, "upstream": ["double"]}
    assert report["benchmark"] is None
    assert final["size"] == 5 and final["seconds"] >= 0
    # Stable readable links, relative into the store.
    link = project.opts.build_dir / "t" / "tail"
    assert final["link"] == str(link / fakes.OUT)
    assert not os.path.isabs(os.readlink(link))
    assert (link / fakes.OUT).read_text() == "abab!"
    # The lock entry: every stage, its identity parts and output digests; no absolute path.
    stages = entry(project)["stages"]
    assert list(stages) == ["double", "source", "tail"]   # sorted on disk
    assert stages["tail"]["fingerprint"] == final["fingerprint"]
    assert set(stages["tail"]) == {"fingerprint", "settings", "inputs", "code", "env", "outputs"}
    assert list(stages["tail"]["outputs"]) == [fakes.OUT]
    assert str(project.root) not in project.opts.lock_file.read_text()

    again = project.build()
    assert again["ok"] and statuses(again) == ALL_FRESH
    assert set(reasons(again).values()) == {"up to date"}
    assert project.reporter.ran() == []
    assert fakes.CALLS.keys() == {"source", "double", "tail"} and len(fakes.CALLS["tail"]) == 1
    assert again["artifact"] == report["artifact"]


def test_a_setting_change_rebuilds_only_downstream(project):
    first = project.build()
    source_dir = project.store_dirs("source")
    report = project.build(Cfg(double=DoubleCfg(factor=3)))
    assert statuses(report) == {"source": "fresh", "double": "built", "tail": "built"}
    assert reasons(report)["double"] == "double.factor changed: 2 → 3"
    assert reasons(report)["tail"] == "input double artifact changed"
    assert open(report["artifact"]).read() == "ababab!"
    assert project.reporter.ran() == ["double", "tail"]
    assert project.store_dirs("source") == source_dir
    assert len(project.store_dirs("double")) == len(project.store_dirs("tail")) == 2  # both kept
    assert open(first["artifact"]).read() == "abab!"                # the old artifact is intact
    assert entry(project)["stages"]["double"]["settings"] == {"double.factor": 3}
    assert (project.opts.build_dir / "t" / "tail" / fakes.OUT).read_text() == "ababab!"


def test_an_input_edit_rebuilds_everything(project):
    project.build()
    project.input.write_text("xyz")
    report = project.build()
    assert statuses(report) == ALL_BUILT
    assert reasons(report)["source"] == "input data content changed"
    assert open(report["artifact"]).read() == "xyzxyz!"


def test_a_damaged_artifact_is_rebuilt(project):
    report = project.build()
    os.unlink(report["stages"][1]["artifact"])
    report = project.build()
    assert statuses(report) == {"source": "fresh", "double": "built", "tail": "fresh"}
    assert reasons(report)["double"] == f"output {fakes.OUT} missing"
    assert open(report["stages"][1]["artifact"]).read() == "abab"


def test_dry_run_builds_nothing(project):
    report = project.build(dry_run=True)
    assert report["ok"] and statuses(report) == {"source": "planned", "double": "planned", "tail": "planned"}
    assert project.reporter.events[0] == ("plan", "t", [(n, True, "not built yet")
                                                         for n in ("source", "double", "tail")])
    assert project.reporter.ran() == [] and fakes.CALLS == {}
    assert not (project.opts.build_dir / "store").exists()
    assert not (project.opts.build_dir / "t").exists()
    assert not project.opts.lock_file.exists()

    project.build()
    report = project.build(Cfg(double=DoubleCfg(factor=4)), dry_run=True)
    assert [(n, s) for n, s, _ in project.reporter.events[0][2]] == \
        [("source", False), ("double", True), ("tail", True)]
    assert len(project.store_dirs("double")) == 1
    assert entry(project)["stages"]["double"]["settings"] == {"double.factor": 2}


def test_the_real_reporter_prints_the_plan(project):
    out = io.StringIO()
    reporter = Reporter(Console(file=out, width=200, color_system=None))
    build_target(Cfg(), fakes.registry(), project.options(dry_run=True), "t", reporter)
    text = out.getvalue()
    assert "plan for t" in text and "not built yet" in text and "stale" in text
    assert build_target(Cfg(), fakes.registry(), project.opts, "t", reporter).ok


def test_a_failing_stage(project):
    cfg = Cfg(boom=BoomCfg(), after=fakes.AfterCfg())
    report = project.build(cfg)
    assert not report["ok"]
    assert statuses(report) == {"source": "built", "double": "built", "tail": "built",
                                "boom": "failed", "after": "skipped"}
    assert reasons(report)["boom"] == "boom: the fake stage failed"
    assert reasons(report)["after"] == "not reached: an earlier stage failed"
    assert report["artifact"] is None and "metadata" not in report
    failed = report["stages"][3]
    assert failed["artifact"] is None and failed["size"] is None and "link" not in failed
    assert "after" not in fakes.CALLS
    # Nothing published for it, no scratch left, no lock entry, no links.
    assert project.store_dirs("boom") == [] and project.store_dirs("after") == []
    assert list((project.opts.build_dir / "tmp").iterdir()) == []
    assert not project.opts.lock_file.exists()
    assert not (project.opts.build_dir / "t").exists()
    # What did succeed is kept: fixing the failure rebuilds only from there.
    fixed = fakes.registry(boom=FIXED_BOOM)
    report = project.build(Cfg(boom=BoomCfg(), after=fakes.AfterCfg()), fixed)
    assert report["ok"]
    assert statuses(report) == {**ALL_FRESH, "boom": "built", "after": "built"}


def test_an_unexpected_error_keeps_its_traceback(project):
    report = project.build(Cfg(boom=BoomCfg(message="division by zero\nmore context", kind="bug")))
    assert not report["ok"] and statuses(report)["boom"] == "failed"
    assert reasons(report)["boom"] == "RuntimeError: division by zero"
    (trace,) = [e[1] for e in project.reporter.events if e[0] == "crashed"]
    assert "Traceback" in trace and "boom_run" in trace


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full for a real ENOSPC")
def test_a_full_disk_is_one_line_naming_the_path_and_space(project):
    report = project.build(Cfg(boom=BoomCfg(kind="full"), after=fakes.AfterCfg()))
    assert not report["ok"] and statuses(report)["boom"] == "failed"
    reason = reasons(report)["boom"]
    assert reason.startswith(f"no space left on the disk writing {project.opts.build_dir / 'tmp' / 'boom-'}")
    assert "the stage had written 0.0 MiB" in reason and "MiB free there" in reason and "\n" not in reason
    assert not [e for e in project.reporter.events if e[0] == "crashed"]   # no traceback
    assert project.store_dirs("boom") == [] and list((project.opts.build_dir / "tmp").iterdir()) == []


def test_a_failure_does_not_replace_the_last_good_lock_entry(project):
    project.build(Cfg(boom=BoomCfg(), after=fakes.AfterCfg()),
                  fakes.registry(boom=FIXED_BOOM))
    before = project.opts.lock_file.read_text()
    assert not project.build(Cfg(double=DoubleCfg(factor=7), boom=BoomCfg(), after=fakes.AfterCfg()))["ok"]
    assert project.opts.lock_file.read_text() == before


def test_preflight_of_a_stale_stage_fails_before_anything_runs(project):
    fakes.GPU["available"] = False
    with pytest.raises(BackendUnavailable, match="no fake0 on this machine"):
        project.build(Cfg(gpu=GpuCfg()))
    assert fakes.CALLS.keys() == {"gpu.preflight"}
    assert not (project.opts.build_dir / "store").exists()
    assert not (project.opts.build_dir / "tmp").exists()
    assert not project.opts.lock_file.exists()


def test_preflight_is_skipped_for_a_fresh_stage(project):
    assert project.build(Cfg(gpu=GpuCfg()))["ok"]
    assert len(fakes.CALLS["gpu.preflight"]) == 1
    fakes.GPU["available"] = False
    report = project.build(Cfg(gpu=GpuCfg()))   # built on another machine: nothing to do here
    assert report["ok"] and statuses(report)["gpu"] == "fresh"
    assert len(fakes.CALLS["gpu.preflight"]) == 1
    with pytest.raises(BackendUnavailable):
        project.build(Cfg(gpu=GpuCfg()), force=["gpu"])


def test_bench_measures_the_final_artifact_once(project):
    report = project.build(bench={"runs": 3})
    assert report["benchmark"] == {"length": 5, "runs": 3}
    assert len(fakes.BENCHES) == 1
    assert fakes.BENCHES[0]["path"] == project.store_dirs("tail")[0]
    assert (project.store_dirs("tail")[0] / MEASUREMENT).is_file()

    report = project.build(bench={"runs": 9})
    assert statuses(report) == ALL_FRESH and len(fakes.BENCHES) == 1   # measured already
    assert report["benchmark"] == {"length": 5, "runs": 3}
    report = project.build(bench={"runs": 9}, bench_again=True)
    assert len(fakes.BENCHES) == 2 and report["benchmark"]["runs"] == 9
    assert statuses(report) == ALL_FRESH   # a measurement is no build input


def test_no_bench_settings_no_measurement(project):
    assert project.build()["benchmark"] is None
    assert fakes.BENCHES == []
    report = project.build(Cfg(tail=None), bench={"runs": 1})   # double has no bench
    assert report["ok"] and report["benchmark"] is None


def test_force(project):
    project.build()
    report = project.build(force=["double"])
    assert statuses(report) == {"source": "fresh", "double": "built", "tail": "built"}
    assert reasons(report) == {"source": "up to date", "double": "forced", "tail": "upstream double forced"}
    assert len(project.store_dirs("double")) == 1   # same fingerprint: replaced in place
    report = project.build(force=True)
    assert statuses(report) == ALL_BUILT
    assert project.build(force="gpu")["ok"]         # a known stage this target lacks: nothing to force
    with pytest.raises(ConfigError, match="force names unknown stage 'nope'.*force=\\[source,double,tail\\]"):
        project.build(force=["nope"])


def test_write_lock_false_and_link_dir(project):
    report = build_target(Cfg(), fakes.registry(), project.opts, "t", project.reporter,
                          link_dir=project.root / "links", write_lock=False)
    assert report.ok and not project.opts.lock_file.exists()
    assert (project.root / "links" / "tail" / fakes.OUT).read_text() == "abab!"
    assert not (project.opts.build_dir / "t").exists()


def test_an_artifact_built_meanwhile_by_a_parallel_job_is_taken(project, monkeypatch):
    """Between planning and taking the per-artifact lock, another job built everything."""
    real_lock, started, other = Store.lock, [], []

    @contextlib.contextmanager
    def lock(self, name, **kw):
        if name != BUILD_LOCK and not started:   # the other job (its own lock file) gets there first
            started.append(name)
            other.append(build_target(Cfg(), fakes.registry(),
                                      project.options(lock_file=project.root / "other.lock"),
                                      "t", fakes.FakeReporter()).to_json())
        with real_lock(self, name, **kw) as got:
            yield got

    monkeypatch.setattr(Store, "lock", lock)
    report = project.build()
    assert other[0]["ok"] and statuses(other[0]) == ALL_BUILT
    assert report["ok"] and statuses(report) == ALL_FRESH
    assert set(reasons(report).values()) == {"built meanwhile by a parallel job"}
    assert {n: len(c) for n, c in fakes.CALLS.items()} == {"source": 1, "double": 1, "tail": 1}
    assert entry(project)["stages"]["tail"]["outputs"] == report_outputs(other[0], project)
    # Both jobs' stat caches were merged into one.
    assert statuses(project.build()) == ALL_FRESH


def report_outputs(report: dict, project) -> dict:
    return lockfile.read(project.root / "other.lock")["t"]["stages"]["tail"]["outputs"]


# ----------------------------------------------------------------------------- no TensorFlow

def test_the_engine_imports_no_tensorflow():
    code = ("import sys\n"
            "import tfbuild.engine.build, tfbuild.engine.graph, tfbuild.engine.resolver, tfbuild.engine.verify\n"
            "import tfbuild.engine.store, tfbuild.engine.lockfile, tfbuild.engine.fingerprint\n"
            "import tfbuild.engine.spec, tfbuild.engine.plan, tfbuild.engine.results, tfbuild.engine.output\n"
            "heavy = sorted(m for m in ('tensorflow', 'numpy', 'rich', 'hydra', 'omegaconf') if m in sys.modules)\n"
            "assert not heavy, heavy\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_a_failing_benchmark_only_warns(project):
    report = project.build(bench={})   # tail_bench reads bench["runs"]: KeyError
    assert report["ok"] and report["benchmark"] is None
    assert any(kind == "warn" and "benchmark of tail failed" in text for kind, text in project.reporter.events)
    assert "t" in lockfile.read(project.opts.lock_file)   # the build itself is recorded
    assert not (project.store_dirs("tail")[0] / MEASUREMENT).exists()


def test_a_stage_that_returns_no_metadata_publishes_nothing(project):
    reg = fakes.registry(double=fakes.variant(fakes.DOUBLE, run=lambda inputs, s, out, log: None))
    report = project.build(registry=reg)
    assert not report["ok"]
    assert statuses(report) == {"source": "built", "double": "failed", "tail": "skipped"}
    assert "returned NoneType, not its metadata" in reasons(report)["double"]
    assert project.store_dirs("double") == []


def test_a_file_label_may_not_shadow_an_upstream_stage(project):
    reg = fakes.registry(double=fakes.variant(fakes.DOUBLE, files=lambda s: {"source": [project.input]}))
    with pytest.raises(ValueError, match="also an upstream stage"):
        project.build(registry=reg)
