"""TensorRT engines from the onnx stage's model: build, describe, run, time.

Written against the `tensorrt` Python API (10.x, 11.x) and Polygraphy's loaders
and runner (polygraphy.backend.trt: NetworkFromOnnxPath, CreateConfig, Profile,
EngineBytesFromNetwork, EngineFromBytes, TrtRunner), the well-kept way to build
and run engines. Neither is imported at module level, and nothing here imports
TensorFlow. **None of it has run on a GPU yet**: the machine this was written
on has none; the pure helpers (profile, layer precisions, Q/DQ check) are tested.

Precision, by TensorRT major version:
- 10: a weakly typed network; FP16 is the FP16 builder flag (on an FP32 or FP16
  ONNX model), INT8 the INT8 flag on the model's Q/DQ nodes (explicit quantization).
- 11: the FP16/INT8 flags are gone and networks are strongly typed: FP16 comes
  from an FP16 ONNX model, INT8 from its Q/DQ nodes. tfbuild asks for strong
  typing and sets no precision flag.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

from tfbuild.errors import BackendUnavailable, StageFailed, first_line
from tfbuild.trt_backend import strongly_typed


def preflight() -> None:
    """Load TensorRT and start a builder on the GPU (the cheap probes passed already)."""
    try:
        import tensorrt as trt
        trt.Builder(trt.Logger(trt.Logger.ERROR))
    except Exception as e:  # noqa: BLE001  missing CUDA libraries, driver too old, no device
        raise BackendUnavailable(f"TensorRT cannot start here: {first_line(e)}; check the NVIDIA driver "
                                 "and that the tensorrt wheel matches its CUDA version") from None


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
    flags = {} if strong else {"fp16": precision == "FP16", "int8": precision == "INT8"}
    Path(timing_cache).parent.mkdir(parents=True, exist_ok=True)
    config = CreateConfig(profiles=[trt_profile], memory_pool_limits={trt.MemoryPoolType.WORKSPACE: workspace},
                          load_timing_cache=timing_cache if os.path.exists(timing_cache) else None,
                          # layer details, for the per-precision counts below
                          profiling_verbosity=trt.ProfilingVerbosity.DETAILED, **flags)
    try:
        with G_LOGGER.verbosity(G_LOGGER.ERROR):
            network = NetworkFromOnnxPath(str(onnx_path), strongly_typed=strong)
            engine_bytes = EngineBytesFromNetwork(network, config=config, save_timing_cache=timing_cache)()
            engine = EngineFromBytes(engine_bytes)()
    except Exception as e:  # noqa: BLE001  a parser or builder failure, said in one line
        raise StageFailed(f"TensorRT {trt.__version__} could not build a {precision} engine from "
                          f"{onnx_path.name}: {first_line(e)}") from None
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(bytes(engine_bytes))
    os.replace(tmp, out)  # a failed build never leaves a half-written engine
    return {"tensorrt": trt.__version__, "strongly_typed": strong,
            "profile": {n: {"min": list(lo), "opt": list(opt), "max": list(hi)} for n, (lo, opt, hi) in shapes.items()},
            "hardware_compatibility_level": _compatibility(engine),
            "layers": layer_precisions(_layers(engine, trt)), "size_bytes": out.stat().st_size}


def _compatibility(engine) -> Optional[str]:
    """Not set by tfbuild, so TensorRT's default: NONE, this GPU model only (early 10.x cannot say)."""
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


def _runner(engine_path: Path):
    from polygraphy.backend.common import BytesFromPath
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner
    return TrtRunner(EngineFromBytes(BytesFromPath(str(engine_path))))


def run(engine_path: Path, feeds: Mapping[str, "object"], outputs: Sequence[str]) -> list:
    """Run the engine once on {input: array}; the outputs in the order named."""
    import numpy as np
    with _runner(engine_path) as runner:
        result = runner.infer(dict(feeds))
        return [np.copy(result[name]) for name in outputs]


def latency(engine_path: Path, feeds: Mapping[str, "object"], *, warmup: int, runs: int) -> dict:
    """Time `TrtRunner.infer`: host-to-device copies, execution and the copy back, as a
    caller sees it (the engine load and context creation are not timed)."""
    import tensorrt as trt

    from tfbuild.tf.measure import _time
    from tfbuild.trt_backend import gpu
    with _runner(engine_path) as runner:
        feed = dict(feeds)
        batch = int(next(iter(feed.values())).shape[0])
        figures = _time(lambda: runner.infer(feed, check_inputs=False), batch, warmup, runs)
    return {**figures, "backend": f"tensorrt {trt.__version__}", "gpu": (gpu() or {}).get("name")}
