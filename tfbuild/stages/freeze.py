"""freeze: fold variables into constants, prune to the outputs, check parity.

The freezing itself, TensorFlow's, is tfbuild/tf/freeze_graph.py; here are its
settings, the checks that need no TensorFlow and the declaration.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from ..engine.spec import StageSpec, section
from ..marks import PATH
from ..errors import ConfigError
from ..inputs.checkpoint import TF1, TF2, checkpoint_prefix, detect
from .common import at_least, checkpoint_input, checkpoint_of

if TYPE_CHECKING:
    from ..config import ModelCfg

ARTIFACT = "frozen.pb"


@dataclass
class FreezeCfg:
    # Required for TF1 graphs; a SavedModel's or Keras model's outputs by default.
    outputs: List[str] = field(default_factory=list)
    signature: str = "serving_default"      # SavedModel signature to freeze
    graph: Optional[str] = field(default=None, metadata=PATH)   # a GraphDef file for a checkpoint without .meta
    initializer_nodes: List[str] = field(default_factory=list)  # run after restore, kept (lookup tables)
    clear_devices: bool = True
    constants: Dict[str, Any] = field(default_factory=dict)
    variable_denylist: List[str] = field(default_factory=list)
    # Dims beyond the batch that the model leaves free, pinned: {image: [null, 224, 224, 3]}.
    input_shapes: Dict[str, List[Optional[int]]] = field(default_factory=dict)
    # Values parity and benchmark inputs are drawn from: {ids: [0, 4999], image: [-1, 1]}.
    input_ranges: Dict[str, List[Any]] = field(default_factory=dict)   # numbers: ints stay ints
    tolerance: float = 1e-4


@dataclass(frozen=True)
class Settings:
    freeze: FreezeCfg
    checkpoint: Optional[str] = field(default=None, metadata=PATH)   # when no upstream stage
    model: Optional[ModelCfg] = None     # the builder a TF2 checkpoint's weights go into


def settings(cfg, deps) -> Settings:
    path = None if deps else cfg.checkpoint.path
    return Settings(cfg.freeze, path, cfg.model if path and detect(path) == TF2 else None)


def check(s: Settings) -> None:
    f = s.freeze
    at_least("freeze.tolerance", f.tolerance, 0)
    kind = detect(s.checkpoint) if s.checkpoint else TF1
    if kind == TF1 and not f.outputs:
        raise ConfigError("freeze.outputs is empty: name the output nodes, e.g. freeze.outputs=[probs] "
                          "(a TF1 graph has no signature to take them from; tfbuild inspect target=NAME lists "
                          "the likely ones)")
    if f.graph and not Path(f.graph).expanduser().is_file():
        raise ConfigError(f"freeze.graph={f.graph} does not exist: give the GraphDef file that "
                          "tf.train.write_graph wrote for this checkpoint")
    if kind != TF1 and f.constants:
        raise ConfigError(f"freeze.constants binds TF1 graph inputs; a {kind} is frozen through its "
                          "signature: drop freeze.constants")
    _check_inputs(f)
    if kind == TF2 and not (s.model and s.model._target_):
        raise ConfigError(f"{s.checkpoint} is a TF2 object-based checkpoint: it holds weights, not the model; "
                          "set model._target_=package.module.function returning the tf.keras.Model")


def _check_inputs(f: FreezeCfg) -> None:
    for name, shape in f.input_shapes.items():
        if not isinstance(shape, list) or any(d is not None and (not isinstance(d, int) or d < 1) for d in shape):
            raise ConfigError(f"freeze.input_shapes.{name}={shape}: give a list of sizes, null for the "
                              f"batch, e.g. freeze.input_shapes.{name}=[null,224,224,3]")
    for name, bounds in f.input_ranges.items():
        numbers = all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)
        if len(bounds) != 2 or not numbers or not bounds[0] <= bounds[1]:
            raise ConfigError(f"freeze.input_ranges.{name}={bounds}: give [low, high] with low <= high, "
                              f"e.g. freeze.input_ranges.{name}=[0,255]")


def preflight(s: Settings) -> None:
    """The user's own graph (its .meta, or freeze.graph) is on disk: check the node names
    in freeze.outputs, constants and initializer_nodes against it before anything runs."""
    if not s.checkpoint or detect(s.checkpoint) != TF1:
        return
    from ..tf.freeze_graph import check_node_names
    check_node_names(str(checkpoint_prefix(s.checkpoint)), s.freeze)


def run(inputs, s: Settings, out: Path, log) -> dict:
    from ..tf.freeze_graph import freeze

    kind = detect(s.checkpoint) if s.checkpoint else TF1
    prefix = checkpoint_of(inputs, s.checkpoint) if kind in (TF1, TF2) else s.checkpoint
    return freeze(kind, prefix, s.freeze, s.model, out / ARTIFACT, log.warn)


def _files(s: Settings) -> dict:
    graph = {"graph": [Path(s.freeze.graph).expanduser()]} if s.freeze.graph else {}
    return {**checkpoint_input(s.checkpoint), **graph}


def bench(artifact, b, inputs) -> dict:
    """The reference the deployed models' speed-ups are against: 1.0 by definition;
    `bench.batches` too where its batch is free."""
    from ..tf.timing import frozen_timer, model_feeds, own_batch, versus_frozen
    meta = artifact.metadata
    graph, outputs = artifact.path / ARTIFACT, [o["name"] for o in meta["outputs"]]
    free = any(i["shape"] and i["shape"][0] is None for i in meta["inputs"])
    return versus_frozen(lambda n: frozen_timer(graph, model_feeds(meta["inputs"], n), outputs, b.threads),
                         own_batch(meta["inputs"]), b, None, meta["inputs"], outputs,
                         free_batch=free)


def evaluate(artifact, evaluation, inputs) -> dict:
    """The frozen graph on the user's data: the value every deployed artifact is judged
    against, itself held to evaluate.min/max only."""
    from ..tf.evaluate import score_frozen
    meta = artifact.metadata
    value, samples = score_frozen(artifact.path / ARTIFACT, meta["inputs"], [o["name"] for o in meta["outputs"]],
                                  evaluation)
    return evaluation.record(value, None, samples)


SPEC = StageSpec("freeze", settings, run, present=section("freeze"), upstream=(("placeholder", "train"),),
                 artifact=ARTIFACT, files=_files,
                 tools=("tensorflow",), check=check, preflight=preflight, bench=bench, evaluate=evaluate)
