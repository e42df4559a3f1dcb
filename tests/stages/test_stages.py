"""Stages are plain functions of (inputs, settings, out dir, logger): usable from
Python without the CLI or the engine, with real TensorFlow."""
from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
from rich.console import Console

import pytest

from tfbuild.engine.spec import Artifact
from tfbuild.engine.store import Store
from tfbuild.errors import ConfigError
from tfbuild.cli.report import Reporter
from tfbuild.stages import REGISTRY, freeze, onnx, tflite, train, trt
from tfbuild.stages.deploy import CalibrationCfg
from tfbuild.stages.freeze import FreezeCfg
from tfbuild.stages.tflite import TfliteCfg


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
    from tfbuild.engine.fingerprint import settings_record
    s = tflite.Settings(TfliteCfg(precision="INT8", calibration=CalibrationCfg(path="/abs/cal.npy")))
    record = settings_record(s)
    assert "tflite.calibration.path" not in record and record["tflite.precision"] == "INT8"
    assert "checkpoint" not in settings_record(freeze.Settings(FreezeCfg(outputs=["p"]), "/abs/ckpt"))


def test_each_section_is_declared_by_its_stage_and_named_in_the_config():
    import typing

    from tfbuild import config
    hints = typing.get_type_hints(config.Config)
    for name in config.SECTIONS:
        section = typing.get_args(hints[name])[0]
        assert section.__module__ == REGISTRY[name].module, name
        assert getattr(config, section.__name__) is section   # cli's unknown-key hint finds it by name


@pytest.mark.parametrize("check, settings, message", [
    (freeze.check, freeze.Settings(FreezeCfg(outputs=["p"], tolerance=-1.0)), "freeze.tolerance=-1.0 is out of range"),
    (train.check, train.Settings(None, train.TrainCfg(steps=-1), None, [32, 32, 3]), "train.steps=-1 is out of range"),
    (train.check, train.Settings(None, train.TrainCfg(batch_size=0), None, [32, 32, 3]),
     "train.batch_size=0 is out of range"),
    (train.check, train.Settings(None, train.TrainCfg(examples=0), None, [32, 32, 3]),
     "train.examples=0 is out of range"),
    (tflite.check, tflite.Settings(TfliteCfg(batch_size=0)), "tflite.batch_size=0 is out of range"),
    (onnx.check, onnx.Settings(onnx.OnnxCfg(batch_size=0)), "onnx.batch_size=0 is out of range"),
    (onnx.check, onnx.Settings(onnx.OnnxCfg(opset=30)), "onnx.opset=30: tf2onnx converts to opsets 9 to 18"),
])
def test_each_stage_checks_its_own_section(check, settings, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        check(settings)


def test_validate_leaves_a_section_to_its_stage(tmp_path):
    """config.validate checks across sections; a section's own ranges fail when the graph is made."""
    from tfbuild.config import Config, ModelCfg, validate
    from tfbuild.engine.graph import make_graph
    from tfbuild.stages.placeholder import PlaceholderCfg
    cfg = validate(Config(build_dir=str(tmp_path / "build"), lock_file=str(tmp_path / "t.lock"),
                          train=train.TrainCfg(batch_size=0), model=ModelCfg(name="tiny_densenet"),
                          placeholder=PlaceholderCfg(), tflite=TfliteCfg(batch_size=0)))
    with pytest.raises(ConfigError, match="train.batch_size=0 is out of range"):
        make_graph(cfg, REGISTRY)


def test_precisions_and_backends_are_kept_in_one_case_as_written_in_any():
    """Before any stage: the onnx stage reads the trt section's precision and backend first."""
    assert TfliteCfg(precision="int8").precision == "INT8"
    assert onnx.OnnxCfg(precision="Fp16").precision == "FP16"
    assert trt.TrtCfg(precision="int8", backend="TensorRT").backend == "tensorrt"
    # Unknown ones stay as written: the stage's error quotes them.
    assert TfliteCfg(precision="fp64").precision == "fp64"
    assert trt.TrtCfg(backend="Fastest").backend == "Fastest"


def test_onnx_for_a_tensorrt_engine_follows_the_trt_section():
    from tfbuild.config import Config
    t = trt.TrtCfg(precision="INT8", max_batch_size=8, calibration=CalibrationCfg(random=True))
    o = onnx.for_trt(Config(trt=t))
    assert (type(o), o.precision, o.batch_size, o.calibration) == (onnx.OnnxCfg, "INT8", None, t.calibration)
