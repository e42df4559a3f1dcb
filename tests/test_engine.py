"""The resolver's staleness matrix, the lock file, and bad requests (issue: tfbuild core).

Runs real TensorFlow on the tiny DenseNet. A user checkpoint (a copy of a
trained tiny model) stands in for the user's own training output.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tfbuild.engine import lockfile

def store_dirs(stage: str) -> set:
    root = Path("build/store") / stage
    return set(root.iterdir()) if root.is_dir() else set()


@pytest.fixture
def mine(project, user_project):
    return user_project(project)


def test_staleness_matrix(mine, tfbuild, trained):
    first = tfbuild("target=mine")
    assert first.code == 0, first.err
    assert first.status() == {"placeholder": "built", "freeze": "built"}
    assert first.reasons()["freeze"] == "not built yet"

    again = tfbuild("target=mine")
    assert again.status() == {"placeholder": "fresh", "freeze": "fresh"}
    lock_before = Path("tfbuild.lock").read_text()

    for f in Path("ckpt").iterdir():  # touch: new mtime, same content
        os.utime(f, (f.stat().st_atime + 10, f.stat().st_mtime + 10))
    touched = tfbuild("target=mine")
    assert touched.status() == {"placeholder": "fresh", "freeze": "fresh"}
    assert Path("tfbuild.lock").read_text() == lock_before  # nothing changed, nothing rewritten

    changed = tfbuild("target=mine", "freeze.outputs=[logits]")
    assert changed.status() == {"placeholder": "fresh", "freeze": "built"}
    assert "freeze.outputs changed: [probs] → [logits]" in changed.reasons()["freeze"]

    shutil.rmtree("ckpt")
    shutil.copytree(trained / "ckpt21", "ckpt")  # same names, other weights
    new_ckpt = tfbuild("target=mine", "freeze.outputs=[logits]")
    assert new_ckpt.status() == {"placeholder": "built", "freeze": "built"}
    assert "input TF1 checkpoint content changed" in new_ckpt.reasons()["placeholder"]
    assert "input placeholder artifact changed" in new_ckpt.reasons()["freeze"]


def test_damaged_artifact_is_rebuilt(mine, tfbuild):
    assert tfbuild("target=mine").code == 0
    frozen = Path("build/mine/freeze/frozen.pb").resolve()
    frozen.unlink()
    missing = tfbuild("target=mine")
    assert missing.status() == {"placeholder": "fresh", "freeze": "built"}
    assert missing.reasons()["freeze"] == "output frozen.pb missing"

    good = frozen.read_bytes()
    frozen.write_bytes(good[:-10] + b"0123456789")  # same size, other content
    corrupt = tfbuild("target=mine")
    assert corrupt.status() == {"placeholder": "fresh", "freeze": "built"}
    assert "altered" in corrupt.reasons()["freeze"]
    assert frozen.read_bytes() == good  # deterministic rebuild


def test_force_and_dry_run(mine, tfbuild):
    assert tfbuild("target=mine").code == 0
    forced = tfbuild("target=mine", "force=[freeze]")
    assert forced.status() == {"placeholder": "fresh", "freeze": "built"}
    assert forced.reasons()["freeze"] == "forced"
    everything = tfbuild("target=mine", "force=true")
    assert everything.built() == ["placeholder", "freeze"]

    before = store_dirs("freeze")
    plan = tfbuild("target=mine", "freeze.outputs=[logits]", "dry_run=true")
    assert plan.code == 0
    assert plan.status() == {"placeholder": "fresh", "freeze": "planned"}
    assert "freeze.outputs changed" in plan.out and "stale" in plan.out
    assert store_dirs("freeze") == before  # built nothing


def test_shared_artifacts_across_targets(project, tfbuild):
    first = tfbuild("target=tiny_frozen")
    assert first.built() == ["train", "placeholder", "freeze"]
    other = tfbuild("target=tiny_tflite")
    assert other.status() == {"train": "fresh", "placeholder": "fresh", "freeze": "fresh",
                              "tflite": "built"}
    assert Path("build/tiny_tflite/tflite/model.tflite").is_file()
    assert Path("build/tiny_frozen/freeze").resolve() == Path("build/tiny_tflite/freeze").resolve()


def test_lock_file_round_trip(project, tfbuild):
    assert tfbuild("target=tiny_frozen").code == 0
    text = Path("tfbuild.lock").read_text()
    data = lockfile.read(Path("tfbuild.lock"))
    assert lockfile.dump(data) == text
    entry = data["tiny_frozen"]["stages"]["freeze"]
    assert set(entry) == {"fingerprint", "settings", "inputs", "outputs", "code", "env"}
    assert entry["env"]["tensorflow"]
    assert list(entry["outputs"]) == ["frozen.pb"]
    assert text.startswith("schema: 2\n")


def test_verify_rebuilds_and_compares(project, tfbuild):
    assert tfbuild("target=tiny_frozen").code == 0
    ok = tfbuild("target=tiny_frozen", "verify=true")
    assert ok.code == 0, ok.out
    assert all(s["status"] == "built" for s in ok.report["stages"])
    text = Path("tfbuild.lock").read_text()
    digest = lockfile.read(Path("tfbuild.lock"))["tiny_frozen"]["stages"]["freeze"]["outputs"]["frozen.pb"]
    Path("tfbuild.lock").write_text(text.replace(digest, "0" * 64))
    bad = tfbuild("target=tiny_frozen", "verify=true")
    assert bad.code == 1
    assert bad.status()["freeze"] == "failed"
    assert "differs from the lock file: frozen.pb" in bad.reasons()["freeze"]


def test_noop_does_not_import_tensorflow(project, tfbuild):
    assert tfbuild("target=tiny_frozen").code == 0
    script = textwrap.dedent("""
        import sys
        from tfbuild.cli.main import main
        code = main(["target=tiny_frozen", "bench.enabled=false"])
        assert code == 0, code
        assert "tensorflow" not in sys.modules, "no-op imported tensorflow"
        print("NOOP-OK")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=project)
    assert "NOOP-OK" in out.stdout, out.stderr
    assert "fresh" in out.stdout


@pytest.mark.parametrize("args, expect", [
    (["target=no_such"], "unknown target 'no_such'"),
    (["target=tiny_frozn"], "did you mean tiny_frozen"),
    (["target=../x"], "not a plain file name"),
    (["target=tiny_frozen", "freeze.outptus=[probs]"], "unknown key freeze.outptus: did you mean freeze.outputs?"),
    (["target=tiny_frozen", "train.steps=many"], "could not be converted to Integer"),
    (["target=tiny_frozen", "train=null", "checkpoint.path=missing/model.ckpt-1"], "checkpoint not found: missing/model.ckpt-1 does not exist"),
    (["target=tiny_frozen", "train=null", "checkpoint.path=emptydir"], "none of the formats tfbuild reads"),
    (["target=tiny_frozen", "force=[frezze]"], "force names unknown stage 'frezze'"),
    (["target=tiny_tflite", "tflite.precision=FP8"], "tflite.precision='FP8' is unknown"),
])
def test_bad_requests(project, tfbuild, args, expect):
    (project / "emptydir").mkdir()
    run = tfbuild(*args)
    assert run.code == 2
    errors = [line for line in run.err.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("tfbuild: error:"), run.err
    assert expect in run.err
    assert "Traceback" not in run.err + run.out
    assert not Path("build").exists() and not Path("tfbuild.lock").exists()
    assert not Path("outputs").exists() and not Path("multirun").exists()
