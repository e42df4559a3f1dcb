"""Identity parts: settings records, location-free file digests through the stat cache,
code identity from normalized syntax trees, tool versions."""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pytest

from tfbuild.engine import fingerprint
from tfbuild.engine.fingerprint import (StatCache, code_record, files_record, module_file,
                                        settings_record, sha256_json, versions)
from tfbuild.marks import PATH, key

REPO_PKG = Path(fingerprint.__file__).resolve().parents[1]


def counting(monkeypatch, name: str) -> list:
    """Count calls to fingerprint.<name> (still calling through)."""
    calls = []
    real = getattr(fingerprint, name)

    def spy(*args):
        calls.append(args[0])
        return real(*args)

    monkeypatch.setattr(fingerprint, name, spy)
    return calls


def bump_mtime(path: Path, seconds: int = 10) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + seconds * 1_000_000_000))


# ----------------------------------------------------------------------------- settings

@dataclass
class Inner:
    b: int = 2
    deeper: dict = field(default_factory=lambda: {"c": 3})


@dataclass
class Section:
    a: int = 1
    inner: Inner = field(default_factory=Inner)
    data: str = field(default="/abs/calib.npy", metadata=PATH)   # a nested path, like calibration.path


@dataclass(frozen=True)
class Settings:
    checkpoint: Optional[str] = field(default="/abs/somewhere/ckpt", metadata=PATH)
    preprocessing: str = field(default="caffe", metadata=key("placeholder.preprocessing"))
    section: Section = field(default_factory=Section)
    options: dict = field(default_factory=lambda: {"x": 1, "y": {"z": None}})
    empty: dict = field(default_factory=dict)
    shape: list = field(default_factory=lambda: [1, 2])
    specs: list = field(default_factory=lambda: [Inner()])     # like placeholder.inputs
    nothing: Optional[int] = None


def test_settings_record_drops_paths_uses_keys_and_flattens():
    assert settings_record(Settings()) == {
        "placeholder.preprocessing": "caffe",
        "section.a": 1,
        "section.inner.b": 2,
        "section.inner.deeper.c": 3,
        "options.x": 1,
        "options.y.z": None,
        "empty": {},
        "shape": [1, 2],
        "specs": [{"b": 2, "deeper": {"c": 3}}],
        "nothing": None,
    }


def test_settings_record_ignores_where_a_path_points():
    assert settings_record(Settings(checkpoint="a")) == settings_record(Settings(checkpoint="/b/c"))
    assert settings_record(Settings(section=Section(data="x.npy"))) == settings_record(Settings())
    assert settings_record(Settings(preprocessing="tf")) != settings_record(Settings())


def test_sha256_json_is_order_free():
    assert sha256_json({"a": 1, "b": [1, 2]}) == sha256_json({"b": [1, 2], "a": 1})
    assert sha256_json({"a": 1}) != sha256_json({"a": 2})


# ----------------------------------------------------------------------------- input files

def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def cache(tmp_path) -> StatCache:
    return StatCache(tmp_path / "state" / "state.json")


def test_files_record_is_relative_to_the_files_common_folder(tmp_path, cache):
    a = write(tmp_path / "one" / "ckpt" / "model.index", b"index")
    b = write(tmp_path / "one" / "ckpt" / "sub" / "model.data", b"data")
    record = files_record([b, a], cache)
    assert list(record) == ["model.index", "sub/model.data"]
    assert record["model.index"] == fingerprint.sha256_file(a)
    assert files_record([], cache) == {}


def test_same_content_elsewhere_is_the_same_record(tmp_path, cache):
    one = [write(tmp_path / "one/ckpt/m.index", b"i"), write(tmp_path / "one/ckpt/m.data", b"d")]
    two = [write(tmp_path / "elsewhere/deep/x/m.index", b"i"),
           write(tmp_path / "elsewhere/deep/x/m.data", b"d")]
    assert files_record(one, cache) == files_record(two, cache)


def test_a_renamed_parent_folder_is_the_same_record(tmp_path, cache):
    f = write(tmp_path / "old" / "in.txt", b"content")
    before = files_record([f], cache)
    (tmp_path / "old").rename(tmp_path / "new")
    assert files_record([tmp_path / "new" / "in.txt"], cache) == before


def test_a_relative_path_is_the_same_record(tmp_path, cache, monkeypatch):
    f = write(tmp_path / "data" / "in.txt", b"content")
    monkeypatch.chdir(tmp_path)
    assert files_record([Path("data/in.txt")], cache) == files_record([f], cache)


def test_a_changed_byte_changes_the_record(tmp_path, cache):
    f = write(tmp_path / "in.bin", b"\x00\x01\x02")
    before = files_record([f], cache)
    f.write_bytes(b"\x00\x01\x03")
    bump_mtime(f)  # the stat cache cannot see an edit of the same size within one mtime tick
    assert files_record([f], cache) != before
    assert files_record([f], StatCache(cache.path)) != before


