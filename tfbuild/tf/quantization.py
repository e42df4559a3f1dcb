"""Which layers lose accuracy in INT8: `tfbuild inspect target=NAME quantization=true`,
and the layers `tflite.float_ops` / `onnx.float_nodes` keep in float.

The backends' own tools measure it: TensorFlow's QuantizationDebugger for TFLite
(each quantized op beside its float twin run on the same quantized inputs) and
onnxruntime's qdq_loss_debug for ONNX (every activation of the Q/DQ model beside
the float model's). Both are ranked by one figure, the error a layer *adds*:
RMS(quantized - float) / RMS(float) of its output, less (ONNX) the worst such error
of its inputs. A layer is named as the user keeps it in float: its TFLite tensor
name (the TensorFlow nodes it fused, joined by ';') or its ONNX node name (the
TensorFlow node tf2onnx made it from).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Sequence

from ..errors import ConfigError

INSPECT = "tfbuild inspect target=NAME quantization=true"


@dataclass(frozen=True)
class Layer:
    name: str      # what float_ops / float_nodes take
    op: str        # TFLite builtin or ONNX op type
    error: float   # relative RMS error the layer adds (0: none; ~1: its output is lost)

    @property
    def tf_nodes(self) -> List[str]:
        return self.name.split(";")


def relative(err2: float, sig2: float) -> float:
    """RMS error over RMS signal from their mean squares (0/0: no error)."""
    if sig2 <= 0:
        return 0.0 if err2 <= 0 else math.inf
    return math.sqrt(err2 / sig2)


def worst_first(layers: Sequence[Layer]) -> List[Layer]:
    return sorted(layers, key=lambda l: (-l.error, l.name))


def resolve(given: Sequence[str], layers: Sequence[Layer], key: str) -> List[str]:
    """The layer names `given` names: a layer's full name, one of its TensorFlow nodes, or
    several joined by ';' (as inspect shows an ONNX layer). A name that is no quantized
    layer is a one-line ConfigError."""
    chosen: List[str] = []
    for name in given:
        parts = [name] if any(name == l.name for l in layers) else name.split(";")
        for part in parts:
            match = [l.name for l in layers if part == l.name or part in l.tf_nodes]
            if not match:
                raise ConfigError(f"{key}: {part!r} is no quantized layer of the model; {INSPECT} "
                                  f"lists them (e.g. {', '.join(repr(l.tf_nodes[0]) for l in layers[:2])})")
            chosen += [m for m in match if m not in chosen]
    return chosen
