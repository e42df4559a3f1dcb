"""Day-to-day use: list, gc, --version, --help, and every mistake answered in one line
(exit 2, no traceback, nothing written) before any stage runs."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tfbuild.cli.main import main


def run_main(capsys, *args: str):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert lines[0].startswith("tfbuild: error: "), err
    return lines[0][len("tfbuild: error: "):]


# ----------------------------------------------------------------------------- commands

def test_version_names_the_tools(project, capsys):
    code, out, _ = run_main(capsys, "--version")
    assert code == 0
    from tfbuild import __version__
    assert out.startswith(f"tfbuild {__version__} ") and "tensorflow " in out and "hydra-core " in out


def test_list_shows_local_targets_first_then_shipped(project, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    (project / "targets").mkdir()
    (project / "targets/mine.yaml").write_text(
        "defaults:\n  - tiny_frozen\n  - _self_\ndescription: my own model\n")
    (project / "targets/broken.yaml").write_text("defaults:\n  - no_such_target\n")
    code, out, err = run_main(capsys, "list")
    assert code == 0, err
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") > 4}
    assert "my own model" in rows["mine"] and "./targets" in rows["mine"] and "freeze" in rows["mine"]
    assert "tflite" in rows["tiny_tflite"] and "shipped" in rows["tiny_tflite"]
    assert "trt" in rows["densenet_trt"]
    assert "invalid" in rows["broken"]


def test_help_starts_with_tfbuild_usage(project, capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("tfbuild: Make for TensorFlow deployment artifacts.")
    assert "tfbuild list" in out and "Examples:" in out and "== Config ==" in out


def test_help_lists_every_command_of_the_table_with_its_summary(project, capsys):
    from tfbuild.cli.commands import COMMANDS
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name, command in COMMANDS.items():
        line = next(l for l in out.splitlines() if l.strip().startswith(f"tfbuild {name}"))
        assert line.rstrip().endswith(command.summary), line


def test_main_dispatches_a_command_through_the_table(project, capsys, monkeypatch):
    from tfbuild.cli.commands import COMMANDS, Command
    seen = []
    monkeypatch.setitem(COMMANDS, "hello", Command("", "say hello", lambda args, r: seen.append(args) or 3))
    assert main(["hello", "a=1"]) == 3 and seen == [["a=1"]]


def test_run_keys_are_the_schemas_run_fields():
    import dataclasses

    from tfbuild.cli.options import RUN_KEYS
    from tfbuild.config import Config
    assert RUN_KEYS == ("build_dir", "lock_file", "report_file", "dry_run", "force", "verify", "locked",
                        "verbose", "bench", "cache", "sign", "select")
    assert set(RUN_KEYS) < {f.name for f in dataclasses.fields(Config)}


# ----------------------------------------------------------------------------- gc

@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A project where tiny_frozen was built with two freeze settings, and a sweep ran."""
    root = tmp_path_factory.mktemp("gc")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        assert main(["target=tiny_frozen", "freeze.outputs=[logits]", "bench.enabled=false"]) == 0
        assert main(["target=tiny_frozen", "bench.enabled=false"]) == 0   # the lock's and link's
    finally:
        os.chdir(cwd)
    return root


def test_gc_deletes_only_what_nothing_uses(built, tmp_path, capsys, monkeypatch):
    root = tmp_path / "p"
    shutil.copytree(built, root, symlinks=True)
    monkeypatch.chdir(root)
    freeze = sorted(Path("build/store/freeze").iterdir())
    used = Path("build/tiny_frozen/freeze").resolve()
    assert len(freeze) == 2 and used in [f.resolve() for f in freeze]
    stale = next(f for f in freeze if f.resolve() != used)
    (Path("build/tmp") / "freeze-killed").mkdir(parents=True)        # a killed run's scratch
    (Path("build/tmp/freeze-killed") / "frozen.pb").write_bytes(b"x" * 1000)
    orphan_lock = Path("build/.tfbuild") / ("a" * 24 + ".lock")
    orphan_lock.write_text("")
    for stamp in ("2026-01-01_00-00-00", "2026-01-02_00-00-00", "2026-01-03_00-00-00"):
        (Path("build/sweeps") / stamp / "0").mkdir(parents=True)
    for outputs in ("[logits]", "[probs]"):   # the stat cache learns both freeze entries here
        assert main(["target=tiny_frozen", f"freeze.outputs={outputs}", "dry_run=true"]) == 0

    code, out, err = run_main(capsys, "gc", "dry_run=true", "keep_sweeps=1")
    assert code == 0, err
    assert f"would delete {stale}" in out and "would free" in out
    assert stale.exists()                                             # a dry run deletes nothing

    code, out, err = run_main(capsys, "gc", "keep_sweeps=1")
    assert code == 0, err
    assert not stale.exists() and used.exists()
    assert not Path("build/tmp/freeze-killed").exists() and not orphan_lock.exists()
    assert sorted(p.name for p in Path("build/sweeps").iterdir()) == ["2026-01-03_00-00-00"]
    assert "gc: freed" in out
    state = Path("build/.tfbuild/state.json").read_text()
    assert str(stale.resolve()) not in state and str(used) in state   # the stat cache forgot it only
    code = main(["target=tiny_frozen", "bench.enabled=false", "dry_run=true"])
    assert code == 0 and "stale" not in capsys.readouterr().out    # everything in use survived


