"""Shared fixtures: run tfbuild in-process (TensorFlow is imported once per
pytest process) inside a temporary project directory."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


class Run:
    def __init__(self, code: int, out: str, err: str, report: dict | None):
        self.code, self.out, self.err, self.report = code, out, err, report

    def status(self) -> dict:
        """{stage: status}"""
        return {s["name"]: s["status"] for s in self.report["stages"]}

    def reasons(self) -> dict:
        return {s["name"]: s["reason"] for s in self.report["stages"]}

    def built(self) -> list:
        return [s["name"] for s in self.report["stages"] if s["status"] == "built"]


@pytest.fixture
def project(tmp_path, monkeypatch):
    """An empty project directory as cwd."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def tfbuild(project, capsys):
    """tfbuild(*args) -> Run, with the JSON report parsed."""
    from tfbuild.cli.main import main

    def run(*args: str) -> Run:
        report = project / "report.json"
        if report.exists():
            report.unlink()
        code = main([*args, f"report_file={report}", "bench.enabled=false"])
        captured = capsys.readouterr()
        data = json.loads(report.read_text()) if report.exists() else None
        return Run(code, captured.out, captured.err, data)

    return run


@pytest.fixture(scope="session")
def shared_build(tmp_path_factory):
    """A build_dir shared across tests so tiny models train once per session."""
    return tmp_path_factory.mktemp("shared-build")


USER_TARGET = """\
defaults:
  - tiny_frozen
  - _self_
train: null
checkpoint:
  path: ckpt
"""


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """Two tiny training checkpoints with different weights (ckpt20, ckpt21), built once:
    stand-ins for a user's own training output."""
    from tfbuild.cli.main import main
    root = tmp_path_factory.mktemp("trained")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        for steps in (20, 21):
            assert main(["target=tiny_frozen", f"train.steps={steps}", "bench.enabled=false"]) == 0
            shutil.copytree(Path("build/tiny_frozen/train").resolve(), root / f"ckpt{steps}")
    finally:
        os.chdir(cwd)
    return root


@pytest.fixture
def user_project(trained):
    """user_project(root, steps=20): a project in `root` with target `mine` over its own
    checkpoint `ckpt` (a copy of a trained one)."""
    def make(root: Path, steps: int = 20) -> Path:
        (root / "targets").mkdir(parents=True, exist_ok=True)
        (root / "targets/mine.yaml").write_text(USER_TARGET)
        shutil.copytree(trained / f"ckpt{steps}", root / "ckpt")
        return root
    return make


class S3Server:
    """moto's standalone S3 server on 127.0.0.1 (a real HTTP endpoint), in its own process."""

    def __init__(self):
        import socket
        import subprocess
        import sys
        import time
        import urllib.request

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                         "-p", str(self.port)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                urllib.request.urlopen(self.endpoint, timeout=1)
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("moto_server did not start")

    def bucket(self, name: str) -> str:
        """A new bucket; returns its s3:// URL."""
        import boto3
        boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                     aws_access_key_id="testing", aws_secret_access_key="testing").create_bucket(Bucket=name)
        return f"s3://{name}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture
def s3(monkeypatch):
    """A fresh S3 server; credentials and endpoint come from the standard environment."""
    server = S3Server()
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": server.endpoint}.items():
        monkeypatch.setenv(k, v)
    yield server
    server.stop()
