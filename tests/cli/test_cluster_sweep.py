"""Sweeps through a cluster launcher: submitit's local executor runs each job in its own
process, as submitit_slurm does on a cluster node; the job builds there, upstream stages
are shared through the build_dir, and the table appears where the sweep was started.

Real TensorFlow on the tiny target. Each sweep is the real command in its own process,
as a user starts it: submitit's executor and job processes share the test process's
stdio otherwise, and a job's end can close pytest's capture streams.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

pytest.importorskip("hydra_plugins.hydra_submitit_launcher")

# timeout_min: a stuck job is ended by submitit itself, not by CI's time limit.
SUBMITIT = ("-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5",
            "hydra.launcher.cpus_per_task=1")


class Run:
    def __init__(self, proc: subprocess.CompletedProcess):
        self.code, self.out, self.err = proc.returncode, proc.stdout, proc.stderr


@pytest.fixture
def tfbuild(project):
    """tfbuild(*args) -> Run: the console command in a fresh process, in the project dir."""
    def run(*args: str) -> Run:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "COLUMNS": "80"}
        return Run(subprocess.run([sys.executable, "-m", "tfbuild", *args, "bench.enabled=false"],
                                  cwd=project, env=env, capture_output=True, text=True, timeout=600))
    return run


def sweep_dir() -> Path:
    (folder,) = Path("build/sweeps").iterdir()
    return folder


def jobs() -> list:
    return json.loads((sweep_dir() / "summary.json").read_text())["jobs"]


def job_logs() -> str:
    return "".join(p.read_text() for p in (sweep_dir() / ".submitit").glob("*/*_log.out"))


def test_submitit_jobs_share_upstream_stages_and_the_table_shows_here(project, tfbuild):
    run = tfbuild(*SUBMITIT, "target=tiny_tflite", "tflite.precision=FP32,FP16")
    assert run.code == 0, run.err
    built = [stage for job in jobs() for stage in job["built"].split(",") if stage]
    # Both jobs need train/placeholder/freeze; the store's locks let only one build each.
    assert sorted(built) == ["freeze", "placeholder", "tflite", "tflite", "train"]
    assert [(j["precision"], j["status"]) for j in jobs()] == [("FP32", "ok"), ("FP16", "ok")]
    assert "sweep: 2 jobs" in run.out and "summary.csv" in run.out
    # The jobs ran in submitit's processes: their own lines are in its logs, not here.
    logs = job_logs()
    assert "job 0 (tflite.precision=FP32): ok" in logs and "job 1 (tflite.precision=FP16): ok" in logs
    assert "job 0 (" not in run.out


def test_submitit_sweep_exits_with_the_worst_job_code(project, tfbuild):
    run = tfbuild(*SUBMITIT, "target=tiny_tflite", "tflite.precision=INT8", "tflite.tolerance=0.5,0")
    assert run.code == 1  # an INT8 model cannot hold parity 0: that job fails, the other builds
    assert [j["status"] for j in jobs()] == ["ok", "failed"]
    assert "tflite.tolerance=0" in jobs()[1]["error"]


def kill_the_job_left_running(sweeps: Path, stop: threading.Event) -> None:
    """When one job has saved its result, SIGKILL the other (as an out-of-memory killer
    or a cluster's time limit would)."""
    while not stop.wait(0.2):
        if not any(sweeps.glob("*/*/result.json")):
            continue
        pids = subprocess.run(["pgrep", "-f", f"submitit.core._submit {sweeps.resolve()}/"],
                              capture_output=True, text=True).stdout.split()
        if len(pids) == 1:
            os.kill(int(pids[0]), signal.SIGKILL)
            return


def test_a_killed_job_leaves_the_table_of_the_others_and_exit_1(project, tfbuild):
    stop = threading.Event()
    killer = threading.Thread(target=kill_the_job_left_running, args=(Path("build/sweeps"), stop))
    killer.start()
    try:
        run = tfbuild(*SUBMITIT, "target=tiny_frozen", "train.steps=1,100000")
    finally:
        stop.set()
        killer.join()
    assert run.code == 1, run.err
    assert [(j["job"], j["status"]) for j in jobs()] == [("0", "ok")]
    assert "sweep: 1 jobs" in run.out
    error = [line for line in run.err.splitlines() if line.startswith("tfbuild: error")]
    assert len(error) == 1 and error[0].endswith("still running): 1"), run.err
    assert "UncompletedJobError" in error[0] and "Traceback" not in run.err


def test_a_ray_sweep_builds_shared_stages_once_and_the_table_shows_here(project, tfbuild):
    pytest.importorskip("hydra_plugins.hydra_ray_launcher",
                        reason="the `ray` extra is not installed: hydra-ray-launcher pins cloudpickle<3, "
                               "which joblib >= 1.6 (the test extra's launcher) refuses")
    run = tfbuild("-m", "hydra/launcher=ray", "+hydra.launcher.ray.init.num_cpus=2",
                  "target=tiny_tflite", "tflite.precision=FP32,INT8")
    assert run.code == 0, run.err
    built = [stage for job in jobs() for stage in job["built"].split(",") if stage]
    assert sorted(built) == ["freeze", "placeholder", "tflite", "tflite", "train"]
    assert "sweep: 2 jobs" in run.out and [j["status"] for j in jobs()] == ["ok", "ok"]
