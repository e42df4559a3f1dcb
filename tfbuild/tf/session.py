"""Small TensorFlow helpers shared by the stages (imported inside `build` only)."""
from __future__ import annotations

import contextlib
import difflib
from typing import Iterable, Iterator, List

import tensorflow as tf

# TF's Python deprecation chatter ("convert_variables_to_constants is deprecated")
# says nothing the user can act on; the reporter says what matters.
tf.get_logger().setLevel("ERROR")


def config(*, grappler: bool = True, **options) -> tf.compat.v1.ConfigProto:
    # Soft placement: graphs built for '/gpu:N' towers must still load on a CPU machine.
    proto = tf.compat.v1.ConfigProto(allow_soft_placement=True, **options)
    # Grappler rewrites the graph, copying its constants pass after pass, before a
    # session's first run. Restoring, saving and parity runs gain nothing from that.
    proto.graph_options.rewrite_options.disable_meta_optimizer = not grappler
    return proto


def session(graph: tf.Graph, *, grappler: bool = True) -> tf.compat.v1.Session:
    return tf.compat.v1.Session(graph=graph, config=config(grappler=grappler, inter_op_parallelism_threads=1))


@contextlib.contextmanager
def op_determinism() -> Iterator[None]:
    """Deterministic kernels inside the block only.

    The switch is process-wide: left on, it would make a later stage in the same
    process refuse a user's graph with unseeded random ops that runs fine alone.
    """
    from tensorflow.python.framework import config as tf_config  # the only way to switch it off

    was_on = tf_config.is_op_determinism_enabled()
    tf.config.experimental.enable_op_determinism()
    try:
        yield
    finally:
        if not was_on:
            tf_config.disable_op_determinism()


def closest(name: str, candidates: Iterable[str], n: int = 5) -> List[str]:
    candidates = list(candidates)
    close = difflib.get_close_matches(name, candidates, n=n, cutoff=0.4)
    if len(close) < n:  # names often differ by scope: also match on the last component
        tail = name.rsplit("/", 1)[-1]
        close += [c for c in candidates if c.rsplit("/", 1)[-1] == tail and c not in close]
    return close[:n]

