"""freeze: fold variables into constants, prune to the outputs, check parity.

Layered like TensorFlow's freeze_graph.py (paths -> protos ->
convert_variables_to_constants), plus what it lacks: binding extra inputs to
constants, deterministic serialization, and a parity check that runs the frozen
graph against the checkpoint it came from on the same seeded input.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Dict, List

from ..errors import CheckpointError, ConfigError, NodeNotFound, ParityError, first_line

ARTIFACT = "frozen.pb"
PARITY_BATCH = 2


def check(cfg) -> None:
    if not cfg.freeze.outputs:
        raise ConfigError("freeze.outputs is empty: name the output nodes, e.g. freeze.outputs=[probs]")


def build(ctx) -> dict:
    import tensorflow as tf

    from .tf_session import session

    f = ctx.cfg.freeze
    prefix = ctx.checkpoint_prefix()
    if not Path(prefix + ".meta").is_file():
        raise CheckpointError(f"{prefix}.meta not found: placeholder: null freezes the checkpoint's "
                              "own graph, which needs its .meta (or configure the placeholder stage)")
    graph = tf.Graph()
    with graph.as_default():
        try:
            saver = tf.compat.v1.train.import_meta_graph(prefix + ".meta", clear_devices=f.clear_devices)
        except Exception as e:
            raise CheckpointError(f"cannot read graph {prefix}.meta: {first_line(e)}") from None
        names = {n.name: n for n in graph.as_graph_def().node}
        outputs = [_node_name(o, names, ctx.reporter) for o in f.outputs]
        constants = {_node_name(k, names, ctx.reporter, "freeze.constants"): v for k, v in f.constants.items()}
        _check_placeholders(constants, names)
        with session(graph) as sess:
            try:
                saver.restore(sess, prefix)
            except Exception as e:
                raise CheckpointError(f"cannot restore {prefix}: {first_line(e)}") from None
            frozen = tf.compat.v1.graph_util.convert_variables_to_constants(
                sess, graph.as_graph_def(), outputs,
                variable_names_blacklist=list(f.variable_denylist) or None)
            frozen = _bind_constants(frozen, constants)
            frozen = tf.compat.v1.graph_util.extract_sub_graph(frozen, outputs)
            inputs = _inputs(frozen)
            feeds = _parity_feeds(inputs)
            expected = sess.run([o + ":0" for o in outputs],
                                {**{k + ":0": v for k, v in feeds.items()},
                                 **{k + ":0": v for k, v in constants.items()}})
    out = ctx.out / ARTIFACT
    out.write_bytes(frozen.SerializeToString(deterministic=True))
    from ..measure import max_abs_diff, run_frozen
    diff = max_abs_diff(expected, run_frozen(out, feeds, outputs))
    if diff > f.tolerance:
        raise ParityError(f"frozen graph differs from the checkpoint by {diff:.3g} "
                          f"(> freeze.tolerance={f.tolerance})")
    return {"node_count": len(frozen.node), "ops": dict(sorted(Counter(n.op for n in frozen.node).items())),
            "inputs": inputs, "outputs": _outputs(out, outputs),
            "parity_max_abs_diff": diff, "source": Path(prefix).name}


def _node_name(name: str, nodes: Dict, reporter, key: str = "freeze.outputs") -> str:
    """Accept 'probs' or 'probs:0'; a missing node names the closest ones."""
    node = name.split(":")[0] if ":" in name and name.rsplit(":", 1)[1].isdigit() else name
    if node not in nodes:
        from .tf_session import closest
        near = closest(node, nodes)
        raise NodeNotFound(f"{key}: no node {node!r} in the graph; closest: "
                           f"{', '.join(near) if near else '(none)'}")
    if node != name:
        reporter.warn(f"{key}: {name!r} is a tensor name; using its node {node!r}")
    return node


def _check_placeholders(constants: Dict, nodes: Dict) -> None:
    for name in constants:
        if nodes[name].op not in ("Placeholder", "PlaceholderWithDefault"):
            raise ConfigError(f"freeze.constants.{name}: node {name!r} is a {nodes[name].op}, not a "
                              "placeholder; only graph inputs can be bound to constants")


def _bind_constants(graph_def, constants: Dict):
    """Replace bound placeholders by Const nodes so only data inputs remain."""
    import numpy as np
    import tensorflow as tf
    for node in graph_def.node:
        if node.name in constants:
            dtype = tf.as_dtype(node.attr["dtype"].type)
            value = np.asarray(constants[node.name], dtype=dtype.as_numpy_dtype)
            node.op = "Const"
            for attr in list(node.attr):
                del node.attr[attr]
            node.attr["dtype"].type = dtype.as_datatype_enum
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
            del node.input[:]
    return graph_def


def _shape(attr) -> List:
    if attr.shape.unknown_rank:
        return None
    return [d.size if d.size >= 0 else None for d in attr.shape.dim]


def _inputs(graph_def) -> List[dict]:
    import tensorflow as tf
    return [{"name": n.name, "dtype": tf.as_dtype(n.attr["dtype"].type).name,
             "shape": _shape(n.attr["shape"]) if "shape" in n.attr else None}
            for n in graph_def.node if n.op == "Placeholder"]


def _parity_feeds(inputs: List[dict]) -> Dict:
    import numpy as np

    from ..measure import seeded_batch
    feeds = {}
    for i, spec in enumerate(inputs):
        shape = spec["shape"]
        if shape is None or any(d is None for d in shape[1:]):
            raise ConfigError(f"input {spec['name']!r} has shape {shape}: parity needs known "
                              "dimensions beyond the batch; bind it in freeze.constants or fix the graph")
        if not shape:  # a scalar input
            feeds[spec["name"]] = np.zeros((), spec["dtype"])
            continue
        batch = PARITY_BATCH if shape[0] is None else shape[0]
        feeds[spec["name"]] = seeded_batch(shape[1:], batch, seed=i).astype(spec["dtype"])
    return feeds


def _outputs(frozen_pb: Path, outputs: List[str]) -> List[dict]:
    import tensorflow as tf
    graph_def = tf.compat.v1.GraphDef.FromString(frozen_pb.read_bytes())
    with tf.Graph().as_default() as g:
        tf.compat.v1.import_graph_def(graph_def, name="")
        return [{"name": o, "dtype": g.get_tensor_by_name(o + ":0").dtype.name,
                 "shape": g.get_tensor_by_name(o + ":0").shape.as_list()} for o in outputs]


def bench(cfg, artifact: Path, meta: dict) -> dict:
    from ..measure import latency_frozen, seeded_batch
    feeds = {i["name"]: seeded_batch(i["shape"][1:], 1) for i in meta["inputs"]}
    return latency_frozen(artifact / ARTIFACT, feeds, [o["name"] for o in meta["outputs"]],
                          warmup=cfg.bench.warmup, runs=cfg.bench.runs)
