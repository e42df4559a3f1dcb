"""resolve/why/differences: fresh or stale, and the reason a person reads."""
from __future__ import annotations

import hashlib
import os
import shutil

import pytest

import fakes
from fakes import Cfg, DoubleCfg, SourceCfg, TailCfg
from tfbuild.engine import lockfile, resolver
from tfbuild.engine.fingerprint import StatCache
from tfbuild.engine.graph import make_graph
from tfbuild.engine.resolver import differences, resolve, why
from tfbuild.engine.store import Store


def decide(project, cfg=None, registry=None, force=(), previous=None) -> dict:
    """{stage: Decision} against the project's store and lock file."""
    opts = project.opts
    if previous is None:
        previous = (lockfile.read(opts.lock_file).get("t") or {}).get("stages")
    nodes = make_graph(cfg or Cfg(), registry or fakes.registry())
    cache = StatCache(opts.build_dir / ".tfbuild" / "state.json")
    return {d.name: d for d in resolve(nodes, Store(opts.build_dir), cache, previous, force)}


def stale(decisions: dict) -> dict:
    return {n: d.stale for n, d in decisions.items()}


def reasons(decisions: dict) -> dict:
    return {n: texts(d.reasons) for n, d in decisions.items()}


def texts(reasons) -> list:
    """Reasons as the text people read."""
    return [str(r) for r in reasons]


def bump_mtime(path, seconds: int = 10) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + seconds * 1_000_000_000))


def test_not_built_yet(project):
    d = decide(project)
    assert stale(d) == {"source": True, "double": True, "tail": True}
    assert reasons(d) == {n: ["not built yet"] for n in d}
    assert not project.opts.build_dir.joinpath("store").exists()   # resolving builds nothing


def test_up_to_date_after_a_build(project):
    assert project.build()["ok"]
    d = decide(project)
    assert stale(d) == {"source": False, "double": False, "tail": False}
    assert reasons(d) == {n: ["up to date"] for n in d}


def test_the_record_holds_the_identity_parts(project):
    d = decide(project)
    source, double, tail = d["source"].record, d["double"].record, d["tail"].record
    assert source["settings"] == {"source.label": "x"}     # the PATH field is left out
    assert source["inputs"] == {"data": {"in.txt": hashlib.sha256(b"ab").hexdigest()}}
    assert double["inputs"] == {"source": d["source"].fingerprint}
    assert tail["inputs"] == {"double": d["double"].fingerprint}
    assert source["code"] == {} and source["env"] == {}     # fake stages live outside tfbuild
    assert all(r["fingerprint"] == d[n].fingerprint for n, r in
               (("source", source), ("double", double), ("tail", tail)))


def test_a_setting_changed(project):
    assert project.build()["ok"]
    d = decide(project, Cfg(double=DoubleCfg(factor=3)))
    assert stale(d) == {"source": False, "double": True, "tail": True}
    assert texts(d["double"].reasons) == ["double.factor changed: 2 → 3"]
    assert texts(d["tail"].reasons) == ["input double artifact changed"]


def test_a_setting_changed_to_null_and_quotes(project):
    assert project.build(Cfg(tail=TailCfg(suffix="'!'")))["ok"]
    d = decide(project, Cfg(tail=TailCfg(suffix=None)))
    assert texts(d["tail"].reasons) == ["tail.suffix changed: ! → null"]


def test_back_to_an_earlier_setting_reuses_its_artifact(project):
    assert project.build()["ok"]
    assert project.build(Cfg(double=DoubleCfg(factor=3)))["ok"]
    d = decide(project)   # factor 2 again: built before, still in the store
    assert stale(d) == {"source": False, "double": False, "tail": False}
    assert texts(d["double"].reasons) == ["up to date (built before)"]


def test_a_path_setting_is_not_identity_its_content_is(project):
    assert project.build()["ok"]
    shutil.copytree(project.root / "data", project.root / "moved")
    d = decide(project, Cfg(source=SourceCfg(path=str(project.root / "moved" / "in.txt"))))
    assert not any(stale(d).values())


