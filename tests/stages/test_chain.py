"""The train -> placeholder -> freeze chain end to end, with real TensorFlow.

Everything the chain produces is checked against TensorFlow itself: the frozen
graph against the checkpoint it came from (restored here with
`import_meta_graph`), the restored values against the training checkpoint's
EMA shadows, the node set against TF's own `freeze_graph` tool. Builds share
one module-scoped build directory, so each tiny model trains once.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import yaml

TOL = 1e-6


# ----------------------------------------------------------------------------- helpers

@pytest.fixture(scope="module")
def B(tmp_path_factory) -> Path:
    """The build dir shared by this module's builds (absolute)."""
    return tmp_path_factory.mktemp("chain-build")


def build(tfbuild, build_dir: Path, target: str, *args: str, lock: str = "tfbuild.lock"):
    run = tfbuild(f"target={target}", f"build_dir={build_dir}",
                  f"lock_file={build_dir / lock}", *args)
    assert run.code == 0, f"exit {run.code}\n{run.err}\n{run.out}"
    assert run.report["ok"]
    return run


def fail(tfbuild, build_dir: Path, target: str, *args: str, code: int = 2):
    """Run a request that must fail: exit `code`, one error line, nothing published."""
    before = store_dirs(build_dir)
    run = tfbuild(f"target={target}", f"build_dir={build_dir}",
                  f"lock_file={build_dir / 'bad.lock'}", *args)
    assert run.code == code, f"exit {run.code}\n{run.err}\n{run.out}"
    lines = [line for line in run.err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{run.err}"
    assert lines[0].startswith("tfbuild: error: "), run.err
    assert "Traceback" not in run.err + run.out
    # The failing stage published nothing (and no scratch directory was left over).
    assert store_dirs(build_dir) == before
    assert not list((build_dir / "tmp").glob("*"))
    assert not (build_dir / "bad.lock").exists()
    return lines[0][len("tfbuild: error: "):]


def art(run, stage: str) -> Path:
    """The store directory of a stage's artifact, from the build report.

    (build/<target>/<stage> links follow the target's latest build, whatever overrides it had.)
    """
    path = Path(next(s["artifact"] for s in run.report["stages"] if s["name"] == stage))
    return path if path.is_dir() else path.parent


def store_dirs(build_dir: Path) -> set:
    root = build_dir / "store"
    if not root.is_dir():
        return set()
    return {(stage.name, d.name) for stage in root.iterdir() for d in stage.iterdir()}


def batch(shape, n: int = 4, seed: int = 1234) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, 255.0, (n, *shape)).astype(np.float32)


def _config() -> tf.compat.v1.ConfigProto:
    # Soft placement: graphs with '/gpu:N' devices must still run on this CPU machine.
    return tf.compat.v1.ConfigProto(allow_soft_placement=True)


def run_checkpoint(prefix, feeds: dict, outputs: list) -> list:
    """Restore a checkpoint with its .meta graph and run it (independently of tfbuild)."""
    graph = tf.Graph()
    with graph.as_default():
        saver = tf.compat.v1.train.import_meta_graph(str(prefix) + ".meta", clear_devices=True)
        with tf.compat.v1.Session(graph=graph, config=_config()) as sess:
            saver.restore(sess, str(prefix))
            return sess.run([o + ":0" for o in outputs], {k + ":0": v for k, v in feeds.items()})


def load_pb(path) -> tf.compat.v1.GraphDef:
    return tf.compat.v1.GraphDef.FromString(Path(path).read_bytes())


def run_pb(path, feeds: dict, outputs: list) -> list:
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(load_pb(path), name="")
        with tf.compat.v1.Session(graph=graph, config=_config()) as sess:
            return sess.run([o + ":0" for o in outputs], {k + ":0": v for k, v in feeds.items()})


