"""A frozen GraphDef as an ONNX model for onnxruntime (and TensorRT's ONNX parser).

tf2onnx does the conversion, onnxruntime's float16 converter the FP16 model
(inputs and outputs kept float32) and `onnxruntime.quantization` the INT8 one:
static quantization to Q/DQ pairs, the explicit form TensorRT also reads.
Inputs and outputs keep the frozen graph's node names (no ':0').

tf2onnx logs what it cannot convert and still returns a model; here such a model
is refused in one line (StageFailed) naming the ops and nodes, and no model is
written that onnxruntime cannot load.
"""
from __future__ import annotations

import contextlib
import re
import tempfile
from collections import Counter
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from tfbuild.errors import BackendUnavailable, CalibrationError, ConfigError, StageFailed, first_line
from tfbuild.tf.graph_io import node_of, read_graph_def
from tfbuild.tf.runtimes import onnx_session
from tfbuild.tf.quantization import Layer, relative, resolve, worst_first
from tfbuild.tf.quiet import captured

# Parity bounds (max abs diff against the frozen graph), for outputs in [0, 1];
# deploy.tolerance scales them for unbounded outputs. FP32: same math, other
# kernels. FP16: weights and activations in half precision. INT8: 8-bit Q/DQ.
TOLERANCE = {"FP32": 1e-4, "FP16": 1e-2, "INT8": 1e-1}

# TensorFlow ops tf2onnx 1.17 has no handler for, converted here with the same
# math: Erfc(x) = 1 - Erf(x) (exact GELU, keras.activations.gelu(approximate=False)).
REWRITTEN_OPS = ("Erfc",)

# Why tf2onnx leaves some ops, and what to do, for the refusal message.
_HINTS = {
    "TensorList": "the frozen graph holds a TF2 loop (LSTM/GRU/RNN) in lowered form (Enter/Exit/Merge), which "
                  "tf2onnx converts only as a While op: freeze it with convert_variables_to_constants_v2("
                  "lower_control_flow=False), or convert the model with tf2onnx.convert.from_keras",
    "PartitionedCall": "a function call is left in the frozen graph (e.g. Keras 3's XLA-compiled grouped "
                       "convolution, Conv2D(groups>1)): tf2onnx converts only inlined graphs: freeze it with "
                       "the function inlined",
}
_HINT = ("replace it in the model with ops tf2onnx supports "
         "(github.com/onnx/tensorflow-onnx/blob/main/support_status.md), or deploy with the tflite stage")


