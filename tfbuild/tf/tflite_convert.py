"""Convert a frozen GraphDef to a `.tflite` model at FP32, FP16 or INT8."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from tfbuild.precision import PRECISIONS
from tfbuild.errors import CalibrationError, ConfigError, NodeNotFound, StageFailed
from tfbuild.tf.measure import node_of

# Largest |tflite - frozen| allowed on any output element. Outputs are softmax
# probabilities in [0, 1], so these are absolute probability errors.
TOLERANCE = {
    # Same float32 math; only op fusion and kernel summation order differ,
    # which costs ~1e-7 on probabilities (observed <= 4e-7 in tests).
    "FP32": 1e-4,
    # Weights are rounded to float16 (relative error <= 2**-11 ~ 5e-4) and
    # dequantized; compute stays float32. Errors add up over layers to ~1e-3
    # relative on logits, a few 1e-4 on probabilities (observed <= 5.5e-4 in tests).
    "FP16": 1e-2,
    # Weights and activations are 8-bit (255 steps over each tensor's
    # calibrated range): logits move by a few percent, so probabilities can
    # move by several 1e-2 (observed <= 3e-2 on the test graph). Calibration
    # unlike the inputs (constant or dark images) gave 0.38 to 0.69, so 0.1
    # tells "quantized" from "broken" with headroom for deeper nets.
    "INT8": 1e-1,
}


def convert(frozen_pb: Path, inputs: Sequence[Mapping], outputs: Sequence[str],
            precision: str, batch_size: int, calibration: np.ndarray | None,
            out_path: Path) -> dict:
    """Write `out_path` (.tflite) with the batch fixed at `batch_size`; return its metadata.

    `inputs` items have `name`, `shape` (batch may be None/-1) and `dtype`.
    INT8 uses the converter's default post-training quantization: int8 weights
    and activations, float32 model inputs and outputs, float fallback for ops
    without an int8 kernel.
    """
    if not isinstance(precision, str) or precision.upper() not in PRECISIONS:
        raise ConfigError(f"unknown TFLite precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    precision = precision.upper()
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if not inputs or not outputs:
        raise ConfigError("TFLite conversion needs at least one input and one output node")
    input_shapes = {}
    for spec in inputs:
        shape = list(spec["shape"])
        if any(d is None or d < 0 for d in shape[1:]):
            raise ConfigError(f"input {spec['name']!r} has shape {shape}: only the batch "
                              f"dimension may be unknown, give the others fixed sizes")
        input_shapes[node_of(spec["name"])] = [batch_size, *shape[1:]]
    if precision == "INT8":
        representative = _representative_dataset(inputs, calibration, batch_size)

    import tensorflow as tf  # lazy: keeps `import tfbuild...` fast

    try:
        converter = tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(
            str(frozen_pb), list(input_shapes), [node_of(o) for o in outputs],
            input_shapes=input_shapes)
    except ValueError as e:
        if "Invalid tensors" in str(e):  # a node name not in the graph
            raise NodeNotFound(f"{frozen_pb}: {e} Check the input/output node names "
                               f"in the target") from None
        raise StageFailed(f"cannot load {frozen_pb} for TFLite conversion: {e}") from None
    except OSError as e:
        raise StageFailed(f"cannot load {frozen_pb} for TFLite conversion: {e} "
                          f"Rebuild the frozen graph") from None
    if precision == "FP16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "INT8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
    try:
        model = converter.convert()
    except Exception as e:  # ConverterError and friends: report the first real error
        raise StageFailed(f"TFLite {precision} conversion of {frozen_pb} failed: "
                          f"{_first_error_line(str(e))}") from None

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    tmp.write_bytes(model)
    os.replace(tmp, out_path)  # never leave a half-written model at out_path

    from tfbuild.tf.measure import load_interpreter

    interpreter = load_interpreter(model_content=model)
    return {
        "precision": precision,
        "batch_size": batch_size,
        "size_bytes": len(model),
        "inputs": [_details(d) for d in interpreter.get_input_details()],
        "outputs": [_details(d) for d in interpreter.get_output_details()],
    }


def _representative_dataset(inputs: Sequence[Mapping], calibration, batch_size: int):
    if calibration is None or len(calibration) == 0:
        raise CalibrationError("INT8 conversion needs calibration data: set calibration.path "
                               "(or calibration.random: true for a demo)")
    if len(inputs) != 1:
        raise ConfigError(f"INT8 calibration supports single-input models, this one has "
                          f"{len(inputs)} inputs: use FP32 or FP16")
    expected = list(inputs[0]["shape"])[1:]
    if list(calibration.shape[1:]) != expected:
        raise CalibrationError(f"calibration data has shape {list(calibration.shape)}, expected "
                               f"[N, {', '.join(map(str, expected))}] to match input "
                               f"{inputs[0]['name']}")
    dtype = np.dtype(inputs[0].get("dtype", "float32"))

    def dataset():
        # Whole batches of the model's fixed size: a graph with a reshape to
        # [batch, classes] (DenseNet's squeeze) cannot take one sample at a time.
        # Cycling fills the last batch; min/max statistics do not mind repeats.
        n = len(calibration)
        for start in range(0, n, batch_size):
            idx = [(start + i) % n for i in range(batch_size)]
            yield [np.asarray(calibration[idx], dtype=dtype)]

    return dataset


def _first_error_line(message: str) -> str:
    for line in message.splitlines():
        if "error: " in line:
            line = line.split("error: ", 1)[1]
            line = re.sub(r"^loc\(.*?\):\s*", "", line)  # MLIR source location
            if line.strip():
                return line.strip()
    return next((l.strip() for l in message.splitlines() if l.strip()), "unknown error")


def _details(d: Mapping) -> dict:
    return {"name": d["name"], "shape": [int(n) for n in d["shape"]],
            "dtype": np.dtype(d["dtype"]).name}