def max_diff(a: list, b: list) -> float:
    """Largest |a - b| over all outputs, each scaled by max(1, max |a|).

    Probabilities (<= 1) are compared absolutely; logits in the tens relatively, since
    TensorFlow's optimizer folds constants differently (e.g. into the convolutions) once
    variables are constants, which moves float32 results by an ulp or two.
    """
    assert len(a) == len(b)
    worst = 0.0
    for x, y in zip(a, b):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        assert x.shape == y.shape
        assert np.all(np.isfinite(x)) and np.all(np.isfinite(y))
        worst = max(worst, float(np.max(np.abs(x - y))) / max(1.0, float(np.max(np.abs(x)))))
    return worst


def ckpt_values(prefix) -> dict:
    reader = tf.train.load_checkpoint(str(prefix))
    return {name: reader.get_tensor(name) for name, _ in tf.train.list_variables(str(prefix))}


def write_target(project: Path, name: str, body: dict) -> None:
    (project / "targets").mkdir(exist_ok=True)
    (project / "targets" / f"{name}.yaml").write_text(yaml.safe_dump(body, sort_keys=False))


def copy_checkpoint(src_dir: Path, dst_dir: Path, prefix: str = "model.ckpt") -> Path:
    dst_dir.mkdir(parents=True)
    for f in Path(os.path.realpath(src_dir)).glob(prefix + ".*"):
        shutil.copyfile(f, dst_dir / f.name)
    return dst_dir / prefix


# ----------------------------------------------------------------------------- 1. parity

MODELS = {  # target: (input name, input shape without batch, output)
    "tiny_frozen": ("input", [32, 32, 3], "probs"),
    "mnist_frozen": ("x", [784], "hypothesis"),
}


@pytest.mark.parametrize("target", sorted(MODELS))
def test_frozen_equals_placeholder_checkpoint(tfbuild, B, target):
    run = build(tfbuild, B, target)
    name, shape, output = MODELS[target]
    feeds = {name: batch(shape)}
    # Also fetch the logits: softmax of off-distribution input saturates to 0/1.
    fetch = [output, "logits"]
    for stage in ("train", "placeholder", "freeze"):  # build/<target>/<stage> -> the store
        assert Path(os.path.realpath(B / target / stage)) == art(run, stage).resolve()
    expected = run_checkpoint(art(run, "placeholder") / "model.ckpt", feeds, fetch)
    got = run_pb(art(run, "freeze") / "frozen.pb", feeds, fetch)
    assert max_diff(expected, got) <= TOL
    assert np.ptp(got[1]) > 0  # not a constant
    probs = got[0]
    assert probs.shape == (4, {"tiny_frozen": 2, "mnist_frozen": 10}[target])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    meta = run.report["metadata"]
    assert [i["name"] for i in meta["inputs"]] == [name]
    assert [o["name"] for o in meta["outputs"]] == [output]
    assert meta["parity_max_abs_diff"] <= TOL
    # Variables really were folded: no variable ops, no save/restore machinery left.
    ops = {n.op for n in load_pb(art(run, "freeze") / "frozen.pb").node}
    assert not ops & {"VariableV2", "VarHandleOp", "ReadVariableOp", "RestoreV2", "SaveV2"}


