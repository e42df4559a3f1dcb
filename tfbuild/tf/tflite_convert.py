"""Convert a frozen GraphDef to a `.tflite` model at FP32, FP16 or INT8.

One route for every model: the GraphDef, its inputs pinned to their full shapes, is
wrapped in a concrete function and converted by TFLite's V2 converter, builtin ops
only (a model that needs the Flex delegate is refused: tfbuild does not ship it).
The model's tensors keep the frozen graph's names, inputs in the given order and
outputs in the order asked for, so runners match them by name.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from tfbuild.backends import PRECISIONS
from tfbuild.errors import CalibrationError, ConfigError, NodeNotFound, StageFailed
from tfbuild.tf.graph_io import node_of, read_graph_def
from tfbuild.tf.quiet import captured

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
            precision: str, batch_size: int, calibration: Mapping[str, np.ndarray] | None,
            out_path: Path, *, float_ops: Sequence[str] = (), verbose: bool = False) -> dict:
    """Write `out_path` (.tflite) with the batch fixed at `batch_size`; return its metadata.

    `inputs` items have `name`, `dtype` and `shape`: the batch (first) dimension may be
    None/-1 and becomes `batch_size`; every other dimension must be known; `[]` is a
    scalar input, kept as it is. INT8 uses post-training quantization calibrated on
    `calibration` ({input name: [N, ...] array}, scalars [N]): int8 weights and
    activations, float fallback for ops without an int8 kernel, model inputs and
    outputs keep their dtypes; `float_ops` (layer names, see quantization.resolve) stay
    float. Converter logs show only when `verbose`.
    """
    precision = _check_request(inputs, outputs, precision, batch_size)
    shapes = {spec["name"]: _pinned_shape(spec, batch_size) for spec in inputs}
    representative = (_representative_dataset(inputs, shapes, calibration, batch_size)
                      if precision == "INT8" else None)
    graph_def = read_graph_def(frozen_pb)
    _check_names(graph_def, shapes, outputs, frozen_pb)
    rewritten = 0
    if precision == "INT8":
        _check_calibratable(graph_def)
        graph_def, rewritten = batch_norms_as_depthwise(graph_def)
    with captured(verbose) as chatter:
        try:
            if float_ops and precision == "INT8":
                model = _selective(graph_def, shapes, outputs, representative, float_ops)
            else:
                model = _converter(graph_def, shapes, outputs, precision, representative).convert()
        except ConfigError:
            raise
        except Exception as e:  # ConverterError and friends: report the first real error
            error = _first_error_line(f"{e}\n{chatter.stderr()}")
            raise StageFailed(f"TFLite {precision} conversion of {frozen_pb} failed: {_explain(error)}") from None

    from tfbuild.tf.runtimes import load_interpreter

    interpreter = load_interpreter(model_content=model)
    meta_inputs = [_details(d) for d in interpreter.get_input_details()]
    meta_outputs = [_details(d) for d in interpreter.get_output_details()]
    # Runners match feeds by name and read outputs by position: both rest on this.
    if (sorted(i["name"] for i in meta_inputs) != sorted(map(_tensor_key, shapes))
            or [o["name"] for o in meta_outputs] != [_tensor_key(o) for o in outputs]):
        raise StageFailed(f"the TFLite model's tensors are {[i['name'] for i in meta_inputs]} -> "
                          f"{[o['name'] for o in meta_outputs]}, not the frozen graph's "
                          f"{list(shapes)} -> {list(outputs)}: report this tfbuild bug")

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    tmp.write_bytes(model)
    os.replace(tmp, out_path)  # never leave a half-written model at out_path
    return {"precision": precision, "batch_size": batch_size, "size_bytes": len(model),
            **({"batch_norms_as_depthwise": rewritten} if rewritten else {}),
            "inputs": meta_inputs, "outputs": meta_outputs}


def _check_request(inputs, outputs, precision, batch_size) -> str:
    if not isinstance(precision, str) or precision.upper() not in PRECISIONS:
        raise ConfigError(f"unknown TFLite precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if not inputs or not outputs:
        raise ConfigError("TFLite conversion needs at least one input and one output node")
    return precision.upper()


def _pinned_shape(spec: Mapping, batch_size: int) -> list[int]:
    """The input's shape in the model: batch fixed, scalars left rank 0."""
    shape = spec.get("shape")
    if shape is None or any(d is None or d < 0 for d in shape[1:]):
        raise ConfigError(f"input {spec['name']!r} has shape {shape}: only the batch "
                          f"dimension may be unknown, give the others fixed sizes")
    return [batch_size, *shape[1:]] if shape else []


