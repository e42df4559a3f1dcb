"""onnx: the frozen graph as an ONNX model for onnxruntime (CPU, GPU) and TensorRT,
FP32, FP16 or INT8 (Q/DQ), at a fixed or dynamic batch size.

Precision, tolerance and calibration are checked where the settings are made,
opset and batch size by `check`, all before any stage runs. A target without an
onnx section still has this stage when its trt stage builds a TensorRT engine
(trt.backend tensorrt, or auto choosing it): the model then follows the trt
settings, so a sweep over trt keys shares its ONNX models."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .. import backends
from ..errors import ConfigError
from ..inputs.samples import PARITY_SAMPLES
from ..engine.spec import StageSpec
from . import deploy

ARTIFACT = "model.onnx"
OPSETS = (9, 18)   # what the pinned tf2onnx (1.17) writes


@dataclass
class OnnxCfg(deploy.DeployCfg):
    opset: int = 17
    batch_size: Optional[int] = 1        # null: a dynamic batch dimension
    # INT8: nodes kept in float (TensorFlow node names), or `auto` (deploy.with_float_layers)
    float_nodes: Any = field(default_factory=list)


@dataclass(frozen=True)
class Settings:
    onnx: OnnxCfg
    # INT8 activations with zero point 0, for a TensorRT engine: its parser takes no
    # other Q/DQ form, while onnxruntime on a CPU runs asymmetric ones ~30% faster.
    symmetric: bool = False
    evaluation: Optional[Any] = None   # what `float_nodes: auto` is judged by (else parity)


def present(cfg) -> bool:
    return cfg.onnx is not None or backends.needs_onnx(cfg)


def settings(cfg, deps) -> Settings:
    if cfg.onnx is None:   # the model a TensorRT engine is built from
        deploy.check_section(cfg, "trt")
        o = for_trt(cfg)
    else:
        deploy.check_section(cfg, "onnx")
        o = cfg.onnx
        o.float_nodes = deploy.float_layers("onnx.float_nodes", o.float_nodes, o.precision)
    return Settings(o, symmetric=o.precision == "INT8" and backends.needs_onnx(cfg),
                    evaluation=deploy.auto_evaluation(cfg, o.float_nodes))


def for_trt(cfg) -> OnnxCfg:
    """At the engine's precision and calibration; a dynamic batch where its profile is."""
    t = cfg.trt
    return OnnxCfg(precision=t.precision, batch_size=backends.onnx_batch(t.max_batch_size),
                   calibration=t.calibration)


def check(s: Settings) -> None:
    o = s.onnx
    if o.batch_size is not None:
        deploy.at_least("onnx.batch_size", o.batch_size, 1)
    lo, hi = OPSETS
    if not lo <= o.opset <= hi:
        raise ConfigError(f"onnx.opset={o.opset}: tf2onnx converts to opsets {lo} to {hi}")


def preflight(s: Settings) -> None:
    from ..tf.onnx_convert import preflight as onnx_preflight
    onnx_preflight()


def run(inputs, s: Settings, out: Path, log) -> dict:
    from ..tf.runtimes import onnx_predictor
    from ..tf.onnx_convert import TOLERANCE, convert

    o, freeze = s.onnx, inputs["freeze"]
    graph, (graph_inputs, outputs) = deploy.frozen(freeze), deploy.graph_io(freeze)
    int8, batch, verbose = o.precision == "INT8", o.batch_size or PARITY_SAMPLES, getattr(log, "verbose", False)
    data = deploy.samples(freeze, "onnx", o.calibration, int8, batch, log)
    path = out / ARTIFACT

    def build(float_nodes):
        return convert(graph, graph_inputs, outputs, opset=o.opset, batch_size=o.batch_size, precision=o.precision,
                       calibration=data.calibration if int8 else None, symmetric=s.symmetric, out=path,
                       float_nodes=float_nodes, verbose=verbose)

    def parity():
        return deploy.parity(freeze, data.parity, batch, onnx_predictor(path), f"ONNX {o.precision} model",
                             "onnx", o.tolerance, TOLERANCE[o.precision], data.parity_source)

    meta = deploy.with_float_layers(
        "onnx.float_nodes", o.float_nodes, build, log=log, rank=lambda: quantization(s, inputs, log, data),
        holds=lambda: deploy.goal(freeze, s.evaluation, onnx_predictor(path), o.batch_size, parity),
    ) if int8 else build(())
    return {**meta, **parity()}


def quantization(s: Settings, inputs, log, data=None) -> list:
    """The INT8 model's nodes, the worst first, on the calibration data."""
    from ..tf.onnx_convert import layer_errors
    o, freeze = s.onnx, inputs["freeze"]
    data = data or deploy.samples(freeze, "onnx", o.calibration, True, o.batch_size or PARITY_SAMPLES, log)
    return layer_errors(deploy.frozen(freeze), *deploy.graph_io(freeze), opset=o.opset, batch_size=o.batch_size,
                        calibration=data.calibration, symmetric=s.symmetric, verbose=getattr(log, "verbose", False))


def bench(artifact, b, inputs) -> dict:
    """Through onnxruntime; the frozen graph alongside; `bench.batches` too where the
    model's batch is dynamic."""
    from ..tf.timing import model_feeds, onnx_timer, versus_frozen
    freeze, batch = inputs["freeze"], artifact.metadata["batch_size"]
    graph_inputs, outputs = deploy.graph_io(freeze)
    return versus_frozen(lambda n: onnx_timer(artifact.path / ARTIFACT, model_feeds(graph_inputs, n), b.threads),
                         batch or 1, b, deploy.frozen(freeze), graph_inputs, outputs, free_batch=batch is None)


SPEC = StageSpec("onnx", settings, run, present=present, upstream=("freeze",), artifact=ARTIFACT,
                 tools=("tensorflow", "tf2onnx", "onnxruntime", "onnx"),
                 files=lambda s: deploy.calibration_input(s.onnx.calibration),
                 check=check, preflight=preflight, bench=bench, evaluate=deploy.evaluator("onnx_predictor", ARTIFACT),
                 quantization=quantization)
