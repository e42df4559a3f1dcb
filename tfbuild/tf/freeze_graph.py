"""Freeze a model into a GraphDef: fold variables into constants, prune to the outputs,
check parity against the checkpoint it came from.

Layered like TensorFlow's freeze_graph.py (paths -> protos ->
convert_variables_to_constants), plus what it lacks: binding extra inputs to
constants, deterministic serialization, and a parity check that runs the frozen
graph against the checkpoint on the same seeded input. TensorFlow is imported
inside the functions: the freeze stage's preflight reads node names through
`check_node_names` without paying for more than the graph protos.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Dict, List

from tfbuild.inputs.checkpoint import KERAS, SAVED_MODEL, TF1
from tfbuild.errors import (CheckpointError, ConfigError, InferenceModeError, NodeNotFound, ParityError,
                            StageFailed, first_line)
from tfbuild.inputs.samples import PARITY_SAMPLES

# Stateful random ops draw new values in every session: left in an inference
# graph (dropout, training noise) they make it disagree with itself.
RANDOM_OPS = {"RandomUniform", "RandomUniformInt", "RandomStandardNormal", "TruncatedNormal",
              "ParameterizedTruncatedNormal", "RandomGamma", "RandomPoisson", "RandomPoissonV2",
              "Multinomial", "RandomShuffle"}


def freeze(kind: str, prefix: str, f, model, path: Path, warn) -> dict:
    """Freeze the `kind` (see tfbuild.inputs.checkpoint) at `prefix` with the freeze section `f`
    (and `model`, the builder of a TF2 checkpoint) into `path`; refuse a frozen graph
    that differs from its checkpoint; return the stage's metadata."""
    from tfbuild.tf.graph_io import frozen_session

    if kind == TF1:
        frozen, outputs, specs, feeds, expected = _freeze(prefix, f, warn)
    else:
        frozen, outputs, specs, feeds, expected = _freeze_v2(kind, prefix, f, model)
    meta = _write(frozen, path, kind, specs)
    random = sorted(n.name for n in frozen.node if n.op in RANDOM_OPS)
    defaults = sorted(n.name for n in frozen.node if n.op == "PlaceholderWithDefault")
    # Grappler off: parity checks the freezing itself, on the graph exactly as written.
    try:
        with frozen_session(path, feeds, outputs, graph_def=frozen, grappler=False) as (sess, fetches, feed_dict):
            del frozen  # the session holds its own copy
            _initialize(sess, f.initializer_nodes, meta)
            meta["outputs"] = [{"name": o, "dtype": t.dtype.name,
                                "shape": t.shape.as_list() if t.shape.rank is not None else None}
                               for o, t in zip(outputs, fetches)]
            diff = _parity(sess, fetches, feed_dict, expected, f.tolerance, defaults)
            meta["parity_samples"] = PARITY_SAMPLES if any(i["shape"] for i in specs) else 1
    except StageFailed as e:
        raise _explained(e, defaults) from None
    if diff > f.tolerance:
        raise ParityError(f"frozen graph differs from the checkpoint by {diff:.3g} "
                          f"(> freeze.tolerance={f.tolerance}){_random_ops_hint(random)}")
    if defaults:
        warn(f"the frozen graph keeps inputs with defaults ({', '.join(defaults)}): if one "
             "switches training behaviour, bind it in freeze.constants, e.g. "
             f"+freeze.constants.{defaults[0]}=false")
    return {**meta, "parity_max_abs_diff": diff, "parity_against": f"the {kind}",
            "source": Path(prefix).name}


def _write(frozen, path: Path, kind: str, specs: List[dict]) -> dict:
    """Write the frozen graph, deterministically; what the metadata says of it."""
    from tfbuild.tf.graphdef import canonical
    path.write_bytes(canonical(frozen).SerializeToString(deterministic=True))
    return {"graph": path.name, "format": kind, "node_count": len(frozen.node),
            "ops": dict(sorted(Counter(n.op for n in frozen.node).items())), "inputs": specs}


