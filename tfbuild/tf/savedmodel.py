"""TF2 models into a frozen GraphDef: SavedModels, `.keras` files, and Keras
models restored from object-based checkpoints.

Each becomes one concrete function whose inputs are named after the model's
input names and whose outputs are Identity nodes named after its output keys
(`image` -> `probs`, not `serving_default_image:0` -> `Identity_1`), frozen with
TensorFlow's own `convert_variables_to_constants_v2`.
"""
from __future__ import annotations

import importlib
import re
from typing import Callable, Dict, List, Tuple

import tensorflow as tf

tf.get_logger().setLevel("ERROR")  # v1-API deprecation notes say nothing a user can act on

from .graphdef import inline_calls
from ..errors import CheckpointError, ConfigError, InferenceModeError, NodeNotFound, StageFailed, first_line

Signature = Tuple[Callable, Dict[str, tf.TensorSpec], List[str]]   # fn(**inputs) -> {key: tensor}


def saved_model_signature(path: str, name: str) -> Signature:
    try:
        loaded = tf.saved_model.load(path)
    except Exception as e:  # noqa: BLE001  a SavedModel TF cannot read
        raise CheckpointError(f"cannot load SavedModel {path}: {first_line(e)}") from None
    if name not in loaded.signatures:
        have = ", ".join(sorted(loaded.signatures)) or "none"
        raise ConfigError(f"freeze.signature={name!r}: SavedModel {path} has no such signature "
                          f"(it has: {have}); set freeze.signature to one of them")
    fn = loaded.signatures[name]
    inputs = dict(fn.structured_input_signature[1])
    fn._tfbuild_keepalive = loaded  # the signature's variables live as long as `loaded`
    return fn, inputs, sorted(fn.structured_outputs)


def keras_signature(model) -> Signature:
    """A Keras model (Keras 3 or tf_keras) called in inference mode, with its inputs
    as it takes them: one tensor, a list, or a dict of named inputs."""
    try:
        structure = _structure(model, "input", "inputs")
        tensors = tf.nest.flatten(structure)
    except (AttributeError, ValueError):
        tensors = []
    if not tensors:
        raise ConfigError(f"the Keras model {model.name!r} has no defined inputs: build it on "
                          "keras.Input(...) (a Functional model) or call it once before saving")
    named = isinstance(structure, dict)
    names = [_clean(k) for k in sorted(structure)] if named else [_clean(t.name) for t in tensors]
    specs = [tf.TensorSpec(t.shape, t.dtype, name=n) for n, t in zip(names, tensors)]
    outputs = _structure(model, "output", "outputs")
    keys = [_clean(k) for k in sorted(outputs)] if isinstance(outputs, dict) else \
        _unique([_clean(_layer_name(t) or f"output_{i}") for i, t in enumerate(tf.nest.flatten(outputs))])

    def fn(**feeds):
        args = [feeds[n] for n in names]
        out = model(tf.nest.pack_sequence_as(structure, args) if named or len(args) > 1 else args[0],
                    training=False)
        return dict(zip(keys, tf.nest.flatten(out)))

    return fn, dict(zip(names, specs)), keys


def _structure(model, single: str, flat: str):
    """model.input / model.output as the model was built (a dict for named inputs); the
    flat list where the model was never called (a Sequential built on keras.Input)."""
    try:
        return getattr(model, single)
    except (AttributeError, ValueError):
        return getattr(model, flat)


def keras_file(path: str):
    """Load a .keras file with the Keras that wrote it: Keras 3, or tf_keras (Keras 2)."""
    import json
    import zipfile
    with zipfile.ZipFile(path) as archive:
        meta = archive.read("metadata.json") if "metadata.json" in archive.namelist() else b"{}"
    version = json.loads(meta).get("keras_version", "3")
    if version.startswith("2."):
        try:
            import tf_keras as keras
        except ImportError:
            raise ConfigError(f"{path} was saved by Keras {version} (tf_keras): pip install tf-keras "
                              "to read it") from None
        load = keras.models.load_model
    else:
        import keras
        load = keras.saving.load_model
    try:
        return load(path, compile=False)
    except (TypeError, ValueError) as e:
        missing = re.search(r"Could not locate (?:class|function) '([^']+)'", str(e))
        if missing:
            raise ConfigError(f"{path} uses {missing.group(1)!r}, which Keras cannot find: decorate it with "
                              "@keras.saving.register_keras_serializable() in a module and import that "
                              "module, e.g. through model._target_") from None
        raise CheckpointError(f"cannot load Keras file {path}: {first_line(e)}") from None