def test_two_towers_keep_devices_and_agree(tfbuild, project, B):
    write_target(project, "tiny_towers", {
        "defaults": ["tiny_frozen", "_self_"],
        "placeholder": {"devices": ["/gpu:0", "/gpu:1"]},
        "freeze": {"outputs": ["Card_0/probs", "Card_1/probs"], "clear_devices": False},
    })
    run = build(tfbuild, B, "tiny_towers")
    pb = art(run, "freeze") / "frozen.pb"
    graph_def = load_pb(pb)

    # Devices are kept, per tower: every op a tower computes sits on its card. (Reads of the
    # shared resource variables carry no device already in the placeholder graph: TF clears the
    # device scope for them, and they become plain Identity nodes here.)
    def device(node) -> str:
        return node.device.lower().replace("/device:", "/")

    for i in (0, 1):
        nodes = [n for n in graph_def.node if n.name.startswith(f"Card_{i}/")]
        compute = [n for n in nodes if n.op != "Identity" or n.name.endswith("/logits")]
        assert {n.op for n in compute} >= {"Placeholder", "Conv2D", "FusedBatchNormV3", "Softmax"}
        assert {device(n) for n in compute} == {f"/gpu:{i}"}, i
        assert {device(n) for n in nodes} <= {f"/gpu:{i}", ""}, i
    meta = tf.compat.v1.MetaGraphDef.FromString(
        (art(run, "placeholder") / "model.ckpt.meta").read_bytes())
    source = {n.name: n for n in meta.graph_def.node}
    for node in graph_def.node:  # nothing was cleared: same device as in the source graph
        if node.op == source[node.name].op:
            assert node.device == source[node.name].device, node.name
    assert sorted(n.name for n in graph_def.node if n.op == "Placeholder") == \
        ["Card_0/input", "Card_1/input"]
    assert [i["name"] for i in run.report["metadata"]["inputs"]] == ["Card_0/input", "Card_1/input"]

    # It runs on this (CPU) machine; both towers agree; and match the checkpoint.
    x = batch([32, 32, 3])
    feeds = {"Card_0/input": x, "Card_1/input": x}
    outputs = ["Card_0/probs", "Card_1/probs", "Card_0/logits", "Card_1/logits"]
    got = run_pb(pb, feeds, outputs)
    assert max_diff(got[0::2], got[1::2]) <= TOL
    assert np.ptp(got[2]) > 0
    expected = run_checkpoint(art(run, "placeholder") / "model.ckpt", feeds, outputs)
    assert max_diff(expected, got) <= TOL
    # Same weights as the single-tower graph (shared training checkpoint).
    assert run.status()["train"] in ("fresh", "built")
    single = run_pb(build(tfbuild, B, "tiny_frozen").report["artifact"], {"input": x},
                    ["probs", "logits"])
    assert max_diff(single, got[0::2]) <= TOL


# ----------------------------------------------------------------------------- 2. EMA

def test_placeholder_restores_ema_shadows_or_raw_variables(tfbuild, B):
    run = build(tfbuild, B, "tiny_frozen")
    trained = ckpt_values(art(run, "train") / "model.ckpt")
    restored = ckpt_values(art(run, "placeholder") / "model.ckpt")
    ema = "/ExponentialMovingAverage"

    shadowed = [n for n in restored if n + ema in trained]
    assert "densenet/conv0/weights" in shadowed
    assert "densenet/dense_block1/conv_block1/x1/bn/gamma" in shadowed
    for name in restored:
        assert ema not in name and not name.endswith("Momentum")
        if name in shadowed:
            np.testing.assert_array_equal(restored[name], trained[name + ema], err_msg=name)
        else:  # batch-norm moving statistics are restored as they are
            assert "moving_" in name, name
            np.testing.assert_array_equal(restored[name], trained[name], err_msg=name)
    # The shadows are not the raw weights (20 steps, decay min(0.99, (1+t)/(10+t))).
    assert not np.array_equal(restored["densenet/conv0/weights"], trained["densenet/conv0/weights"])
    differ = [n for n in shadowed if not np.array_equal(restored[n], trained[n])]
    assert len(differ) == len(shadowed), sorted(set(shadowed) - set(differ))

    raw = build(tfbuild, B, "tiny_frozen", "placeholder.ema_decay=null", lock="ema_null.lock")
    assert raw.status() == {"train": "fresh", "placeholder": "built", "freeze": "built"}
    assert art(raw, "train") == art(run, "train")
    restored_raw = ckpt_values(art(raw, "placeholder") / "model.ckpt")
    assert sorted(restored_raw) == sorted(restored)
    for name, value in restored_raw.items():
        np.testing.assert_array_equal(value, trained[name], err_msg=name)
    # ... and the choice shows in the frozen graph's output.
    x = {"input": batch([32, 32, 3])}
    with_ema = run_pb(art(run, "freeze") / "frozen.pb", x, ["logits"])
    without = run_pb(art(raw, "freeze") / "frozen.pb", x, ["logits"])
    assert max_diff(with_ema, without) > TOL


