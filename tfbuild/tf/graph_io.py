"""Run frozen graphs and compare their outputs: read a GraphDef, run it in a session.

Every TensorFlow call runs in a private `tf.Graph` and session, so these
functions behave the same whether or not eager execution was disabled.
"""
from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from tfbuild.errors import NodeNotFound, StageFailed, first_line


def node_of(name: str) -> str:
    """'probs:0' -> 'probs': the node a tensor name belongs to; node names pass through."""
    node, _, index = name.rpartition(":")
    return node if node and index.isdigit() else name


def read_graph_def(frozen_pb: Path):
    """The parsed GraphDef of `frozen_pb`; a missing or corrupt file is a StageFailed."""
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(Path(frozen_pb).read_bytes())
    except OSError as e:
        raise StageFailed(f"cannot read frozen graph {frozen_pb}: {e.strerror}: rebuild it") from None
    except Exception:  # protobuf DecodeError
        raise StageFailed(f"{frozen_pb} is not a binary GraphDef: rebuild the frozen graph") from None
    return graph_def


@contextlib.contextmanager
def frozen_session(frozen_pb: Path, feeds: Mapping[str, np.ndarray], outputs: Sequence[str], *,
                   graph_def=None, grappler: bool = True, threads: int | None = None):
    """Yield (session, fetch tensors, feed dict) for a frozen graph.

    `graph_def`, when given, is the parsed content of `frozen_pb` (which then only
    names it in messages): the freeze stage has it in memory already.
    """
    import tensorflow as tf

    from tfbuild.tf.session import config

    if graph_def is None:
        graph_def = read_graph_def(frozen_pb)
    with tf.Graph().as_default() as graph:
        try:
            tf.compat.v1.import_graph_def(graph_def, name="")
        except (ValueError, tf.errors.OpError) as e:  # e.g. an op this TF build lacks
            raise StageFailed(f"cannot import {frozen_pb}: {first_line(e)}") from None

        def tensor(name):
            try:
                return graph.get_tensor_by_name(name if ":" in name else name + ":0")
            except (KeyError, ValueError):
                raise NodeNotFound(f"node {name!r} is not in {frozen_pb}: check the "
                                   f"input/output names in the target") from None

        feed_dict = {tensor(k): v for k, v in feeds.items()}
        fetches = [tensor(o) for o in outputs]
        del graph_def  # the graph holds its own copy; let the caller's go first
        pools = {"intra_op_parallelism_threads": threads, "inter_op_parallelism_threads": threads} \
            if threads else {}
        with tf.compat.v1.Session(graph=graph, config=config(grappler=grappler, **pools)) as sess:
            try:
                yield sess, fetches, feed_dict
            except (tf.errors.OpError, ValueError) as e:  # e.g. a feed of the wrong shape
                raise StageFailed(f"running {frozen_pb} failed: {first_line(e)}") from None


@contextlib.contextmanager
def frozen_runner(frozen_pb: Path, inputs: Sequence[str], outputs: Sequence[str]):
    """Yield run(feeds by input name) -> outputs: one session for many runs."""
    with frozen_session(frozen_pb, dict.fromkeys(inputs), outputs) as (sess, fetches, feed_dict):
        tensors = dict(zip(inputs, feed_dict))
        yield lambda feeds: [np.asarray(r) for r in sess.run(fetches, {tensors[k]: v for k, v in feeds.items()})]


def run_frozen(frozen_pb: Path, feeds: Mapping[str, np.ndarray], outputs: Sequence[str]) -> list[np.ndarray]:
    """Run a frozen GraphDef once; node names with or without ':0' are accepted."""
    with frozen_session(frozen_pb, feeds, outputs) as (sess, fetches, feed_dict):
        return [np.asarray(r) for r in sess.run(fetches, feed_dict)]


def max_abs_diff(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> float:
    """Largest element-wise |a - b| over all outputs; NaN counts as infinitely different
    (the per-sample comparison of parity, taken as one sample)."""
    from tfbuild.inputs.samples import per_sample_diff
    return float(per_sample_diff(b, a, 1).max())


def seeded_batch(shape_without_batch: Sequence[int], batch_size: int, seed: int = 0) -> np.ndarray:
    """Deterministic float32 input in 0..255 (raw pixel range) for parity checks.

    Sample i is the same for every batch_size >= i + 1, so results at batch 1
    and batch 4 can be compared sample by sample.
    """
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 255.0, size=(batch_size, *shape_without_batch)).astype(np.float32)
