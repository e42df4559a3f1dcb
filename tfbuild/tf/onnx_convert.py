"""A frozen GraphDef as an ONNX model for onnxruntime (and TensorRT's ONNX parser).

tf2onnx does the conversion, onnxruntime's float16 converter the FP16 model
(inputs and outputs kept float32) and `onnxruntime.quantization` the INT8 one:
static quantization to Q/DQ pairs, the explicit form TensorRT also reads.
Inputs and outputs keep the frozen graph's node names (no ':0').
"""
from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

from tfbuild.errors import BackendUnavailable, StageFailed, first_line
from tfbuild.tf.measure import node_of, read_graph_def

# Parity bounds (max abs diff against the frozen graph), for outputs in [0, 1];
# deploy.tolerance scales them for unbounded outputs. FP32: same math, other
# kernels. FP16: weights and activations in half precision. INT8: 8-bit Q/DQ.
TOLERANCE = {"FP32": 1e-4, "FP16": 1e-2, "INT8": 1e-1}


def preflight() -> None:
    import importlib.util
    missing = [m for m in ("tf2onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        raise BackendUnavailable(f"the onnx stage needs tf2onnx and onnxruntime ({', '.join(missing)} "
                                 "missing): pip install 'tfbuild[onnx]'")


def convert(frozen_pb: Path, inputs: Sequence[Mapping], outputs: Sequence[str], *, opset: int,
            batch_size: Optional[int], precision: str, calibration: Optional[np.ndarray], out: Path,
            symmetric: bool = False) -> dict:
    """Write `out` (.onnx); return its metadata."""
    import onnx
    import tf2onnx

    graph_def = read_graph_def(frozen_pb)
    # tf2onnx numbers the nodes it adds from a process-wide counter: start it afresh,
    # so a rebuild in the same process writes the same bytes.
    tf2onnx.utils.INTERNAL_NAME = 1
    names = [node_of(i["name"]) for i in inputs]
    shapes = {f"{n}:0": [batch_size, *i["shape"][1:]] for n, i in zip(names, inputs)} if batch_size else None
    renames = {f"{n}:0": n for n in [*names, *map(node_of, outputs)]}
    try:
        model, _ = tf2onnx.convert.from_graph_def(
            graph_def, input_names=[f"{n}:0" for n in names], output_names=[f"{node_of(o)}:0" for o in outputs],
            opset=opset, shape_override=shapes, tensors_to_rename=renames)
    except Exception as e:  # noqa: BLE001  an op tf2onnx cannot map, and the like
        raise StageFailed(f"tf2onnx could not convert {frozen_pb.name} at opset {opset}: {first_line(e)}") from None
    model.producer_version = tf2onnx.__version__   # fixed text: identical rebuilds, identical bytes
    if precision == "FP16":
        from onnxruntime.transformers.float16 import convert_float_to_float16
        model = convert_float_to_float16(model, keep_io_types=True)
    if precision == "INT8":
        model = _quantize(model, names[0], calibration, batch_size, symmetric)
    _canonical(model.graph)
    for field in (model.graph.initializer, model.graph.value_info):  # the quantizer's order varies
        items = sorted(field, key=lambda item: item.name)
        del field[:]
        field.extend(items)
    out.write_bytes(model.SerializeToString(deterministic=True))
    ops = {}
    for node in model.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    return {"precision": precision, "opset": opset, "batch_size": batch_size,
            "inputs": [_io(v) for v in model.graph.input], "outputs": [_io(v) for v in model.graph.output],
            "ops": dict(sorted(ops.items())), "onnx_ir_version": model.ir_version,
            "size_bytes": out.stat().st_size, "onnx": onnx.__version__}


_COUNTER = re.compile(r"__\d+")   # what tf2onnx and the quantizer append: BASE__N


def _canonical(graph) -> None:
    """Name and order what the converters made up by content, not by counters.

    tf2onnx and onnxruntime's quantizer number the nodes they add from counters
    whose values depend on the order sets of nodes are visited (object ids), so
    two conversions of one graph can differ in names and node order only. Each
    made-up name becomes its base plus a digest of what computes it (op, attributes,
    inputs), and nodes are ordered topologically with ties broken by that digest.
    """
    import hashlib

    digest = {v.name: v.name for v in graph.input}
    for init in graph.initializer:
        digest[init.name] = init.name if not _COUNTER.search(init.name) else \
            hashlib.sha1(init.SerializeToString(deterministic=True).replace(init.name.encode(), b"")).hexdigest()
    nodes = list(graph.node)   # one wrapper per node: id() stays valid below
    node_key = {}
    for node in nodes:  # ONNX graphs are topologically sorted
        attrs = b"".join(a.SerializeToString(deterministic=True) for a in sorted(node.attribute, key=lambda a: a.name))
        base = hashlib.sha1(b"|".join([node.op_type.encode(), node.domain.encode(), attrs,
                                       *(digest.get(i, i).encode() for i in node.input)])).hexdigest()
        node_key[id(node)] = base
        for k, out in enumerate(node.output):
            digest[out] = out if not _COUNTER.search(out) else f"{base}:{k}"

    keep = {v.name for v in (*graph.input, *graph.output)}   # the model's own names stay
    renamed: dict = {}
    taken = {n for n in digest if n in keep or not _COUNTER.search(n)}

    def name(old: str, key: str = "") -> str:
        if old in keep or not _COUNTER.search(old):
            return old
        if old not in renamed:
            new = f"{_COUNTER.sub('', old)}__{hashlib.sha1((key or digest.get(old, old)).encode()).hexdigest()[:10]}"
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
    del graph.node[:]
    graph.node.extend(_topological(nodes, node_key))
    # Unknown dimensions get counter names too (unk__240): number them in order.
    dims: dict = {}
    for value in (*graph.input, *graph.output, *sorted(graph.value_info, key=lambda v: v.name)):
        for dim in value.type.tensor_type.shape.dim:
            if _COUNTER.search(dim.dim_param):
                dim.dim_param = dims.setdefault(dim.dim_param, f"{_COUNTER.sub('', dim.dim_param)}_{len(dims)}")


def _topological(nodes: list, key: dict) -> list:
    """Kahn's order, the smallest content digest first among the ready nodes."""
    import heapq

    made = {out: n for n in nodes for out in n.output}
    waiting = {id(n): {i for i in n.input if i in made} for n in nodes}
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


def _quantize(model, input_name: str, data: Optional[np.ndarray], batch_size: Optional[int],
              symmetric: bool):
    """Static INT8 quantization into Q/DQ pairs, calibrated on `data`; `symmetric`
    activations (zero point 0) for TensorRT, whose parser takes no other form."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)

    size = batch_size or 1

    class Reader(CalibrationDataReader):
        def __init__(self):
            n = len(data)
            self.batches = iter([{input_name: np.asarray(data[[(s + i) % n for i in range(size)]], np.float32)}
                                 for s in range(0, n, size)])

        def get_next(self):
            return next(self.batches, None)

    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="tfbuild-onnx-") as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, str(src))
        quiet = logging.getLogger()   # the quantizer logs every weight it skips, to the root logger
        level, quiet.level = quiet.level, logging.ERROR
        try:
            # onnxruntime's own pre-processing first: batch norm folded into the convolutions,
            # shapes inferred, so the quantizer sees what onnxruntime will run.
            quant_pre_process(str(src), str(src))
            quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True,
                            extra_options={"ActivationSymmetric": symmetric})
        except Exception as e:  # noqa: BLE001
            raise StageFailed(f"onnxruntime could not quantize the model to INT8: {first_line(e)}") from None
        finally:
            quiet.setLevel(level)
        return onnx.load(str(dst))


def _io(value) -> dict:
    from onnx import helper
    t = value.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
    return {"name": value.name, "dtype": np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type)).name,
            "shape": dims}
