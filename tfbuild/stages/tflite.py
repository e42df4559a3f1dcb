"""tflite: the CPU/edge sibling of trt — the frozen graph as a .tflite model
at a fixed batch size, FP32, FP16 (float16 weights) or INT8 (calibrated).

Precision, batch size and calibration are checked by `config.validate`."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..engine.spec import StageSpec, section
from . import deploy

if TYPE_CHECKING:
    from ..config import TfliteCfg

ARTIFACT = "model.tflite"


@dataclass(frozen=True)
class Settings:
    tflite: TfliteCfg


def settings(cfg, deps) -> Settings:
    deploy.check_calibration(cfg, "tflite")
    return Settings(cfg.tflite)


def run(inputs, s: Settings, out: Path, log) -> dict:
    from ..tf.measure import run_tflite
    from ..tf.tflite_convert import TOLERANCE, convert

    t, freeze = s.tflite, inputs["freeze"]
    graph_inputs, outputs = deploy.graph_io(freeze)
    data = deploy.calibration(freeze, "tflite", t.calibration, t.precision == "INT8", log)
    path = out / ARTIFACT
    meta = convert(deploy.frozen(freeze), graph_inputs, outputs, t.precision, t.batch_size,
                   data if t.precision == "INT8" else None, path)
    feeds = deploy.parity_feeds(graph_inputs, t.batch_size, data)
    return {**meta, **deploy.parity(freeze, feeds, lambda f: run_tflite(path, f), f"TFLite {t.precision} model",
                                    "tflite", t.tolerance, TOLERANCE[t.precision])}


def bench(artifact, b, inputs) -> dict:
    """Through LiteRT (or tf.lite), with the ops XNNPACK took; the frozen graph alongside."""
    from ..tf.measure import latency_tflite, model_feeds, versus_frozen
    figures = latency_tflite(artifact.path / ARTIFACT, model_feeds(artifact.metadata["inputs"]),
                             warmup=b.warmup, runs=b.runs, threads=b.threads)
    freeze = inputs["freeze"]
    return versus_frozen(figures, deploy.frozen(freeze), *deploy.graph_io(freeze), warmup=b.warmup, runs=b.runs)


SPEC = StageSpec("tflite", settings, run, present=section("tflite"),
                 upstream=("freeze",), artifact=ARTIFACT, tools=("tensorflow",),
                 files=lambda s: deploy.calibration_input(s.tflite.calibration), bench=bench)
