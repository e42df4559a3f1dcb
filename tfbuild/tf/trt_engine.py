"""TensorRT engines from the onnx stage's model: build, describe, run, time.

Written against the `tensorrt` Python API (10.x, 11.x) and Polygraphy's loaders
and runner (polygraphy.backend.trt: NetworkFromOnnxPath, CreateConfig, Profile,
EngineBytesFromNetwork, EngineFromBytes, TrtRunner), the well-kept way to build
and run engines. Neither is imported at module level, and nothing here imports
TensorFlow. **None of it has run on a GPU yet**: the machine this was written
on has none; the pure helpers (profile, layer precisions, Q/DQ check) are tested.

Precision, by TensorRT major version:
- 10: a weakly typed network; FP16 is the FP16 builder flag (on an FP32 or FP16
  ONNX model), INT8 the INT8 flag on the model's Q/DQ nodes (explicit quantization)
  plus FP16, as NVIDIA recommends, for the layers outside Q/DQ pairs. 10.12
  deprecated these flags in favour of strong typing.
- 11: the FP16/INT8 flags are gone and networks are strongly typed: FP16 comes
  from an FP16 ONNX model, INT8 from its Q/DQ nodes. tfbuild asks for strong
  typing and sets no precision flag, so an INT8 engine runs the layers outside
  Q/DQ pairs in the model's FP32.
TF32 stays on (TensorRT's default; Polygraphy would turn it off) for FP32 layers.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

from tfbuild.errors import BackendUnavailable, StageFailed, first_line
from tfbuild.backends import INSTALL, driver_advice, strongly_typed, tensorrt_cuda


def preflight() -> None:
    """Load TensorRT and start a builder on the GPU (the cheap probes passed already), and
    find the CUDA runtime Polygraphy's runner loads."""
    try:
        import tensorrt as trt
    except Exception as e:  # noqa: BLE001  e.g. the wheel's libraries missing: a broken install
        raise BackendUnavailable(f"TensorRT cannot be loaded: {first_line(e)}; reinstall it: {INSTALL}") from None
    # Where CUDA cannot start, Builder raises pybind's "factory function returned nullptr"
    # and the reason goes only to the logger (trt.Logger prints it from C++; TensorRT 10
    # logs "CUDA initialization failure with error: 35" as a warning): keep it.
    logged: List[tuple] = []   # (an error, not a warning; its first line)

    class Log(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)

        def log(self, severity, msg):
            if severity in (trt.Logger.INTERNAL_ERROR, trt.Logger.ERROR, trt.Logger.WARNING):
                logged.append((severity != trt.Logger.WARNING, first_line(Exception(msg))))

    try:
        trt.Builder(Log())
    except Exception as e:  # noqa: BLE001  no device, driver too old for the wheel's CUDA, ...
        cause = next((m for _, m in logged if "CUDA" in m), next((m for error, m in logged if error), None))
        if cause is None and "nullptr" not in str(e):
            cause = first_line(e)
        raise BackendUnavailable(f"TensorRT {trt.__version__} cannot start CUDA (no CUDA device, or a driver too "
                                 "old for this tensorrt build)" + (f": {cause}" if cause else "") +
                                 f"; {driver_advice()}") from None
    _check_cuda_runtime()


def _cuda_runtime_on_path() -> None:
    """Polygraphy's runner ctypes-loads libcudart from LD_LIBRARY_PATH, /usr/local/cuda/lib64,
    /usr/lib, /lib and the CUDA 12 wheel's nvidia/cuda_runtime/lib, but not the CUDA 13
    wheel's nvidia/cu13/lib (what a pip-only TensorRT 11 gets): add the pip runtimes, the
    tensorrt build's CUDA first. Polygraphy reads the variable when it first loads CUDA."""
    import importlib.util
    spec = importlib.util.find_spec("nvidia")
    roots = list(spec.submodule_search_locations or []) if spec else []
    subdirs = ["cuda_runtime/lib", "cu13/lib"] if tensorrt_cuda() == 12 else ["cu13/lib", "cuda_runtime/lib"]
    found = [str(Path(r, d)) for d in subdirs for r in roots if any(Path(r, d).glob("libcudart.so*"))]
    paths = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
    if any(d not in paths for d in found):
        os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(paths + [d for d in found if d not in paths])


