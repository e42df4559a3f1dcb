"""The onnx stage: tf2onnx + onnxruntime on CPU, FP32 / FP16 / INT8 (Q/DQ), with
parity against the frozen graph. Real TensorFlow, tf2onnx and onnxruntime."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tf2onnx", reason="the onnx extra (tf2onnx) is not installed")
pytest.importorskip("onnxruntime", reason="the onnx extra (onnxruntime) is not installed")

from tfbuild.tf.measure import run_frozen, run_onnx  # noqa: E402


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
    data = np.load(Path(__file__).resolve().parents[1] / "targets/data/tiny_calibration.npy")[:1].astype(np.float32)
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
