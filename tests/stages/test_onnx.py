"""The onnx stage: tf2onnx + onnxruntime on CPU, FP32 / FP16 / INT8 (Q/DQ), with
parity against the frozen graph. Real TensorFlow, tf2onnx and onnxruntime."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tf2onnx", reason="the onnx extra (tf2onnx) is not installed")
pytest.importorskip("onnxruntime", reason="the onnx extra (onnxruntime) is not installed")

from tfbuild.tf.graph_io import run_frozen# noqa: E402
from tfbuild.tf.runtimes import run_onnx


def meta_of(run, stage: str) -> dict:
    path = Path(next(s for s in run.report["stages"] if s["name"] == stage)["artifact"])
    return json.loads((path.parent / "tfbuild.json").read_text())["metadata"]


@pytest.mark.parametrize("precision, bound", [("FP32", 1e-5), ("FP16", 1e-2), ("INT8", 1e-1)])
def test_onnx_precisions_match_the_frozen_graph(project, tfbuild, shared_build, precision, bound):
    run = tfbuild("target=tiny_onnx", f"build_dir={shared_build}", f"lock_file={shared_build}/onnx.lock",
                  f"onnx.precision={precision}")
    assert run.code == 0, run.err
    meta = meta_of(run, "onnx")
    assert meta["precision"] == precision and meta["opset"] == 17
    assert meta["inputs"] == [{"name": "input", "dtype": "float32", "shape": [1, 32, 32, 3]}]
    assert [o["name"] for o in meta["outputs"]] == ["probs"]
    if precision == "INT8":
        assert meta["ops"].get("QuantizeLinear") and meta["ops"].get("DequantizeLinear")
    # Independently of the stage's own check: real inputs from the shipped calibration data.
    data = np.load(Path(__file__).resolve().parents[2] / "targets/data/tiny_calibration.npy")[:1].astype(np.float32)
    frozen = Path(next(s for s in run.report["stages"] if s["name"] == "freeze")["artifact"])
    want = run_frozen(frozen, {"input": data}, ["probs"])[0]
    got = run_onnx(Path(run.report["artifact"]), {"input": data})[0]
    assert np.max(np.abs(got - want)) <= bound


def test_dynamic_batch_and_identical_rebuilds(project, tfbuild, shared_build):
    common = ("target=tiny_onnx", f"build_dir={shared_build}", f"lock_file={shared_build}/onnx2.lock",
              "onnx.batch_size=null")
    run = tfbuild(*common)
    assert run.code == 0, run.err
    assert meta_of(run, "onnx")["inputs"][0]["shape"] == [None, 32, 32, 3]
    x = np.random.default_rng(1).uniform(0, 255, (5, 32, 32, 3)).astype(np.float32)
    assert run_onnx(Path(run.report["artifact"]), {"input": x})[0].shape == (5, 2)
    again = tfbuild(*common, "verify=true")     # rebuilt from scratch: the same bytes
    assert again.code == 0, again.out
    assert again.status()["onnx"] == "built"
    int8 = (*common, "onnx.precision=INT8")      # the quantizer too
    assert tfbuild(*int8).code == 0
    assert tfbuild(*int8, "verify=true").code == 0


@pytest.mark.parametrize("args, expect", [
    (["onnx.opset=30"], "onnx.opset=30: tf2onnx converts to opsets 9 to 18"),
    (["onnx.precision=INT8", "onnx.calibration.path=null"], "onnx.precision=INT8 needs calibration data"),
    (["onnx.precision=BF16"], "onnx.precision='BF16' is unknown"),
    (["onnx.batch_size=0"], "onnx.batch_size=0 is out of range"),
])
def test_bad_onnx_requests(project, tfbuild, args, expect):
    run = tfbuild("target=tiny_onnx", *args)
    assert run.code == 2 and expect in run.err
    assert not Path("build").exists()


def test_a_keras_model_to_onnx(project, tfbuild):
    (project / "targets").mkdir()
    (project / "targets/k.yaml").write_text("checkpoint: {path: '${tfbuild.data:tiny_classifier.keras}'}\n"
                                            "freeze: {}\nonnx: {precision: FP32}\n")
    run = tfbuild("target=k")
    assert run.code == 0, run.err
    assert run.status() == {"freeze": "built", "onnx": "built"}
    meta = meta_of(run, "onnx")
    assert meta["inputs"][0]["name"] == "image" and meta["outputs"][0]["name"] == "probs"


def test_canonical_names_keep_the_models_own_and_part_twins():
    import onnx
    from onnx import TensorProto, helper

    from tfbuild.tf.onnx_convert import _canonical
    graph = helper.make_graph(
        [helper.make_node("Relu", ["img__1"], ["r__7"], name="Relu__7"),
         helper.make_node("Relu", ["img__1"], ["r__8"], name="Relu__8"),
         helper.make_node("Add", ["r__7", "r__8"], ["probs__2"], name="Add__9")], "g",
        [helper.make_tensor_value_info("img__1", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("probs__2", TensorProto.FLOAT, [1, 2])])
    _canonical(graph)
    assert graph.input[0].name == "img__1" and graph.output[0].name == "probs__2"
    assert len({o for n in graph.node for o in n.output}) == 3
    onnx.checker.check_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


# ---------------------------------------------------- INT8 for TensorRT (issue 17, D2)
# TensorRT's IDequantizeLayer takes INT8/FP8/INT4/FP4 inputs only, zero points of 0, per-tensor
# activations and per-channel weights on the output-channel axis; NVIDIA places Q/DQ on the
# inputs of the weighted ops (Conv, Gemm, MatMul) only.

CNN_INPUTS = [{"name": "input", "dtype": "float32", "shape": [None, 16, 16, 3], "range": [0, 255]}]
SEQ_INPUTS = [{"name": "tokens", "dtype": "float32", "shape": [None, 4, 8], "range": [-1, 1]}]
WEIGHTED = {"Conv", "ConvTranspose", "Gemm", "MatMul"}


def _small_cnn(path: Path) -> Path:
    """Preprocessing (Sub, Mul constants), conv + bias, a batch norm that cannot be folded
    into a convolution (a ReLU between), a strided conv, and a dense layer."""
    import tensorflow as tf
    rng = np.random.default_rng(0)

    def const(shape, std=0.3):
        return tf.constant(rng.normal(0, std, shape).astype(np.float32))

    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 16, 16, 3], name="input")
        h = (x - 127.5) / 64.0
        h = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(h, const([3, 3, 3, 8]), 1, "SAME"), const([8], 0.1)))
        h, _, _ = tf.compat.v1.nn.fused_batch_norm(
            h, tf.constant(rng.uniform(0.5, 1.5, 8).astype(np.float32)), const([8], 0.1), mean=const([8], 0.2),
            variance=tf.constant(rng.uniform(0.5, 2.0, 8).astype(np.float32)), is_training=False)
        h = tf.nn.relu(h)
        h = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(h, const([3, 3, 8, 16], 0.2), 2, "SAME"), const([16], 0.1)))
        h = tf.reduce_mean(h, [1, 2])
        tf.nn.softmax(tf.nn.bias_add(tf.matmul(h, const([16, 4], 0.5)), const([4], 0.1)), name="probs")
    path.write_bytes(graph.as_graph_def().SerializeToString(deterministic=True))
    return path


def _small_sequence_model(path: Path) -> Path:
    """MatMul with constant weights second ([N,4,8] x [8,6]) and first ([3,4] x [N,4,6])."""
    import tensorflow as tf
    rng = np.random.default_rng(3)
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 4, 8], name="tokens")
        h = tf.nn.relu(tf.matmul(x, tf.constant(rng.normal(0, 0.5, (8, 6)).astype(np.float32))))
        h = tf.matmul(tf.constant(rng.normal(0, 0.5, (3, 4)).astype(np.float32)), h)
        tf.nn.softmax(tf.reduce_mean(h, 1), name="probs")
    path.write_bytes(graph.as_graph_def().SerializeToString(deterministic=True))
    return path


@pytest.fixture(scope="module")
def int8_models(tmp_path_factory):
    """{(model, symmetric): (frozen.pb, model.onnx)}, converted once for the module."""
    from tfbuild.tf.onnx_convert import convert
    root = tmp_path_factory.mktemp("int8")
    rng = np.random.default_rng(1)
    made = {}
    for name, build, inputs in (("cnn", _small_cnn, CNN_INPUTS), ("seq", _small_sequence_model, SEQ_INPUTS)):
        pb = build(root / f"{name}.pb")
        lo, hi = inputs[0]["range"]
        cal = {inputs[0]["name"]: rng.uniform(lo, hi, (16, *inputs[0]["shape"][1:])).astype(np.float32)}
        for symmetric in (False, True):
            out = root / f"{name}-{'trt' if symmetric else 'ort'}.onnx"
            convert(pb, inputs, ["probs"], opset=17, batch_size=None, precision="INT8", calibration=cal,
                    out=out, symmetric=symmetric)
            made[name, symmetric] = (pb, out)
    return made


def _dequantize_census(path: Path) -> list:
    """One row per DequantizeLinear: what feeds it ('weight' initializer or 'activation' from a
    QuantizeLinear), the int type it reads, its zero points, scale shape, axis, consumers."""
    import onnx
    from onnx import numpy_helper
    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    made_by = {o: n for n in model.graph.node for o in n.output}
    used_by: dict = {}
    for n in model.graph.node:
        for i in n.input:
            used_by.setdefault(i, []).append(n)
    rows = []
    for dq in (n for n in model.graph.node if n.op_type == "DequantizeLinear"):
        zps = [dq.input[2]] if len(dq.input) > 2 and dq.input[2] else []
        if dq.input[0] in inits:
            kind, dtype = "weight", inits[dq.input[0]].data_type
            shape = list(inits[dq.input[0]].dims)
        else:
            q = made_by[dq.input[0]]
            assert q.op_type == "QuantizeLinear", q.op_type
            kind, shape = "activation", None
            # QuantizeLinear's output type is its zero point's (uint8 when it has none).
            dtype = inits[q.input[2]].data_type if len(q.input) > 2 and q.input[2] else onnx.TensorProto.UINT8
            zps += [q.input[2]] if len(q.input) > 2 and q.input[2] else []
        axis = next((a.i for a in dq.attribute if a.name == "axis"), None)
        rows.append({"kind": kind, "dtype": onnx.TensorProto.DataType.Name(dtype), "weight_shape": shape,
                     "zero_points": [numpy_helper.to_array(inits[z]) for z in zps],
                     "scale_shape": numpy_helper.to_array(inits[dq.input[1]]).shape, "axis": axis,
                     "users": [u for u in used_by.get(dq.output[0], [])]})
    return rows


def test_int8_for_tensorrt_dequantizes_only_int8_weights_and_activations_of_weighted_ops(int8_models):
    import onnx
    from collections import Counter
    rows = _dequantize_census(int8_models["cnn", True][1])
    assert Counter((r["kind"], r["dtype"]) for r in rows) == {("activation", "INT8"): 3, ("weight", "INT8"): 3}
    for r in rows:
        assert all(z.dtype == np.int8 and not z.any() for z in r["zero_points"]) and r["zero_points"]
        assert {u.op_type for u in r["users"]} <= WEIGHTED
        if r["kind"] == "activation":
            assert r["scale_shape"] == ()                            # per tensor
        else:
            (user,) = r["users"]
            transposed = any(a.name == "transB" and a.i for a in user.attribute)
            want = {"Conv": 0, "Gemm": 0 if transposed else 1}[user.op_type]   # the output channels
            assert r["axis"] == want and r["scale_shape"] == (r["weight_shape"][want],)
    assert sorted(u.op_type for r in rows if r["kind"] == "weight" for u in r["users"]) == ["Conv", "Conv", "Gemm"]
    model = onnx.load(str(int8_models["cnn", True][1]))
    inits = {i.name: i for i in model.graph.initializer}
    # Batch norm, Sub/Mul and the biases keep float constants; no int32 anywhere.
    for node in model.graph.node:
        if node.op_type in ("BatchNormalization", "Sub", "Mul", "Add", "Conv", "Gemm"):
            for name in node.input:
                if name in inits:
                    assert inits[name].data_type == onnx.TensorProto.FLOAT, (node.op_type, name)
    assert "BatchNormalization" in {n.op_type for n in model.graph.node}
    assert not [i.name for i in inits.values() if i.data_type == onnx.TensorProto.INT32]


def test_int8_for_tensorrt_quantizes_matmul_weights_on_their_output_channels(int8_models):
    rows = _dequantize_census(int8_models["seq", True][1])
    weights = [r for r in rows if r["kind"] == "weight"]
    assert len(weights) == 1 and weights[0]["weight_shape"] == [8, 6]   # x @ W: B [K, N]
    assert weights[0]["axis"] == 1 and weights[0]["scale_shape"] == (6,)
    # W @ x: onnxruntime would scale the constant A [M, K] along K, the reduced axis: left float.
    assert all(r["dtype"] == "INT8" and all(not z.any() for z in r["zero_points"]) for r in rows)
    assert all(u.op_type == "MatMul" for r in rows for u in r["users"])


def test_int8_for_onnxruntime_keeps_its_form(int8_models, monkeypatch, tmp_path):
    """symmetric=False: quantize_static is called as before (all ops, biases int32,
    asymmetric activations), which onnxruntime runs fastest on a CPU."""
    import onnxruntime.quantization as ortq
    from collections import Counter

    from tfbuild.tf.onnx_convert import convert
    rows = _dequantize_census(int8_models["cnn", False][1])
    census = Counter((r["kind"], r["dtype"]) for r in rows)
    assert census[("weight", "INT32")] == 4                                   # 2 Conv, Gemm, BN biases
    assert any("BatchNormalization" in {u.op_type for u in r["users"]} for r in rows if r["dtype"] == "INT8")
    assert any(z.any() for r in rows for z in r["zero_points"])               # asymmetric activations
    seen = []
    real = ortq.quantize_static
    monkeypatch.setattr(ortq, "quantize_static", lambda *a, **kw: seen.append(kw) or real(*a, **kw))
    pb = int8_models["cnn", False][0]
    cal = {"input": np.random.default_rng(1).uniform(0, 255, (4, 16, 16, 3)).astype(np.float32)}
    convert(pb, CNN_INPUTS, ["probs"], opset=17, batch_size=1, precision="INT8", calibration=cal,
            out=tmp_path / "m.onnx")
    (kw,) = seen
    assert kw["extra_options"] == {"ActivationSymmetric": False}
    assert "op_types_to_quantize" not in kw and "nodes_to_exclude" not in kw and kw["per_channel"]


@pytest.mark.parametrize("name", ["cnn", "seq"])
def test_int8_for_tensorrt_matches_the_frozen_graph(int8_models, name):
    """The TensorRT-form model on onnxruntime, within the trt stage's INT8 bound (5e-2)."""
    inputs = CNN_INPUTS if name == "cnn" else SEQ_INPUTS
    lo, hi = inputs[0]["range"]
    x = np.random.default_rng(2).uniform(lo, hi, (8, *inputs[0]["shape"][1:])).astype(np.float32)
    feeds = {inputs[0]["name"]: x}
    for symmetric, bound in ((True, 5e-2), (False, 1e-1)):
        pb, model = int8_models[name, symmetric]
        want = run_frozen(pb, feeds, ["probs"])[0]
        got = run_onnx(model, feeds)[0]
        assert np.max(np.abs(got - want)) <= bound, (name, symmetric, float(np.max(np.abs(got - want))))


def test_int8_for_tensorrt_rebuilds_identically(int8_models, tmp_path):
    from tfbuild.tf.onnx_convert import convert
    pb, first = int8_models["cnn", True]
    cal = {"input": np.random.default_rng(1).uniform(0, 255, (16, 16, 16, 3)).astype(np.float32)}
    convert(pb, CNN_INPUTS, ["probs"], opset=17, batch_size=None, precision="INT8", calibration=cal,
            out=tmp_path / "again.onnx", symmetric=True)
    assert (tmp_path / "again.onnx").read_bytes() == first.read_bytes()
