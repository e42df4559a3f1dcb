"""tfbuild.lock: sorted, stable, schema-checked, and safe for concurrent writers."""
from __future__ import annotations

import multiprocessing
import os

import pytest
import yaml

from tfbuild.engine import lockfile
from tfbuild.engine.lockfile import SCHEMA
from tfbuild.errors import ConfigError

ENTRY = {"stages": {"freeze": {"fingerprint": "abc", "settings": {"freeze.outputs": ["probs"]},
                               "inputs": {}, "code": {}, "env": {}, "outputs": {"frozen.pb": "d1"}}}}


@pytest.fixture
def lock(tmp_path):
    return tmp_path / "tfbuild.lock"


def test_absent_or_empty_is_an_empty_lock(lock):
    assert lockfile.read(lock) == {}
    lock.write_text("")
    assert lockfile.read(lock) == {}
    lock.write_text(f"schema: {SCHEMA}\n")
    assert lockfile.read(lock) == {}


def test_round_trip_sorted_and_stable(lock):
    lockfile.update(lock, "zeta", {"stages": {"b": {"x": 1}, "a": {"y": [3, 1]}}})
    lockfile.update(lock, "alpha", ENTRY)
    assert lockfile.read(lock) == {"zeta": {"stages": {"b": {"x": 1}, "a": {"y": [3, 1]}}},
                                   "alpha": ENTRY}
    text = lock.read_text()
    assert text.startswith(f"schema: {SCHEMA}\ntargets:\n")
    assert text.index("alpha:") < text.index("zeta:")
    assert text.index("      a:") < text.index("      b:")
    assert text == lockfile.dump(lockfile.read(lock))        # dump(read(x)) == x
    assert yaml.safe_load(text) == {"schema": SCHEMA, "targets": lockfile.read(lock)}


def test_update_keeps_other_keys_and_replaces_its_own(lock):
    lockfile.update(lock, "a", {"stages": {"s": {"v": 1}}})
    lockfile.update(lock, "b", {"stages": {"s": {"v": 2}}})
    lockfile.update(lock, "a", {"stages": {"s": {"v": 3}}})
    assert lockfile.read(lock) == {"a": {"stages": {"s": {"v": 3}}}, "b": {"stages": {"s": {"v": 2}}}}


def test_an_unchanged_entry_leaves_the_file_alone(lock):
    lockfile.update(lock, "a", ENTRY)
    os.utime(lock, ns=(0, 0))
    lockfile.update(lock, "a", {**ENTRY})
    assert lock.stat().st_mtime_ns == 0


def test_an_older_schema_is_an_empty_lock_and_gets_rewritten(lock):
    lock.write_text(yaml.safe_dump({"schema": SCHEMA - 1, "targets": {"old": {"stages": {}}}}))
    assert lockfile.read(lock) == {}
    lockfile.update(lock, "new", ENTRY)
    assert yaml.safe_load(lock.read_text()) == {"schema": SCHEMA, "targets": {"new": ENTRY}}


@pytest.mark.parametrize("schema", [SCHEMA + 1, "two", 2.5, [2], None, True])
def test_a_newer_or_garbage_schema_is_refused(lock, schema):
    data = {"targets": {"a": ENTRY}}
    if schema is not None:
        data["schema"] = schema
    lock.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="has schema") as e:
        lockfile.read(lock)
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError):   # and nothing overwrites it
        lockfile.update(lock, "b", ENTRY)
    assert yaml.safe_load(lock.read_text()) == data


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n",
                                  f"schema: {SCHEMA}\ntargets: [a, b]\n",
                                  f"schema: {SCHEMA}\ntargets: {{a: [1, 2]}}\n"])
def test_not_a_lock_file_is_refused(lock, text):
    lock.write_text(text)
    with pytest.raises(ConfigError, match="is not a tfbuild lock file") as e:
        lockfile.read(lock)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("text", ["targets: {a: [1, 2\n", "schema: 2\n  bad: indent\n x: [\n",
                                  "<<<<<<< HEAD\nschema: 2\n=======\n"])
def test_invalid_yaml_is_refused_in_one_line(lock, text):
    lock.write_text(text)
    with pytest.raises(ConfigError, match="is not valid YAML") as e:
        lockfile.read(lock)
    assert "\n" not in str(e.value)
    assert str(lock) in str(e.value)


def test_locked_uses_a_file_beside_the_lock_file(lock):
    with lockfile.locked(lock):
        assert (lock.parent / f".{lock.name}.flock").is_file()
    assert not lock.exists()


# ----------------------------------------------------------------------------- concurrency

WRITERS, ROUNDS = 8, 5


def _writer(lock: str, worker: int, start) -> None:
    from pathlib import Path
    start.wait()
    for round_ in range(ROUNDS):
        # Each job has its own key, as sweep jobs with their own build_dir do.
        entry = {"stages": {f"stage{i}": {"fingerprint": f"{worker}-{round_}-{i}", "outputs": {"f": "x" * 64}}
                            for i in range(3)}}
        lockfile.update(Path(lock), f"target[build_dir=build/w{worker}/r{round_}]", entry)


def test_concurrent_writers_lose_nothing(lock):
    ctx = multiprocessing.get_context("fork")
    start = ctx.Barrier(WRITERS)
    procs = [ctx.Process(target=_writer, args=(str(lock), w, start)) for w in range(WRITERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=10)
    assert [p.exitcode for p in procs] == [0] * WRITERS
    targets = lockfile.read(lock)
    assert len(targets) == WRITERS * ROUNDS
    assert set(targets) == {f"target[build_dir=build/w{w}/r{r}]" for w in range(WRITERS) for r in range(ROUNDS)}
    assert targets["target[build_dir=build/w3/r4]"]["stages"]["stage2"]["fingerprint"] == "3-4-2"
    assert sorted(p.name for p in lock.parent.iterdir()) == sorted([lock.name, f".{lock.name}.flock"])


@pytest.mark.parametrize("stages", [[1], {"freeze": 3}, "x"])
def test_a_malformed_stage_entry_is_refused(lock, stages):
    lock.write_text(yaml.safe_dump({"schema": SCHEMA, "targets": {"t": {"stages": stages}}}))
    with pytest.raises(ConfigError, match="is not a tfbuild lock file"):
        lockfile.read(lock)