def test_input_content_changed(project):
    assert project.build()["ok"]
    project.input.write_text("abc")
    d = decide(project)
    assert stale(d) == {"source": True, "double": True, "tail": True}
    assert texts(d["source"].reasons) == ["input data content changed"]
    assert texts(d["double"].reasons) == ["input source artifact changed"]
    assert texts(d["tail"].reasons) == ["input double artifact changed"]


def test_a_touched_input_is_still_up_to_date(project):
    assert project.build()["ok"]
    bump_mtime(project.input)
    assert not any(stale(decide(project)).values())


def test_switching_the_upstream(project):
    assert project.build()["ok"]
    d = decide(project, Cfg(double=None))
    assert d["tail"].stale
    assert texts(d["tail"].reasons) == ["input double artifact changed", "input source artifact changed"]


def test_code_changed_names_the_module(project, monkeypatch):
    code = {"tfbuild/stages/fake.py": "1111", "tfbuild/tf/helper.py": "aaaa"}
    monkeypatch.setattr(resolver, "code_record", lambda module, cache: dict(code))
    assert project.build()["ok"]
    code["tfbuild/tf/helper.py"] = "bbbb"
    d = decide(project)
    assert stale(d) == {"source": True, "double": True, "tail": True}
    assert texts(d["source"].reasons) == ["code changed: tfbuild/tf/helper.py"]
    assert texts(d["double"].reasons) == ["code changed: tfbuild/tf/helper.py",
                                   "input source artifact changed"]


def test_code_changed_lists_three_modules_then_an_ellipsis():
    before = {"fingerprint": "a", "env": {}, "settings": {}, "inputs": {},
              "code": {f"tfbuild/m{i}.py": "1" for i in range(5)}}
    now = {**before, "fingerprint": "b", "code": {f"tfbuild/m{i}.py": "2" for i in range(5)}}
    assert texts(differences(before, now)) == ["code changed: tfbuild/m0.py, tfbuild/m1.py, tfbuild/m2.py …"]


def test_a_tool_version_changed(project, monkeypatch):
    installed = {"faketool": "1.0"}
    monkeypatch.setattr(resolver, "versions", lambda *names: {n: installed[n] for n in names})
    reg = fakes.registry(source=fakes.variant(fakes.SOURCE, tools=("faketool",)))
    assert project.build(registry=reg)["ok"]
    installed["faketool"] = "2.0"
    d = decide(project, registry=reg)
    assert texts(d["source"].reasons) == ["faketool version changed: 1.0 → 2.0"]
    assert d["source"].record["env"] == {"faketool": "2.0"}


def test_the_environment_counts(project):
    machine = {"driver": "535"}
    reg = fakes.registry(tail=fakes.variant(fakes.TAIL, environment=lambda s: dict(machine)))
    assert project.build(registry=reg)["ok"]
    machine["driver"] = "550"
    d = decide(project, registry=reg)
    assert stale(d) == {"source": False, "double": False, "tail": True}
    assert texts(d["tail"].reasons) == ["driver version changed: 535 → 550"]


def test_forced_and_upstream_forced(project):
    assert project.build()["ok"]
    d = decide(project, force=["double"])
    assert stale(d) == {"source": False, "double": True, "tail": True}
    assert reasons(d) == {"source": ["up to date"], "double": ["forced"],
                          "tail": ["upstream double forced"]}
    assert [n for n in d if d[n].forced] == ["double", "tail"]
    d = decide(project, force=["source", "tail"])
    assert reasons(d) == {"source": ["forced"], "double": ["upstream source forced"], "tail": ["forced"]}


def test_a_missing_output_is_damage(project):
    assert project.build()["ok"]
    fp = decide(project)["double"].fingerprint
    (Store(project.opts.build_dir).path("double", fp) / fakes.OUT).unlink()
    d = decide(project)
    assert stale(d) == {"source": False, "double": True, "tail": False}
    assert texts(d["double"].reasons) == [f"output {fakes.OUT} missing"]
    assert d["double"].fingerprint == fp