def test_gc_waits_for_no_running_build(built, tmp_path, capsys, monkeypatch):
    from tfbuild.engine.store import BUILD_LOCK, Store
    monkeypatch.chdir(built)
    with Store(Path("build")).lock(BUILD_LOCK, shared=True):       # a build is running
        code, _, err = run_main(capsys, "gc")
    assert code == 2 and "a build is running" in one_error_line(err)


def test_gc_bad_arguments(project, capsys):
    code, _, err = run_main(capsys, "gc", "keep=3")
    assert code == 2 and "gc takes build_dir=" in one_error_line(err)


# ----------------------------------------------------------------------------- mistakes

def _calibration(project: Path) -> None:
    np.save(project / "wrong_shape.npy", np.zeros((4, 16, 16, 3), np.float32))
    np.save(project / "strings.npy", np.array(["a", "b"]))
    np.save(project / "bools.npy", np.zeros((2, 32, 32, 3), complex))
    np.save(project / "zero.npy", np.zeros((0, 32, 32, 3), np.float32))
    (project / "images").mkdir()
    (project / "images/a.png").write_bytes(b"not a png at all")
    (project / "afile").write_text("x")
    (project / "adir").mkdir()
    (project / "targets").mkdir()
    (project / "targets/bad_yaml.yaml").write_text("freeze:\n  outputs: [probs\nx: 1\n")
    (project / "notes.txt").write_text("just some text\n")
    (project / "targets/linked.yaml").symlink_to(project / "notes.txt")
    (project / "user_builders.py").write_text("NUM_CLASSES = 10\n")
    (project / "user_broken.py").write_text("import no_such_package_here\n")


MISTAKES = [
    (["build_dir=afile"], "build_dir=afile is a file"),
    (["build_dir=/proc/x/build"], "build_dir=/proc/x/build: cannot write"),
    (["build_dir=${oc.env:TFBUILD_TEST_UNSET}"], "TFBUILD_TEST_UNSET"),
    (["lock_file=adir"], "lock_file=adir is a directory"),
    (["train.batch_size=0"], "train.batch_size=0 is out of range"),
    (["bench.runs=0"], "bench.runs=0 is out of range"),
    (["freeze.tolerance=-1"], "freeze.tolerance=-1.0 is out of range"),
    (["+freeze.outptus=[logits]"], "unknown key freeze.outptus: did you mean freeze.outputs?"),
    (["+freeze.nosuch=1"], "unknown key freeze.nosuch"),
    (["+clean=true"], "unknown key clean"),
    (["+placeholder.inputs.0.colour=1"], "unknown key placeholder.inputs[0].colour"),
    (["placeholder.inputs=[{name:input,shape:[null,32,32,1]}]"], "has 1 channel(s)"),
    (["model._target_=nosuch.module.build"], "no module 'nosuch.module' is importable"),
    # found by the placeholder stage's pre-flight, before train runs
    (["model._target_=user_builders.NUM_CLASSES"], "is not callable (int 10)"),
    (["model._target_=user_builders.build"], "module user_builders has no 'build'"),
    (["model._target_=user_broken.build"], "importing user_broken failed: ModuleNotFoundError"),
    (["tflite.precision=INT8", "tflite.calibration.path=wrong_shape.npy"], "expected [N, 32, 32, 3]"),
    (["tflite.precision=INT8", "tflite.calibration.path=strings.npy"], "has dtype <U1"),
    (["tflite.precision=INT8", "tflite.calibration.path=bools.npy"], "has dtype complex"),
    (["tflite.precision=INT8", "tflite.calibration.path=zero.npy"], "holds 0 samples"),
    (["tflite.precision=INT8", "tflite.calibration.path=images"], "is not a PNG, JPEG, BMP or GIF"),
    (["tflite.calibration.path=zero.npy", "tflite.calibration.random=true"], "set only one of"),
    (["tflite.precision=fp64"], "tflite.precision='fp64' is unknown"),
    (["target=bad_yaml"], "targets/bad_yaml.yaml:3:2: not valid YAML"),
    (["target=linked"], "is not a YAML mapping of target keys"),
    (["target=:smile:"], "target name ':smile:'"),
]


