"""engine/cache_handle.py: the one lookup handle the build loop uses (hit, miss + store, leases)."""
from __future__ import annotations

import json

import pytest

import fakes
from tfbuild.engine.cache import Remote
from tfbuild.engine.cache_handle import NO_CACHE, Hit, Miss, RemoteCache, shared_cache
from tfbuild.engine.fingerprint import StatCache
from tfbuild.engine.store import MEASUREMENT, PROVENANCE, Store

FP = "ab" * 32


class Recording:
    """A Remote that remembers what it was asked."""

    def __init__(self, entry=None):
        self.entry, self.calls = entry, []

    def fetch(self, stage, fingerprint, into):
        self.calls.append("fetch")
        (into / "junk").write_text("a refused entry's leftovers")
        return self.entry

    def fetch_measurement(self, stage, fingerprint):
        return None

    def release(self, stage, fingerprint):
        self.calls.append("release")

    def push(self, stage, fingerprint, root, entry):
        self.calls.append(("push", sorted(entry)))


def test_without_a_cache_every_lookup_misses_and_stores_nothing(tmp_path):
    assert shared_cache(None, fakes.FakeReporter()) is NO_CACHE
    NO_CACHE.open()
    with NO_CACHE.lookup("s", FP, tmp_path) as found:
        assert isinstance(found, Miss) and not found.hit
        found.store(tmp_path, {"outputs": {}})
    NO_CACHE.push_measurement("s", FP, {"ms": 1})
    assert list(tmp_path.iterdir()) == []


def test_a_miss_empties_the_scratch_dir_and_releases_the_lease(tmp_path):
    remote, out = Recording(), fakes.FakeReporter()
    with pytest.raises(RuntimeError):
        with RemoteCache(remote, out).lookup("s", FP, tmp_path) as found:
            assert not found.hit and list(tmp_path.iterdir()) == []   # the stage builds into an empty dir
            raise RuntimeError("the build failed")
    assert remote.calls == ["fetch", "release"]   # a failed build lets the waiters try
    assert out.ran() == ["s"]                     # "(looking in the cache)"


def test_pull_off_asks_nothing_but_still_pushes(tmp_path):
    remote, out = Recording(), fakes.FakeReporter()
    (tmp_path / "a.txt").write_text("x")
    with RemoteCache(remote, out).lookup("s", FP, tmp_path, pull=False) as found:
        found.store(tmp_path, {"outputs": {"a.txt": "d"}, "metadata": {}})
    assert remote.calls == [("push", ["metadata", "outputs", "provenance", "signature"]), "release"]


def test_a_round_trip_through_a_file_cache(project, tmp_path):
    url = f"file://{tmp_path}/shared"
    assert project.build(remote=Remote(url, {}, warn=print), bench={"runs": 2})["ok"]
    (entry,) = (project.opts.build_dir / "store" / "tail").iterdir()
    fingerprint = json.loads((entry / "tfbuild.json").read_text())["fingerprint"]

    other = Store(tmp_path / "other")
    cache = RemoteCache(Remote(url, {}, warn=print), fakes.FakeReporter())
    scratch = other.scratch("tail")
    with cache.lookup("tail", fingerprint, scratch) as found:
        assert isinstance(found, Hit)
        outputs = found.publish(other, StatCache(other.meta_dir / "state.json"))
    copy = other.path("tail", fingerprint)
    assert outputs == json.loads((entry / "tfbuild.json").read_text())["outputs"]
    assert (copy / fakes.OUT).read_text() == "abab!"
    assert (copy / PROVENANCE).read_text() == (entry / PROVENANCE).read_text()
    assert json.loads((copy / MEASUREMENT).read_text()) == {"length": 5, "runs": 2}
