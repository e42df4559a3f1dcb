"""The shared cache with fake stages: file:// and a real S3 server (moto) on 127.0.0.1."""
from __future__ import annotations

import importlib
import importlib.util
import json
import multiprocessing
import sys
import shutil
from pathlib import Path

import pytest

import fakes
from fakes import reasons, statuses
from tfbuild.engine import provenance
from tfbuild.engine.cache import Remote
from tfbuild.errors import ConfigError

STAGES = ["source", "double", "tail"]


WARNED: list = []   # what every Remote of the current test warned


@pytest.fixture(autouse=True)
def _no_warnings_yet():
    WARNED.clear()


def remote(url: str, **kw) -> Remote:
    return Remote(url, kw.pop("options", {}), warn=WARNED.append, **kw)


def warnings(_project=None) -> list:
    return list(WARNED)


def elsewhere(project, name: str):
    """The same project checked out in another directory, with an empty build_dir."""
    root = project.root / name
    (root / "data").mkdir(parents=True)
    shutil.copy(project.input, root / "data" / "in.txt")
    return project.options(build_dir=root / "build", lock_file=root / "tfbuild.lock")


def build(project, opts, r: Remote, **changes):
    project.opts, kept = opts, project.opts
    try:
        return project.build(remote=r, **changes)
    finally:
        project.opts = kept


@pytest.fixture(params=["file", "s3"])
def url(request, tmp_path):
    if request.param == "file":
        return f"file://{tmp_path}/shared-cache"
    server = request.getfixturevalue("s3")
    return server.bucket("tfbuild-cache") + "/team"


def store_file(opts, stage: str, name: str = fakes.OUT) -> Path:
    (entry,) = (opts.build_dir / "store" / stage).iterdir()
    return entry / name


def test_a_fresh_checkout_fetches_every_stage_and_builds_nothing(project, url):
    first = project.build(remote=remote(url), bench={"runs": 3})
    assert first["ok"] and set(statuses(first).values()) == {"built"}
    fakes.reset()
    other = elsewhere(project, "clone")
    report = build(project, other, remote(url), bench={"runs": 3})
    assert statuses(report) == dict.fromkeys(STAGES, "fresh")
    assert set(reasons(report).values()) == {"fetched from cache"}
    assert fakes.CALLS == {} and fakes.BENCHES == []   # nothing built, nothing measured
    for stage in STAGES:
        assert store_file(other, stage).read_bytes() == store_file(project.opts, stage).read_bytes()
    assert report["benchmark"] == first["benchmark"]   # the measurement travelled with the entry
    assert other.lock_file.read_text() == project.opts.lock_file.read_text()


def test_fetched_artifacts_carry_the_builders_provenance(project, url):
    project.build(remote=remote(url))
    other = elsewhere(project, "clone")
    report = build(project, other, remote(url))
    assert set(reasons(report).values()) == {"fetched from cache"}, (reasons(report), warnings())
    stmt = json.loads(store_file(other, "double", provenance.FILE).read_text())
    original = json.loads(store_file(project.opts, "double", provenance.FILE).read_text())
    assert stmt == original
    manifest = json.loads(store_file(other, "double", "tfbuild.json").read_text())
    assert stmt["subject"] == [{"name": f"double/{n}", "digest": {"sha256": d}}
                               for n, d in sorted(manifest["outputs"].items())]
    deps = stmt["predicate"]["buildDefinition"]["resolvedDependencies"]
    assert [d["name"] for d in deps] == ["source"]


def test_a_corrupt_blob_is_refused_rebuilt_and_repaired(project, tmp_path):
    url = f"file://{tmp_path}/cc"
    project.build(remote=remote(url))
    blob_dir = tmp_path / "cc" / "cas"
    digest = json.loads(next((tmp_path / "cc" / "ac" / "double").glob("*.json")).read_text())["outputs"][fakes.OUT]
    (blob_dir / digest).write_bytes(b"tampered")
    fakes.reset()
    other = elsewhere(project, "clone")
    report = build(project, other, remote(url))
    assert report["ok"] and statuses(report) == {"source": "fresh", "double": "built", "tail": "fresh"}
    assert "does not match its digest" in warnings()[0] and "repairing" in warnings()[0]
    assert store_file(other, "double").read_bytes() == store_file(project.opts, "double").read_bytes()
    fakes.reset()
    third = build(project, elsewhere(project, "third"), remote(url))
    assert set(reasons(third).values()) == {"fetched from cache"} and fakes.CALLS == {}


