"""Stages are plain functions of (inputs, settings, out dir, logger): usable from
Python without the CLI or the engine, with real TensorFlow."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from rich.console import Console

from tfbuild.config import FreezeCfg, TfliteCfg
from tfbuild.engine.spec import Artifact
from tfbuild.engine.store import Store
from tfbuild.report import Reporter
from tfbuild.stages import REGISTRY, freeze, tflite


def artifact(run, stage: str) -> Artifact:
    s = next(s for s in run.report["stages"] if s["name"] == stage)
    path = Path(s["artifact"])
    path = path if path.is_dir() else path.parent
    return Artifact(path, Store(path.parents[2]).manifest(stage, s["fingerprint"])["metadata"])


def test_stages_run_from_python(project, tfbuild, shared_build, tmp_path):
    built = tfbuild("target=tiny_frozen", f"build_dir={shared_build}", f"lock_file={shared_build}/t.lock")
    assert built.code == 0, built.err
    log = Reporter(Console(file=io.StringIO()))

    out = tmp_path / "freeze"
    out.mkdir()
    meta = freeze.run({"placeholder": artifact(built, "placeholder")},
                      freeze.Settings(FreezeCfg(outputs=["logits"])), out, log)
    assert (out / "frozen.pb").is_file() and meta["parity_max_abs_diff"] == 0.0
    assert [o["name"] for o in meta["outputs"]] == ["logits"]

    out = tmp_path / "tflite"
    out.mkdir()
    meta = tflite.run({"freeze": artifact(built, "freeze")},
                      tflite.Settings(TfliteCfg(batch_size=2)), out, log)
    assert meta["batch_size"] == 2 and meta["inputs"][0]["shape"] == [2, 32, 32, 3]
    assert meta["parity_max_abs_diff"] < 1e-4
    assert np.frombuffer((out / "model.tflite").read_bytes()[4:8], "S4")[0] == b"TFL3"


def test_registry_declares_each_stage_once_in_build_order():
    assert REGISTRY.names() == ["train", "placeholder", "freeze", "onnx", "trt", "tflite"]
    for spec in REGISTRY:
        assert spec.module == f"tfbuild.stages.{spec.name}"


def test_paths_are_not_settings_anywhere_in_a_stage():
    """checkpoint.path and calibration.path count by content (inputs), never as text."""
    from tfbuild.config import CalibrationCfg
    from tfbuild.engine.fingerprint import settings_record
    s = tflite.Settings(TfliteCfg(precision="INT8", calibration=CalibrationCfg(path="/abs/cal.npy")))
    record = settings_record(s)
    assert "tflite.calibration.path" not in record and record["tflite.precision"] == "INT8"
    assert "checkpoint" not in settings_record(freeze.Settings(FreezeCfg(outputs=["p"]), "/abs/ckpt"))
