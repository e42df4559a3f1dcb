"""trt: TensorRT for the frozen graph, by the backend `trt.backend` names
(`auto` picks one for this machine; see tfbuild/backends.py):

- tf-trt: TF-TRT converts the frozen graph to `trt.pb` (TensorFlow <=2.17 built
  with TensorRT 8.6, on a GPU);
- tensorrt: a serialized engine, `model.engine`, built from the onnx stage's
  model with the `tensorrt` wheel (10.x, 11.x) on a GPU; the graph adds that
  onnx stage where the target has none.

Settings are validated and the backend checked before any upstream work, so a
machine without it fails at once with what to do instead.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

from .. import backends
from ..engine.spec import StageSpec, section
from ..errors import ConfigError
from ..marks import PATH
from . import deploy

if TYPE_CHECKING:
    from .onnx import OnnxCfg

ARTIFACT = "trt.pb"
ENGINE = "model.engine"
ONNX = "model.onnx"   # the onnx stage's artifact (not imported: its code is not this stage's identity)
# An engine runs the onnx stage's INT8 model, which that stage accepted at 1e-1 against the
# frozen graph (onnx_convert.TOLERANCE, kept equal by a test): a faithful engine may be as far off.
ENGINE_INT8_TOLERANCE = 1e-1
BACKENDS = ("auto", "tf-trt", "tensorrt")   # see tfbuild/backends.py


@dataclass
class TrtCfg(deploy.DeployCfg):
    backend: str = "auto"                # auto: TF-TRT where TensorFlow has it, else a tensorrt engine
    max_batch_size: Optional[int] = 1
    max_workspace_size_bytes: int = 1 << 30
    minimum_segment_size: int = 3
    is_dynamic_op: bool = False
    maximum_cached_engines: int = 1

    def __post_init__(self):
        super().__post_init__()
        # Like precisions, written in any case; here because the onnx stage reads it first.
        if isinstance(self.backend, str) and self.backend.lower() in BACKENDS:
            self.backend = self.backend.lower()


@dataclass(frozen=True)
class Settings:
    """tf-trt: every trt key counts."""
    trt: TrtCfg


@dataclass(frozen=True)
class EngineCfg:
    """The trt keys a TensorRT engine reads. TF-TRT's own (is_dynamic_op,
    minimum_segment_size, maximum_cached_engines) would only split identical engines."""
    backend: str
    precision: str
    max_batch_size: Optional[int]
    max_workspace_size_bytes: int
    calibration: deploy.CalibrationCfg   # parity inputs (the ONNX model was quantized with it)
    tolerance: Optional[float]


@dataclass(frozen=True)
class EngineSettings:
    trt: EngineCfg
    # build_dir state that makes rebuilds faster (and pick the same tactics): not identity
    timing_cache: str = field(default="", metadata=PATH)


def _engine(s) -> bool:
    return s.trt.backend == "tensorrt"


def settings(cfg, deps) -> Union[Settings, EngineSettings]:
    t = cfg.trt
    deploy.check_section(cfg, "trt")
    if t.backend not in BACKENDS:   # which settings the stage has depends on it
        raise ConfigError(f"trt.backend={t.backend!r} is unknown: use one of {', '.join(BACKENDS)}")
    backend = backends.resolve(t.backend)   # identity: the backend used, however it was asked for
    if backend == "tf-trt":
        return Settings(dataclasses.replace(t, backend=backend))
    _check_onnx(cfg.onnx, t)
    return EngineSettings(EngineCfg(backend, t.precision, t.max_batch_size, t.max_workspace_size_bytes,
                                    t.calibration, t.tolerance), backends.timing_cache(cfg.build_dir))


def _check_onnx(o: Optional[OnnxCfg], t: TrtCfg) -> None:
    """The target's own onnx section must give the model this engine is built from."""
    if o is None:
        return
    if o.batch_size is not None and t.max_batch_size not in (None, o.batch_size):
        raise ConfigError(f"trt.max_batch_size={t.max_batch_size} needs an ONNX model with a dynamic batch, "
                          f"but onnx.batch_size={o.batch_size}: set onnx.batch_size=null, or "
                          f"trt.max_batch_size={o.batch_size}")
    flag = t.precision == "FP16" and o.precision == "FP32"   # TensorRT 10's FP16 builder flag
    if o.precision == t.precision or (flag and not backends.strongly_typed(backends.tensorrt_version())):
        return
    why = " (TensorRT 11 types the network from it)" if flag else ""
    raise ConfigError(f"trt.precision={t.precision} builds on the onnx stage's {o.precision} model{why}: "
                      f"set onnx.precision={t.precision}, or onnx=null so the trt stage makes its own")


def check(s) -> None:
    from ..tf.trt_convert import int_at_least, validate
    if not _engine(s):
        validate(dataclasses.asdict(s.trt))
        return
    if s.trt.max_batch_size is None:
        raise ConfigError("trt.backend=tensorrt needs trt.max_batch_size, the largest batch of the "
                          "engine's optimization profile: set it, e.g. trt.max_batch_size=8")
    for key in ("max_batch_size", "max_workspace_size_bytes"):
        int_at_least(dataclasses.asdict(s.trt), key, 1)


