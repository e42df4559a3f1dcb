"""Freezing a TF-Slim-style checkpoint for inference (placeholder: null).

A TF1 training script's graph often carries
`is_training = placeholder_with_default(True, [])` switching batch
normalization between batch statistics (training) and moving statistics
(inference). Frozen as is, the graph keeps the training default: each sample's
output depends on the rest of its batch, and the parity check cannot see it
(the checkpoint graph does the same thing). tfbuild must refuse such a graph
until `is_training` is bound in freeze.constants, and warn about any other
PlaceholderWithDefault left in the frozen graph.

Only the CLI surface is used (the `tfbuild` and `project` fixtures); the
checkpoints are written here with plain TensorFlow, and every frozen graph is
checked against TensorFlow's own inference on the checkpoint.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import yaml

TOL = 1e-5
INPUT_SHAPE = (8, 8, 3)

SLIM_TARGET = """\
checkpoint:
  path: slim_ckpt
placeholder: null
freeze:
  outputs: [probs]
"""


# ----------------------------------------------------------------------------- the user's checkpoints

# tf.compat.v1.layers is gone with Keras 3: the layers, written the way TF-Slim wrote them.

def variable(name: str, shape: list, seed: int) -> tf.Variable:
    init = tf.compat.v1.random_normal_initializer(0.0, 0.3, seed=seed)
    return tf.compat.v1.get_variable(name, shape, initializer=init)


def batch_norm(h, training, momentum: float, scope: str, epsilon: float = 1e-3):
    """slim.batch_norm: batch statistics (and moving-average updates in UPDATE_OPS) while
    `training`, the moving statistics otherwise; `training` a bool tensor or a Python bool."""
    channels = h.shape[-1]
    with tf.compat.v1.variable_scope(scope):
        gamma = tf.compat.v1.get_variable("gamma", [channels], initializer=tf.compat.v1.ones_initializer())
        beta = tf.compat.v1.get_variable("beta", [channels], initializer=tf.compat.v1.zeros_initializer())
        moving_mean = tf.compat.v1.get_variable("moving_mean", [channels], trainable=False,
                                                initializer=tf.compat.v1.zeros_initializer())
        moving_var = tf.compat.v1.get_variable("moving_variance", [channels], trainable=False,
                                               initializer=tf.compat.v1.ones_initializer())

        def inference():
            return tf.nn.batch_normalization(h, moving_mean, moving_var, beta, gamma, epsilon)

        if training is False:
            return inference()

        mean, var = tf.nn.moments(h, axes=[0, 1, 2])
        for moving, batch in ((moving_mean, mean), (moving_var, var)):  # run by the train op
            tf.compat.v1.add_to_collection(tf.compat.v1.GraphKeys.UPDATE_OPS, tf.compat.v1.assign(
                moving, momentum * moving + (1 - momentum) * batch))
        return tf.compat.v1.cond(
            training, lambda: tf.nn.batch_normalization(h, mean, var, beta, gamma, epsilon), inference)


def write_slim_checkpoint(ckpt_dir: Path, *, variant: str) -> str:
    """A tiny conv + batch-norm classifier trained and saved the TF1 way.

    variant:
      "is_training": batch norm switched by `is_training = placeholder_with_default(True)`.
      "scale":       the same, plus `scale = placeholder_with_default(1.0)` multiplying the logits.
      "fixed":       batch norm hard-coded to inference mode (training=False): no switch at all.
    Returns the checkpoint prefix (with its .meta, and a `checkpoint` state file in ckpt_dir).
    """
    assert variant in ("is_training", "scale", "fixed")
    ckpt_dir.mkdir(parents=True)
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.set_random_seed(11)
        x = tf.compat.v1.placeholder(tf.float32, [None, *INPUT_SHAPE], name="input")
        labels = tf.compat.v1.placeholder(tf.int32, [None], name="labels")
        if variant == "fixed":
            training = False
        else:
            training = tf.compat.v1.placeholder_with_default(True, [], name="is_training")
        h = tf.nn.conv2d(x, variable("conv/kernel", [3, 3, 3, 6], seed=3), 1, "SAME")
        h = tf.nn.relu(batch_norm(h, training, momentum=0.5, scope="bn"))
        h = tf.reduce_mean(h, axis=[1, 2], name="pool")
        logits = tf.matmul(h, variable("fc/kernel", [6, 2], seed=4)) + variable("fc/bias", [2], seed=5)
        if variant == "scale":
            scale = tf.compat.v1.placeholder_with_default(1.0, [], name="scale")
            logits = logits * scale
        logits = tf.identity(logits, name="logits")
        tf.nn.softmax(logits, name="probs")

        loss = tf.compat.v1.losses.sparse_softmax_cross_entropy(labels, logits)
        with tf.control_dependencies(tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)):
            train_op = tf.compat.v1.train.GradientDescentOptimizer(0.1).minimize(loss)

        moving = [v for v in tf.compat.v1.global_variables() if "moving_" in v.name]
        assert len(moving) == 2, moving
        rng = np.random.default_rng(2024)
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            for _ in range(5):
                xb = rng.normal(3.0, 2.0, (8, *INPUT_SHAPE)).astype(np.float32)
                yb = rng.integers(0, 2, 8).astype(np.int32)
                sess.run(train_op, {x: xb, labels: yb})
            if variant == "fixed":  # no batch-norm updates in inference mode: set the stats directly
                for v in moving:
                    shape = v.shape.as_list()
                    value = (rng.normal(1.5, 0.5, shape) if "mean" in v.name
                             else rng.uniform(2.0, 4.0, shape)).astype(np.float32)
                    v.load(value, sess)
            for v in moving:  # the moving statistics are really trained, not the initial 0 / 1
                value = sess.run(v)
                initial = 0.0 if "mean" in v.name else 1.0
                assert np.min(np.abs(value - initial)) > 0.05, (v.name, value)
            # Relative paths in the `checkpoint` state file: the directory can be copied as is.
            saver = tf.compat.v1.train.Saver(save_relative_paths=True)
            return saver.save(sess, str(ckpt_dir / "model.ckpt"), global_step=1)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict:
    """{variant: checkpoint directory}, written once for the module."""
    root = tmp_path_factory.mktemp("slim-ckpts")
    out = {}
    for variant in ("is_training", "scale", "fixed"):
        prefix = write_slim_checkpoint(root / variant, variant=variant)
        assert (root / variant / "checkpoint").is_file() and Path(prefix + ".meta").is_file()
        out[variant] = root / variant
    return out


def slim_project(project: Path, ckpt_dir: Path) -> Path:
    """targets/slim.yaml and its checkpoint (as slim_ckpt) in the project; returns the prefix."""
    (project / "targets").mkdir(exist_ok=True)
    (project / "targets" / "slim.yaml").write_text(SLIM_TARGET)
    shutil.copytree(ckpt_dir, project / "slim_ckpt")
    return project / "slim_ckpt" / "model.ckpt-1"


# ----------------------------------------------------------------------------- helpers

def samples(n: int = 3, seed: int = 77) -> np.ndarray:
    return np.random.default_rng(seed).normal(3.0, 2.0, (n, *INPUT_SHAPE)).astype(np.float32)


def frozen_pb(run) -> Path:
    stage = next(s for s in run.report["stages"] if s["name"] == "freeze")
    path = Path(stage["artifact"])
    return path / "frozen.pb" if path.is_dir() else path


def load_pb(path: Path) -> tf.compat.v1.GraphDef:
    return tf.compat.v1.GraphDef.FromString(Path(path).read_bytes())


def run_pb(path: Path, x: np.ndarray, outputs=("probs", "logits")) -> list:
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(load_pb(path), name="")
        with tf.compat.v1.Session(graph=graph) as sess:
            return sess.run([o + ":0" for o in outputs], {"input:0": x})


def run_checkpoint(prefix: Path, x: np.ndarray, feeds: dict, outputs=("probs", "logits")) -> list:
    """The user's own inference: restore the checkpoint with its .meta graph."""
    graph = tf.Graph()
    with graph.as_default():
        saver = tf.compat.v1.train.import_meta_graph(str(prefix) + ".meta", clear_devices=True)
        with tf.compat.v1.Session(graph=graph) as sess:
            saver.restore(sess, str(prefix))
            return sess.run([o + ":0" for o in outputs],
                            {"input:0": x, **{k + ":0": v for k, v in feeds.items()}})