def _check_names(graph_def, shapes: Mapping, outputs: Sequence[str], frozen_pb) -> None:
    nodes = {n.name: n.op for n in graph_def.node}
    missing = [n for n in [*shapes, *outputs] if node_of(n) not in nodes]
    if missing:
        raise NodeNotFound(f"{frozen_pb} has no node {', '.join(map(repr, missing))}: check "
                           f"the input/output node names in the target")
    not_placeholders = [n for n in shapes if nodes[node_of(n)] != "Placeholder"]
    if not_placeholders:
        raise NodeNotFound(f"input {', '.join(map(repr, not_placeholders))} of {frozen_pb} is not "
                           f"a Placeholder: name the graph's input nodes")


def _check_calibratable(graph_def) -> None:
    """TFLite's INT8 calibrator crashes the process (SIGSEGV, TF 2.21) on the loops that
    tensor lists become (Keras LSTM/GRU); plain while loops calibrate fine."""
    nodes = [*graph_def.node, *(n for f in graph_def.library.function for n in f.node_def)]
    rnn = next((n for n in nodes if "TensorList" in n.op), None)
    if rnn is not None:
        raise StageFailed(f"TFLite INT8 cannot calibrate a recurrent loop ({rnn.op} at node "
                          f"{rnn.name!r}, e.g. an LSTM or GRU): its calibrator crashes on it; "
                          f"use tflite.precision=FP16 or FP32")


def layer_errors(frozen_pb: Path, inputs: Sequence[Mapping], outputs: Sequence[str], batch_size: int,
                 calibration: Mapping[str, np.ndarray], *, verbose: bool = False) -> list:
    """The INT8 model's quantized layers (quantization.Layer), the worst first, measured on
    `calibration` by TensorFlow's QuantizationDebugger."""
    shapes = {spec["name"]: _pinned_shape(spec, batch_size) for spec in inputs}
    representative = _representative_dataset(inputs, shapes, calibration, batch_size)
    graph_def = read_graph_def(frozen_pb)
    _check_calibratable(graph_def)
    graph_def, _ = batch_norms_as_depthwise(graph_def)   # the layers convert() quantizes
    with captured(verbose) as chatter:
        try:
            return _layers(_debugger(graph_def, shapes, outputs, representative))
        except Exception as e:  # noqa: BLE001
            error = _first_error_line(f"{e}\n{chatter.stderr()}")
            raise StageFailed(f"TFLite's quantization debugger failed on {frozen_pb}: {_explain(error)}") from None


def _debugger(graph_def, shapes, outputs, representative):
    """A QuantizationDebugger of the INT8 model, measuring each layer's output power too."""
    import tensorflow as tf
    options = tf.lite.experimental.QuantizationDebugOptions(
        layer_direct_compare_metrics={"signal": lambda f, q, scale, zero: float(np.mean(np.square(f)))})
    converter = _converter(graph_def, shapes, outputs, "INT8", representative)
    return tf.lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=representative,
                                                     debug_options=options)


def _layers(debugger) -> list:
    """Each NumericVerify'd layer: its mean squared error against its float twin (run on
    the same quantized inputs) over its output's mean square. Read through the public
    CSV dump, which names each layer's tensor."""
    import csv
    import io
    from tfbuild.tf.quantization import Layer, relative, worst_first
    debugger.run()
    dump = io.StringIO()
    debugger.layer_statistics_dump(dump)
    dump.seek(0)
    return worst_first(Layer(row["tensor_name"], row["op_name"],
                             relative(float(row["mean_squared_error"]), float(row["signal"])))
                       for row in csv.DictReader(dump))


def _selective(graph_def, shapes, outputs, representative, float_ops: Sequence[str]) -> bytes:
    """The INT8 model with the layers `float_ops` names left in float (denylisted)."""
    import tensorflow as tf
    from tfbuild.tf.quantization import resolve
    debugger = _debugger(graph_def, shapes, outputs, representative)
    names = resolve(float_ops, _layers(debugger), "tflite.float_ops")
    debugger.options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=names)
    return debugger.get_nondebug_quantized_model()


_FOLDED_INTO = ("Conv2D", "DepthwiseConv2dNative", "MatMul")   # the converter folds a batch norm after these