def test_an_altered_output_is_damage(project):
    assert project.build()["ok"]
    fp = decide(project)["tail"].fingerprint
    out = Store(project.opts.build_dir).path("tail", fp) / fakes.OUT
    out.write_text(out.read_text().replace("!", "?"))   # same size
    bump_mtime(out)
    d = decide(project)
    assert stale(d) == {"source": False, "double": False, "tail": True}
    assert texts(d["tail"].reasons) == [f"output {fakes.OUT} altered since it was built"]


def test_a_missing_store_entry_is_damage(project):
    assert project.build()["ok"]
    shutil.rmtree(project.opts.build_dir / "store" / "source")
    d = decide(project)
    assert stale(d) == {"source": True, "double": False, "tail": False}
    assert texts(d["source"].reasons) == ["output missing"]


def test_damage_with_other_changes_gives_the_changes(project):
    assert project.build()["ok"]
    shutil.rmtree(project.opts.build_dir / "store")
    d = decide(project, Cfg(double=DoubleCfg(factor=5)))
    assert reasons(d) == {"source": ["output missing"], "double": ["double.factor changed: 2 → 5"],
                          "tail": ["input double artifact changed"]}


def test_why_without_a_record():
    now = {"fingerprint": "b", "env": {}, "code": {}, "settings": {}, "inputs": {}}
    assert texts(why(None, now, None)) == ["up to date"]
    assert texts(why(None, now, "output missing")) == ["not built yet"]
    assert texts(why({"fingerprint": "b"}, now, "output x missing")) == ["output x missing"]
    # A record that differs in nothing the diff looks at still gives a reason.
    assert texts(why({**now, "fingerprint": "a"}, now, "output missing")) == ["output missing"]


def test_differences_most_fundamental_first():
    before = {"fingerprint": "a", "env": {"tool": "1"}, "code": {"tfbuild/x.py": "1"},
              "settings": {"k": 1}, "inputs": {"up": "fp1", "data": {"f": "1"}}}
    now = {"fingerprint": "b", "env": {"tool": "2"}, "code": {"tfbuild/x.py": "2"},
           "settings": {"k": 2, "new": True}, "inputs": {"up": "fp2", "data": {"f": "2"}}}
    assert texts(differences(before, now)) == [
        "tool version changed: 1 → 2", "code changed: tfbuild/x.py",
        "k changed: 1 → 2", "new changed: null → True",
        "input data content changed", "input up artifact changed"]


@pytest.mark.parametrize("env", [None, "absent"])
def test_differences_tolerates_a_record_without_env(env):
    """A hand-edited or truncated lock entry gives reasons, not a crash."""
    before = {"fingerprint": "a", "settings": {"k": 1}}
    if env is None:
        before["env"] = None
    now = {"fingerprint": "b", "env": {"tool": "2"}, "code": {}, "settings": {"k": 2}, "inputs": {}}
    assert texts(differences(before, now)) == ["tool version changed: None → 2", "k changed: 1 → 2"]


def test_another_input_file_is_named_in_the_reason():
    """A checkpoint directory's latest checkpoint moved on: say which one is used now."""
    def record(files):
        return {"fingerprint": "x", "env": {}, "code": {}, "settings": {}, "inputs": {"checkpoint": files}}
    before = record({"model.ckpt-200.index": "a", "model.ckpt-200.data-00000-of-00001": "b"})
    now = record({"model.ckpt-300.index": "c", "model.ckpt-300.data-00000-of-00001": "d"})
    assert texts(resolver.differences(before, now)) == ["input checkpoint changed: model.ckpt-200 → model.ckpt-300"]
    same_names = record({"model.ckpt-200.index": "e", "model.ckpt-200.data-00000-of-00001": "b"})
    assert texts(resolver.differences(before, same_names)) == ["input checkpoint content changed"]