@pytest.mark.parametrize("damage", ["truncated", "blob missing", "other stage"])
def test_a_half_written_entry_is_never_used(project, url, damage):
    project.build(remote=remote(url))
    r = remote(url)
    r.open()
    (entry,) = r._fs.glob(r._path("ac", "double", "*.json"))
    text = r._fs.cat_file(entry).decode()
    if damage == "truncated":
        r._fs.pipe_file(entry, text[: len(text) // 2].encode())
    elif damage == "blob missing":
        r._fs.rm_file(r._path("cas", json.loads(text)["outputs"][fakes.OUT]))
    else:
        r._fs.pipe_file(entry, text.replace('"stage": "double"', '"stage": "tail"').encode())
    fakes.reset()
    report = build(project, elsewhere(project, "clone"), remote(url))
    assert report["ok"] and statuses(report)["double"] == "built"
    assert len(warnings()) == 1 and "double" in warnings()[0]
    fakes.reset()
    WARNED.clear()
    again = build(project, elsewhere(project, "again"), remote(url))   # repaired by the push
    assert statuses(again)["double"] == "fresh" and warnings() == []


def _push_at_once(url: str, entry: dict, root: str, barrier, results) -> None:
    r = remote(url)
    barrier.wait()
    r.push("double", entry["fingerprint"], Path(root), entry)
    results.put(r.down)


def test_two_processes_pushing_one_entry_both_succeed(project, url):
    project.build()
    manifest = json.loads(store_file(project.opts, "double", "tfbuild.json").read_text())
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_push_at_once, args=(url, manifest, str(store_file(project.opts, "double").parent),
                                                     barrier, results)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert [p.exitcode for p in procs] == [0, 0]
    assert [results.get(timeout=5), results.get(timeout=5)] == [False, False]   # neither saw a failure
    fakes.reset()
    report = build(project, elsewhere(project, "clone"), remote(url, pull=True))
    assert statuses(report)["double"] == "fresh" and reasons(report)["double"] == "fetched from cache"


def test_a_server_stopped_mid_run_warns_once_and_builds_locally(project, s3):
    url = s3.bucket("stops") + "/c"
    secret = "wJalrXUtnFEMI-K7MDENG-bPxRfiCY"
    r = remote(url, options={"key": "testing", "secret": secret, "endpoint_url": s3.endpoint})

    def stop_then_double(inputs, s, out, log):
        s3.stop()
        return fakes.double_run(inputs, s, out, log)
    registry = fakes.registry(double=fakes.variant(fakes.DOUBLE, run=stop_then_double))
    report = project.build(registry=registry, remote=r)
    assert report["ok"] and set(statuses(report).values()) == {"built"}
    (warning,) = warnings()
    assert "unreachable while pushing double" in warning and "building locally" in warning
    assert secret not in warning and secret not in json.dumps(report)
    assert secret not in project.opts.lock_file.read_text()


def test_secrets_are_masked_in_the_warning(project):
    secret = "a-secret-that-must-not-leak"
    r = remote("s3://nowhere/c", options={"secret": secret, "key": "k", "endpoint_url": "http://127.0.0.1:9",
                                          "client_kwargs": {"aws_session_token": "tok-" + secret}})
    report = project.build(remote=r)
    assert report["ok"]
    (warning,) = warnings()
    assert secret not in warning and "127.0.0.1:9" in warning


def test_secrets_nested_in_options_are_masked(tmp_path):
    secret = "nested-secret-value"
    r = remote(f"file://{tmp_path}", options={"client_kwargs": {"aws_session_token": secret}, "region": "eu"})
    assert r._clean(RuntimeError(f"denied for {secret} in eu")) == "denied for *** in eu"


def test_a_no_op_build_makes_no_network_call(project, s3):
    url = s3.bucket("noop") + "/c"
    project.build(remote=remote(url))
    s3.stop()   # any call now would fail and warn
    r = remote(url)
    report = project.build(remote=r)
    assert set(statuses(report).values()) == {"fresh"} and warnings() == []
    assert r._fs is None   # the backend was never even loaded


def test_push_and_pull_can_be_turned_off(project, tmp_path):
    url = f"file://{tmp_path}/off"
    project.build(remote=remote(url, push=False))
    assert not (tmp_path / "off").exists()
    project.build(remote=remote(url), force=True)
    fakes.reset()
    report = build(project, elsewhere(project, "clone"), remote(url, pull=False))
    assert set(statuses(report).values()) == {"built"}


def test_a_forced_stage_is_built_not_fetched(project, tmp_path):
    url = f"file://{tmp_path}/forced"
    project.build(remote=remote(url))
    fakes.reset()
    report = build(project, elsewhere(project, "clone"), remote(url), force=["double"])
    assert statuses(report) == {"source": "fresh", "double": "built", "tail": "built"}
    assert reasons(report)["source"] == "fetched from cache"


@pytest.mark.parametrize("bad", ["s3//bucket", "bucket/prefix", "s3://", "relative/path", "file:// x"])
def test_a_malformed_url_is_refused_up_front(bad):
    with pytest.raises(ConfigError, match="cache.url .* is not a URL"):
        remote(bad)


def test_an_unknown_protocol_is_refused_before_any_stage(project):
    with pytest.raises(ConfigError, match="Protocol not known"):
        project.build(remote=remote("nosuch://x/y"))
    assert fakes.CALLS == {}


def test_a_missing_backend_library_says_what_to_install(project, monkeypatch):
    registry = importlib.import_module("fsspec.registry")   # the module (`fsspec.registry` is a mapping)
    monkeypatch.setitem(sys.modules, "s3fs", None)   # as if the `remote` extra were not installed
    monkeypatch.delitem(registry._registry, "s3", raising=False)   # fsspec's loaded classes
    with pytest.raises(ConfigError, match=r"cache.url s3://b/c: needs s3fs: pip install 'tfbuild\[remote\]'"):
        project.build(remote=remote("s3://b/c"))
    # sftp's library (paramiko) is in no tfbuild extra: fsspec's own words say what
    if importlib.util.find_spec("paramiko") is None:
        with pytest.raises(ConfigError, match='cache.url sftp://host/x: SFTPFileSystem requires "paramiko"'):
            project.build(remote=remote("sftp://host/x"))
    assert fakes.CALLS == {}


def test_credentials_in_the_url_are_not_shown():
    with pytest.raises(ConfigError) as e:
        remote("s3//user:pa55word@bucket")
    assert "pa55word" not in str(e.value)


def test_provenance_check_finds_each_kind_of_lie(project):
    project.build()
    root = store_file(project.opts, "double").parent
    stmt = json.loads((root / provenance.FILE).read_text())
    lock = project.opts.lock_file.read_text()
    import yaml
    record = yaml.safe_load(lock)["targets"]["t"]["stages"]["double"]
    outputs = record.pop("outputs")
    assert provenance.check(stmt, "double", record, outputs) == []
    assert provenance.check(stmt, "double", record, {fakes.OUT: "0" * 64}) == ["subjects differ from the outputs"]
    other = {**record, "inputs": {"source": "f" * 64}}
    assert provenance.check(stmt, "double", other, outputs) == ["resolved dependencies differ from the inputs"]
    other = {**record, "settings": {"double.factor": 99}}
    assert provenance.check(stmt, "double", other, outputs) == ["parameters differ from the settings"]
    assert provenance.check({"_type": "x"}, "double", record, outputs) != []


def _build_at_once(project, opts, url, barrier, results) -> None:
    def slow_source(inputs, s, out, log):
        import time
        time.sleep(1.5)   # long enough for the other machine to find the lease
        return fakes.source_run(inputs, s, out, log)
    registry = fakes.registry(source=fakes.variant(fakes.SOURCE, run=slow_source))
    r = remote(url)
    r.POLL = 0.1
    barrier.wait()
    project.opts = opts
    report = project.build(registry=registry, remote=r)
    results.put((report["ok"], statuses(report), reasons(report)))


def test_two_machines_building_one_target_build_each_stage_once(project, url):
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    machines = [elsewhere(project, "one"), elsewhere(project, "two")]
    procs = [ctx.Process(target=_build_at_once, args=(project, m, url, barrier, results)) for m in machines]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    assert all(ok for ok, _, _ in outcomes)
    for stage in STAGES:   # one machine built it, the other waited and fetched it
        seen = sorted((st[stage], why[stage]) for _, st, why in outcomes)
        assert seen == [("built", "not built yet"), ("fresh", "fetched from cache")], (stage, outcomes)
    r = remote(url)
    r.open()
    assert r._fs.glob(r._path("ac", "*", "*.lease")) == []   # every lease released


def test_a_lease_that_stops_beating_is_taken_over(project, tmp_path):
    url = f"file://{tmp_path}/dead"
    r = remote(url)
    r.DEAD, r.POLL = 0.5, 0.1
    r.open()
    planned = project.build(dry_run=True)
    fp = {s["name"]: s["fingerprint"] for s in planned["stages"]}["source"]
    r._put(r._entry("source", fp, ".lease"), b'{"host": "gone", "pid": 1, "beat": 0}', create=True)
    report = project.build(remote=r)
    assert report["ok"] and statuses(report)["source"] == "built"
    assert any("gone (pid 1) stopped building it, building here" in w for w in warnings())
    assert not list((tmp_path / "dead" / "ac" / "source").glob("*.lease"))   # ours was released
