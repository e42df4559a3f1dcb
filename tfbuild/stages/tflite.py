"""tflite: the CPU/edge sibling of trt — the frozen graph as a .tflite model
at a fixed batch size, FP32, FP16 (float16 weights) or INT8 (calibrated).

Precision, tolerance and calibration are checked where the settings are made,
the batch size by `check`, all before any stage runs."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..engine.spec import StageSpec, section
from . import deploy

ARTIFACT = "model.tflite"


@dataclass
class TfliteCfg(deploy.DeployCfg):
    batch_size: int = 1
    # INT8: layers kept in float (TensorFlow node names), or `auto` (deploy.with_float_layers)
    float_ops: Any = field(default_factory=list)


@dataclass(frozen=True)
class Settings:
    tflite: TfliteCfg
    evaluation: Optional[Any] = None   # what `float_ops: auto` is judged by (else parity)


def settings(cfg, deps) -> Settings:
    deploy.check_section(cfg, "tflite")
    t = cfg.tflite
    t.float_ops = deploy.float_layers("tflite.float_ops", t.float_ops, t.precision)
    return Settings(t, deploy.auto_evaluation(cfg, t.float_ops))


def check(s: Settings) -> None:
    deploy.at_least("tflite.batch_size", s.tflite.batch_size, 1)


def run(inputs, s: Settings, out: Path, log) -> dict:
    from ..tf.runtimes import tflite_predictor
    from ..tf.tflite_convert import TOLERANCE, convert

    t, freeze = s.tflite, inputs["freeze"]
    graph, (graph_inputs, outputs) = deploy.frozen(freeze), deploy.graph_io(freeze)
    int8, verbose = t.precision == "INT8", getattr(log, "verbose", False)
    data = deploy.samples(freeze, "tflite", t.calibration, int8, t.batch_size, log)
    path = out / ARTIFACT

    def build(float_ops):
        return convert(graph, graph_inputs, outputs, t.precision, t.batch_size,
                       data.calibration if int8 else None, path, float_ops=float_ops, verbose=verbose)

    def parity():
        return deploy.parity(freeze, data.parity, t.batch_size, tflite_predictor(path), f"TFLite {t.precision} model",
                             "tflite", t.tolerance, TOLERANCE[t.precision], data.parity_source)

    meta = deploy.with_float_layers(
        "tflite.float_ops", t.float_ops, build, log=log, rank=lambda: quantization(s, inputs, log, data),
        holds=lambda: deploy.goal(freeze, s.evaluation, tflite_predictor(path), t.batch_size, parity),
    ) if int8 else build(())
    return {**meta, **parity()}


def quantization(s: Settings, inputs, log, data=None) -> list:
    """The INT8 model's layers, the worst first, on the calibration data."""
    from ..tf.tflite_convert import layer_errors
    t, freeze = s.tflite, inputs["freeze"]
    data = data or deploy.samples(freeze, "tflite", t.calibration, True, t.batch_size, log)
    return layer_errors(deploy.frozen(freeze), *deploy.graph_io(freeze), t.batch_size, data.calibration,
                        verbose=getattr(log, "verbose", False))


def bench(artifact, b, inputs) -> dict:
    """Through LiteRT (or tf.lite), with the ops XNNPACK took; the frozen graph alongside."""
    from ..tf.timing import model_feeds, tflite_timer, versus_frozen
    freeze = inputs["freeze"]
    graph_inputs, outputs = deploy.graph_io(freeze)
    return versus_frozen(lambda n: tflite_timer(artifact.path / ARTIFACT, model_feeds(graph_inputs, n), b.threads),
                         artifact.metadata["batch_size"], b, deploy.frozen(freeze), graph_inputs, outputs)


SPEC = StageSpec("tflite", settings, run, present=section("tflite"),
                 upstream=("freeze",), artifact=ARTIFACT, tools=("tensorflow",),
                 files=lambda s: deploy.calibration_input(s.tflite.calibration), check=check, bench=bench,
                 evaluate=deploy.evaluator("tflite_predictor", ARTIFACT), quantization=quantization)
