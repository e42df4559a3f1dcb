"""Edits and questions on a frozen GraphDef that every input format shares."""
from __future__ import annotations

from collections import deque
from typing import Dict, List, Optional

GATHERS = ("GatherV2", "ResourceGather", "Gather")
# Carry the input's shape, not its values (positions are often cumsum(ones_like(ids))).
SHAPE_OPS = ("Shape", "ShapeN", "Size", "Rank", "OnesLike", "ZerosLike", "Fill")


def canonical(graph_def):
    """Names made of a counter renamed by content, then nodes and functions sorted by name.

    A loaded SavedModel names its captured variables by a process-wide counter ('307'),
    and the loader writes nodes in dict and set order: one model could freeze to many
    byte strings, within one process and across processes."""
    _rename_counters(graph_def)
    nodes = sorted(graph_def.node, key=lambda n: n.name)
    del graph_def.node[:]
    graph_def.node.extend(nodes)
    functions = sorted(graph_def.library.function, key=lambda f: f.signature.name)
    del graph_def.library.function[:]
    graph_def.library.function.extend(functions)
    return graph_def


CALLS = ("StatefulPartitionedCall", "PartitionedCall")
# Keras marks some functions (grouped convolutions) not to be inlined and to be compiled
# by XLA; no converter can see through such a call, so a frozen graph drops both marks.
_KEEP_CALL = ("_noinline", "_XlaMustCompile")


def inline_calls(graph_def, outputs: List[str]):
    """The graph with every function call inlined (control flow stays functional),
    as convert_variables_to_constants_v2 inlines the calls it is allowed to."""
    if not any(n.op in CALLS for n in graph_def.node):
        return graph_def
    from tensorflow.core.protobuf import config_pb2, meta_graph_pb2
    from tensorflow.python.grappler import tf_optimizer

    for holder in [*graph_def.node, *graph_def.library.function]:
        for key in _KEEP_CALL:
            if key in holder.attr:
                del holder.attr[key]
    for node in graph_def.node:
        if node.op in ("While", "If", "StatelessWhile", "StatelessIf"):
            node.attr["_lower_using_switch_merge"].b = False
    meta = meta_graph_pb2.MetaGraphDef(graph_def=graph_def)
    meta.collection_def["train_op"].node_list.value.extend(outputs)   # what grappler keeps
    config = config_pb2.ConfigProto()
    rewrite = config.graph_options.rewrite_options
    rewrite.optimizers.append("function")
    rewrite.min_graph_nodes = -1
    return tf_optimizer.OptimizeGraph(config, meta)


def _rename_counters(graph_def) -> None:
    import hashlib
    renamed, taken = {}, {n.name for n in graph_def.node}
    users: Dict[str, List[str]] = {}
    for n in graph_def.node:
        for i in n.input:
            users.setdefault(i.lstrip("^").split(":")[0], []).append(n.name)
    for node in graph_def.node:
        if node.name.isdigit():   # by content and by who reads it: twin zero biases stay apart
            content = [node.attr[k].SerializeToString(deterministic=True) for k in sorted(node.attr)]
            digest = hashlib.sha1(b"".join([*content, *(u.encode() for u in sorted(users.get(node.name, [])))])
                                  ).hexdigest()[:12]
            new = f"{node.op}_{digest}"
            while new in taken:   # two identical constants: still two nodes
                new += "_"
            taken.add(new)
            renamed[node.name] = new
    if not renamed:
        return
    for node in graph_def.node:
        node.name = renamed.get(node.name, node.name)
        node.input[:] = [_renamed_input(i, renamed) for i in node.input]


def _renamed_input(name: str, renamed: dict) -> str:
    control, node, port = name.startswith("^"), *name.lstrip("^").partition(":")[::2]
    node = renamed.get(node, node)
    return ("^" if control else "") + node + (f":{port}" if port else "")


def pin_shapes(graph_def, shapes: Dict[str, List[Optional[int]]]) -> None:
    """Give placeholders the shapes the user pinned (freeze.input_shapes)."""
    from tensorflow.core.framework import tensor_shape_pb2
    for node in graph_def.node:
        if node.op == "Placeholder" and node.name in shapes:
            proto = tensor_shape_pb2.TensorShapeProto(
                dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=-1 if d is None else d) for d in shapes[node.name]])
            node.attr["shape"].shape.CopyFrom(proto)


def vocabulary(graph_def, name: str, depth: int = 6) -> Optional[int]:
    """The row count of the smallest embedding table the integer input `name` indexes
    (a Gather on a constant, a few ops downstream), else None: token ids beyond it are
    out of range."""
    nodes = {n.name: n for n in graph_def.node}
    users: Dict[str, list] = {}
    for n in graph_def.node:
        for i, inp in enumerate(n.input):
            users.setdefault(inp.split(":")[0].lstrip("^"), []).append((n, i))
    sizes, seen, todo = [], {name}, deque([(name, 0)])
    while todo:
        current, level = todo.popleft()
        for user, slot in users.get(current, []):
            if user.op in GATHERS and slot == 1:
                table = nodes.get(user.input[0].split(":")[0])
                while table is not None and table.op == "Identity":
                    table = nodes.get(table.input[0].split(":")[0])
                dims = table.attr["value"].tensor.tensor_shape.dim if table is not None and table.op == "Const" else []
                if dims:
                    sizes.append(dims[0].size)
            elif level < depth and user.name not in seen and user.op not in SHAPE_OPS:
                seen.add(user.name)
                todo.append((user.name, level + 1))
    return min(sizes) if sizes else None