def assert_batch_independent(pb: Path, x: np.ndarray) -> list:
    """Each sample alone gives what it gives inside the batch; returns the batch outputs."""
    together = run_pb(pb, x)
    for i in range(len(x)):
        alone = run_pb(pb, x[i:i + 1])
        for a, b in zip(together, alone):
            np.testing.assert_allclose(a[i:i + 1], b, atol=TOL, rtol=0,
                                       err_msg=f"sample {i}: output depends on the rest of the batch")
    return together


def assert_same(got: list, expected: list) -> None:
    for g, e in zip(got, expected):
        assert g.shape == e.shape
        assert np.all(np.isfinite(g))
        np.testing.assert_allclose(g, e, atol=TOL, rtol=0)


def store_entries(project: Path, stage: str) -> list:
    root = project / "build" / "store" / stage
    return sorted(root.iterdir()) if root.is_dir() else []


def lock_targets(project: Path) -> dict:
    lock = project / "tfbuild.lock"
    if not lock.is_file():
        return {}
    return (yaml.safe_load(lock.read_text()) or {}).get("targets") or {}


def warnings_in(err: str) -> list:
    """The warnings on stderr, each as one line (the console may wrap long messages)."""
    text = " ".join(err.split())
    return ["warning:" + part for part in re.split(r"(?i)\bwarning:", text)[1:]]


