"""TF-TRT stage logic: frozen GraphDef -> TensorRT-optimised GraphDef.

Written against TensorFlow's V1 `trt_convert.TrtGraphConverter` (the only
TF-TRT converter that takes a frozen GraphDef). TF-TRT works only with
TensorFlow <=2.17 built with TensorRT 8.6, on an NVIDIA GPU; newer TensorFlow
still ships the Python module but its conversion raises. `preflight()` says so
up front, before anything expensive runs.

`validate()` and `environment()` never import TensorFlow: they run in the
no-op path and feed the build fingerprint.
"""

from __future__ import annotations

import functools
import itertools
import os
from pathlib import Path
from typing import Mapping, Sequence

from tfbuild.errors import (BackendUnavailable, CalibrationError, ConfigError,
                            NodeNotFound, StageFailed, first_line)
from tfbuild.backends import (CPU, INSTALL, TF_TRT_NEEDS, check_precision, dist_version, gpu,
                              tensorflow_version, tf_trt_problem)

# Parity bound: max |p_trt - p_frozen| over softmax probabilities (in [0, 1]).
# FP32: TensorRT picks other kernels and, on Ampere+, TF32 math (10-bit
#   mantissa, ~1e-3 relative) -> logits move ~1e-3, probs less; 2e-3 allows it.
# FP16: 11-bit mantissa (eps ~1e-3) with error growing layer by layer; 1e-2
#   still catches a wrong graph, whose probs differ by ~1e-1.
# INT8: 8-bit activations from calibrated ranges (~1% step per layer); 5e-2
#   is the usual accuracy budget for post-training quantisation.
TOLERANCE = {"FP32": 2e-3, "FP16": 1e-2, "INT8": 5e-2}


_FIX = (f"TF-TRT needs {TF_TRT_NEEDS} (pip install 'tensorflow[and-cuda]==2.17.*' plus TensorRT 8.6); "
        f"or use trt.backend=tensorrt: {INSTALL}. {CPU}.")
# Ops that carry no compute; grappler adds or drops them freely, so they are
# left out of converted_share.
_BOOKKEEPING_OPS = {"Placeholder", "Const", "Identity", "NoOp"}


