"""Every input a TF2 user has: SavedModels, .keras files and object-based checkpoints,
frozen through their signature and checked against the model's own outputs.

Real TensorFlow and Keras 3 on small models made here.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

keras = pytest.importorskip("keras")

TOL = 1e-5
SHAPE = (8, 8, 3)
BUILDER = '''
import keras


def build(classes=2):
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax", name="probs")(x))
'''


def functional():
    keras.utils.set_random_seed(1)
    inputs = keras.Input(SHAPE, name="image")
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="probs")(x))
    # Non-trivial moving statistics: a model left in training mode would differ.
    bn = model.get_layer("bn")
    bn.moving_mean.assign(np.full(4, 0.3, np.float32))
    bn.moving_variance.assign(np.full(4, 2.0, np.float32))
    return model


def sequential():
    keras.utils.set_random_seed(2)
    return keras.Sequential([keras.Input(SHAPE, name="pixels"), keras.layers.Flatten(),
                             keras.layers.Dense(3, activation="relu"), keras.layers.Dense(2, name="logits")])


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.flat = keras.layers.Flatten()
        self.dense = keras.layers.Dense(2)

    def call(self, x):
        return self.dense(self.flat(x))


class Scaler(tf.Module):
    def __init__(self):
        self.w = tf.Variable(np.arange(6, dtype=np.float32).reshape(3, 2))

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
    def serve(self, x):
        return {"y": tf.matmul(x, self.w), "norm": tf.norm(x, axis=1)}


def batch(shape, n=3):
    return np.random.default_rng(7).uniform(0, 255, (n, *shape)).astype(np.float32)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The user's files: {name: (path, reference fn(batch) -> {output: array})}."""
    root = tmp_path_factory.mktemp("tf2")
    made = {}
    f = functional()
    f.save(root / "functional.keras")
    f.export(str(root / "functional_export"))
    made["functional.keras"] = lambda x: {"probs": f(x, training=False).numpy()}
    made["functional_export"] = lambda x: {"output_0": f(x, training=False).numpy()}
    s = sequential()
    s.save(root / "sequential.keras")
    tf.saved_model.save(s, str(root / "sequential_sm"))
    made["sequential.keras"] = lambda x: {"logits": s(x).numpy()}
    sub = Subclassed()
    sub(np.zeros((1, *SHAPE), np.float32))
    sub.save(root / "subclassed.keras")   # its class is not importable when loading: refused
    sub.export(str(root / "subclassed_export"))
    made["subclassed_export"] = lambda x: {"output_0": sub(x).numpy()}
    module = Scaler()
    tf.saved_model.save(module, str(root / "module_sm"), signatures={"serving_default": module.serve})
    made["module_sm"] = lambda x: {k: v.numpy() for k, v in module.serve(x).items()}
    ck = functional()
    tf.train.Checkpoint(model=ck).write(str(root / "tf2ckpt" / "ckpt"))
    (root / "tf2ckpt" / "checkpoint").write_text('model_checkpoint_path: "ckpt"\n')
    made["tf2ckpt"] = lambda x: {"probs": ck(x, training=False).numpy()}
    return root, made


def target(project: Path, name: str, body: str) -> None:
    (project / "targets").mkdir(exist_ok=True)
    (project / "targets" / f"{name}.yaml").write_text(body)


def frozen_outputs(pb: Path, feeds: dict, outputs: list) -> dict:
    from tfbuild.tf.graph_io import run_frozen
    return dict(zip(outputs, run_frozen(pb, feeds, outputs)))


@pytest.mark.parametrize("name, inputs, outputs", [
    ("functional.keras", {"image": SHAPE}, ["probs"]),
    ("functional_export", {"image": SHAPE}, ["output_0"]),
    ("sequential.keras", {"pixels": SHAPE}, ["logits"]),
    ("subclassed_export", None, ["output_0"]),
    ("module_sm", {"x": (3,)}, ["norm", "y"]),
])
def test_freeze_tf2_models_with_readable_names(models, project, tfbuild, name, inputs, outputs):
    root, reference = models
    shutil.copytree(root / name, project / name) if (root / name).is_dir() else shutil.copy(root / name, project)
    target(project, "m", f"checkpoint: {{path: {name}}}\nfreeze: {{}}\ntflite: {{precision: FP32}}\n")
    run = tfbuild("target=m")
    assert run.code == 0, run.err
    meta = json.loads((Path(run.report["stages"][0]["artifact"]).parent / "tfbuild.json").read_text())["metadata"]
    assert meta["format"] == ("Keras file" if name.endswith(".keras") else "SavedModel")
    assert [o["name"] for o in meta["outputs"]] == outputs
    names = [i["name"] for i in meta["inputs"]]
    if inputs:
        assert names == list(inputs)
    shape = tuple(meta["inputs"][0]["shape"][1:])
    x = batch(shape)
    got = frozen_outputs(Path(run.report["stages"][0]["artifact"]), {names[0]: x}, outputs)
    want = reference[name](x)
    for key in outputs:
        assert np.max(np.abs(got[key] - want[key])) <= TOL * max(1.0, np.max(np.abs(want[key]))), key
    assert meta["parity_max_abs_diff"] <= TOL
    assert run.status() == {"freeze": "built", "tflite": "built"}   # the rest of the chain takes it


