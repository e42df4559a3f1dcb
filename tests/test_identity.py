"""An artifact's identity survives a clone: content, settings, code and tool
versions, never where the project sits (issue: one registry of pure stages).

End to end with real TensorFlow on the tiny DenseNet; the code-identity checks
run the resolver on a copy of the package and build nothing.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tfbuild.engine import fingerprint
from tfbuild.engine.lockfile import read as read_lock
from tfbuild.stages import REGISTRY

def clone(src: Path, dst: Path, *, with_build: bool) -> Path:
    """What `git clone` (or a copy with the cache) of the project gives."""
    shutil.copytree(src, dst, symlinks=True,
                    ignore=None if with_build else shutil.ignore_patterns("build"))
    return dst


def test_clone_elsewhere_verifies_and_reuses_its_cache(tmp_path, user_project, tfbuild, monkeypatch):
    a = user_project(tmp_path / "a")
    monkeypatch.chdir(a)
    assert tfbuild("target=mine").code == 0
    lock = (a / "tfbuild.lock").read_text()
    assert str(tmp_path) not in lock  # no absolute path in the lock file

    b = clone(a, tmp_path / "elsewhere" / "b", with_build=False)
    monkeypatch.chdir(b)
    verified = tfbuild("target=mine", "verify=true")
    assert verified.code == 0, verified.out + verified.err
    assert set(verified.status().values()) == {"built"}
    changed = tfbuild("target=mine", "verify=true", "freeze.tolerance=0.001")
    assert changed.code == 1
    assert "freeze.tolerance changed: 0.0001 → 0.001" in changed.reasons()["freeze"]

    c = clone(a, tmp_path / "c", with_build=True)
    monkeypatch.chdir(c)
    again = tfbuild("target=mine")
    assert again.status() == {"placeholder": "fresh", "freeze": "fresh"}, again.reasons()
    assert (c / "tfbuild.lock").read_text() == lock


def test_moved_checkpoint_rebuilds_nothing(tmp_path, user_project, tfbuild, monkeypatch):
    a = user_project(tmp_path / "a")
    monkeypatch.chdir(a)
    assert tfbuild("target=mine").code == 0
    Path("runs/exp3").mkdir(parents=True)
    shutil.move("ckpt", "runs/exp3/ckpt")
    moved = tfbuild("target=mine", "checkpoint.path=runs/exp3/ckpt")
    assert moved.status() == {"placeholder": "fresh", "freeze": "fresh"}, moved.reasons()


def test_clone_reads_its_own_checkpoint_not_the_absolute_state_path(tmp_path, user_project, tfbuild,
                                                                    monkeypatch):
    """A `checkpoint` state file written by tf.train.Saver names absolute paths."""
    a = user_project(tmp_path / "a")
    (a / "ckpt/checkpoint").write_text(
        f'model_checkpoint_path: "{a / "ckpt/model.ckpt"}"\n'
        f'all_model_checkpoint_paths: "{a / "ckpt/model.ckpt"}"\n')
    b = user_project(tmp_path / "b", steps=21)  # other weights, same names
    shutil.copy(a / "ckpt/checkpoint", b / "ckpt/checkpoint")  # still names a/ckpt
    monkeypatch.chdir(a)
    built_a = tfbuild("target=mine")
    monkeypatch.chdir(b)
    built_b = tfbuild("target=mine")
    assert built_b.code == 0
    # b's weights differ, so its frozen graph must too: it read b/ckpt, not a/ckpt.
    fp = {r.report["stages"][-1]["fingerprint"] for r in (built_a, built_b)}
    assert len(fp) == 2
    digests = [read_lock(p / "tfbuild.lock")["mine"]["stages"]["placeholder"]["inputs"]["TF1 checkpoint"]
               for p in (a, b)]
    assert digests[0] != digests[1]
    assert set(digests[0]) == {"model.ckpt.index", "model.ckpt.data-00000-of-00001"}


# ----------------------------------------------------------------------------- code identity

def closures() -> dict:
    cache = fingerprint.StatCache(Path(os.devnull))
    return {spec.name: set(fingerprint.code_record(spec.module, cache)) for spec in REGISTRY}


@pytest.fixture
def package_copy(tmp_path, monkeypatch):
    """A copy of the tfbuild package that code identity reads instead of the real one."""
    copy = tmp_path / "pkg" / "tfbuild"
    shutil.copytree(Path(fingerprint.__file__).resolve().parents[1], copy,
                    ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(fingerprint, "_PKG_DIR", copy)
    return copy


def plan(tfbuild, build_dir: Path) -> dict:
    run = tfbuild("target=tiny_tflite", f"build_dir={build_dir}", f"lock_file={build_dir}/t.lock",
                  "dry_run=true")
    assert run.code == 0, run.err
    return run.reasons()


def test_editing_a_module_makes_exactly_its_stages_stale(project, tfbuild, shared_build, package_copy):
    built = tfbuild("target=tiny_tflite", f"build_dir={shared_build}",
                    f"lock_file={shared_build}/t.lock")
    assert built.code == 0, built.err
    assert set(plan(tfbuild, shared_build).values()) == {"up to date"}
    users = closures()
    modules = sorted(set().union(*users.values()))
    assert "tfbuild/tf/session.py" in users["freeze"] and "tfbuild/stages/deploy.py" in users["tflite"]
    for rel in modules:
        path = package_copy.parent / rel
        original = path.read_text()
        try:
            path.write_text(original + "\n# a comment\n")
            assert set(plan(tfbuild, shared_build).values()) == {"up to date"}, rel
            path.write_text(original + "\n_EDITED = 1\n")
            reasons = plan(tfbuild, shared_build)
        finally:
            path.write_text(original)
        named = {stage for stage, why in reasons.items() if f"code changed: {rel}" in why}
        expected = {stage for stage, mods in users.items() if rel in mods and stage in reasons}
        assert named == expected, (rel, reasons)


IMPORT_TRACE = textwrap.dedent("""
    import builtins, importlib.util, json, sys
    edges = set()
    real = builtins.__import__

    def traced(name, globals=None, locals=None, fromlist=(), level=0):
        module = real(name, globals, locals, fromlist, level)
        importer = (globals or {}).get("__name__", "")
        if importer.startswith("tfbuild"):
            pkg = (globals or {}).get("__package__") or importer.rpartition(".")[0]
            full = importlib.util.resolve_name("." * level + name, pkg) if level else name
            # `from pkg import mod` uses mod, not pkg's __init__ (which code identity leaves out).
            subs = [f"{full}.{f}" if f"{full}.{f}" in sys.modules else full for f in fromlist or ()]
            for target in subs or [full]:
                if target.startswith("tfbuild"):
                    edges.add((importer, target))
        return module

    builtins.__import__ = traced
    from tfbuild.cli.main import main
    code = main(["target=tiny_tflite", "force=true", "bench.enabled=false"])
    print("EDGES=" + json.dumps(sorted(edges)))
    sys.exit(code)
""")


def test_code_identity_covers_every_module_a_stage_imports_at_run_time(project):
    """Run the chain with every import traced; each stage's run-time import closure
    must be inside its code identity (the static scan must miss nothing)."""
    proc = subprocess.run([sys.executable, "-c", IMPORT_TRACE], capture_output=True, text=True,
                          cwd=project, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(l for l in proc.stdout.splitlines() if l.startswith("EDGES="))
    edges = json.loads(line[len("EDGES="):])
    static = closures()
    for spec in REGISTRY:
        if spec.name == "trt":
            continue  # not in tiny_tflite
        seen, todo = set(), [spec.module]
        while todo:
            module = todo.pop()
            path = fingerprint.module_file(module)
            rel = path.relative_to(fingerprint._PKG_DIR.parent).as_posix() if path else None
            if rel is None or rel in seen:
                continue
            seen.add(rel)
            todo += [target for importer, target in edges if importer == module]
        missing = seen - static[spec.name]
        assert not missing, f"{spec.name}: code identity misses {sorted(missing)}"
        assert len(seen) > 3, (spec.name, seen)
