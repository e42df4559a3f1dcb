"""engine/results.py: typed results and the report (docs/interface.md) they turn into."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import fakes
from fakes import BoomCfg, Cfg
from tfbuild.engine.build import build_target
from tfbuild.engine.reasons import Reason
from tfbuild.engine.results import BuildResult, Final, StageResult, lock_entry, size

STAGE_KEYS = ["name", "status", "reason", "fingerprint", "artifact", "seconds", "size"]


def stage(**kw) -> StageResult:
    fields = dict(name="s", status="built", reasons=(Reason("not-built"),), fingerprint="f" * 64,
                  record={"fingerprint": "f" * 64, "settings": {}}, outputs={"a.txt": "d" * 64},
                  seconds=1.23456, artifact=Path("/store/s/ff/a.txt"), size=3)
    return StageResult(**{**fields, **kw})


def test_a_stage_in_the_report():
    assert stage().to_json() == {"name": "s", "status": "built", "reason": "not built yet",
                                 "fingerprint": "f" * 64, "artifact": "/store/s/ff/a.txt",
                                 "seconds": 1.235, "size": 3}
    linked = stage(link=Path("build/t/s/a.txt")).to_json()
    assert list(linked) == STAGE_KEYS + ["link"] and linked["link"] == "build/t/s/a.txt"


def test_a_scratch_stage_points_at_nothing_but_keeps_its_size():
    gone = stage(link=Path("/tmp/x/links/s/a.txt"), scratch=True).to_json()
    assert gone["artifact"] is None and gone["link"] is None and gone["size"] == 3


def test_the_report_of_a_successful_build():
    result = BuildResult("t", True, (stage(name="a"), stage(name="b", artifact=Path("/b"))),
                         Final({"file": "a.txt"}, {"ms": 2.0}))
    report = result.to_json()
    assert list(report) == ["target", "ok", "artifact", "stages", "metadata", "benchmark"]
    assert report["artifact"] == "/b" and [s["name"] for s in report["stages"]] == ["a", "b"]
    assert (report["metadata"], report["benchmark"]) == ({"file": "a.txt"}, {"ms": 2.0})
    assert result.metadata == {"file": "a.txt"} and result.benchmark == {"ms": 2.0}
    json.dumps(report)   # plain JSON


def test_a_failed_build_has_no_artifact_and_no_metadata():
    report = BuildResult("t", False, (stage(),)).to_json()
    assert report["artifact"] is None and "metadata" not in report and "benchmark" not in report


def test_the_lock_entry_is_the_record_plus_outputs():
    assert lock_entry([stage(name="a"), stage(name="b", outputs={})]) == {"stages": {
        "a": {"fingerprint": "f" * 64, "settings": {}, "outputs": {"a.txt": "d" * 64}},
        "b": {"fingerprint": "f" * 64, "settings": {}, "outputs": {}}}}


def test_size_of_a_file_a_folder_and_nothing(tmp_path):
    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / "d" / "one").write_bytes(b"x")
    (tmp_path / "d" / "e" / "two").write_bytes(b"yy")
    assert size(tmp_path / "d" / "one") == 1
    assert size(tmp_path / "d") == 3
    assert size(tmp_path / "nothing") is None


def test_a_real_build_gives_typed_results(project):
    result = build_target(Cfg(boom=BoomCfg(), after=fakes.AfterCfg()), fakes.registry(), project.opts, "t",
                          project.reporter)
    assert not result.ok and result.final is None
    by_name = {s.name: s for s in result.stages}
    assert by_name["double"].status == "built" and by_name["double"].artifact.read_text() == "abab"
    assert by_name["double"].outputs == {fakes.OUT: hashlib.sha256(b"abab").hexdigest()}
    assert by_name["boom"].reasons == (Reason("failed", "boom: the fake stage failed"),)
    assert by_name["after"].reasons == (Reason("not-reached"),)
    assert by_name["after"].artifact is by_name["after"].size is by_name["after"].link is None