def _initialize(sess, initializer_nodes: List[str], meta: dict) -> None:
    """Tables and the like, kept in the graph: its users run them too, and so does parity."""
    if initializer_nodes:
        meta["initializer_nodes"] = [n.split(":")[0] for n in initializer_nodes]
        sess.run([sess.graph.get_operation_by_name(n) for n in meta["initializer_nodes"]])


def check_node_names(prefix: str, f) -> None:
    """The node names in freeze.outputs, constants and initializer_nodes are in the user's
    own graph (freeze.graph, else the checkpoint's .meta), where that is on disk."""
    meta = Path(f"{prefix}.meta")
    try:
        if f.graph:
            graph_def = read_graph_file(f.graph)
        elif meta.is_file():
            from tensorflow.core.protobuf import meta_graph_pb2
            graph = meta_graph_pb2.MetaGraphDef()
            graph.ParseFromString(meta.read_bytes())
            graph_def = graph.graph_def
        else:
            return  # freezing says what is missing
    except Exception:  # noqa: BLE001  freezing reports a graph it cannot read
        return
    nodes = {n.name for n in graph_def.node}
    for key, names in (("freeze.outputs", f.outputs), ("freeze.constants", f.constants),
                       ("freeze.initializer_nodes", f.initializer_nodes)):
        for name in names:
            _node_name(name, nodes, lambda _: None, key)


def _explained(error: StageFailed, defaults: List[str]) -> StageFailed:
    """A frozen graph that still writes a variable: say which node, why, and the fix."""
    import re
    node = re.search(r"\{\{node (\S*Assign\w*VariableOp\w*)\}\}", str(error))
    if not node:
        return error
    fix = (f"bind the input that selects that branch in freeze.constants (e.g. +freeze.constants."
           f"{defaults[0]}=false), and tfbuild drops the branch" if defaults else
           "rebuild the graph without the write (training=False)")
    return StageFailed(f"the frozen graph still writes a variable (node {node.group(1)}, in a tf.cond/"
                       f"while_loop branch for training): a frozen graph holds constants, not variables; {fix}")


def _parity(sess, fetches, feed_dict, expected, tolerance: float, defaults: List[str]) -> float:
    """Max |frozen - checkpoint|: the checkpoint graph ran the seeded batch, the frozen
    graph runs its first sample alone.

    Both graphs are the same graph, so a graph left in training mode (batch norm
    on batch statistics) agrees with its checkpoint on a batch; alone, the sample
    must give what the checkpoint gave it inside the batch. One batch-1 run checks
    the freeze and the batch independence; a mismatch is diagnosed with one
    batched run.
    """
    import numpy as np

    from tfbuild.tf.graph_io import max_abs_diff

    batch = len(expected[0]) if expected and np.ndim(expected[0]) else 0
    # Per sample only where every input and output has a free batch dimension.
    free = lambda t: t.shape.rank is not None and t.shape.rank >= 1 and t.shape[0] is None  # noqa: E731
    batched = batch > 1 and all(free(t) for t in fetches) and \
        all(t.shape.rank == 0 or (free(t) and len(v) == batch) for t, v in feed_dict.items())
    if not batched:  # a fixed batch size, or outputs without one: run the batch as it is
        return max_abs_diff(expected, sess.run(fetches, feed_dict))
    alone = sess.run(fetches, {t: v[:1] if t.shape.rank else v for t, v in feed_dict.items()})
    diff = max_abs_diff([e[:1] for e in expected], alone)
    if diff <= tolerance:
        return diff
    whole = max_abs_diff(expected, sess.run(fetches, feed_dict))
    if whole > tolerance:
        return whole  # the frozen graph is wrong, whatever the batch
    if defaults:
        fix = (f"inputs left at their defaults: {', '.join(defaults)}; bind them in freeze.constants, "
               f"e.g. +freeze.constants.{defaults[0]}=false")
    else:
        fix = ("no input is left at a default, so the graph itself computes batch statistics: "
               "build it with training=False (the placeholder stage does)")
    raise InferenceModeError(
        f"frozen graph is not in inference mode: a sample's output changes by {diff:.3g} with the "
        f"other samples of its batch (batch norm in training mode is the usual cause); {fix}")


