"""INT8 that keeps its accuracy: which layers lose it (`inspect quantization=true`), and
`tflite.float_ops` / `onnx.float_nodes` keeping them in float, by name or `auto`.

The model is built so that one layer's quantization is what breaks it: an MLP trained
on scikit-learn's digits whose hidden layer gets a weight of 1e4 from pixel 0, which is 0
in every digit. The float model does not notice; per-channel INT8 weights scale each
column to that 1e4, every other weight of the layer rounds to 0, and top-1 falls to
chance. Keeping that one layer in float brings it back."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from tfbuild.errors import ConfigError
from tfbuild.tf.quantization import Layer, relative, resolve, worst_first

TARGET = """\
checkpoint: {path: outlier.keras}
freeze:
  input_ranges: {image: [0.0, 16.0]}
tflite:
  precision: INT8
  calibration: {path: cal.npz, num_samples: 64}   # the other 64 are parity's held-out samples
onnx:
  precision: INT8
  calibration: {path: cal.npz, num_samples: 64}
evaluate:
  data: {path: val.npz}
  metric: top1
  max_drop: 0.02
"""
HIDDEN = "hidden"


@pytest.fixture(scope="module")
def outlier(tmp_path_factory):
    """A project with target `outlier` (see the module's docstring) and its data."""
    import keras
    from sklearn.datasets import load_digits
    root = tmp_path_factory.mktemp("outlier")
    digits = load_digits()
    x, y = digits.images.astype("float32")[..., None], digits.target
    assert (x[:, 0, 0, 0] == 0).all()   # pixel 0: the dead input the outlier weight reads
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1), name="image")
    h = keras.layers.Dense(32, activation="relu", name=HIDDEN)(keras.layers.Flatten()(inputs) / 16.0)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax", name="probs")(h))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x[:1200], y[:1200], epochs=30, verbose=0)
    kernel, bias = model.get_layer(HIDDEN).get_weights()
    kernel[0, :] = 1e4
    model.get_layer(HIDDEN).set_weights([kernel, bias])
    model.save(root / "outlier.keras")
    np.savez(root / "val.npz", image=x[1200:], labels=y[1200:])
    np.savez(root / "cal.npz", image=x[:128])
    (root / "targets").mkdir()
    (root / "targets/outlier.yaml").write_text(TARGET)
    return root


@pytest.fixture
def run(outlier, monkeypatch, capsys):
    """run(*args) -> (exit code, output, report) in the outlier project."""
    from tfbuild.cli.main import main
    monkeypatch.chdir(outlier)

    def run(*args):
        report = outlier / "report.json"
        report.unlink(missing_ok=True)
        code = main([*args, f"report_file={report}", "bench.enabled=false"])
        out = capsys.readouterr()
        return code, out.out + out.err, json.loads(report.read_text()) if report.exists() else None
    return run


def hidden(text: str) -> bool:
    """Names one of the outlier layer's nodes (Keras may suffix the layer: hidden_1)."""
    return re.search(rf"/{HIDDEN}(_\d+)?/", text) is not None


def stages(report) -> dict:
    return {s["name"]: s for s in report["stages"]}


def metadata(outlier: Path, entry: dict) -> dict:
    return json.loads((outlier / entry["artifact"]).parent.joinpath("tfbuild.json").read_text())["metadata"]


# ----------------------------------------------------------------------------- TF-free

def test_layers_are_ranked_by_the_error_they_add_and_named_by_any_of_their_nodes():
    layers = worst_first([Layer("a/MatMul;a/Relu", "FULLY_CONNECTED", 0.01), Layer("b/Conv", "CONV_2D", 0.9)])
    assert [l.name for l in layers] == ["b/Conv", "a/MatMul;a/Relu"]
    assert resolve(["a/Relu"], layers, "k") == ["a/MatMul;a/Relu"]
    assert resolve(["a/MatMul;a/Relu", "b/Conv"], layers, "k") == ["a/MatMul;a/Relu", "b/Conv"]
    with pytest.raises(ConfigError, match=r"^k: 'nope' is no quantized layer of the model; .*'b/Conv'"):
        resolve(["nope"], layers, "k")
    assert relative(0.25, 1.0) == pytest.approx(0.5) and relative(0.0, 0.0) == 0.0


