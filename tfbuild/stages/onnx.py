"""onnx: the frozen graph as an ONNX model for onnxruntime (CPU, GPU) and TensorRT,
FP32, FP16 or INT8 (Q/DQ), at a fixed or dynamic batch size.

Precision, opset, batch size and calibration are checked by `config.validate`."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..engine.spec import StageSpec, section
from . import deploy

if TYPE_CHECKING:
    from ..config import OnnxCfg

ARTIFACT = "model.onnx"
PARITY_BATCH = 2


@dataclass(frozen=True)
class Settings:
    onnx: OnnxCfg


def settings(cfg, deps) -> Settings:
    deploy.check_calibration(cfg, "onnx")
    return Settings(cfg.onnx)


def preflight(s: Settings) -> None:
    from ..tf.onnx_convert import preflight as onnx_preflight
    onnx_preflight()


def run(inputs, s: Settings, out: Path, log) -> dict:
    from ..tf.measure import run_onnx
    from ..tf.onnx_convert import TOLERANCE, convert

    o, freeze = s.onnx, inputs["freeze"]
    graph_inputs, outputs = deploy.graph_io(freeze)
    data = deploy.calibration(freeze, "onnx", o.calibration, o.precision == "INT8", log)
    path = out / ARTIFACT
    meta = convert(deploy.frozen(freeze), graph_inputs, outputs, opset=o.opset, batch_size=o.batch_size,
                   precision=o.precision, calibration=data, out=path)
    feeds = deploy.parity_feeds(graph_inputs, o.batch_size or PARITY_BATCH, data)
    return {**meta, **deploy.parity(freeze, feeds, lambda f: run_onnx(path, f), f"ONNX {o.precision} model",
                                    "onnx", o.tolerance, TOLERANCE[o.precision])}


def bench(artifact, b, inputs) -> dict:
    from ..tf.measure import latency_onnx, seeded_batch
    feeds = [seeded_batch(i["shape"][1:], i["shape"][0] or 1).astype(i["dtype"])
             for i in artifact.metadata["inputs"]]
    return latency_onnx(artifact.path / ARTIFACT, feeds, warmup=b.warmup, runs=b.runs, threads=b.threads)


SPEC = StageSpec("onnx", settings, run, present=section("onnx"), upstream=("freeze",), artifact=ARTIFACT,
                 tools=("tensorflow", "tf2onnx", "onnxruntime", "onnx"),
                 files=lambda s: deploy.calibration_input(s.onnx.calibration),
                 preflight=preflight, bench=bench)
