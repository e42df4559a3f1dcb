"""The rest of TensorFlow's freeze_graph: a checkpoint without .meta plus its GraphDef
file (binary or text, told apart by content), and initializer nodes (lookup tables)
kept and run. Compared with TF's own freeze_graph tool where it works."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfbuild.tf.graph_io import run_frozen

TABLE = "init_all_tables"


def write_user_model(root: Path, resource: bool) -> None:
    """A TF1 model saved the way seed 000 did: checkpoint without .meta, graph by write_graph."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        w = tf.compat.v1.get_variable("w", [4, 3], use_resource=resource,
                                      initializer=tf.compat.v1.random_normal_initializer(seed=1))
        logits = tf.matmul(x, w)
        tf.nn.softmax(logits, name="probs")
        keys, values = tf.constant([0, 1, 2], tf.int64), tf.constant([10.0, 20.0, 30.0])
        table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, values), -1.0)
        tf.identity(table.lookup(tf.argmax(logits, axis=1)), name="scores")
        init = tf.compat.v1.tables_initializer(name=TABLE)
        with tf.compat.v1.Session() as sess:
            sess.run([tf.compat.v1.global_variables_initializer(), init])
            tf.compat.v1.train.Saver().save(sess, str(root / "ck" / "model.ckpt-1"), write_meta_graph=False)
        tf.io.write_graph(graph.as_graph_def(), str(root), "graph.pb", as_text=False)
        tf.io.write_graph(graph.as_graph_def(), str(root), "graph.pbtxt", as_text=True)


def run_with_tables(pb: Path, x: np.ndarray) -> list:
    graph_def = tf.compat.v1.GraphDef.FromString(pb.read_bytes())
    with tf.Graph().as_default() as g:
        tf.compat.v1.import_graph_def(graph_def, name="")
        with tf.compat.v1.Session(graph=g) as sess:
            sess.run(g.get_operation_by_name(TABLE))
            return sess.run(["probs:0", "scores:0"], {"x:0": x})


@pytest.mark.parametrize("graph_file", ["graph.pb", "graph.pbtxt"])
def test_graph_file_and_initializer_nodes_match_tensorflows_freeze_graph(project, tfbuild, graph_file):
    from tensorflow.python.tools import freeze_graph
    write_user_model(project, resource=False)   # TF's tool restores only ref variables
    (project / "targets").mkdir()
    (project / "targets/g.yaml").write_text(
        f"checkpoint: {{path: ck}}\nfreeze: {{outputs: [probs, scores], graph: {graph_file}, "
        f"initializer_nodes: [{TABLE}]}}\n")
    run = tfbuild("target=g")
    assert run.code == 0, run.err
    ours = Path(run.report["stages"][0]["artifact"])
    freeze_graph.freeze_graph(
        input_graph=str(project / graph_file), input_saver="", input_binary=graph_file.endswith(".pb"),
        input_checkpoint=str(project / "ck/model.ckpt-1"), output_node_names=f"probs,scores,{TABLE}",
        restore_op_name="", filename_tensor_name="", output_graph=str(project / "tf.pb"),
        clear_devices=True, initializer_nodes=TABLE)
    x = np.random.default_rng(3).normal(size=(5, 4)).astype(np.float32)
    for a, b in zip(run_with_tables(ours, x), run_with_tables(project / "tf.pb", x)):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert set(run_with_tables(ours, x)[1]) <= {10.0, 20.0, 30.0}


def test_graph_file_with_resource_variables(project, tfbuild):
    """TF's freeze_graph cannot restore resource variables into a bare GraphDef; tfbuild can."""
    write_user_model(project, resource=True)
    (project / "targets").mkdir()
    (project / "targets/g.yaml").write_text("checkpoint: {path: ck}\nfreeze: {outputs: [probs], graph: graph.pb}\n")
    run = tfbuild("target=g")
    assert run.code == 0, run.err
    x = np.random.default_rng(4).normal(size=(5, 4)).astype(np.float32)
    w = tf.train.load_checkpoint(str(project / "ck/model.ckpt-1")).get_tensor("w")
    want = tf.nn.softmax(x @ w).numpy()
    got = run_frozen(Path(run.report["stages"][0]["artifact"]), {"x": x}, ["probs"])[0]
    np.testing.assert_allclose(got, want, atol=1e-6)


@pytest.mark.parametrize("graph, expect", [("missing.pb", "freeze.graph=missing.pb does not exist"),
                                           ("junk.pb", "is neither a binary nor a text GraphDef")])
def test_bad_graph_files(project, tfbuild, graph, expect):
    write_user_model(project, resource=True)
    (project / "junk.pb").write_bytes(b"\xff\xfe not a graph \x00\x01")
    (project / "targets").mkdir()
    (project / "targets/g.yaml").write_text(f"checkpoint: {{path: ck}}\nfreeze: {{outputs: [probs], graph: {graph}}}\n")
    run = tfbuild("target=g")
    lines = [line for line in run.err.splitlines() if line.strip()]
    assert run.code == 2 and len(lines) == 1 and expect in lines[0], run.err


def test_functional_control_flow_that_writes_a_variable(project, tfbuild):
    """tf.cond in TF2's graph mode is an If op; its training branch bumps a counter."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        training = tf.compat.v1.placeholder_with_default(True, [], name="is_training")
        w = tf.compat.v1.get_variable("w", [4, 3], initializer=tf.compat.v1.random_normal_initializer(seed=2))
        counter = tf.compat.v1.get_variable("counter", [], initializer=tf.compat.v1.zeros_initializer())

        def train_branch():
            with tf.control_dependencies([counter.assign_add(1.0)]):
                return tf.matmul(x, w) * 0.5

        tf.nn.softmax(tf.cond(training, train_branch, lambda: tf.matmul(x, w)), name="probs")
        assert any(n.op == "If" for n in graph.as_graph_def().node)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            tf.compat.v1.train.Saver().save(sess, str(project / "ck" / "model.ckpt-1"))
            want = sess.run("probs:0", {"x:0": np.eye(4, dtype=np.float32), "is_training:0": False})
    (project / "targets").mkdir()
    (project / "targets/c.yaml").write_text("checkpoint: {path: ck}\nfreeze: {outputs: [probs]}\n")
    unbound = tfbuild("target=c")
    assert unbound.code == 1
    assert "still writes a variable (node AssignAddVariableOp" in unbound.reasons()["freeze"]
    assert "+freeze.constants.is_training=false" in unbound.reasons()["freeze"]
    bound = tfbuild("target=c", "+freeze.constants.is_training=false")
    assert bound.code == 0, bound.err
    got = run_frozen(Path(bound.report["stages"][0]["artifact"]), {"x": np.eye(4, dtype=np.float32)}, ["probs"])[0]
    np.testing.assert_allclose(got, want, atol=1e-6)