# ----------------------------------------------------------------------------- 3. placeholder: null

def write_script_checkpoint(ckpt_dir: Path) -> str:
    """A plain TF1-style training script's checkpoint, with its own node names."""
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.set_random_seed(7)
        x = tf.compat.v1.placeholder(tf.float32, [None, 8], name="x")
        keep_prob = tf.compat.v1.placeholder(tf.float32, [], name="keep_prob")
        is_training = tf.compat.v1.placeholder(tf.bool, [], name="is_training")
        with tf.compat.v1.variable_scope("dense"):
            w = tf.compat.v1.get_variable("kernel", [8, 4],
                                          initializer=tf.compat.v1.random_normal_initializer(0, 0.05, seed=3))
            b = tf.compat.v1.get_variable("bias", [4],
                                          initializer=tf.compat.v1.random_normal_initializer(0, 1, seed=4))
        h = tf.nn.relu(tf.matmul(x, w) + b)
        h = tf.nn.dropout(h, rate=1.0 - keep_prob)
        # Training-time noise, switched by the bool placeholder as TF1 scripts did.
        h = tf.compat.v1.cond(is_training, lambda: h + tf.random.normal(tf.shape(h)), lambda: h)
        with tf.name_scope("out"):
            tf.identity(tf.nn.softmax(h), name="prediction")
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            return saver.save(sess, str(ckpt_dir / "model.ckpt"), global_step=100)


def test_placeholder_null_freezes_a_user_checkpoint(tfbuild, project, B):
    ckpt_dir = project / "my_run"
    ckpt_dir.mkdir()
    prefix = write_script_checkpoint(ckpt_dir)
    assert (ckpt_dir / "checkpoint").is_file() and Path(prefix + ".meta").is_file()
    write_target(project, "script", {
        "checkpoint": {"path": str(ckpt_dir)},  # a directory with a `checkpoint` state file
        "train": None,
        "placeholder": None,
        "freeze": {"outputs": ["out/prediction"],
                   "constants": {"keep_prob": 1.0, "is_training": False}},
    })
    run = build(tfbuild, B, "script")
    assert [s["name"] for s in run.report["stages"]] == ["freeze"]
    pb = art(run, "freeze") / "frozen.pb"
    nodes = {n.name: n for n in load_pb(pb).node}
    assert sorted(n for n, node in nodes.items() if node.op.startswith("Placeholder")) == ["x"]
    for bound in ("keep_prob", "is_training"):  # bound to constants, or pruned
        assert bound not in nodes or nodes[bound].op == "Const", nodes[bound]
    assert [i["name"] for i in run.report["metadata"]["inputs"]] == ["x"]
    assert [o["name"] for o in run.report["metadata"]["outputs"]] == ["out/prediction"]

    x = np.random.default_rng(5).normal(0, 30, (6, 8)).astype(np.float32)
    expected = run_checkpoint(prefix, {"x": x, "keep_prob": np.float32(1.0), "is_training": False},
                              ["out/prediction"])
    got = run_pb(pb, {"x": x}, ["out/prediction"])
    assert max_diff(expected, got) <= TOL
    assert not np.allclose(got[0], got[0][:1])  # a real function of x, not a constant
    # Dropout and the training branch really are off: the same input twice gives the same output.
    assert max_diff(got, run_pb(pb, {"x": x}, ["out/prediction"])) == 0.0