def batch_norms_as_depthwise(graph_def):
    """(a copy, how many) with each inference batch norm that follows no convolution (a
    pre-activation one, e.g. DenseNet's after each concat) as a 1x1 depthwise convolution
    and a bias. TFLite makes such a norm a Mul and an Add, whose INT8 scales XNNPACK's
    ADD often refuses (its scale-ratio limit), splitting the model into partitions run by
    TFLite's own kernels; an INT8 depthwise convolution (per-channel, so each channel's
    factor is exact) and its bias and ReLU are one op XNNPACK runs. Same math in float."""
    import numpy as np
    from tensorflow.python.framework import tensor_util

    graph_def = type(graph_def).FromString(graph_def.SerializeToString())
    nodes = {n.name: n for n in graph_def.node}

    def producer(name):   # through the Identity nodes frozen variable reads leave
        node = nodes.get(node_of(name))
        while node is not None and node.op == "Identity":
            node = nodes.get(node_of(node.input[0]))
        return node

    const = lambda name: tensor_util.MakeNdarray(producer(name).attr["value"].tensor)  # noqa: E731
    rewritten, added = 0, []
    read = {i for n in graph_def.node for i in n.input}
    for node in graph_def.node:
        if not node.op.startswith("FusedBatchNorm") or node.attr["is_training"].b or \
                node.attr["data_format"].s not in (b"", b"NHWC") or node.attr["T"].type != 1 or \
                any(f"{node.name}:{k}" in read for k in range(1, 6)):   # float32 NHWC, its output y alone
            continue
        source = producer(node.input[0])
        params = [producer(i) for i in node.input[1:5]]
        if source is None or source.op in _FOLDED_INTO or any(p is None or p.op != "Const" for p in params):
            continue
        scale, offset, mean, variance = (const(i).astype(np.float64) for i in node.input[1:5])
        factor = scale / np.sqrt(variance + node.attr["epsilon"].f)
        dtype = node.attr["T"].type
        weights, bias = f"{node.name}/depthwise_weights", f"{node.name}/depthwise_bias"
        added += [_const(weights, factor.reshape(1, 1, -1, 1), dtype), _const(bias, offset - mean * factor, dtype)]
        conv = graph_def.node.add(name=f"{node.name}/depthwise", op="DepthwiseConv2dNative",
                                  input=[node.input[0], weights])
        conv.attr["T"].type = dtype
        conv.attr["strides"].list.i.extend([1, 1, 1, 1])
        conv.attr["padding"].s = b"VALID"
        conv.attr["data_format"].s = b"NHWC"
        node.op = "BiasAdd"   # keeps its name: its readers need no change
        del node.input[:]
        node.input.extend([conv.name, bias])
        for key in list(node.attr):
            if key not in ("T",):
                del node.attr[key]
        rewritten += 1
    graph_def.node.extend(added)
    return graph_def, rewritten


def _const(name: str, value, dtype):
    import numpy as np
    from tensorflow.core.framework import node_def_pb2
    from tensorflow.python.framework import tensor_util
    node = node_def_pb2.NodeDef(name=name, op="Const")
    node.attr["dtype"].type = dtype
    node.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(np.asarray(value, dtype=np.float32)))
    return node


def _converter(graph_def, shapes: Mapping[str, list], outputs: Sequence[str], precision: str,
               representative):
    import tensorflow as tf  # lazy: keeps `import tfbuild...` fast

    graph_def = _static_tensor_lists(_with_input_shapes(graph_def, shapes), shapes)
    func = _concrete_function(graph_def, list(shapes), outputs)
    # trackable_obj=func keeps the GraphDef route: no SavedModel round trip, which would
    # rename tensors (serving_default_x:0) and reorder them.
    converter = tf.lite.TFLiteConverter.from_concrete_functions([func], func)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # never Flex
    if precision == "FP16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "INT8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
    return converter


def _with_input_shapes(graph_def, shapes: Mapping[str, list]):
    """A copy whose input placeholders have the shapes the model is built for."""
    import tensorflow as tf

    graph_def = type(graph_def).FromString(graph_def.SerializeToString())
    by_name = {n.name: n for n in graph_def.node}
    for name, shape in shapes.items():
        by_name[node_of(name)].attr["shape"].shape.CopyFrom(tf.TensorShape(shape).as_proto())
    return graph_def


def _static_tensor_lists(graph_def, shapes: Mapping[str, list]):
    """Give TensorList element shapes their batch: RNN loops (Keras LSTM/GRU) store
    per-step [batch, units] elements, traced with batch -1. TFLite lowers tensor lists
    to builtins only when the element shape is static, and a constant [-1, units] does
    not learn the batch from the pinned inputs. A -1 that was not the batch makes the
    conversion or the parity check fail."""
    from tensorflow.python.framework import op_def_registry, tensor_util

    batch = next((s[0] for s in shapes.values() if s), None)
    if batch is None:
        return graph_def
    by_name = {n.name: n for n in graph_def.node}
    for node in graph_def.node:
        op_def = op_def_registry.get(node.op) if "TensorList" in node.op else None
        args = [a.name for a in op_def.input_arg] if op_def else []
        if "element_shape" not in args:
            continue
        const = by_name.get(node_of(node.input[args.index("element_shape")]))
        if const is None or const.op != "Const":
            continue
        value = tensor_util.MakeNdarray(const.attr["value"].tensor)
        if value.ndim == 1 and value.size > 1 and value[0] == -1 and (value[1:] >= 0).all():
            value = value.copy()
            value[0] = batch
            const.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(value))
    return graph_def