# ----------------------------------------------------------------------------- the checkpoints themselves

def test_the_training_default_really_is_batch_dependent(checkpoints):
    """Sanity for the premise: the checkpoint's own default (is_training=True) mixes the batch,
    and feeding is_training=False does not."""
    prefix = checkpoints["is_training"] / "model.ckpt-1"
    x = samples()
    default = run_checkpoint(prefix, x, {})[1]
    default_alone = run_checkpoint(prefix, x[:1], {})[1]
    assert np.max(np.abs(default[:1] - default_alone)) > 1e-3
    inference = run_checkpoint(prefix, x, {"is_training": False})[1]
    inference_alone = run_checkpoint(prefix, x[:1], {"is_training": False})[1]
    np.testing.assert_allclose(inference[:1], inference_alone, atol=TOL, rtol=0)


# ----------------------------------------------------------------------------- a. refused while unbound

def test_unbound_is_training_is_refused(tfbuild, project, checkpoints):
    slim_project(project, checkpoints["is_training"])
    run = tfbuild("target=slim")
    assert run.code == 1, f"exit {run.code}\n{run.err}\n{run.out}"
    assert run.report is not None and not run.report["ok"]
    assert run.status() == {"freeze": "failed"}, run.out
    reason = run.reasons()["freeze"]
    assert "is_training" in reason, reason
    assert "freeze.constants" in reason, reason
    assert "Traceback" not in run.out + run.err
    stage = run.report["stages"][0]
    assert stage["artifact"] is None
    # Nothing published, no scratch directory left over, nothing locked.
    assert store_entries(project, "freeze") == []
    assert not list((project / "build" / "tmp").glob("*"))
    assert "slim" not in lock_targets(project)


# ----------------------------------------------------------------------------- b. bound: inference graph

def test_bound_is_training_freezes_the_inference_graph(tfbuild, project, checkpoints):
    prefix = slim_project(project, checkpoints["is_training"])
    run = tfbuild("target=slim", "+freeze.constants.is_training=false")
    assert run.code == 0, f"exit {run.code}\n{run.err}\n{run.out}"
    assert run.report["ok"] and run.status() == {"freeze": "built"}
    assert "Traceback" not in run.out + run.err
    assert not [w for w in warnings_in(run.err) if "is_training" in w], run.err  # bound: nothing to warn
    assert "slim" in lock_targets(project)

    pb = frozen_pb(run)
    nodes = {n.name: n for n in load_pb(pb).node}
    assert sorted(n for n, node in nodes.items() if node.op.startswith("Placeholder")) == ["input"]
    assert "is_training" not in nodes or nodes["is_training"].op == "Const"
    assert [i["name"] for i in run.report["metadata"]["inputs"]] == ["input"]

    x = samples()
    got = assert_batch_independent(pb, x)
    assert not np.allclose(got[1], got[1][:1])  # a real function of the input
    expected = run_checkpoint(prefix, x, {"is_training": False})
    assert_same(got, expected)


# ----------------------------------------------------------------------------- c. no switch: no warning

def test_graph_without_training_switch_does_not_warn(tfbuild, project, checkpoints):
    prefix = slim_project(project, checkpoints["fixed"])
    run = tfbuild("target=slim")
    assert run.code == 0, f"exit {run.code}\n{run.err}\n{run.out}"
    assert run.status() == {"freeze": "built"}
    assert warnings_in(run.err) == [], run.err

    pb = frozen_pb(run)
    assert not [n.name for n in load_pb(pb).node if n.op == "PlaceholderWithDefault"]
    x = samples()
    assert_same(assert_batch_independent(pb, x), run_checkpoint(prefix, x, {}))


# ----------------------------------------------------------------------------- d. harmless default: warned

def test_harmless_placeholder_with_default_is_warned_about(tfbuild, project, checkpoints):
    prefix = slim_project(project, checkpoints["scale"])
    run = tfbuild("target=slim", "+freeze.constants.is_training=false")
    assert run.code == 0, f"exit {run.code}\n{run.err}\n{run.out}"
    assert run.status() == {"freeze": "built"}
    assert "Traceback" not in run.out + run.err
    warned = [w for w in warnings_in(run.err) if re.search(r"\bscale\b", w)]
    assert warned, f"no warning naming 'scale' on stderr:\n{run.err}"

    pb = frozen_pb(run)
    x = samples()
    got = assert_batch_independent(pb, x)
    assert_same(got, run_checkpoint(prefix, x, {"is_training": False}))