@pytest.mark.parametrize("args, expect", MISTAKES, ids=[" ".join(a) for a, _ in MISTAKES])
def test_every_mistake_is_one_line_exit_2_and_writes_nothing(project, capsys, args, expect):
    _calibration(project)
    before = sorted(p.name for p in project.iterdir())
    target = [] if any(a.startswith("target=") for a in args) else ["target=tiny_tflite"]
    code, out, err = run_main(capsys, *target, *args, "report_file=adir/r.json")
    assert code == 2, err + out
    assert expect in one_error_line(err)
    assert "Traceback" not in out + err
    assert sorted(p.name for p in project.iterdir()) == before   # no build/, lock, outputs/


def test_report_file_that_is_a_directory(project, capsys):
    (project / "adir").mkdir()
    code, _, err = run_main(capsys, "target=tiny_tflite", "report_file=adir", "dry_run=true")
    assert code == 2 and "report_file=adir is a directory" in one_error_line(err)
    assert not Path("build").exists()


def test_a_builder_that_returns_no_tensor(project, capsys, user_project):
    user_project(project)
    code, _, err = run_main(capsys, "target=mine", "model._target_=builtins.print", "bench.enabled=false")
    assert code == 2
    assert "returned NoneType, not a logits tensor" in err.strip().splitlines()[-1]
    assert "Traceback" not in err
    assert not list(Path("build/store").glob("*/*")) if Path("build/store").exists() else True


def test_dry_run_report_says_fresh_and_planned(project, tfbuild):
    assert tfbuild("target=tiny_frozen").code == 0
    plan = tfbuild("target=tiny_frozen", "freeze.outputs=[logits]", "dry_run=true")
    assert plan.status() == {"train": "fresh", "placeholder": "fresh", "freeze": "planned"}


def test_tensorflow_start_up_lines_do_not_reach_the_user(project):
    proc = subprocess.run([sys.executable, "-m", "tfbuild", "target=tiny_frozen", "bench.enabled=false"],
                          capture_output=True, text=True, cwd=project, timeout=600)
    assert proc.returncode == 0, proc.stderr
    for noise in ("absl::InitializeLog", "oneDNN", "cudart_stub", "cpu_feature_guard"):
        assert noise not in proc.stderr + proc.stdout
    assert "\n\n\n" not in proc.stdout                      # no spinner residue off a terminal
    assert all(len(line) <= 80 for line in proc.stdout.splitlines()[:-1]), proc.stdout  # 80 columns


LONG_TRAINING = ("target=tiny_frozen", "train.steps=100000")
LONG_CALIBRATION = ("target=tiny_tflite", "tflite.precision=INT8", "tflite.calibration.path=null",
                    "tflite.calibration.random=true", "tflite.calibration.num_samples=3000")


@pytest.mark.parametrize("args, stage, after, group", [
    (LONG_TRAINING, "train", 0.5, False),       # TensorFlow's training loop just started
    (LONG_TRAINING, "train", 3.0, False),       # ... well under way
    (LONG_TRAINING, "train", 3.0, True),        # Ctrl-C in a terminal: the whole process group
    (LONG_CALIBRATION, "tflite", 1.0, True),    # TFLite's converter calibrating INT8
], ids=["training-start", "training", "training-group", "converter-group"])
def test_interrupt_prints_one_line_exits_130_and_leaves_no_scratch(project, args, stage, after, group):
    proc = subprocess.Popen([sys.executable, "-m", "tfbuild", *args, "bench.enabled=false"], cwd=project,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=group)
    deadline = time.time() + 300
    while not list((project / "build/tmp").glob(f"{stage}-*")) and time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    time.sleep(after)
    assert proc.poll() is None, f"the {stage} stage ended before the interrupt"
    os.killpg(proc.pid, signal.SIGINT) if group else proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    said = "\n".join(line for line in err.splitlines() if not line.startswith("warning: "))
    assert one_error_line(said).startswith("interrupted")
    assert "Traceback" not in out + err and "KeyboardInterrupt" not in out + err
    assert not list((project / "build/tmp").glob("*"))
    assert not list((project / "build/store").glob(f"{stage}/*"))
    assert not (project / "tfbuild.lock").exists() or stage not in (project / "tfbuild.lock").read_text()