def test_random_ops_left_in_the_graph_fail_parity(tfbuild, project, B):
    # An unseeded dropout mask that no placeholder switches off: each session
    # draws a new one, so the frozen graph cannot agree with the checkpoint.
    # (raw_ops: tf.random.* refuses unseeded ops once a train stage run in this
    # process has enabled op determinism.)
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 8], name="x")
        init = tf.compat.v1.random_normal_initializer(seed=1)
        w = tf.compat.v1.get_variable("w", [8, 64], initializer=init)
        v = tf.compat.v1.get_variable("v", [64, 4], initializer=init)
        h = tf.matmul(x, w)
        mask = tf.raw_ops.RandomUniform(shape=tf.shape(h), dtype=tf.float32, name="dropout_noise") > 0.5
        tf.identity(tf.matmul(h * tf.cast(mask, tf.float32), v), name="y")
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            prefix = tf.compat.v1.train.Saver().save(sess, str(project / "noisy.ckpt"))
    write_target(project, "noisy", {"checkpoint": {"path": prefix}, "train": None, "placeholder": None,
                                    "freeze": {"outputs": ["y"]}})
    before = store_dirs(B)
    run = tfbuild("target=noisy", f"build_dir={B}", f"lock_file={B / 'noisy.lock'}")
    assert run.code == 1 and run.status() == {"freeze": "failed"}, run.out
    message = run.reasons()["freeze"]
    assert message.startswith("frozen graph differs from the checkpoint by ")
    assert "random ops (dropout_noise)" in message
    assert "freeze.constants" in message
    assert store_dirs(B) == before and not (B / "noisy.lock").exists()
    stage = run.report["stages"][0]
    assert stage["artifact"] is None and stage["size"] is None  # points at nothing unpublished
    assert stage["seconds"] > 0
    assert "freeze failed: frozen graph differs" in " ".join(run.out.split())
    assert "Traceback" not in run.err + run.out


# ----------------------------------------------------------------------------- 4. reproducible

def test_two_clean_builds_are_byte_identical(tfbuild, B, tmp_path_factory):
    first = build(tfbuild, B, "tiny_frozen")
    other = tmp_path_factory.mktemp("clean-build")
    second = build(tfbuild, other, "tiny_frozen")
    assert second.built() == ["train", "placeholder", "freeze"]  # really from scratch

    for rel in ("freeze/frozen.pb", "placeholder/model.ckpt.index",
                "placeholder/model.ckpt.data-00000-of-00001", "placeholder/model.ckpt.meta",
                "train/model.ckpt.index", "train/model.ckpt.data-00000-of-00001"):
        stage, name = rel.split("/")
        assert art(second, stage).is_relative_to(other)
        assert (art(first, stage) / name).read_bytes() == (art(second, stage) / name).read_bytes(), rel

    def lock_entry(root: Path) -> dict:
        return yaml.safe_load((root / "tfbuild.lock").read_text())["targets"]["tiny_frozen"]

    a, b = lock_entry(B), lock_entry(other)
    assert a == b
    assert set(a["stages"]) == {"train", "placeholder", "freeze"}
    assert a["stages"]["freeze"]["outputs"]["frozen.pb"]
    assert [s["fingerprint"] for s in first.report["stages"]] == \
        [s["fingerprint"] for s in second.report["stages"]]


# ----------------------------------------------------------------------------- 5. vs freeze_graph

def test_same_as_tensorflow_freeze_graph(tfbuild, B, tmp_path):
    from tensorflow.python.tools import freeze_graph

    run = build(tfbuild, B, "tiny_frozen")
    prefix = str(art(run, "placeholder") / "model.ckpt")
    out = tmp_path / "tf_frozen.pb"
    with tf.Graph().as_default():  # freeze_graph imports into the default graph
        freeze_graph.freeze_graph(
            input_graph=None, input_saver="", input_binary=True, input_checkpoint=prefix,
            output_node_names="probs", restore_op_name=None, filename_tensor_name=None,
            output_graph=str(out), clear_devices=True, initializer_nodes="",
            input_meta_graph=prefix + ".meta")
    ours = art(run, "freeze") / "frozen.pb"
    theirs_nodes = {n.name: n.op for n in load_pb(out).node}
    ours_nodes = {n.name: n.op for n in load_pb(ours).node}
    assert set(ours_nodes) == set(theirs_nodes), sorted(set(ours_nodes) ^ set(theirs_nodes))[:10]
    assert ours_nodes == theirs_nodes
    x = {"input": batch([32, 32, 3], n=3, seed=99)}
    fetch = ["probs", "logits"]
    assert max_diff(run_pb(out, x, fetch), run_pb(ours, x, fetch)) <= TOL