def test_tf2_checkpoint_with_a_builder(models, project, tfbuild):
    root, reference = models
    shutil.copytree(root / "tf2ckpt", project / "tf2ckpt")
    (project / "mynets.py").write_text(BUILDER)
    target(project, "c", "checkpoint: {path: tf2ckpt}\nmodel: {_target_: mynets.build}\nfreeze: {}\n")
    run = tfbuild("target=c")
    assert run.code == 0, run.err
    x = batch(SHAPE)
    got = frozen_outputs(Path(run.report["stages"][0]["artifact"]), {"image": x}, ["probs"])
    assert np.max(np.abs(got["probs"] - reference["tf2ckpt"](x)["probs"])) <= TOL
    wrong = tfbuild("target=c", "+model.params.classes=3")
    assert wrong.code == 2 and "does not match model._target_" in wrong.err


def test_identity_is_content_touch_and_copy_rebuild_nothing(models, project, tfbuild):
    root, _ = models
    shutil.copytree(root / "functional_export", project / "sm")
    target(project, "m", "checkpoint: {path: sm}\nfreeze: {}\n")
    assert tfbuild("target=m").code == 0
    for f in (project / "sm").rglob("*"):
        os.utime(f, (f.stat().st_atime + 5, f.stat().st_mtime + 5))
    (project / "sm" / "fingerprint.pb").write_bytes(b"another timestamp")   # not identity
    assert tfbuild("target=m").status() == {"freeze": "fresh"}
    shutil.copytree(project / "sm", project / "copy")
    assert tfbuild("target=m", "checkpoint.path=copy").status() == {"freeze": "fresh"}
    other = functional()
    other.get_layer("probs").bias.assign([0.5, -0.5])                       # one weight changes
    shutil.rmtree(project / "sm")
    other.export(str(project / "sm"))
    changed = tfbuild("target=m")
    assert changed.status() == {"freeze": "built"}, changed.err
    assert "input SavedModel content changed" in changed.reasons()["freeze"]


@pytest.mark.parametrize("setup, args, expect", [
    ("functional_export", ["freeze.signature=nope"], "has no such signature (it has: serve, serving_default)"),
    ("subclassed.keras", [], "Keras cannot find"),
    ("tf2ckpt", [], "is a TF2 object-based checkpoint: it holds weights, not the model"),
    ("empty", [], "none of the formats tfbuild reads"),
    ("functional.keras", ["freeze.outputs=[prob]"], "'prob' is not an output of the model; its outputs are probs"),
    ("functional.keras", ["+freeze.constants.is_training=false"], "drop freeze.constants"),
    ("functional.keras", ["placeholder"], "set placeholder: null"),
])
def test_bad_tf2_inputs(models, project, tfbuild, setup, args, expect):
    root, _ = models
    if setup == "empty":
        (project / setup).mkdir()
    elif (root / setup).is_dir():
        shutil.copytree(root / setup, project / setup)
    else:
        shutil.copy(root / setup, project)
    extra = "model: {name: densenet}\nplaceholder: {}\n" if args == ["placeholder"] else ""
    target(project, "bad", f"checkpoint: {{path: {setup}}}\nfreeze: {{}}\n{extra}")
    run = tfbuild("target=bad", *[a for a in args if a != "placeholder"])
    lines = [line for line in run.err.splitlines() if line.strip()]
    assert run.code == 2, run.err
    assert len(lines) == 1 and expect in lines[0], run.err
    assert "Traceback" not in run.err
    assert not (project / "build" / "store").exists() or not list((project / "build/store").glob("*/*"))


class TrainingMode(tf.Module):
    """A signature that runs batch norm on batch statistics: refused."""

    def __init__(self):
        self.model = functional()

    @tf.function(input_signature=[tf.TensorSpec([None, *SHAPE], tf.float32, name="image")])
    def serve(self, image):
        return {"probs": self.model(image, training=True)}