# ----------------------------------------------------------------------------- real TensorFlow

def test_plain_int8_breaks_on_the_outlier_layer(run):
    code, out, report = run("target=outlier", "drop=[onnx]")
    assert code == 1
    line = next(l for l in out.splitlines() if l.startswith("tflite failed: "))
    assert "TFLite INT8 model differs from the frozen graph by 0.9" in line, out   # parity, before top-1
    assert stages(report)["tflite"]["artifact"] is None


def test_inspect_puts_the_outlier_layer_first_for_both_backends(run):
    assert run("target=outlier", "drop=[onnx,tflite]")[0] == 0   # the frozen graph
    code, out, _ = run("inspect", "target=outlier", "quantization=true")
    assert code == 0, out
    for backend in ("tflite", "onnx"):
        table = out.split(f"{backend}: the error each INT8 layer adds", 1)[1]
        first = next(line for line in table.splitlines() if line.startswith("│ 1 "))
        assert hidden(first), table
        error = float(first.split("│")[2])
        assert error > 0.5   # its output is lost; no other layer comes near
        second = next(line for line in table.splitlines() if line.startswith("│ 2 "))
        assert float(second.split("│")[2]) < 0.2
    assert "Traceback" not in out


def test_auto_keeps_the_worst_layers_in_float_until_the_drop_holds(run, outlier):
    code, out, report = run("target=outlier", "tflite.float_ops=auto", "onnx.float_nodes=auto")
    assert code == 0, out
    for name, entry in stages(report).items():
        if name == "freeze":
            continue
        assert entry["evaluation"]["drop"] <= 0.02, entry
        meta = metadata(outlier, entry)
        assert hidden(meta["float_layers"][0])
        tries = meta["float_tries"]
        assert tries[0] == {"float_layers": 0, "holds": False, "result": tries[0]["result"]}
        assert "drop" in tries[0]["result"] and tries[-1]["holds"] and len(tries) <= 1 + 5
        assert meta["parity_max_abs_diff"] <= meta["parity_tolerance"]
    assert "tflite.float_ops=auto: top1 0.1" in out and "trying again with the worst layer in float" in out
    assert "Traceback" not in out


def test_naming_the_layer_keeps_it_in_float(run, outlier):
    code, out, report = run("target=outlier", "drop=[onnx]", f"tflite.float_ops=[{_tf_node(run)}]")
    assert code == 0, out
    tflite = stages(report)["tflite"]
    assert tflite["evaluation"]["drop"] <= 0.02
    assert metadata(outlier, tflite)["float_layers"] == [_tf_node(run)]


def _tf_node(run) -> str:
    """The outlier layer's MatMul, as inspect names it."""
    _, out, _ = run("inspect", "target=outlier", "quantization=true", "drop=[onnx]")
    return next(w for w in out.split() if hidden(w) and w.endswith("/MatMul"))


def test_a_name_that_is_no_layer_is_refused_in_one_line(run, outlier):
    code, out, report = run("target=outlier", "drop=[onnx]", "tflite.float_ops=[no/such/node]")
    assert code == 2
    line = next(l for l in out.splitlines() if "no/such/node" in l)
    assert "is no quantized layer of the model" in line and "quantization=true" in line
    assert "Traceback" not in out


def test_float_ops_that_is_no_list_is_refused_before_any_stage(run):
    code, out, report = run("target=outlier", "tflite.float_ops=3")
    assert code == 2 and "tflite.float_ops=3: give a list of layer names" in out
    assert report is None or all(s["status"] != "built" for s in report["stages"])


def test_float_ops_leaves_fp32_artifacts_as_they_are(run):
    assert run("target=outlier", "drop=[onnx]", "tflite.precision=FP32")[0] == 0
    code, out, report = run("target=outlier", "drop=[onnx]", "tflite.precision=FP32", "tflite.float_ops=auto")
    assert code == 0 and stages(report)["tflite"]["status"] == "fresh", out