def _freeze_v2(kind: str, path: str, f, model):
    """Like _freeze, for a SavedModel, a .keras file or a TF2 checkpoint with its builder."""
    from tfbuild.tf import savedmodel as v2

    if kind == SAVED_MODEL:
        signature = v2.saved_model_signature(path, f.signature)
    elif kind == KERAS:
        signature = v2.keras_signature(v2.keras_file(path))
    else:
        signature = v2.keras_signature(v2.tf2_checkpoint(path, model._target_, dict(model.params)))
    _known_inputs(f, list(signature[1]))
    frozen, outputs, call = v2.freeze(signature, f.outputs, f.input_shapes)
    specs = _inputs(frozen, f)
    feeds = _parity_feeds(specs)
    return frozen, outputs, specs, feeds, call(feeds)


def _freeze(prefix: str, f, warn):
    """The frozen GraphDef, its output names, its inputs, seeded feeds and the checkpoint
    graph's outputs on them.

    The checkpoint's graph and session are gone once this returns, so the parity
    run of the frozen graph reuses their memory.
    """
    import tensorflow as tf

    from tfbuild.tf.graphdef import pin_shapes
    from tfbuild.tf.session import session

    graph = tf.Graph()
    with graph.as_default():
        saver = _load_graph(prefix, f, graph)
        ops = {op.name: op for op in graph.get_operations()}
        outputs = [_node_name(o, ops, warn) for o in f.outputs]
        constants = {_node_name(k, ops, warn, "freeze.constants"): v for k, v in f.constants.items()}
        _check_placeholders(constants, ops)
        initializers = [_node_name(n, ops, warn, "freeze.initializer_nodes") for n in f.initializer_nodes]
        with session(graph, grappler=False) as sess:
            try:
                saver.restore(sess, prefix)
                if initializers:  # e.g. lookup tables: run now, and kept in the frozen graph
                    sess.run(initializers)
            except Exception as e:
                raise CheckpointError(f"cannot restore {prefix}: {first_line(e)}") from None
            frozen = tf.compat.v1.graph_util.convert_variables_to_constants(
                sess, graph.as_graph_def(), outputs + initializers,
                variable_names_blacklist=list(f.variable_denylist) or None)
            if constants:  # a bound PlaceholderWithDefault leaves its default behind: prune again
                frozen = tf.compat.v1.graph_util.extract_sub_graph(
                    _bind_constants(frozen, constants), outputs + initializers)
            _known_inputs(f, [n.name for n in frozen.node if n.op == "Placeholder"])
            pin_shapes(frozen, f.input_shapes)
            specs = _inputs(frozen, f)
            feeds = _parity_feeds(specs)
            try:
                expected = sess.run([o + ":0" for o in outputs],
                                    {**{k + ":0": v for k, v in feeds.items()},
                                     **{k + ":0": v for k, v in constants.items()}})
            except tf.errors.OpError as e:
                raise StageFailed(f"running {Path(prefix).name}'s graph on seeded input failed: "
                                  f"{first_line(e)}") from None
    return frozen, outputs, specs, feeds, expected