def test_touch_keeps_the_digest_and_rehashes_once(tmp_path, cache, monkeypatch):
    f = write(tmp_path / "in.bin", b"payload")
    hashed = counting(monkeypatch, "sha256_file")
    first = cache.digest(f)
    assert cache.digest(f) == first and len(hashed) == 1     # unchanged stat: not re-read
    bump_mtime(f)
    assert cache.digest(f) == first and len(hashed) == 2     # touched: read once more
    assert cache.digest(f) == first and len(hashed) == 2


def test_a_replaced_file_with_the_same_size_and_mtime_is_rehashed(tmp_path, cache, monkeypatch):
    f = write(tmp_path / "in.bin", b"AAAA")
    first = cache.digest(f)
    new = write(tmp_path / "new.bin", b"BBBB")
    st = f.stat()
    os.utime(new, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(new, f)   # same size, same mtime, another inode
    assert cache.digest(f) != first


def test_stat_cache_persists(tmp_path, cache):
    f = write(tmp_path / "in.bin", b"payload")
    digest = cache.digest(f)
    cache.save()
    again = StatCache(cache.path)
    assert again.get(f, "sha256", lambda p: pytest.fail("re-hashed a file whose stat is unchanged")) \
        == digest


def test_stat_cache_saves_only_when_something_changed(tmp_path, cache):
    cache.save()
    assert not cache.path.exists()
    cache.digest(write(tmp_path / "in.bin", b"x"))
    cache.save()
    mtime = cache.path.stat().st_mtime_ns
    os.utime(cache.path, ns=(0, 0))
    cache.save()   # clean again: nothing written
    assert cache.path.stat().st_mtime_ns == 0 != mtime


def test_stat_cache_save_merges_with_parallel_writers(tmp_path, cache):
    a, b = write(tmp_path / "a", b"a"), write(tmp_path / "b", b"b")
    one, two = StatCache(cache.path), StatCache(cache.path)   # both load an empty cache
    one.digest(a)
    two.digest(b)
    two.get(b, "code", lambda p: ["x", []])
    one.save()
    two.save()
    saved = json.loads(cache.path.read_text())
    assert set(saved["sha256"]) == {str(a), str(b)}
    assert set(saved["code"]) == {str(b)}
    assert [p.name for p in cache.path.parent.iterdir()] == ["state.json"]   # no temporary left


def test_a_damaged_stat_cache_is_an_empty_one(tmp_path):
    path = write(tmp_path / "state.json", b"{not json")
    assert StatCache(path).entries == {}
    assert StatCache(tmp_path / "absent.json").entries == {}


# ----------------------------------------------------------------------------- code

def test_module_file():
    assert module_file("tfbuild.engine.build") == REPO_PKG / "engine" / "build.py"
    assert module_file("tfbuild.engine") == REPO_PKG / "engine" / "__init__.py"
    assert module_file("tfbuild.engine.build.Options") is None
    assert module_file("tfbuild.nope") is None
    assert module_file("yaml") is None and module_file("fakes") is None


def test_code_record_of_the_freeze_stage(cache):
    record = code_record("tfbuild.stages.freeze", cache)
    for rel in ("tfbuild/stages/freeze.py", "tfbuild/stages/common.py", "tfbuild/tf/graph_io.py",
                "tfbuild/tf/session.py", "tfbuild/inputs/checkpoint.py", "tfbuild/engine/spec.py",
                "tfbuild/errors.py"):
        assert rel in record, rel
    for rel in ("tfbuild/stages/tflite.py", "tfbuild/engine/build.py",
                "tfbuild/config.py"):  # config: imported under `if TYPE_CHECKING:` only
        assert rel not in record, rel
    assert list(record) == sorted(record)
    assert all(len(d) == 16 for d in record.values())


def test_code_record_follows_from_dot_import_of_a_module(cache):
    record = code_record("tfbuild.stages.trt", cache)   # `from . import deploy`
    assert "tfbuild/stages/deploy.py" in record and "tfbuild/stages/tflite.py" not in record


def test_code_record_outside_tfbuild_is_empty(cache):
    assert code_record("fakes", cache) == {}
    assert code_record("json", cache) == {}


@pytest.fixture
def pkg(tmp_path, monkeypatch) -> Path:
    """A private copy of the tfbuild package that code_record reads instead of the real one."""
    copy = tmp_path / "src" / "tfbuild"
    shutil.copytree(REPO_PKG, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(fingerprint, "_PKG_DIR", copy)
    return copy


def edit(path: Path, change) -> None:
    old = path.read_text()
    new = change(old)
    assert new != old, f"the edit did not apply to {path.name}"
    path.write_text(new)
    bump_mtime(path)


def test_the_copy_has_the_same_record(pkg, cache, tmp_path, monkeypatch):
    assert module_file("tfbuild.stages.freeze") == pkg / "stages" / "freeze.py"
    copy = code_record("tfbuild.stages.freeze", cache)
    monkeypatch.setattr(fingerprint, "_PKG_DIR", REPO_PKG)
    assert module_file("tfbuild.stages.freeze") == REPO_PKG / "stages" / "freeze.py"
    # Keys are package-relative and digests content-only: where the package sits is not identity.
    assert code_record("tfbuild.stages.freeze", StatCache(tmp_path / "other.json")) == copy


def test_comments_docstrings_and_formatting_do_not_count(pkg, cache):
    before = code_record("tfbuild.stages.freeze", cache)
    measure = pkg / "tf" / "graph_io.py"
    edit(measure, lambda t: "# a new comment\n" + t.replace('"""Run frozen graphs', '"""Execute frozen graphs', 1))
    edit(measure, lambda t: t.replace("def node_of(name: str) -> str:",
                                      "def node_of(name: str) -> str:  # why not\n", 1))
    edit(measure, lambda t: t.replace("\n\n\ndef ", "\n\n\n\n\ndef "))
    assert code_record("tfbuild.stages.freeze", cache) == before


def test_a_function_docstring_edit_does_not_count(pkg, cache):
    before = code_record("tfbuild.stages.freeze", cache)
    edit(pkg / "tf" / "graph_io.py",
         lambda t: t.replace("Deterministic float32 input", "Seeded float32 input", 1))
    assert code_record("tfbuild.stages.freeze", cache) == before


def test_a_code_edit_changes_exactly_that_files_entry(pkg, cache):
    before = code_record("tfbuild.stages.freeze", cache)
    edit(pkg / "tf" / "graph_io.py", lambda t: t + "\nEXTRA = 1\n")
    after = code_record("tfbuild.stages.freeze", cache)
    assert after.keys() == before.keys()
    assert [k for k in after if after[k] != before[k]] == ["tfbuild/tf/graph_io.py"]


def test_an_edit_outside_the_import_closure_does_not_count(pkg, cache):
    before = code_record("tfbuild.stages.freeze", cache)
    edit(pkg / "stages" / "tflite.py", lambda t: t + "\nEXTRA = 1\n")
    edit(pkg / "engine" / "build.py", lambda t: t + "\nEXTRA = 1\n")
    assert code_record("tfbuild.stages.freeze", cache) == before


def test_type_checking_imports_are_not_followed_function_imports_are(pkg, cache):
    (pkg / "tf" / "typing_only.py").write_text("X = 1\n")
    (pkg / "tf" / "typing_attr.py").write_text("X = 1\n")
    (pkg / "tf" / "otherwise.py").write_text("X = 1\n")
    (pkg / "tf" / "lazy.py").write_text("from ..errors import StageFailed\n")
    (pkg / "tf" / "plain.py").write_text("X = 1\n")
    edit(pkg / "tf" / "graph_io.py", lambda t: t + (
        "\nimport typing\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from . import typing_only\n"
        "if typing.TYPE_CHECKING:\n"
        "    import tfbuild.tf.typing_attr\n"
        "else:\n"
        "    from tfbuild.tf import otherwise\n"
        "import tfbuild.tf.plain as plain\n"
        "\n"
        "def _later():\n"
        "    from .lazy import StageFailed\n"
        "    return StageFailed\n"))
    record = code_record("tfbuild.stages.freeze", cache)
    assert "tfbuild/tf/typing_only.py" not in record
    assert "tfbuild/tf/typing_attr.py" not in record
    assert "tfbuild/tf/otherwise.py" in record      # the else branch does run
    assert "tfbuild/tf/plain.py" in record
    assert "tfbuild/tf/lazy.py" in record           # imported inside a function


def test_relative_imports_in_a_package_init(pkg, cache):
    (pkg / "tf" / "sub").mkdir()
    (pkg / "tf" / "sub" / "__init__.py").write_text("from .leaf import X\nfrom .. import plain\n")
    (pkg / "tf" / "sub" / "leaf.py").write_text("X = 1\n")
    (pkg / "tf" / "plain.py").write_text("Y = 2\n")
    record = code_record("tfbuild.tf.sub", cache)
    assert list(record) == ["tfbuild/tf/plain.py", "tfbuild/tf/sub/__init__.py", "tfbuild/tf/sub/leaf.py"]


def test_the_stat_cache_reuses_parses(pkg, cache, monkeypatch):
    parsed = counting(monkeypatch, "_parse")
    first = code_record("tfbuild.stages.freeze", cache)
    n = len(parsed)
    assert n == len(first)
    assert code_record("tfbuild.stages.freeze", cache) == first and len(parsed) == n
    cache.save()
    assert code_record("tfbuild.stages.freeze", StatCache(cache.path)) == first and len(parsed) == n
    edit(pkg / "tf" / "session.py", lambda t: t + "\n# a comment\n")
    assert code_record("tfbuild.stages.freeze", cache) == first
    assert parsed[n:] == [pkg / "tf" / "session.py"]   # only the touched file is parsed again


# ----------------------------------------------------------------------------- tools

def test_versions_from_package_metadata():
    import pytest as pytest_module
    assert versions("pytest", "no-such-distribution-tfbuild-test") == {
        "pytest": pytest_module.__version__, "no-such-distribution-tfbuild-test": "not installed"}
    assert versions() == {}