def preflight() -> None:
    import importlib.util
    missing = [m for m in ("tf2onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        raise BackendUnavailable(f"the onnx stage needs tf2onnx and onnxruntime ({', '.join(missing)} "
                                 "missing): pip install 'tfbuild[onnx]'")


def convert(frozen_pb: Path, inputs: Sequence[Mapping], outputs: Sequence[str], *, opset: int,
            batch_size: Optional[int], precision: str, calibration: Optional[Dict[str, np.ndarray]],
            out: Path, symmetric: bool = False, float_nodes: Sequence[str] = (),
            verbose: bool = False) -> dict:
    """Write `out` (.onnx); return its metadata.

    `inputs`: the frozen graph's ({"name", "dtype", "shape"}); `calibration`: for INT8,
    one array [N, ...] per input name; `float_nodes`: INT8 nodes left in float (names as
    quantization.resolve takes them). `verbose` lets tf2onnx's and TensorFlow's log
    through; otherwise it is kept for the error message.
    """
    import onnx

    model = _tf2onnx(frozen_pb, inputs, outputs, opset, batch_size, verbose)
    if precision == "FP16":
        from onnxruntime.transformers.float16 import convert_float_to_float16
        with captured(verbose):
            model = convert_float_to_float16(model, keep_io_types=True)
    if precision == "INT8":
        model = _quantize(model, inputs, calibration, batch_size, symmetric, verbose, float_nodes)
    _canonical(model.graph)
    for field in (model.graph.initializer, model.graph.value_info):  # the quantizer's order varies
        items = sorted(field, key=lambda item: item.name)
        del field[:]
        field.extend(items)
    data = model.SerializeToString(deterministic=True)
    _check(model, data, f"the {precision} model of {frozen_pb.name}")
    out.write_bytes(data)
    return {"precision": precision, "opset": opset, "batch_size": batch_size,
            "inputs": [_io(v) for v in model.graph.input], "outputs": [_io(v) for v in model.graph.output],
            "ops": dict(sorted(Counter(n.op_type for n in model.graph.node).items())),
            "onnx_ir_version": model.ir_version, "size_bytes": len(data), "onnx": onnx.__version__}


def _tf2onnx(frozen_pb: Path, inputs: Sequence[Mapping], outputs: Sequence[str], opset: int,
             batch_size: Optional[int], verbose: bool):
    """tf2onnx's model of the frozen graph; one with ops it could not convert is refused."""
    import tf2onnx

    graph_def = read_graph_def(frozen_pb)
    # tf2onnx numbers the nodes it adds from a process-wide counter: start it afresh,
    # so a rebuild in the same process writes the same bytes.
    tf2onnx.utils.INTERNAL_NAME = 1
    names = [node_of(i["name"]) for i in inputs]
    renames = {f"{n}:0": n for n in [*names, *map(node_of, outputs)]}
    with captured(verbose) as log:
        try:
            model, _ = tf2onnx.convert.from_graph_def(
                graph_def, input_names=[f"{n}:0" for n in names], output_names=[f"{node_of(o)}:0" for o in outputs],
                opset=opset, shape_override=_shapes(inputs, batch_size), tensors_to_rename=renames,
                custom_op_handlers={"Erfc": (_erfc, ["Erf"])})   # REWRITTEN_OPS
        except Exception as e:  # noqa: BLE001  a graph tf2onnx cannot read, and the like
            raise StageFailed(f"tf2onnx could not convert {frozen_pb.name} at opset {opset}: "
                              f"{first_line(e)}{_said(log.lines)}") from None
    model.producer_version = tf2onnx.__version__   # fixed text: identical rebuilds, identical bytes
    left = _unconverted(model)
    if left:
        raise StageFailed(f"tf2onnx cannot convert {_listed(left)} at opset {opset}: {_fix(left, opset)}")
    _check(model, None, f"tf2onnx's model of {frozen_pb.name}", log)
    return model


def _shapes(inputs: Sequence[Mapping], batch_size: Optional[int]) -> Optional[dict]:
    """The batch size on the inputs that have a batch dimension; scalars keep their rank 0."""
    if not batch_size:
        return None
    return {f"{node_of(i['name'])}:0": [batch_size, *i["shape"][1:]] for i in inputs if i.get("shape")} or None


def _erfc(ctx, node, name, args):
    """tf2onnx handler (custom_op_handlers API): the node arrives renamed Erf; Erfc = 1 - Erf."""
    from tf2onnx import utils

    out = node.output[0]
    dtype = ctx.get_dtype(out)
    one = ctx.make_const(utils.make_name(f"{name}/one"), np.array(1, utils.map_onnx_to_numpy_type(dtype)))
    sub = ctx.make_node("Sub", [one.output[0], out], name=utils.make_name(f"{name}/erfc"),
                        shapes=[ctx.get_shape(out)], dtypes=[dtype])
    ctx.insert_node_on_output(sub, out)
    return node


def _unconverted(model) -> Dict[str, List[str]]:
    """{op: [node names]} of the nodes that are not ONNX ops: those tf2onnx left as
    TensorFlow ops (no handler, or a handler that expects another graph form)."""
    import onnx

    left: Dict[str, List[str]] = {}

    def walk(graph):
        for node in graph.node:
            if not onnx.defs.has(node.op_type, node.domain):
                left.setdefault(node.op_type, []).append(node.name)
            for attr in node.attribute:   # Loop, If and Scan bodies
                for sub in [attr.g] if attr.HasField("g") else attr.graphs:
                    walk(sub)
    walk(model.graph)
    return dict(sorted(left.items()))


def _listed(left: Dict[str, List[str]]) -> str:
    """'op Erfc (nodes a/b, c/d)', 'ops A (node x), B (nodes y, z, ... 3 more)'."""
    def nodes(names):
        shown = ", ".join(names[:3]) + (f", ... {len(names) - 3} more" if len(names) > 3 else "")
        return f"node{'s' if len(names) > 1 else ''} {shown}"
    return f"op{'s' if len(left) > 1 else ''} " + ", ".join(f"{op} ({nodes(n)})" for op, n in left.items())


def _fix(left: Dict[str, List[str]], opset: int) -> str:
    import tf2onnx

    for op in left:
        hint = next((h for key, h in _HINTS.items() if key in op), None)
        if hint:
            return hint
    # An op tf2onnx converts only from a later opset than the one asked for.
    handlers = tf2onnx.handler.tf_op.get_opsets().get(tf2onnx.constants.ONNX_DOMAIN, [])
    later = [v for op in left for v, ops in enumerate(handlers) if op in ops and v > opset]
    return f"set onnx.opset={min(later)} or later" if later else _HINT


def _check(model, data: Optional[bytes], what: str, log: Sequence[str] = ()) -> None:
    """Refuse, in one line, a model that onnx's checker or onnxruntime rejects (`data`:
    the model serialized, where the caller has it)."""
    import onnx

    try:
        onnx.checker.check_model(model)
    except Exception as e:  # noqa: BLE001  ValidationError, and protobuf size limits
        raise StageFailed(f"{what} is invalid: {first_line(e)}{_said(log.lines)}") from None
    try:
        onnx_session(data if data is not None else model.SerializeToString())
    except StageFailed as e:
        raise StageFailed(f"{what}: {e}{_said(log.lines)}") from None


def _said(log: Sequence[str], who: str = "tf2onnx") -> str:
    """The first thing the converter complained about, for a message that has no better cause."""
    said = next((line for line in log if not line.startswith("From ")), "")   # not TF's deprecations
    return f" ({who}: {said})" if said else ""


# What tf2onnx and the quantizer append (BASE__N), and the object ids tf2onnx's einsum
# optimizer puts in names (einsum139708668420880_ba): made-up names, from counters.
_COUNTER = re.compile(r"__\d+|\d{9,}")


def _canonical(graph) -> None:
    """Name and order what the converters made up by content, not by counters.

    tf2onnx and onnxruntime's quantizer number the nodes they add from counters
    whose values depend on the order sets of nodes are visited (object ids), so
    two conversions of one graph can differ in names and node order only. Each
    made-up name becomes its base plus a digest of what computes it (op, attributes,
    inputs), and nodes are ordered topologically with ties broken by that digest.
    Constants are named by content: of equal constants, tf2onnx keeps whichever it
    meets first, under that one's name.
    """
    import hashlib

    from onnx import numpy_helper

    digest = {v.name: v.name for v in graph.input}
    made_up = {init.name for init in graph.initializer}
    for init in graph.initializer:   # one stored form per value (raw_data, not float_data)
        value = numpy_helper.from_array(numpy_helper.to_array(init))
        digest[init.name] = hashlib.sha1(value.SerializeToString(deterministic=True)).hexdigest()
        value.name = init.name
        init.CopyFrom(value)
    nodes = list(graph.node)   # one wrapper per node: id() stays valid below
    node_key = {}
    for node in nodes:  # ONNX graphs are topologically sorted
        attrs = b"".join(a.SerializeToString(deterministic=True) for a in sorted(node.attribute, key=lambda a: a.name))
        base = hashlib.sha1(b"|".join([node.op_type.encode(), node.domain.encode(), attrs,
                                       *(digest.get(i, i).encode() for i in node.input)])).hexdigest()
        node_key[id(node)] = base
        made_up |= {n for n in (node.name, *node.output) if _COUNTER.search(n)}
        for k, out in enumerate(node.output):
            digest[out] = f"{base}:{k}" if out in made_up else out

    keep = {v.name for v in (*graph.input, *graph.output)}   # the model's own names stay
    initializers = {init.name for init in graph.initializer}
    renamed: dict = {}
    taken = {n for n in digest if n in keep or n not in made_up}

    def name(old: str, key: str = "") -> str:
        if old in keep or old not in made_up:
            return old
        if old not in renamed:
            stem = "const" if old in initializers else _COUNTER.sub('', old)
            new = f"{stem}__{hashlib.sha1((key or digest.get(old, old)).encode()).hexdigest()[:10]}"
            while new in taken:  # two made-up twins (same op, same inputs): keep them apart
                new += "_"
            taken.add(new)
            renamed[old] = new
        return renamed[old]

    for node in nodes:
        node.name = name(node.name, "node:" + node_key[id(node)])
        node.input[:] = [name(i) for i in node.input]
        node.output[:] = [name(o) for o in node.output]
    for item in (*graph.initializer, *graph.value_info):
        item.name = name(item.name)
    for inner in (n for node in nodes for n in _body_nodes(node)):   # If/Loop bodies read outer names
        inner.input[:] = [renamed.get(i, i) for i in inner.input]
    del graph.node[:]
    graph.node.extend(_topological(nodes, node_key))
    # Unknown dimensions get counter names too (unk__240): number them in order.
    dims: dict = {}
    for value in (*graph.input, *graph.output, *sorted(graph.value_info, key=lambda v: v.name)):
        for dim in value.type.tensor_type.shape.dim:
            if _COUNTER.search(dim.dim_param):
                dim.dim_param = dims.setdefault(dim.dim_param, f"{_COUNTER.sub('', dim.dim_param)}_{len(dims)}")


def _bodies(node) -> list:
    from onnx import AttributeProto
    return [a.g for a in node.attribute if a.type == AttributeProto.GRAPH] + \
        [g for a in node.attribute if a.type == AttributeProto.GRAPHS for g in a.graphs]


def _body_nodes(node):
    """Every node inside an If/Loop node's bodies, at any depth."""
    for g in _bodies(node):
        for n in g.node:
            yield n
            yield from _body_nodes(n)


def _outer_inputs(node) -> set:
    """Names an If/Loop body reads from the enclosing graph: dependencies as real as inputs."""
    names = set()
    for g in _bodies(node):
        inner = {o for n in g.node for o in n.output} | {i.name for i in (*g.input, *g.initializer)}
        for n in g.node:
            names |= {i for i in (*n.input, *_outer_inputs(n)) if i not in inner}
    return names


def _topological(nodes: list, key: dict) -> list:
    """Kahn's order, the smallest content digest first among the ready nodes."""
    import heapq

    made = {out: n for n in nodes for out in n.output}
    waiting = {id(n): {i for i in (*n.input, *_outer_inputs(n)) if i in made} for n in nodes}
    users: dict = {}
    for n in nodes:
        for i in waiting[id(n)]:
            users.setdefault(i, []).append(n)
    ticket = iter(range(1 << 62))   # strictly increasing: ties never compare the nodes
    ready = [(key[id(n)], next(ticket), n) for n in nodes if not waiting[id(n)]]
    heapq.heapify(ready)
    order = []
    while ready:
        _, _, n = heapq.heappop(ready)
        order.append(n)
        for out in n.output:
            for user in users.get(out, []):
                waiting[id(user)].discard(out)
                if not waiting[id(user)]:
                    heapq.heappush(ready, (key[id(user)], next(ticket), user))
    return order if len(order) == len(nodes) else nodes


def _quantize(model, inputs: Sequence[Mapping], data: Optional[Dict[str, np.ndarray]],
              batch_size: Optional[int], symmetric: bool, verbose: bool, float_nodes: Sequence[str] = ()):
    """Static INT8 quantization into Q/DQ pairs, calibrated on `data` (one array per
    input; integer inputs such as token ids are fed as they are and not quantized).
    `symmetric`: the form a TensorRT engine is built from (_tensorrt_form: zero points of 0,
    int8 Q/DQ on the weighted ops' inputs only, float biases); otherwise onnxruntime's
    default form (every op it can quantize, int32 biases, asymmetric activations)."""
    import onnx
    with _quantized(model, inputs, data, batch_size, symmetric, verbose, float_nodes) as (_, dst, _):
        return onnx.load(str(dst))


def layer_errors(frozen_pb: Path, inputs: Sequence[Mapping], outputs: Sequence[str], *, opset: int,
                 batch_size: Optional[int], calibration: Dict[str, np.ndarray], symmetric: bool = False,
                 verbose: bool = False) -> list:
    """The INT8 model's quantized nodes (quantization.Layer), the worst first, measured on
    `calibration` with onnxruntime's qdq_loss_debug: the error each node's output has against
    the float model's, less the worst of its inputs'."""
    model = _tf2onnx(frozen_pb, inputs, outputs, opset, batch_size, verbose)
    with _quantized(model, inputs, calibration, batch_size, symmetric, verbose) as (src, dst, batches), \
            captured(verbose):
        try:
            return _added_errors(src, dst, batches)
        except Exception as e:  # noqa: BLE001
            raise StageFailed(f"onnxruntime's qdq_loss_debug failed on {frozen_pb.name}: {first_line(e)}") from None


@contextlib.contextmanager
def _quantized(model, inputs, data, batch_size, symmetric, verbose, float_nodes: Sequence[str] = ()):
    """(float model, Q/DQ model, calibration feeds): paths in a scratch folder, while open."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    batches = _calibration_batches(inputs, data, batch_size or 1)
    with tempfile.TemporaryDirectory(prefix="tfbuild-onnx-") as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, str(src))
        with captured(verbose) as log:
            try:
                # onnxruntime's own pre-processing first: batch norm folded into the convolutions,
                # shapes inferred, so the quantizer sees what onnxruntime will run. ONNX's shape
                # inference suffices for tf2onnx's standard ops; the symbolic one needs sympy and
                # fails on transformers' dynamic dims ("Incomplete symbolic shape inference").
                quant_pre_process(str(src), str(src), skip_symbolic_shape=True)
                pre = onnx.load(str(src))
                form = _tensorrt_form(pre) if symmetric else {"extra_options": {"ActivationSymmetric": False}}
                if float_nodes:
                    nodes = [Layer(_stable(n.name), n.op_type, 0.0) for n in pre.graph.node]
                    kept = set(resolve(float_nodes, nodes, "onnx.float_nodes"))
                    form["nodes_to_exclude"] = [*form.get("nodes_to_exclude", []),
                                                *(n.name for n in pre.graph.node if _stable(n.name) in kept)]
                quantize_static(str(src), str(dst), _reader(batches), quant_format=QuantFormat.QDQ,
                                activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True,
                                **form)
            except ConfigError:
                raise
            except Exception as e:  # noqa: BLE001
                raise StageFailed(f"onnxruntime could not quantize the model to INT8: {first_line(e)}"
                                  f"{_said(log.lines, 'onnxruntime')}") from None
        yield src, dst, batches


def _reader(batches):
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(batches)

        def get_next(self):
            return next(self.batches, None)

    return Reader()


def _added_errors(src: Path, dst: Path, batches) -> list:
    import onnx
    from onnxruntime.quantization import qdq_loss_debug as qdq

    acts = {}
    for which, path in (("float", src), ("qdq", dst)):
        augmented = path.with_name(f"{which}-augmented.onnx")
        qdq.modify_model_output_intermediate_tensors(str(path), str(augmented))
        acts[which] = qdq.collect_activations(str(augmented), _reader(batches),
                                              execution_providers=["CPUExecutionProvider"])
    matched = qdq.create_activation_matching(acts["qdq"], acts["float"])
    error = {name: relative(_mean_square(m["post_qdq"], m["float"]), _mean_square(m["float"]))
             for name, m in matched.items() if m.get("float")}
    graph = onnx.load(str(src)).graph
    producer = {o: n for n in graph.node for o in n.output}
    layers = []
    for node in graph.node:
        out = [error[o] for o in node.output if o in error]
        if out:
            group, inputs = _unmeasured_chain(node, producer, error)
            before = max([error[i] for i in inputs] or [0.0])
            layers.append(Layer(";".join(_stable(n.name) for n in group), group[-1].op_type, max(0.0, max(out) - before)))
    return worst_first(layers)


def _stable(node: str) -> str:
    """A node's name less the number tf2onnx appends to the nodes it makes (`MatMul_Gemm__7`),
    which counts process-wide: the name a user writes in onnx.float_nodes."""
    return re.sub(r"__\d+$", "", node)


def _unmeasured_chain(node, producer, measured):
    """`node` and the nodes feeding it through tensors the Q/DQ model does not quantize
    (e.g. a Gemm fused with its Relu): one layer, kept in float together; and the measured
    tensors it reads."""
    group, inputs, todo = [node], set(), list(node.input)
    while todo:
        name = todo.pop()
        if name in measured:
            inputs.add(name)
        elif name in producer and producer[name] not in group:
            group.insert(0, producer[name])
            todo += producer[name].input
    return group, inputs


def _mean_square(values, minus=None) -> float:
    """Mean square of the arrays in `values` (less `minus`'s, element by element)."""
    total = count = 0
    for i, v in enumerate(values):
        v = np.asarray(v, dtype=np.float64)
        if minus is not None:
            v = v - np.asarray(minus[i], dtype=np.float64)
        total, count = total + float(np.sum(v * v)), count + v.size
    return total / max(count, 1)


# TensorRT's explicit-quantization form (NVIDIA's Q/DQ placement recommendations): Q/DQ on
# the inputs of the weighted ops only, weights per channel on their output-channel axis,
# activations per tensor, all symmetric (zero point 0). TensorRT fuses the rest itself.
TENSORRT_QUANTIZED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def _tensorrt_form(model) -> dict:
    """quantize_static arguments for the model a TensorRT engine is built from.

    TensorRT's IDequantizeLayer takes INT8/FP8/INT4/FP4 inputs only, so no bias becomes an
    int32 DequantizeLinear (onnxruntime's QuantizeBias default) and nothing but the weights
    and activations of TENSORRT_QUANTIZED_OPS is quantized: batch-norm scales and biases,
    Mul/Add constants stay float. onnxruntime 1.32's per-channel axes are the output
    channels (Conv 0, ConvTranspose 1, Gemm 0 or 1 by transB), and here a MatMul's B
    [..., K, N] is quantized on its last axis (onnxruntime's default, 1, is right for
    rank 2 only). A MatMul whose constant is its first input ([M, K]: onnxruntime would
    scale along K, the reduced axis) is left in float.
    """
    excluded = []
    inits = {i.name for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "MatMul" and node.input[0] in inits:
            excluded.append(node.name)
    return {
        "op_types_to_quantize": list(TENSORRT_QUANTIZED_OPS),
        "nodes_to_exclude": excluded,
        "extra_options": {
            "ActivationSymmetric": True,
            "WeightSymmetric": True,
            # Biases stay float: no int32 DequantizeLinear, which TensorRT refuses; and no
            # weight scale widened to keep an int32 bias in range (there is none).
            "QuantizeBias": False,
            "QDQDisableWeightAdjustForInt32Bias": True,
            # TensorRT fuses a weighted op's output with what follows; NVIDIA recommends
            # not quantizing the outputs of weighted ops.
            "OpTypesToExcludeOutputQuantization": list(TENSORRT_QUANTIZED_OPS),
            # "In TRT, QDQ pair can't be shared between nodes" (onnxruntime qdq_quantizer.py)
            "DedicatedQDQPair": True,
            # The output channels of a MatMul's B [..., K, N], whatever its rank.
            "QDQOpTypePerChannelSupportToAxis": {"MatMul": -1},
        },
    }


def _calibration_batches(inputs: Sequence[Mapping], data: Optional[Dict[str, np.ndarray]],
                         size: int) -> List[Dict[str, np.ndarray]]:
    """Feeds for the calibration reader: batch k holds samples k*size.. of every input
    (wrapping around), each in its own dtype; a scalar input takes its value at k*size."""
    if not data:
        raise CalibrationError("INT8 needs calibration data: one array per input")
    data = {node_of(k): np.asarray(v) for k, v in data.items()}
    missing = [node_of(i["name"]) for i in inputs if node_of(i["name"]) not in data]
    if missing:
        raise CalibrationError(f"the calibration data has no samples for input {missing[0]!r}")
    n = min(len(v) for v in data.values())
    if not n:
        raise CalibrationError("the calibration data is empty")
    batches = []
    for start in range(0, n, size):
        feed = {}
        for i in inputs:
            name = node_of(i["name"])
            values = data[name].astype(i["dtype"], copy=False)
            feed[name] = np.asarray(values[start]) if not i.get("shape") else \
                values[[(start + k) % n for k in range(size)]]
        batches.append(feed)
    return batches


def _io(value) -> dict:
    from onnx import helper
    t = value.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
    return {"name": value.name, "dtype": np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type)).name,
            "shape": dims}