def _check_cuda_runtime() -> None:
    """Fail now, not after the build, where the runner would find no CUDA runtime."""
    _cuda_runtime_on_path()
    try:
        with contextlib.redirect_stdout(io.StringIO()):   # Polygraphy's warnings
            from polygraphy import cuda
            cuda.wrapper()
    except Exception as e:  # noqa: BLE001  OSError from ctypes where no libcudart is found
        package = "nvidia-cuda-runtime-cu12" if tensorrt_cuda() == 12 else "'nvidia-cuda-runtime>=13,<14'"
        raise BackendUnavailable(f"Polygraphy cannot load the CUDA runtime (libcudart) to run engines: "
                                 f"{first_line(e)}; pip install {package}, or put the CUDA toolkit's "
                                 "lib64 on LD_LIBRARY_PATH") from None


def profile(inputs: Sequence[Mapping], max_batch_size: int) -> Dict[str, tuple]:
    """{input: (min, opt, max) shapes}: batch 1 to max_batch_size, optimized for the largest,
    where the ONNX batch is dynamic; the ONNX model's own batch where it is fixed."""
    shapes = {}
    for i in inputs:
        batch, rest = i["shape"][0], list(i["shape"][1:])
        if any(d is None for d in rest):
            raise StageFailed(f"ONNX input {i['name']} has unknown dimensions {i['shape']}: a TensorRT "
                              "profile needs all but the batch fixed; give them in placeholder.inputs")
        if batch is None:
            shapes[i["name"]] = ((1, *rest), (max_batch_size, *rest), (max_batch_size, *rest))
        else:
            shapes[i["name"]] = ((batch, *rest),) * 3
    return shapes


def asymmetric_qdq(model) -> List[str]:
    """Q/DQ nodes with a non-zero zero point: TensorRT takes symmetric quantization only
    and its ONNX parser stops at the first such node."""
    import numpy as np
    from onnx import numpy_helper

    constants = {t.name: t for t in model.graph.initializer}
    bad = []
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2:
            zero = constants.get(node.input[2])
            if zero is not None and np.any(numpy_helper.to_array(zero)):
                bad.append(node.name or node.output[0])
    return bad


def _check_qdq(onnx_path: Path) -> None:
    import onnx
    bad = asymmetric_qdq(onnx.load(str(onnx_path), load_external_data=False))
    if bad:
        raise StageFailed(f"the ONNX model's INT8 Q/DQ nodes are asymmetric ({len(bad)} with a non-zero "
                          f"zero point, e.g. {bad[0]}): TensorRT takes symmetric quantization only")


def build(onnx_path: Path, out: Path, *, inputs: Sequence[Mapping], precision: str, max_batch_size: int,
          workspace: int, timing_cache: str) -> dict:
    """Write the serialized engine to `out`; return its metadata."""
    import tensorrt as trt
    from polygraphy.backend.trt import (CreateConfig, EngineBytesFromNetwork, EngineFromBytes,
                                        NetworkFromOnnxPath, Profile)
    from polygraphy.logger import G_LOGGER

    if precision == "INT8":
        _check_qdq(onnx_path)
    strong = strongly_typed(trt.__version__)
    shapes = profile(inputs, max_batch_size)
    trt_profile = Profile()
    for name, (lo, opt, hi) in shapes.items():
        trt_profile.add(name, min=lo, opt=opt, max=hi)
    # TensorRT 10: INT8 with FP16, NVIDIA's advice, or the layers outside Q/DQ pairs run in FP32
    flags = {} if strong else {"fp16": precision in ("FP16", "INT8"), "int8": precision == "INT8"}
    Path(timing_cache).parent.mkdir(parents=True, exist_ok=True)
    chatter = io.StringIO()   # Polygraphy prints: parser and builder errors ([E]), then "[!] <summary>"
    try:
        with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter), \
                G_LOGGER.verbosity(G_LOGGER.ERROR):
            config = CreateConfig(profiles=[trt_profile], memory_pool_limits={trt.MemoryPoolType.WORKSPACE: workspace},
                                  load_timing_cache=timing_cache if os.path.exists(timing_cache) else None,
                                  # layer details, for the per-precision counts below
                                  profiling_verbosity=trt.ProfilingVerbosity.DETAILED,
                                  tf32=True,   # TensorRT's default; Polygraphy's is off
                                  **flags)
            network = NetworkFromOnnxPath(str(onnx_path), strongly_typed=strong)
            engine_bytes = EngineBytesFromNetwork(network, config=config, save_timing_cache=timing_cache)()
            engine = EngineFromBytes(engine_bytes)()
    except Exception as e:  # noqa: BLE001  a parser or builder failure, said in one line
        cause = first_error(chatter.getvalue())
        raise StageFailed(f"TensorRT {trt.__version__} could not build a {precision} engine from "
                          f"{onnx_path.name}: {first_line(e)}" + (f": {cause}" if cause else "")) from None
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(bytes(engine_bytes))
    os.replace(tmp, out)  # a failed build never leaves a half-written engine
    return {"tensorrt": trt.__version__, "strongly_typed": strong, "tf32": True,
            "profile": {n: {"min": list(lo), "opt": list(opt), "max": list(hi)} for n, (lo, opt, hi) in shapes.items()},
            "hardware_compatibility_level": _compatibility(engine),
            "layers": layer_precisions(_layers(engine, trt)), "size_bytes": out.stat().st_size}