def _load_graph(prefix: str, f, graph):
    """Import the checkpoint's graph (its .meta, or freeze.graph) into `graph`; return its Saver."""
    import tensorflow as tf

    if not f.graph:
        if not Path(prefix + ".meta").is_file():
            raise CheckpointError(f"{prefix}.meta not found: placeholder: null freezes the checkpoint's "
                                  "own graph: give it as freeze.graph=GRAPH.pb(txt) (tf.train.write_graph), "
                                  "or configure the placeholder stage")
        try:
            return tf.compat.v1.train.import_meta_graph(prefix + ".meta", clear_devices=f.clear_devices)
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"cannot read graph {prefix}.meta: {first_line(e)}") from None
    graph_def = read_graph_file(f.graph)
    if f.clear_devices:
        for node in graph_def.node:
            node.device = ""
    tf.compat.v1.import_graph_def(graph_def, name="")
    # As TF's freeze_graph: every checkpoint key that names a variable of the graph.
    ops = {op.name: op for op in graph.get_operations()}
    found = {k: ops[k] for k in tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
             if k in ops and ops[k].type in ("VarHandleOp", "VariableV2", "Variable")}
    if not found:
        raise CheckpointError(f"checkpoint {prefix} has no variable of the graph {f.graph}: are they "
                              "from the same model?")
    return _Restorer(found)


class _Restorer:
    """Saver.restore for an imported GraphDef: a Saver cannot take the resource variables
    of a bare GraphDef (TF's own freeze_graph fails on them), so assign each value."""

    def __init__(self, variables: Dict):
        import tensorflow as tf
        self.feeds, assigns = {}, []
        for key, op in variables.items():
            value = tf.compat.v1.placeholder(op.get_attr("dtype"), name=f"tfbuild_restore/{len(assigns)}")
            self.feeds[key] = value
            assigns.append(tf.raw_ops.AssignVariableOp(resource=op.outputs[0], value=value)
                           if op.type == "VarHandleOp" else tf.compat.v1.assign(op.outputs[0], value))
        self.assigns = assigns

    def restore(self, sess, prefix: str) -> None:
        import tensorflow as tf
        reader = tf.train.load_checkpoint(prefix)
        sess.run(self.assigns, {ph: reader.get_tensor(key) for key, ph in self.feeds.items()})


def read_graph_file(path: str):
    """A GraphDef written by tf.train.write_graph, binary or text: told apart by content."""
    import tensorflow as tf
    from google.protobuf import text_format

    data = Path(path).expanduser().read_bytes()
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(data)
        if graph_def.node:
            return graph_def
    except Exception:  # noqa: BLE001  not binary: try text
        pass
    try:
        return text_format.Parse(data.decode("utf-8"), tf.compat.v1.GraphDef())
    except (UnicodeDecodeError, text_format.ParseError) as e:
        raise CheckpointError(f"freeze.graph={path} is neither a binary nor a text GraphDef "
                              f"({first_line(e)}): write it with tf.train.write_graph") from None


def _random_ops_hint(names: List[str]) -> str:
    if not names:
        return ""
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    return (f"; it has random ops ({shown}): bind the placeholder that turns them off "
            "(keep_prob, is_training) in freeze.constants")


def _node_name(name: str, nodes: Dict, warn, key: str = "freeze.outputs") -> str:
    """Accept 'probs' or 'probs:0'; a missing node names the closest ones."""
    from tfbuild.tf.graph_io import node_of
    node = node_of(name)
    if node not in nodes:
        from tfbuild.tf.session import closest
        near = closest(node, nodes)
        raise NodeNotFound(f"{key}: no node {node!r} in the graph; closest: "
                           f"{', '.join(near) if near else '(none)'}")
    if node != name:
        warn(f"{key}: {name!r} is a tensor name; using its node {node!r}")
    return node