# ----------------------------------------------------------------------------- 6. bad input

def test_unknown_output_names_closest_nodes(tfbuild, B):
    build(tfbuild, B, "tiny_frozen")
    message = fail(tfbuild, B, "tiny_frozen", "freeze.outputs=[prob]")
    assert "'prob'" in message and "probs" in message


def test_tensor_name_output_is_accepted_with_warning(tfbuild, B):
    plain = build(tfbuild, B, "tiny_frozen")
    run = build(tfbuild, B, "tiny_frozen", "freeze.outputs=[probs:0]", lock="tensor.lock")
    assert "warning" in run.err and "probs:0" in run.err
    assert run.status()["placeholder"] == "fresh"
    assert [o["name"] for o in run.report["metadata"]["outputs"]] == ["probs"]
    assert Path(run.report["artifact"]).read_bytes() == Path(plain.report["artifact"]).read_bytes()


def test_input_shape_that_does_not_fit_the_model(tfbuild, B):
    good = build(tfbuild, B, "mnist_frozen")
    wrong = "placeholder.inputs=[{name: x, shape: [null, 100], dtype: float32}]"
    message = fail(tfbuild, B, "mnist_frozen", wrong)
    assert "784" in message and "100" in message
    # The same mistake with a given checkpoint: the placeholder stage refuses it.
    ckpt = art(good, "train") / "model.ckpt"
    message = fail(tfbuild, B, "mnist_frozen", "train=null", f"checkpoint.path={ckpt}", wrong)
    assert "784" in message and "100" in message


def test_constant_on_a_non_placeholder(tfbuild, B):
    build(tfbuild, B, "tiny_frozen")
    message = fail(tfbuild, B, "tiny_frozen", "+freeze.constants={probs: 1.0}")
    assert "not a placeholder" in message and "'probs'" in message and "Softmax" in message


def test_new_constant_without_plus_says_how(tfbuild, B):
    # Hydra locks config dicts against new keys; the message tells how to add one.
    message = fail(tfbuild, B, "tiny_frozen", "freeze.constants={probs: 1.0}")
    assert "+freeze.constants.probs=" in message


def truncated_checkpoint_message(tfbuild, project, B) -> tuple:
    run = build(tfbuild, B, "tiny_frozen")
    prefix = copy_checkpoint(art(run, "train"), project / "broken")
    data = Path(f"{prefix}.data-00000-of-00001")
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    return prefix, fail(tfbuild, B, "tiny_frozen", "train=null", f"checkpoint.path={prefix}")


def test_truncated_checkpoint(tfbuild, project, B):
    prefix, message = truncated_checkpoint_message(tfbuild, project, B)
    assert str(prefix) in message


def test_truncated_checkpoint_message_gives_the_cause(tfbuild, project, B):
    _, message = truncated_checkpoint_message(tfbuild, project, B)
    assert "Graph execution error" not in message
    assert "read less bytes" in message.lower() or "truncated" in message.lower()


def test_checkpoint_that_does_not_match_the_model(tfbuild, project, B):
    run = build(tfbuild, B, "tiny_frozen")
    prefix = copy_checkpoint(art(run, "train"), project / "tiny")
    message = fail(tfbuild, B, "tiny_frozen", "train=null", f"checkpoint.path={prefix}",
                   "model.growth_rate=12")
    assert str(prefix) in message
    assert "does not match" in message and "shape mismatch: densenet/" in message
    assert "unexpected" not in message  # same variable names, other shapes
