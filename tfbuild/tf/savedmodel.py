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
    """A Keras model (Keras 3 or tf_keras) called in inference mode."""
    try:
        specs = [tf.TensorSpec(t.shape, t.dtype, name=_clean(t.name)) for t in model.inputs]
    except (AttributeError, ValueError):
        specs = []
    if not specs:
        raise ConfigError(f"the Keras model {model.name!r} has no defined inputs: build it on "
                          "keras.Input(...) (a Functional model) or call it once before saving")
    names = [s.name for s in specs]
    keys = _unique([_clean(_layer_name(t) or f"output_{i}") for i, t in enumerate(model.outputs)])

    def fn(**feeds):
        args = [feeds[n] for n in names]
        out = model(args if len(args) > 1 else args[0], training=False)
        out = out if isinstance(out, (list, tuple)) else [out]
        return dict(zip(keys, out))

    return fn, dict(zip(names, specs)), keys


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


def freeze(signature: Signature, outputs: List[str]) -> Tuple[tf.compat.v1.GraphDef, List[str], Callable]:
    """(frozen GraphDef, output node names, fn(feeds) -> outputs) for the chosen outputs."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    fn, inputs, keys = signature
    chosen = list(outputs) or keys
    unknown = [o for o in chosen if o not in keys]
    if unknown:
        raise NodeNotFound(f"freeze.outputs: {unknown[0]!r} is not an output of the model; "
                           f"its outputs are {', '.join(keys)}")
    names = list(inputs)

    @tf.function(input_signature=[tf.TensorSpec(inputs[n].shape, inputs[n].dtype, name=n) for n in names],
                 autograph=False)
    def named(*args):
        result = fn(**dict(zip(names, args)))
        return [tf.identity(result[k], name=k) for k in chosen]

    concrete = named.get_concrete_function()
    try:
        frozen = convert_variables_to_constants_v2(concrete).graph.as_graph_def()
    except Exception as e:  # noqa: BLE001  e.g. an op TF cannot fold
        node = re.search(r"node (\S+AssignVariableOp)", str(e))
        if node:  # a graph that writes its variables cannot be constants
            raise InferenceModeError(
                f"the model is not in inference mode: its signature writes variables ({node.group(1)}; "
                "batch norm in training mode updates its moving statistics): export it with "
                "training=False") from None
        raise StageFailed(f"cannot freeze the model: {first_line(e)}") from None
    # The function's own outputs pass through Identity_N nodes: keep only what our names need.
    frozen = tf.compat.v1.graph_util.extract_sub_graph(frozen, [*chosen])
    missing = [k for k in chosen if k not in {n.name for n in frozen.node}]
    if missing:
        raise CheckpointError(f"freezing renamed output {missing[0]!r}: an input has the same name; "
                              "rename the model's input or output")

    def run(feeds: Dict[str, "object"]) -> list:
        return [t.numpy() for t in named(*[tf.constant(feeds[n]) for n in names])]

    return frozen, chosen, run


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