def _check_placeholders(constants: Dict, ops: Dict) -> None:
    for name in constants:
        if ops[name].type not in ("Placeholder", "PlaceholderWithDefault"):
            raise ConfigError(f"freeze.constants.{name}: node {name!r} is a {ops[name].type}, not a "
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
    return _fold_bound_ifs(graph_def)


def _fold_bound_ifs(graph_def):
    """An If whose predicate is now a constant becomes a call of the branch it takes.

    TF1 graphs in TF2's graph mode build tf.cond as an If op over functions. A
    branch that writes a variable (a training-only counter, BN updates) cannot
    run once variables are constants; binding the predicate (is_training=false)
    drops that branch here, and the functions nothing calls any more with it.
    """
    import tensorflow as tf

    nodes = {n.name: n for n in graph_def.node}
    for node in graph_def.node:
        if node.op not in ("If", "StatelessIf"):
            continue
        pred = nodes.get(node.input[0].split(":")[0].lstrip("^"))
        if pred is None or pred.op != "Const":
            continue
        taken = node.attr["then_branch" if tf.make_ndarray(pred.attr["value"].tensor) else "else_branch"]
        keep = {k: node.attr[k] for k in ("Tin", "Tout")}
        node.op = "StatefulPartitionedCall" if node.op == "If" else "PartitionedCall"
        del node.input[0]
        for attr in list(node.attr):
            del node.attr[attr]
        node.attr["f"].CopyFrom(taken)
        for k, v in keep.items():
            node.attr[k].CopyFrom(v)
    _drop_unused_functions(graph_def)
    return graph_def


def _drop_unused_functions(graph_def) -> None:
    library = {f.signature.name: f for f in graph_def.library.function}

    def called(nodes):
        return {a.func.name for n in nodes for a in n.attr.values() if a.func.name}

    used, todo = set(), called(graph_def.node)
    while todo:
        name = todo.pop()
        if name in used or name not in library:
            continue
        used.add(name)
        todo |= called(library[name].node_def)
    kept = [f for f in graph_def.library.function if f.signature.name in used]
    del graph_def.library.function[:]
    graph_def.library.function.extend(kept)


def _shape(attr) -> List:
    if attr.shape.unknown_rank:
        return None
    return [d.size if d.size >= 0 else None for d in attr.shape.dim]


def _known_inputs(f, names: List[str]) -> None:
    for key in ("input_shapes", "input_ranges"):
        unknown = sorted(set(getattr(f, key)) - set(names))
        if unknown:
            raise ConfigError(f"freeze.{key}.{unknown[0]}: the model has no such input; its inputs are "
                              f"{', '.join(sorted(names)) or '(none)'}")


def _inputs(graph_def, f) -> List[dict]:
    """The graph's inputs sorted by name, each with the value range its samples are drawn
    from: the user's, else an integer input's embedding vocabulary, else a default."""
    import tensorflow as tf

    from tfbuild.inputs.samples import default_range
    from tfbuild.tf.graphdef import vocabulary
    specs = []
    for n in sorted((n for n in graph_def.node if n.op == "Placeholder"), key=lambda n: n.name):
        dtype = tf.as_dtype(n.attr["dtype"].type)
        shape = _shape(n.attr["shape"]) if "shape" in n.attr else None
        vocab = vocabulary(graph_def, n.name) if dtype.is_integer else None
        given = f.input_ranges.get(n.name)
        specs.append({"name": n.name, "dtype": dtype.name, "shape": shape,
                      "range": list(given) if given else [0, vocab - 1] if vocab else default_range(dtype.name, shape)})
    return specs


def _parity_feeds(inputs: List[dict]) -> Dict:
    """PARITY_SAMPLES samples per input (a fixed batch: that many); one value per scalar."""
    from tfbuild.inputs.samples import draw
    for spec in inputs:
        shape = spec["shape"]
        if shape is None or any(d is None for d in shape[1:]):
            example = ",".join(["null", *(str(d or 224) for d in shape[1:])]) if shape else "null,..."
            raise ConfigError(f"input {spec['name']!r} has shape {shape}: tfbuild needs known dimensions beyond "
                              f"the batch (parity, TFLite, ONNX): pin them, e.g. "
                              f"+freeze.input_shapes.{spec['name']}=[{example}] (or in the target file)")
    fixed = [s["shape"][0] for s in inputs if s["shape"] and s["shape"][0] is not None]
    samples = draw(inputs, fixed[0] if fixed else PARITY_SAMPLES)
    return {s["name"]: samples[s["name"]][0] if s["shape"] == [] else samples[s["name"]] for s in inputs}
