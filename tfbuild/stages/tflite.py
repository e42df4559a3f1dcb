"""tflite: the CPU/edge sibling of trt — the frozen graph as a .tflite model
at a fixed batch size, FP32, FP16 (float16 weights) or INT8 (calibrated).

Precision, tolerance and calibration are checked where the settings are made,
the batch size by `check`, all before any stage runs."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..engine.spec import StageSpec, section
from . import deploy

ARTIFACT = "model.tflite"


@dataclass
class TfliteCfg(deploy.DeployCfg):
    batch_size: int = 1


@dataclass(frozen=True)
class Settings:
    tflite: TfliteCfg


def settings(cfg, deps) -> Settings:
    deploy.check_section(cfg, "tflite")
    return Settings(cfg.tflite)


def check(s: Settings) -> None:
    deploy.at_least("tflite.batch_size", s.tflite.batch_size, 1)


def run(inputs, s: Settings, out: Path, log) -> dict:
    from ..tf.runtimes import tflite_predictor
    from ..tf.tflite_convert import TOLERANCE, convert

    t, freeze = s.tflite, inputs["freeze"]
    graph_inputs, outputs = deploy.graph_io(freeze)
    int8 = t.precision == "INT8"
    data = deploy.samples(freeze, "tflite", t.calibration, int8, t.batch_size, log)
    path = out / ARTIFACT
    meta = convert(deploy.frozen(freeze), graph_inputs, outputs, t.precision, t.batch_size,
                   data.calibration if int8 else None, path, verbose=getattr(log, "verbose", False))
    return {**meta, **deploy.parity(freeze, data.parity, t.batch_size, tflite_predictor(path),
                                    f"TFLite {t.precision} model", "tflite", t.tolerance, TOLERANCE[t.precision],
                                    data.parity_source)}


def bench(artifact, b, inputs) -> dict:
    """Through LiteRT (or tf.lite), with the ops XNNPACK took; the frozen graph alongside."""
    from ..tf.timing import latency_tflite, model_feeds, versus_frozen
    freeze = inputs["freeze"]
    figures = latency_tflite(artifact.path / ARTIFACT,
                             model_feeds(freeze.metadata["inputs"], artifact.metadata["batch_size"]),
                             warmup=b.warmup, runs=b.runs, threads=b.threads)
    return versus_frozen(figures, deploy.frozen(freeze), *deploy.graph_io(freeze), warmup=b.warmup, runs=b.runs)


SPEC = StageSpec("tflite", settings, run, present=section("tflite"),
                 upstream=("freeze",), artifact=ARTIFACT, tools=("tensorflow",),
                 files=lambda s: deploy.calibration_input(s.tflite.calibration), check=check, bench=bench,
                 evaluate=deploy.evaluator("tflite_predictor", ARTIFACT))