def int_at_least(settings: Mapping, key: str, minimum: int,
                  exc=ConfigError, prefix="trt."):
    value = settings[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise exc(f"{prefix}{key} must be an integer >= {minimum}, got "
                  f"{value!r}; fix it in the target's trt settings")


def validate(settings: Mapping) -> None:
    """Reject bad TF-TRT settings with one actionable line. Pure, no TF."""
    s = settings
    cal = s.get("calibration")
    if cal is not None and not isinstance(cal, Mapping):
        raise ConfigError(f"trt.calibration must be a mapping with path/random/"
                          f"num_samples, got {type(cal).__name__}")
    cal = cal or {}
    precision = check_precision("trt", s.get("precision"), cal.get("path"), cal.get("random", False),
                                cal.get("num_samples", 32))
    if not isinstance(s["is_dynamic_op"], bool):
        raise ConfigError(f"trt.is_dynamic_op must be true or false, "
                          f"got {s['is_dynamic_op']!r}")
    dynamic = s["is_dynamic_op"]

    if s["max_batch_size"] is None:
        if not dynamic:
            raise ConfigError("static engines need trt.max_batch_size: set it to "
                              "the largest batch you will serve, or set "
                              "trt.is_dynamic_op=true")
    else:
        int_at_least(s, "max_batch_size", 1)
    int_at_least(s, "max_workspace_size_bytes", 1)
    int_at_least(s, "minimum_segment_size", 1)
    int_at_least(s, "maximum_cached_engines", 1)

    # TF would silently switch INT8+calibration to dynamic mode; say it instead.
    if precision == "INT8" and not dynamic:
        raise ConfigError("INT8 calibration needs dynamic mode: set "
                          "trt.is_dynamic_op=true")


@functools.lru_cache(maxsize=None)
def _environment() -> tuple:
    found = gpu()
    return (("tensorflow", tensorflow_version()),
            ("tensorrt", dist_version("tensorrt", "tensorrt-libs", "nvidia-tensorrt")),
            ("gpu", found and found["name"]))


def environment() -> dict:
    """TF / TensorRT / GPU facts without importing TF; cached per process."""
    return dict(_environment())  # a copy, so callers cannot edit the cache


def _vstr(ver: tuple) -> str:
    return ".".join(str(v) for v in ver)


def preflight() -> None:
    """Raise BackendUnavailable unless TF-TRT can convert here. Cheap first."""
    problem = tf_trt_problem()
    if problem:
        raise BackendUnavailable(f"TF-TRT is not available: {problem}. {_FIX}")
    tf_version = environment()["tensorflow"]
    # Only now pay for the TensorFlow import.
    from tensorflow.python.compiler.tensorrt import trt_convert as trt
    utils = trt._pywrap_py_utils
    if not utils.is_tensorrt_enabled():
        raise BackendUnavailable(
            f"TF-TRT is not available: this TensorFlow {tf_version} build has "
            f"no TensorRT support or cannot load the TensorRT libraries. {_FIX}")
    linked = tuple(utils.get_linked_tensorrt_version())
    loaded = tuple(utils.get_loaded_tensorrt_version())
    # Same rule as TF's _check_trt_version_compatibility, said up front.
    if loaded[0] != linked[0] or loaded < linked:
        raise BackendUnavailable(
            f"TF-TRT is not available: TensorFlow {tf_version} is linked against "
            f"TensorRT {_vstr(linked)} but loaded TensorRT {_vstr(loaded)}; "
            f"install TensorRT {linked[0]}.{linked[1]} (same major, not older), "
            f"or use the tflite stage on CPU (e.g. target=tiny_tflite); "
            f"TF-TRT needs TensorFlow <=2.17.")


def _count(graph_def) -> dict:
    ops = [n.op for n in graph_def.node]
    return {"all": len(ops),
            "engines": ops.count("TRTEngineOp"),
            "compute": sum(op not in _BOOKKEEPING_OPS | {"TRTEngineOp"}
                           for op in ops)}


def _calibration_batches(calibration, settings: Mapping, dtype) -> list:
    import numpy as np
    if calibration is None or getattr(calibration, "ndim", 0) != 4 \
            or len(calibration) == 0:
        shape = getattr(calibration, "shape", None)
        raise CalibrationError(
            f"INT8 calibration needs a non-empty [N,H,W,C] array, got shape "
            f"{shape}; check trt.calibration.path or set trt.calibration.random")
    data = np.asarray(calibration, dtype=dtype)
    # Equal-sized batches only: a ragged last batch would be a second input
    # shape, i.e. a second engine to calibrate.
    size = min(len(data), settings.get("max_batch_size") or 8)
    return [data[i:i + size] for i in range(0, len(data) - size + 1, size)]


def convert(frozen_pb: Path, outputs: Sequence[str], settings: Mapping,
            calibration, input_name: str, out_path: Path) -> dict:
    """Convert `frozen_pb` with TF-TRT and write the GraphDef to `out_path`."""
    from tfbuild.tf.graph_io import node_of, read_graph_def  # not at the top: no-ops call environment()

    preflight()
    validate(settings)
    s = settings
    precision = s["precision"].upper()
    dynamic = s["is_dynamic_op"]
    out_nodes = [node_of(o) for o in outputs]

    import tensorflow as tf
    from tensorflow.python.compiler.tensorrt import trt_convert as trt

    graph_def = read_graph_def(frozen_pb)
    nodes = {n.name: n for n in graph_def.node}
    for name in [node_of(input_name), *out_nodes]:
        if name not in nodes:
            raise NodeNotFound(f"node {name!r} is not in {frozen_pb}; check the "
                               f"model's input/output names")

    batches = None
    if precision == "INT8":
        dtype = tf.as_dtype(nodes[node_of(input_name)].attr["dtype"].type)
        batches = _calibration_batches(calibration, s, dtype.as_numpy_dtype)

    before = _count(graph_def)
    try:
        # TrtGraphConverter refuses to run eagerly. A private graph context
        # turns eager off for this block only, unlike the process-global
        # tf.compat.v1.disable_eager_execution(); the converter builds its own
        # graphs and sessions inside.
        with tf.Graph().as_default():
            converter = trt.TrtGraphConverter(
                input_graph_def=graph_def,
                nodes_denylist=out_nodes,  # keep output names callers fetch
                # TF rejects a batch size in dynamic mode (engines are built
                # per input shape at run time).
                max_batch_size=None if dynamic else s["max_batch_size"],
                max_workspace_size_bytes=s["max_workspace_size_bytes"],
                precision_mode=precision,
                minimum_segment_size=s["minimum_segment_size"],
                is_dynamic_op=dynamic,
                maximum_cached_engines=s["maximum_cached_engines"],
                use_calibration=precision == "INT8")
            result = converter.convert()
            if batches:
                feed = itertools.cycle(batches)
                tensor = node_of(input_name) + ":0"
                result = converter.calibrate(
                    fetch_names=[n + ":0" for n in out_nodes],
                    num_runs=len(batches),
                    feed_dict_fn=lambda: {tensor: next(feed)})
    except Exception as e:
        raise StageFailed(f"TF-TRT {precision} conversion failed: "
                          f"{first_line(e)}") from e

    # save() refuses GraphDef input, so write the .pb ourselves; atomically,
    # so a failed build never leaves a half-written artifact.
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    tmp.write_bytes(result.SerializeToString(deterministic=True))
    os.replace(tmp, out_path)

    after = _count(result)
    utils = trt._pywrap_py_utils
    env = environment()
    return {
        "tensorrt_linked": _vstr(utils.get_linked_tensorrt_version()),
        "tensorrt_loaded": _vstr(utils.get_loaded_tensorrt_version()),
        "tensorflow": env["tensorflow"],
        "gpu": env["gpu"],
        "trt_engine_ops": after["engines"],
        "ops_before": before["all"],
        "ops_after": after["all"],
        # Share of the original compute ops (bookkeeping ops excluded) that no
        # longer run as TF ops: 1 - (non-TRT compute ops left) / (compute ops
        # before). Engines hide their members inside segment functions, so
        # the top-level graph shows only what TF still runs itself.
        "converted_share": (max(0.0, 1 - after["compute"] / before["compute"])
                            if before["compute"] else 0.0),
        "precision": precision,
    }