def tf2_checkpoint(prefix: str, target: str, params: dict):
    """A Keras model from the user's builder, its weights restored from an object-based checkpoint."""
    if not target:
        raise ConfigError(f"{prefix} is a TF2 object-based checkpoint: it holds weights, not the model; "
                          "set model._target_=package.module.function returning the tf.keras.Model "
                          "(and placeholder: null)")
    module, _, name = target.rpartition(".")
    model = getattr(importlib.import_module(module), name)(**params)
    if not hasattr(model, "variables") or not callable(model):
        raise ConfigError(f"model._target_={target!r} returned {type(model).__name__}, not a Keras model")
    reader = tf.train.load_checkpoint(prefix)
    root = _root_name(reader)
    ckpt = tf.train.Checkpoint(**{root: model}) if root else tf.train.Checkpoint(root=model)
    try:
        status = ckpt.read(prefix)
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError) as e:  # missing objects; shapes that differ
        raise CheckpointError(f"checkpoint {prefix} does not match model._target_={target!r} "
                              f"({first_line(e)}): check the builder and its params") from None
    status.expect_partial()  # optimizer slots and counters are not part of the model
    return model


def _root_name(reader) -> str:
    """The attribute the model was saved under (tf.train.Checkpoint(model=...)), if one."""
    from tensorflow.core.protobuf import trackable_object_graph_pb2
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    children = [c.local_name for c in graph.nodes[0].children if c.local_name != "save_counter"]
    return children[0] if len(children) == 1 and not children[0].startswith("layer") else ""


def freeze(signature: Signature, outputs: List[str], shapes: Dict[str, list]) -> Tuple[
        tf.compat.v1.GraphDef, List[str], Callable]:
    """(frozen GraphDef, output node names, fn(feeds) -> outputs) for the chosen outputs,
    inputs in name order, with the dims the user pinned in `shapes`."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    fn, inputs, keys = signature
    chosen = list(outputs) or keys
    unknown = [o for o in chosen if o not in keys]
    if unknown:
        raise NodeNotFound(f"freeze.outputs: {unknown[0]!r} is not an output of the model; "
                           f"its outputs are {', '.join(keys)}")
    names = sorted(inputs)

    @tf.function(input_signature=[_pinned(inputs[n], n, shapes.get(n)) for n in names], autograph=False)
    def named(*args):
        result = fn(**dict(zip(names, args)))
        return [tf.identity(result[k], name=k) for k in chosen]

    concrete = named.get_concrete_function()
    try:
        # Loops stay functional (While): converters map them to LSTM/Loop ops, not Enter/Exit.
        frozen = convert_variables_to_constants_v2(concrete, lower_control_flow=False).graph.as_graph_def()
    except Exception as e:  # noqa: BLE001  e.g. an op TF cannot fold
        node = re.search(r"node (\S+AssignVariableOp)", str(e))
        if node:  # a graph that writes its variables cannot be constants
            raise InferenceModeError(
                f"the model is not in inference mode: its signature writes variables ({node.group(1)}; "
                "batch norm in training mode updates its moving statistics): export it with "
                "training=False") from None
        raise StageFailed(f"cannot freeze the model: {first_line(e)}") from None
    # The function's own outputs pass through Identity_N nodes: keep only what our names need.
    frozen = tf.compat.v1.graph_util.extract_sub_graph(inline_calls(frozen, chosen), [*chosen])
    missing = [k for k in chosen if k not in {n.name for n in frozen.node}]
    if missing:
        raise CheckpointError(f"freezing renamed output {missing[0]!r}: an input has the same name; "
                              "rename the model's input or output")

    def run(feeds: Dict[str, "object"]) -> list:
        return [t.numpy() for t in named(*[tf.constant(feeds[n]) for n in names])]

    return frozen, chosen, run


def _pinned(spec: tf.TensorSpec, name: str, shape) -> tf.TensorSpec:
    if shape is None:
        return tf.TensorSpec(spec.shape, spec.dtype, name=name)
    if not spec.shape.is_compatible_with(shape):
        raise ConfigError(f"freeze.input_shapes.{name}={shape} does not fit the model's input shape "
                          f"{spec.shape.as_list() if spec.shape.rank is not None else 'unknown'}: pin only "
                          "its free (None) dims")
    return tf.TensorSpec(shape, spec.dtype, name=name)


def _unique(names: List[str]) -> List[str]:
    """Two outputs of one layer share its name: split, split_1, ..."""
    seen: Dict[str, int] = {}
    out = []
    for name in names:
        out.append(f"{name}_{seen[name]}" if name in seen else name)
        seen[name] = seen.get(name, 0) + 1
    return out


def _layer_name(tensor) -> str:
    """The name of the layer that made a Keras output (Keras 3 and tf_keras keep it here)."""
    history = getattr(tensor, "_keras_history", None)
    return getattr(history[0], "name", "") if history else ""


def _clean(name: str) -> str:
    """A tensor or layer name as a node name: 'image:0' -> 'image'."""
    return re.sub(r"[^A-Za-z0-9_.\-/]", "_", name.split(":")[0])