def test_unknown_node_names_are_found_in_the_users_graph_before_anything_runs(project, capsys):
    import tensorflow as tf
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        w = tf.compat.v1.get_variable("w", [4, 2], initializer=tf.compat.v1.zeros_initializer())
        tf.nn.softmax(tf.matmul(x, w), name="out")
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            tf.compat.v1.train.Saver().save(sess, str(project / "ck" / "model.ckpt-1"))
    (project / "targets").mkdir()
    (project / "targets/user.yaml").write_text("checkpoint: {path: ck}\nfreeze: {outputs: [out]}\n")
    for args, expect in ((["freeze.outputs=[outt]"], "freeze.outputs: no node 'outt' in the graph; closest: out"),
                         (["+freeze.constants.xx=1"], "freeze.constants: no node 'xx' in the graph")):
        code, out, err = run_main(capsys, "target=user", *args)
        assert code == 2 and expect in one_error_line(err)
        assert not (project / "build/store").exists() or not list((project / "build/store").glob("*/*"))
    code, _, err = run_main(capsys, "target=user", "bench.enabled=false")
    assert code == 0, err


def test_two_sweeps_started_together_keep_their_own_folders(project):
    cmd = [sys.executable, "-m", "tfbuild", "-m", "target=tiny_frozen", "dry_run=true", "train.steps=1,2"]
    procs = [subprocess.Popen(cmd, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    folders = sorted((project / "build/sweeps").iterdir())
    assert len(folders) == 2
    for folder in folders:
        assert len(json.loads((folder / "summary.json").read_text())["jobs"]) == 2


def test_inspect_finds_the_built_graph_after_a_failed_freeze(project, capsys):
    assert main(["target=tiny_frozen", "freeze.outputs=[prob]", "bench.enabled=false"]) == 2  # freeze: no such node
    capsys.readouterr()
    assert not (project / "build/tiny_frozen").exists()       # no links after a failure
    assert main(["inspect", "target=tiny_frozen"]) == 0
    out = capsys.readouterr().out
    assert "TF1 checkpoint" in out and "likely outputs (for freeze.outputs): probs" in out


def test_locked_fails_in_one_line_when_the_lock_file_is_out_of_date(tfbuild, project):
    assert tfbuild("target=tiny_frozen", "dry_run=true", "locked=true").code == 1   # no lock file yet
    assert tfbuild("target=tiny_frozen").code == 0
    assert tfbuild("target=tiny_frozen", "dry_run=true", "locked=true").code == 0
    run = tfbuild("target=tiny_frozen", "freeze.tolerance=0.001", "locked=true")
    assert run.code == 1 and run.err.strip() == (
        "tfbuild: error: tfbuild.lock is out of date for tiny_frozen: freeze: freeze.tolerance "
        "changed: 0.0001 → 0.001: build it (without locked=true) and commit the lock file")


@pytest.mark.parametrize("drop", ["tflite=null", "~tflite", "drop=[tflite]"])
def test_a_stage_is_dropped_from_the_command_line(tfbuild, drop):
    run = tfbuild("target=tiny_tflite", drop, "dry_run=true")
    assert run.code == 0, run.err
    assert [s["name"] for s in run.report["stages"]] == ["train", "placeholder", "freeze"]


def test_dropping_what_is_not_a_stage_is_one_line_exit_2(tfbuild):
    run = tfbuild("target=tiny_tflite", "drop=[bench]", "dry_run=true")
    assert run.code == 2 and "drop=bench: not a stage section" in run.err


@pytest.mark.parametrize("damage", ["truncated data", "foreign index"])
def test_a_damaged_checkpoint_is_one_line_and_leaves_no_build_dir(project, capsys, user_project, damage):
    user_project(project)
    if damage == "truncated data":
        (data,) = (project / "ckpt").glob("*.data-*")
        data.write_bytes(data.read_bytes()[:1000])
    else:
        (index,) = (project / "ckpt").glob("*.index")
        index.write_text("not a checkpoint index\n")
    code, out, err = run_main(capsys, "target=mine", "bench.enabled=false")
    assert code == 2 and "Traceback" not in out + err
    assert "ckpt/model.ckpt" in one_error_line(err)
    assert not (project / "build").exists() and not (project / "tfbuild.lock").exists()
