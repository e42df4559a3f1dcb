"""The artifact store: atomic publish, manifests, damage detection, locks, links."""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
from pathlib import Path

import pytest

from tfbuild.engine import fingerprint
from tfbuild.engine.fingerprint import StatCache
from tfbuild.engine.store import MANIFEST, MEASUREMENT, Store, write_json

FP = "f" * 64


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(tmp_path / "build")


@pytest.fixture
def cache(tmp_path) -> StatCache:
    return StatCache(tmp_path / "build" / ".tfbuild" / "state.json")


def built(store: Store, stage: str = "s", files=None) -> Path:
    scratch = store.scratch(stage)
    for name, data in (files or {"model.pb": b"graph", "sub/extra.bin": b"\x00\x01"}).items():
        (scratch / name).parent.mkdir(parents=True, exist_ok=True)
        (scratch / name).write_bytes(data)
    return scratch


def test_path_is_keyed_by_stage_and_fingerprint(store):
    assert store.path("freeze", "0123456789" * 7) == store.root / "store" / "freeze" / ("0123456789" * 3)[:24]


def test_scratch_is_private_and_inside_build_dir(store):
    a, b = store.scratch("s"), store.scratch("s")
    assert a != b and a.parent == b.parent == store.root / "tmp"
    assert a.name.startswith("s-") and a.is_dir()


def test_publish_renames_the_scratch_directory_into_place(store, cache):
    scratch = built(store)
    inode = scratch.stat().st_ino
    manifest = store.publish("s", FP, scratch, {"k": 1}, cache)
    final = store.path("s", FP)
    assert not scratch.exists()
    assert final.stat().st_ino == inode               # moved, not copied
    assert (final / "model.pb").read_bytes() == b"graph"
    assert manifest == {"stage": "s", "fingerprint": FP, "metadata": {"k": 1},
                        "outputs": {"model.pb": sha(b"graph"), "sub/extra.bin": sha(b"\x00\x01")}}
    assert json.loads((final / MANIFEST).read_text()) == manifest
    assert store.manifest("s", FP) == manifest
    assert store.damage("s", FP, cache) is None
    assert list((store.root / "tmp").iterdir()) == []


def test_publish_remembers_digests_so_checking_reads_nothing(store, cache, monkeypatch):
    store.publish("s", FP, built(store), {}, cache)
    hashed = []
    real = fingerprint.sha256_file
    monkeypatch.setattr(fingerprint, "sha256_file", lambda p: hashed.append(p) or real(p))
    assert store.damage("s", FP, cache) is None
    cache.save()
    assert store.damage("s", FP, StatCache(cache.path)) is None   # and the next run's cache
    assert hashed == []


def test_publish_over_an_existing_entry_replaces_it_whole(store, cache):
    store.publish("s", FP, built(store, files={"old.txt": b"old", "model.pb": b"v1"}), {"v": 1}, cache)
    store.publish("s", FP, built(store, files={"model.pb": b"v2"}), {"v": 2}, cache)
    final = store.path("s", FP)
    assert sorted(p.name for p in final.iterdir()) == sorted([MANIFEST, "model.pb"])
    assert store.manifest("s", FP)["metadata"] == {"v": 2}
    assert store.damage("s", FP, cache) is None
    assert list((store.root / "tmp").iterdir()) == []   # the old copy is gone too


def test_damage(store, cache):
    assert store.manifest("s", FP) is None
    assert store.damage("s", FP, cache) == "output missing"
    store.publish("s", FP, built(store), {}, cache)
    final = store.path("s", FP)

    (final / "sub" / "extra.bin").write_bytes(b"\x00\x02")   # same size
    st = (final / "sub" / "extra.bin").stat()
    os.utime(final / "sub" / "extra.bin", ns=(st.st_atime_ns, st.st_mtime_ns + 10**10))
    assert store.damage("s", FP, cache) == "output sub/extra.bin altered since it was built"

    (final / "model.pb").unlink()
    assert store.damage("s", FP, cache) == "output model.pb missing"

    (final / MANIFEST).write_text("{half a manif")
    assert store.manifest("s", FP) is None
    assert store.damage("s", FP, cache) == "output missing"


def test_extra_files_and_a_measurement_are_not_damage(store, cache):
    store.publish("s", FP, built(store), {}, cache)
    write_json(store.path("s", FP) / MEASUREMENT, {"ms": 1.0})
    assert store.damage("s", FP, cache) is None


def test_lock_is_exclusive(store):
    with store.lock("key"):
        with open(store.meta_dir / "key.lock") as other:
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with open(store.meta_dir / "key.lock") as other:   # released
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_link_is_relative_and_replaced_atomically(store, cache, tmp_path):
    store.publish("s", FP, built(store), {}, cache)
    other = "0" * 64
    store.publish("s", other, built(store), {}, cache)
    link = store.root / "target" / "s"
    store.link(link, store.path("s", FP))
    assert not os.path.isabs(os.readlink(link))
    assert os.readlink(link) == os.path.join("..", "store", "s", FP[:24])
    assert link.resolve() == store.path("s", FP).resolve()
    store.link(link, store.path("s", other))
    assert link.resolve() == store.path("s", other).resolve()
    assert sorted(p.name for p in link.parent.iterdir()) == ["s"]   # no temporary link left

    # The build dir can move: the link still points into it.
    moved = tmp_path / "moved"
    store.root.rename(moved)
    assert (moved / "target" / "s" / "model.pb").read_bytes() == b"graph"


def test_write_json_is_whole_or_old(tmp_path):
    path = tmp_path / "deep" / "report.json"
    write_json(path, {"a": 1})
    write_json(path, {"b": [1, 2]})
    assert json.loads(path.read_text()) == {"b": [1, 2]}
    assert [p.name for p in path.parent.iterdir()] == ["report.json"]
