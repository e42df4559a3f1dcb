"""`tfbuild doctor`: one row per piece, ready with the installed version or not ready
with the command that fixes it; a target's backend and stages; never TensorFlow."""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import subprocess
import sys

import pytest

from tfbuild.cli.main import main


@pytest.fixture(autouse=True)
def wide(monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")


def doctor(capsys, project, *args):
    """(exit code, stdout, stderr, rows of report_file); the table wide enough for one line a row."""
    report = project / "doctor.json"
    code = main(["doctor", *args, f"report_file={report}"])
    out = capsys.readouterr()
    rows = {r["name"]: r for r in json.loads(report.read_text())} if report.exists() else {}
    return code, out.out, out.err, rows


@pytest.mark.parametrize("name,dist", [("onnxruntime", "onnxruntime"), ("tf2onnx", "tf2onnx"),
                                       ("s3fs", "s3fs"), ("matplotlib", "matplotlib"),
                                       ("Keras 3", "keras"), ("TensorFlow", "tensorflow")])
def test_installed_pieces_show_their_versions(project, capsys, name, dist):
    code, out, err, rows = doctor(capsys, project)
    assert code == 0 and not err
    version = importlib.metadata.version(dist)
    assert rows[name]["ready"] and rows[name]["version"] == version
    assert any(line.startswith(f"│ {name} ") and version in line for line in out.splitlines()), out


def test_report_file_is_a_list_of_rows(project, capsys):
    code, _, _, _ = doctor(capsys, project)
    data = json.loads((project / "doctor.json").read_text())
    assert code == 0 and isinstance(data, list)
    assert all(set(r) == {"name", "ready", "version", "detail", "fix"} for r in data)
    assert all(isinstance(r["ready"], bool) for r in data)
    names = {r["name"] for r in data}
    for piece in ("Python", "TensorFlow", "Keras 3", "tf_keras (Keras 2)", "TF-TRT", "tensorrt wheel",
                  "Polygraphy", "onnxruntime", "tf2onnx", "LiteRT (ai-edge-litert)", "XNNPACK",
                  "GPU (as CUDA sees it)", "NVIDIA driver", "s3fs", "gcsfs", "hydra-joblib-launcher",
                  "hydra-submitit-launcher", "hydra-ray-launcher", "hydra-optuna-sweeper",
                  "model-signing", "matplotlib", "Pillow"):
        assert piece in names
    assert all(r["fix"] for r in data if not r["ready"]), "every row not ready says how to fix it"
    assert "providers: " in next(r for r in data if r["name"] == "onnxruntime")["detail"]


def test_a_missing_piece_is_not_ready_with_its_fix(project, capsys, monkeypatch):
    real_spec, real_version = importlib.util.find_spec, importlib.metadata.version

    def find_spec(name, *a, **k):
        return None if name.split(".")[0] == "s3fs" else real_spec(name, *a, **k)

    def version(name):
        if name == "s3fs":
            raise importlib.metadata.PackageNotFoundError(name)
        return real_version(name)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setattr(importlib.metadata, "version", version)
    code, out, err, rows = doctor(capsys, project)
    assert code == 0 and not err
    assert rows["s3fs"] == {"name": "s3fs", "ready": False, "version": None,
                            "detail": "not installed (cache.url=s3://...)", "fix": "pip install 'tfbuild[remote]'"}
    assert "pip install 'tfbuild[remote]'" in out


def test_hidden_gpu_names_cuda_visible_devices(project, capsys, monkeypatch):
    from tfbuild import backends
    monkeypatch.setattr(backends, "_gpus", lambda: [("GPU-1234", "NVIDIA H100", "9.0")])
    monkeypatch.setattr(backends, "driver_version", lambda: "580.65")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    _, _, _, rows = doctor(capsys, project)
    gpu = rows["GPU (as CUDA sees it)"]
    assert not gpu["ready"] and "CUDA_VISIBLE_DEVICES" in gpu["detail"]
    assert gpu["fix"] == "unset CUDA_VISIBLE_DEVICES"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    _, _, _, rows = doctor(capsys, project)
    gpu = rows["GPU (as CUDA sees it)"]
    assert gpu["ready"] and "NVIDIA H100" in gpu["detail"] and "9.0" in gpu["detail"]
    assert rows["NVIDIA driver"]["ready"] and rows["NVIDIA driver"]["version"] == "580.65"


def test_target_says_which_backend_auto_picks_and_what_cannot_be_built(project, capsys):
    from tfbuild import backends
    code, out, err, rows = doctor(capsys, project, "target=tiny_trt")
    assert code == 0 and not err
    picked = backends.resolve("auto")
    assert rows["tiny_trt: trt.backend"]["version"] == picked
    assert f"trt.backend=auto picks {picked}" in out
    assert [n.split(": ")[1] for n in rows if n.startswith("tiny_trt: ")] == \
        ["trt.backend", "train", "placeholder", "freeze", "onnx", "trt"]
    problem = backends.tensorrt_problem() if picked == "tensorrt" else backends.tf_trt_problem()
    trt = rows["tiny_trt: trt"]
    if problem is None:
        pytest.skip("this machine can build TensorRT engines")
    assert not trt["ready"] and problem in trt["detail"] and trt["fix"]
    assert "cannot be built here" in out


def test_bad_target_is_one_line_exit_2(project, capsys):
    code, out, err, rows = doctor(capsys, project, "target=nope")
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "unknown target 'nope'" in lines[0] and not rows
    assert main(["doctor", "nonsense"]) == 2
    assert len([l for l in capsys.readouterr().err.splitlines() if l.strip()]) == 1


def test_doctor_never_imports_tensorflow(project):
    code = ("import sys; from tfbuild.cli.main import main; "
            "c = main(['doctor', 'target=tiny_trt']); "
            "print('TF', 'tensorflow' in sys.modules, c)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip().splitlines()[-1] == "TF False 0", proc.stdout + proc.stderr


def test_help_names_doctor(project, capsys):
    from tfbuild.cli.commands import usage
    assert "tfbuild doctor [target=NAME] [report_file=F]" in usage()