def test_a_signature_left_in_training_mode_is_refused(project, tfbuild):
    module = TrainingMode()
    tf.saved_model.save(module, str(project / "sm"), signatures={"serving_default": module.serve})
    target(project, "m", "checkpoint: {path: sm}\nfreeze: {}\n")
    run = tfbuild("target=m")
    assert run.code == 1 and run.status() == {"freeze": "failed"}, run.err
    assert "not in inference mode" in run.reasons()["freeze"]
    assert not list((project / "build/store").glob("freeze/*"))


def test_shipped_keras_demo_target(project, tfbuild):
    run = tfbuild("target=keras_tflite", "tflite.precision=INT8")
    assert run.code == 0, run.err
    assert run.status() == {"freeze": "built", "tflite": "built"}
    assert run.report["metadata"]["precision"] == "INT8"
    again = tfbuild("target=keras_tflite", "tflite.precision=INT8")
    assert again.status() == {"freeze": "fresh", "tflite": "fresh"}


def test_inspect_every_format(models, project, capsys, monkeypatch):
    from tfbuild.cli.main import main
    monkeypatch.setenv("COLUMNS", "200")
    root, _ = models
    for name in ("functional.keras", "functional_export"):
        shutil.copytree(root / name, project / name) if (root / name).is_dir() else shutil.copy(root / name, project)
    graph = tf.Graph()
    with graph.as_default():                       # a TF1 training graph, TF-Slim style
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        training = tf.compat.v1.placeholder_with_default(True, [], name="is_training")
        w = tf.compat.v1.get_variable("w", [4, 2])
        logits = tf.matmul(tf.nn.dropout(x, rate=tf.where(training, 0.5, 0.0)), w, name="logits")
        tf.nn.softmax(logits, name="probs")
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            tf.compat.v1.train.Saver().save(sess, str(project / "tf1" / "model.ckpt-3"))
    expected = {
        "functional.keras": ["Keras file", "input  image  float32 [None, 8, 8, 3]", "output probs"],
        "functional_export": ["SavedModel", "signature serving_default: image -> output_0"],
        "tf1": ["TF1 checkpoint", "input  x  float32 [None, 4]",
                "input  is_training  bool [] (has a default", "likely outputs (for freeze.outputs): probs",
                "random ops:", "variables: 1 (8 values)"],
    }
    for name, lines in expected.items():
        target(project, "i", f"checkpoint: {{path: {name}}}\nfreeze: {{}}\n")
        assert main(["inspect", "target=i"]) == 0
        out = capsys.readouterr().out
        for line in lines:
            assert line in out, (name, line, out)
    assert not (project / "build").exists()         # inspect builds nothing


def test_tf_keras_models(project, tfbuild):
    """Keras 2 (tf_keras) models: a .keras file and a SavedModel."""
    tf_keras = pytest.importorskip("tf_keras", reason="tf_keras (Keras 2) is not installed")
    tf_keras.utils.set_random_seed(5)
    inputs = tf_keras.Input(SHAPE, name="image")
    x = tf_keras.layers.GlobalAveragePooling2D()(tf_keras.layers.BatchNormalization()(
        tf_keras.layers.Conv2D(4, 3)(inputs)))
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(2, activation="softmax", name="probs")(x))
    model.save(project / "k2.keras")
    model.save(project / "k2_sm", save_format="tf")
    x = batch(SHAPE)
    want = model(x, training=False).numpy()
    for path, output in (("k2.keras", "probs"), ("k2_sm", "probs")):
        target(project, "k", f"checkpoint: {{path: {path}}}\nfreeze: {{}}\n")
        run = tfbuild("target=k")
        assert run.code == 0, run.err
        got = frozen_outputs(Path(run.report["stages"][0]["artifact"]), {"image": x}, [output])[output]
        np.testing.assert_allclose(got, want, atol=TOL)


def test_two_outputs_of_one_layer_keep_apart(project, tfbuild):
    inputs = keras.Input((4,), name="x")
    a, b = keras.ops.split(keras.layers.Dense(4, name="h")(inputs), 2, axis=-1)
    model = keras.Model(inputs, [a, b])
    model.save(project / "split.keras")
    target(project, "s", "checkpoint: {path: split.keras}\nfreeze: {}\n")
    run = tfbuild("target=s")
    assert run.code == 0, run.err
    names = [o["name"] for o in run.report["metadata"]["outputs"]]
    assert len(names) == 2 and len(set(names)) == 2, names
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    got = frozen_outputs(Path(run.report["artifact"]), {"x": x}, names)
    want = [t.numpy() if hasattr(t, "numpy") else np.asarray(t) for t in model(x)]
    for name, w in zip(names, want):
        np.testing.assert_allclose(got[name], w, atol=TOL)