def _concrete_function(graph_def, inputs: Sequence[str], outputs: Sequence[str]):
    """The GraphDef as a function of `inputs` (in that order) to `outputs`."""
    import tensorflow as tf

    wrapped = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(graph_def, name=""), [])
    graph = wrapped.graph
    tensor = lambda name: graph.get_tensor_by_name(name if ":" in name else name + ":0")  # noqa: E731
    return wrapped.prune([tensor(n) for n in inputs], [tensor(o) for o in outputs])


def _representative_dataset(inputs: Sequence[Mapping], shapes: Mapping[str, list],
                            calibration: Mapping[str, np.ndarray] | None, batch_size: int):
    """Samples for the INT8 calibrator: each a list in the model's input order (that of
    `inputs`), each input fed with its own dtype (token ids, masks stay integers)."""
    if not calibration:
        raise CalibrationError("INT8 conversion needs calibration data: set calibration.path "
                               "(or calibration.random: true for a demo)")
    if not isinstance(calibration, Mapping):
        raise CalibrationError("calibration data must map each input name to its samples")
    arrays = []
    for spec in inputs:
        name = spec["name"]
        data = calibration.get(name, calibration.get(node_of(name)))
        if data is None:
            raise CalibrationError(f"calibration data has no samples for input {name!r} "
                                   f"(it has {', '.join(map(repr, calibration)) or 'none'})")
        data = np.asarray(data)
        expected = shapes[name][1:] if shapes[name] else []
        if data.ndim < 1 or list(data.shape[1:]) != expected:
            raise CalibrationError(f"calibration data for {name!r} has shape {list(data.shape)}, "
                                   f"expected [{', '.join(map(str, ['N', *expected]))}]")
        arrays.append((data, np.dtype(spec.get("dtype", "float32")), bool(shapes[name])))
    n = min(len(a) for a, _, _ in arrays)
    if n == 0 or any(len(a) != n for a, _, _ in arrays):
        raise CalibrationError(f"calibration data needs the same number N >= 1 of samples for "
                               f"every input, got {[len(a) for a, _, _ in arrays]}")

    def dataset():
        # Whole batches of the model's fixed size: a graph with a reshape to
        # [batch, classes] cannot take one sample at a time. Cycling fills the
        # last batch; min/max statistics do not mind repeats. Scalars take one value.
        for start in range(0, n, batch_size):
            idx = [(start + i) % n for i in range(batch_size)]
            yield [np.asarray(a[idx] if batched else a[start], dtype=dtype)
                   for a, dtype, batched in arrays]

    return dataset


def _first_error_line(message: str) -> str:
    """The converter's first diagnostic, less its MLIR source location."""
    for line in message.splitlines():
        if "error: " in line:
            line = _strip_location(line.split("error: ", 1)[1])
            if line:
                return line
    return next((l.strip() for l in message.splitlines() if l.strip()), "unknown error")


def _strip_location(text: str) -> str:
    """'loc(callsite(...)): msg' -> 'msg' (locations nest parentheses)."""
    text = text.strip()
    if not text.startswith("loc("):
        return text
    depth = 0
    for i, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth == 0 and ch == ")":
            return text[i + 1:].lstrip(": ").strip()
    return text


_NO_KERNEL = re.compile(r"'(tf\.\w+)' op is neither a custom op nor a flex op|"
                        r"failed to legalize operation '(tf\.\w+)'")


def _explain(error: str) -> str:
    """The converter's error plus what the user can do about it."""
    error = error.replace("\\n", " ").rstrip(". ")
    match = _NO_KERNEL.search(error)
    if match:
        op = match.group(1) or match.group(2)
        return (f"{error}: TFLite has no builtin kernel for {op} and tfbuild builds models "
                f"without the Flex delegate; replace {op} in the model, or deploy it through "
                f"the onnx or trt stage")
    if "element_shape" in error or "tensor list" in error.lower():
        return (f"{error}: give the recurrent layers fixed sizes (sequence length and "
                f"features in keras.Input) so each step's shape is static")
    return f"{error} (run with verbose=true for the converter's full log)"


def _tensor_key(name: str) -> str:
    """A tensor's name as TFLite writes it: 'probs:0' -> 'probs', 'split:1' stays."""
    return name[:-2] if name.endswith(":0") else name


def _details(d: Mapping) -> dict:
    return {"name": d["name"], "shape": [int(n) for n in d["shape"]],
            "dtype": np.dtype(d["dtype"]).name}