# Polygraphy's lines before the parser's own error: where the parser was, not why it stopped.
_CONTEXT = re.compile(r"While parsing node number|--- (Begin|End) node ---|^\S+\.cpp:\d+: *$")


def first_error(printed: str) -> Optional[str]:
    """The first real error in what Polygraphy printed: the parser's own ("In node 3 with
    name: ... and operator: ...: ..."), else the first other error line ("[E] ...")."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in printed.splitlines()]
    errors = [line[4:].strip() for line in lines if line.startswith("[E] ")]
    errors = [e for e in errors if e and not _CONTEXT.search(e)]
    return next((e for e in errors if e.startswith("In node")), errors[0] if errors else None)


def _compatibility(engine) -> Optional[str]:
    """Not set by tfbuild, so TensorRT's default: NONE, this GPU model only (every 10.x and 11.x engine says)."""
    level = getattr(engine, "hardware_compatibility_level", None)
    return None if level is None else level.name


def _layers(engine, trt) -> list:
    info = engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON)
    return json.loads(info).get("Layers", [])


# Substrings of the inspector's "Format/Datatype" ("Half", or with an execution
# context "Row major linear FP16 format"), lowest precision first ("bfloat16"
# before "float").
_DATATYPES = (("INT8", ("int8",)), ("FP16", ("half", "fp16")), ("BF16", ("bfloat", "bf16")),
              ("FP32", ("float", "fp32")))


def layer_precisions(layers: Sequence) -> Dict[str, int]:
    """{precision: layer count} from the engine inspector's JSON layers: a layer counts at the
    lowest floating or INT8 precision among its inputs (else its outputs); layers that read
    only shape or index tensors, or that carry no details, count as "other"."""
    counts: Dict[str, int] = {}
    for layer in layers:
        found = None
        if isinstance(layer, dict):
            found = _lowest(layer.get("Inputs", [])) or _lowest(layer.get("Outputs", []))
        counts[found or "other"] = counts.get(found or "other", 0) + 1
    return dict(sorted(counts.items()))


def _lowest(tensors) -> Optional[str]:
    kinds = {_datatype(str(t.get("Format/Datatype", ""))) for t in tensors if isinstance(t, dict)}
    return next((p for p, _ in _DATATYPES if p in kinds), None)


def _datatype(text: str) -> Optional[str]:
    text = text.lower()
    return next((p for p, keys in _DATATYPES if any(k in text for k in keys)), None)


def runner(engine_path: Path):
    """Polygraphy's TrtRunner of the engine (open it with `with`)."""
    _cuda_runtime_on_path()   # before Polygraphy first loads libcudart
    from polygraphy.backend.common import BytesFromPath
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner
    return TrtRunner(EngineFromBytes(BytesFromPath(str(engine_path))))


def run(engine_path: Path, feeds: Mapping[str, "object"], outputs: Sequence[str]) -> list:
    """Run the engine once on {input: array}; the outputs in the order named."""
    import numpy as np
    with runner(engine_path) as trt_runner:
        result = trt_runner.infer(dict(feeds))
        return [np.copy(result[name]) for name in outputs]


@contextlib.contextmanager
def engine_timer(engine_path: Path, feeds: Mapping[str, "object"]):
    """`TrtRunner.infer` as timing.Timed: host-to-device copies, execution and the copy
    back, as a caller sees it (the engine load and context creation are not timed)."""
    import tensorrt as trt

    from tfbuild.backends import gpu
    from tfbuild.measure import Timed, batch_of
    feed = dict(feeds)
    opened = runner(engine_path).__enter__()
    opened.infer(feed, check_inputs=False)
    try:
        yield Timed(lambda: opened.infer(feed, check_inputs=False), batch_of(feed.values()),
                    {"backend": f"tensorrt {trt.__version__}", "gpu": (gpu() or {}).get("name")},
                    None)   # its memory is the GPU's: not measured
    finally:
        opened.__exit__(None, None, None)