def preflight(s) -> None:
    if _engine(s):
        from ..tf.trt_engine import preflight as engine_preflight
        backends.require_tensorrt()
        backends.require_gpu(backends.tensorrt_version())   # its GPUs have FP16 and INT8 kernels
        engine_preflight()
    else:
        from ..tf.trt_convert import preflight as trt_preflight
        trt_preflight()
        backends.require_precision(s.trt.precision)   # TensorRT 8.6's table


def environment(s) -> dict:
    if _engine(s):
        return backends.environment()
    from ..tf.trt_convert import environment as trt_environment
    return trt_environment()


def run(inputs, s, out: Path, log) -> dict:
    if _engine(s):
        return _run_engine(inputs, s.trt, s.timing_cache, out, log)
    from ..tf.graph_io import run_frozen
    from ..tf.trt_convert import TOLERANCE, convert

    t, freeze = s.trt, inputs["freeze"]
    graph_inputs, outputs = deploy.graph_io(freeze)
    batch, int8 = t.max_batch_size or 1, t.precision == "INT8"
    data = deploy.samples(freeze, "trt", t.calibration, int8, batch, log)
    path = out / ARTIFACT
    first = graph_inputs[0]["name"]   # TF-TRT calibrates single-input graphs
    meta = convert(deploy.frozen(freeze), outputs, dataclasses.asdict(t),
                   data.calibration[first] if int8 else None, first, path)
    checked = deploy.parity(freeze, data.parity, batch, lambda f: run_frozen(path, f, outputs),
                            f"TF-TRT {t.precision} graph", "trt", t.tolerance, TOLERANCE[t.precision],
                            data.parity_source)
    return {**meta, "backend": "tf-trt", "batch_size": batch, "inputs": graph_inputs,
            "outputs": freeze.metadata["outputs"], **checked}


def _run_engine(inputs, t: EngineCfg, timing_cache: str, out: Path, log) -> dict:
    from ..tf import trt_engine
    from ..tf.graph_io import node_of
    from ..tf.trt_convert import TOLERANCE

    freeze, model = inputs["freeze"], inputs["onnx"]
    graph_inputs, outputs = deploy.graph_io(freeze)
    onnx_inputs = model.metadata["inputs"]
    path = out / ENGINE
    meta = trt_engine.build(model.path / ONNX, path, inputs=onnx_inputs, precision=t.precision,
                            max_batch_size=t.max_batch_size, workspace=t.max_workspace_size_bytes,
                            timing_cache=timing_cache)
    names = [i["name"] for i in onnx_inputs]   # the frozen graph's inputs, in its order
    batch = meta["profile"][names[0]]["opt"][0]
    data = deploy.samples(freeze, "trt", t.calibration, False, batch, log)  # parity inputs, where given
    bound = ENGINE_INT8_TOLERANCE if t.precision == "INT8" else TOLERANCE[t.precision]
    checked = deploy.parity(freeze, data.parity, batch,
                            lambda f: trt_engine.run(path, f, [node_of(o) for o in outputs]),
                            f"TensorRT {t.precision} engine", "trt", t.tolerance, bound, data.parity_source)
    gpu = backends.gpu() or {}
    return {**meta, "backend": "tensorrt", "precision": t.precision, "gpu": gpu.get("name"),
            "compute_capability": gpu.get("compute_capability"), "batch_size": batch,
            "inputs": [{**i, "shape": [batch, *i["shape"][1:]]} for i in onnx_inputs],
            "outputs": freeze.metadata["outputs"], **checked}


def bench(artifact, b, inputs) -> dict:
    """A TF-TRT graph through TensorFlow, an engine through TensorRT's runtime; the frozen
    graph alongside, at the batch the artifact was checked at."""
    from ..tf.timing import frozen_timer, model_feeds, own_batch, versus_frozen
    meta, freeze = artifact.metadata, inputs["freeze"]
    graph_inputs, outputs = deploy.graph_io(freeze)
    if meta.get("backend") == "tensorrt":
        from ..tf.trt_engine import engine_timer
        timer = lambda n: engine_timer(artifact.path / ENGINE, model_feeds(meta["inputs"], n))   # noqa: E731
        batch = own_batch(meta["inputs"])
    else:
        timer = lambda n: frozen_timer(artifact.path / ARTIFACT, model_feeds(freeze.metadata["inputs"], n),   # noqa: E731
                                       [o["name"] for o in meta["outputs"]], b.threads)
        batch = meta["batch_size"]
    return versus_frozen(timer, batch, b, deploy.frozen(freeze), graph_inputs, outputs)


def _upstream(cfg) -> tuple:
    """An engine is built from the onnx stage's model (and checked against the frozen
    graph); TF-TRT converts the frozen graph itself."""
    return ("freeze", "onnx") if backends.needs_onnx(cfg) else ("freeze",)


SPEC = StageSpec("trt", settings, run, present=section("trt"), upstream=_upstream,
                 artifact=lambda s: ENGINE if _engine(s) else ARTIFACT, environment=environment,
                 files=lambda s: deploy.calibration_input(s.trt.calibration),
                 check=check, preflight=preflight, bench=bench)
