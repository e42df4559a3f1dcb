"""TFLite conversion, parity and latency on a tiny frozen graph built here."""

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfbuild.errors import CalibrationError, ConfigError, NodeNotFound, StageFailed
from tfbuild.tf.graph_io import max_abs_diff, run_frozen, seeded_batch
from tfbuild.tf.runtimes import load_interpreter, run_tflite, tflite_runtime, xnnpack_ops
from tfbuild.config import BenchCfg
from tfbuild.tf.timing import tflite_timer, versus_frozen
from tfbuild.tf.tflite_convert import TOLERANCE, convert

REPO = Path(__file__).resolve().parents[2]
SHAPE = [None, 16, 16, 3]
INPUTS = [{"name": "input", "shape": SHAPE, "dtype": "float32"}]
# Not alphabetical on purpose: output order must follow this list.
OUTPUTS = ["probs", "logits"]


def build_frozen_graph(path: Path) -> Path:
    """Two convs with seeded constant weights, in-graph preprocessing, softmax `probs`."""
    rng = np.random.default_rng(0)

    def const(shape, std):
        return tf.constant(rng.normal(0.0, std, shape).astype(np.float32))

    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, SHAPE, name="input")
        h = (x - 127.5) / 64.0  # preprocessing lives in the graph
        h = tf.nn.relu(tf.nn.conv2d(h, const([3, 3, 3, 32], 0.3), 1, "SAME") + const([32], 0.1))
        h = tf.nn.relu(tf.nn.conv2d(h, const([3, 3, 32, 64], 0.1), 2, "SAME") + const([64], 0.1))
        h = tf.reduce_mean(h, [1, 2])
        logits = tf.identity(tf.matmul(h, const([64, 2], 0.5)) + const([2], 0.1), name="logits")
        tf.nn.softmax(logits, name="probs")
    path.write_bytes(graph.as_graph_def().SerializeToString(deterministic=True))
    return path


@pytest.fixture(scope="module")
def frozen(tmp_path_factory):
    return build_frozen_graph(tmp_path_factory.mktemp("graph") / "frozen.pb")


@pytest.fixture(scope="module")
def calibration():
    return {"input": np.random.default_rng(1).uniform(0, 255, (16, 16, 16, 3)).astype(np.float32)}


@pytest.fixture(scope="module")
def converted(frozen, calibration, tmp_path_factory):
    """Convert lazily, once per (precision, batch size), for all tests of the module."""
    out_dir = tmp_path_factory.mktemp("tflite")
    cache = {}

    def get(precision, batch_size):
        if (precision, batch_size) not in cache:
            path = out_dir / f"{precision}_b{batch_size}.tflite"
            meta = convert(frozen, INPUTS, OUTPUTS, precision, batch_size,
                           calibration if precision == "INT8" else None, path)
            cache[precision, batch_size] = path, meta
        return cache[precision, batch_size]

    return get


@pytest.mark.parametrize("batch_size", [1, 4])
@pytest.mark.parametrize("precision", ["FP32", "FP16", "INT8"])
def test_parity_within_tolerance(converted, frozen, precision, batch_size):
    path, meta = converted(precision, batch_size)
    assert path.read_bytes()[4:8] == b"TFL3"  # flatbuffer file identifier
    assert meta["precision"] == precision and meta["batch_size"] == batch_size
    assert meta["size_bytes"] == path.stat().st_size
    assert meta["inputs"] == [{"name": "input", "shape": [batch_size, 16, 16, 3], "dtype": "float32"}]
    assert [o["name"] for o in meta["outputs"]] == OUTPUTS
    assert meta["outputs"][0]["shape"] == [batch_size, 2]

    x = seeded_batch(SHAPE[1:], batch_size, seed=3)
    expected = run_frozen(frozen, {"input:0": x}, OUTPUTS)
    got = run_tflite(path, {"input": x})
    assert [g.shape for g in got] == [(batch_size, 2), (batch_size, 2)]
    np.testing.assert_allclose(got[0].sum(axis=1), 1.0, atol=1e-3)  # probs, not logits
    diff = max_abs_diff(got[:1], expected[:1])  # tolerances are about probabilities
    print(f"{precision} batch {batch_size}: max abs diff on probs {diff:.2e}")
    assert diff <= TOLERANCE[precision]


def test_fp32_much_tighter_than_int8_in_practice(converted, frozen):
    x = seeded_batch(SHAPE[1:], 4, seed=3)
    expected = run_frozen(frozen, {"input": x}, ["probs"])
    fp32 = max_abs_diff(run_tflite(converted("FP32", 4)[0], {"input": x})[:1], expected)
    int8 = max_abs_diff(run_tflite(converted("INT8", 4)[0], {"input": x})[:1], expected)
    assert fp32 < 1e-5 and fp32 * 100 < int8


def test_quantized_models_are_smaller_and_int8_has_int8_weights(converted):
    fp32, fp16, int8 = (converted(p, 1) for p in ("FP32", "FP16", "INT8"))
    assert fp16[1]["size_bytes"] < 0.7 * fp32[1]["size_bytes"]
    assert int8[1]["size_bytes"] < 0.5 * fp32[1]["size_bytes"]

    def weight_dtypes(path):  # dtype of the conv filters (the only rank-4 constants)
        interpreter = load_interpreter(model_path=str(path))
        return {d["dtype"] for d in interpreter.get_tensor_details()
                if len(d["shape"]) == 4 and d["shape"][0] in (32, 64)}

    assert weight_dtypes(int8[0]) == {np.int8}
    assert np.float16 in weight_dtypes(fp16[0])
    assert weight_dtypes(fp32[0]) == {np.float32}


def test_outputs_keep_requested_order(converted, frozen):
    x = seeded_batch(SHAPE[1:], 1)
    probs, logits = run_tflite(converted("FP32", 1)[0], {"input:0": x})
    np.testing.assert_allclose(probs, tf.nn.softmax(logits).numpy(), atol=1e-6)


def test_bad_requests_raise_user_errors(frozen, calibration, tmp_path):
    out = tmp_path / "m.tflite"
    with pytest.raises(ConfigError, match="FP32, FP16, INT8"):
        convert(frozen, INPUTS, OUTPUTS, "fp8", 1, None, out)
    with pytest.raises(ConfigError, match="batch_size"):
        convert(frozen, INPUTS, OUTPUTS, "FP32", 0, None, out)
    with pytest.raises(CalibrationError, match="calibration"):
        convert(frozen, INPUTS, OUTPUTS, "INT8", 1, None, out)
    with pytest.raises(CalibrationError, match=r"\[N, 16, 16, 3\]"):
        convert(frozen, INPUTS, OUTPUTS, "INT8", 1, {"input": calibration["input"][:, :8]}, out)
    with pytest.raises(NodeNotFound, match="nope"):
        convert(frozen, INPUTS, ["nope"], "FP32", 1, None, out)
    assert not out.exists()


def test_converter_failure_is_one_line_stage_failed(tmp_path):
    graph = tf.Graph()
    with graph.as_default():  # Igamma has no TFLite kernel
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="input")
        tf.identity(tf.math.igamma(x, x + 1.0), name="out")
    pb = tmp_path / "igamma.pb"
    pb.write_bytes(graph.as_graph_def().SerializeToString())
    with pytest.raises(StageFailed) as err:
        convert(pb, [{"name": "input", "shape": [None, 4], "dtype": "float32"}], ["out"],
                "FP32", 1, None, tmp_path / "m.tflite")
    assert "\n" not in str(err.value) and "Igamma" in str(err.value)


def build_multi_input_graph(path: Path) -> Path:
    """Token ids, a 0/1 mask, float features and a scalar temperature; two outputs."""
    rng = np.random.default_rng(0)
    graph = tf.Graph()
    with graph.as_default():
        ids = tf.compat.v1.placeholder(tf.int32, [None, 5], name="ids")
        mask = tf.compat.v1.placeholder(tf.int32, [None, 5], name="mask")
        x = tf.compat.v1.placeholder(tf.float32, [None, 3], name="x")
        temperature = tf.compat.v1.placeholder(tf.float32, [], name="temperature")
        table = tf.constant(rng.normal(0, 1, (256, 4)).astype(np.float32))
        tokens = tf.gather(table, ids) * tf.cast(mask, tf.float32)[..., None]
        h = tf.concat([tf.reduce_mean(tokens, 1), x / 255.0], 1)
        logits = tf.matmul(h, tf.constant(rng.normal(0, 1, (7, 3)).astype(np.float32)))
        logits = tf.cond(temperature > 0, lambda: logits / temperature, lambda: logits)
        tf.nn.softmax(logits, name="probs")
        tf.reduce_sum(h, 1, name="score")
    path.write_bytes(graph.as_graph_def().SerializeToString(deterministic=True))
    return path


MULTI = [{"name": "ids", "shape": [None, 5], "dtype": "int32"},
         {"name": "mask", "shape": [None, 5], "dtype": "int32"},
         {"name": "temperature", "shape": [], "dtype": "float32"},
         {"name": "x", "shape": [None, 3], "dtype": "float32"}]


def multi_feeds(n, seed):
    rng = np.random.default_rng(seed)
    return {"x": rng.uniform(0, 255, (n, 3)).astype(np.float32), "temperature": np.float32(0.7),
            "mask": rng.integers(0, 2, (n, 5)).astype(np.int32),
            "ids": rng.integers(0, 256, (n, 5)).astype(np.int32)}


@pytest.mark.parametrize("precision", ["FP32", "INT8"])
def test_int_scalar_and_several_inputs_matched_by_name(tmp_path, precision):
    pb = build_multi_input_graph(tmp_path / "multi.pb")
    calibration = {**multi_feeds(16, seed=1), "temperature": np.linspace(0.5, 2, 16, dtype=np.float32)}
    meta = convert(pb, MULTI, ["score", "probs"], precision, 2, calibration, tmp_path / "m.tflite")
    assert {i["name"]: (i["shape"], i["dtype"]) for i in meta["inputs"]} == {
        "ids": ([2, 5], "int32"), "mask": ([2, 5], "int32"), "temperature": ([], "float32"),
        "x": ([2, 3], "float32")}  # the scalar stays rank 0, int inputs keep their dtype
    assert [o["name"] for o in meta["outputs"]] == ["score", "probs"]
    feeds = multi_feeds(2, seed=3)
    expected = run_frozen(pb, feeds, ["score", "probs"])
    got = run_tflite(tmp_path / "m.tflite", dict(reversed(feeds.items())))  # order does not matter
    assert [g.shape for g in got] == [(2,), (2, 3)]
    assert max_abs_diff(got[1:], expected[1:]) <= TOLERANCE[precision]
    with pytest.raises(StageFailed, match="temperature"):
        run_tflite(tmp_path / "m.tflite", {**feeds, "temperature": np.ones(2, np.float32)})


def test_calibration_must_cover_every_input(tmp_path):
    pb = build_multi_input_graph(tmp_path / "multi.pb")
    calibration = multi_feeds(4, seed=1)
    with pytest.raises(CalibrationError, match="temperature"):
        convert(pb, MULTI, ["probs"], "INT8", 1, calibration, tmp_path / "m.tflite")
    with pytest.raises(CalibrationError, match="same number"):
        convert(pb, MULTI, ["probs"], "INT8", 1, {**calibration, "temperature": np.ones(3, np.float32)},
                tmp_path / "m.tflite")


def test_keras_lstm_and_gru_convert_to_builtins(tmp_path):
    """Keras 3 RNNs freeze to loops over tensor lists whose per-step shape has the batch
    left open; the converter needs it static. INT8 is refused: TFLite's calibrator crashes."""
    keras = pytest.importorskip("keras")
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    keras.utils.set_random_seed(0)
    ids = keras.Input((6,), dtype="int32", name="ids")
    h = keras.layers.Embedding(256, 4)(ids)
    h = keras.layers.Concatenate()([keras.layers.LSTM(5)(h), keras.layers.Bidirectional(keras.layers.GRU(3))(h)])
    model = keras.Model(ids, keras.layers.Dense(2, activation="softmax")(h))
    func = tf.function(lambda ids: tf.identity(model(ids), name="probs"))
    frozen = convert_variables_to_constants_v2(
        func.get_concrete_function(tf.TensorSpec([None, 6], tf.int32, name="ids")))
    pb = tmp_path / "rnn.pb"
    pb.write_bytes(frozen.graph.as_graph_def().SerializeToString())
    out = frozen.outputs[0].name
    inputs = [{"name": "ids", "shape": [None, 6], "dtype": "int32"}]
    x = np.random.default_rng(0).integers(0, 256, (3, 6)).astype(np.int32)
    meta = convert(pb, inputs, [out], "FP32", 3, None, tmp_path / "m.tflite")
    assert meta["inputs"] == [{"name": "ids", "shape": [3, 6], "dtype": "int32"}]
    assert max_abs_diff(run_tflite(tmp_path / "m.tflite", {"ids": x}), run_frozen(pb, {"ids": x}, [out])) < 1e-5
    with pytest.raises(StageFailed, match="FP16 or FP32") as err:
        convert(pb, inputs, [out], "INT8", 3, {"ids": x}, tmp_path / "q.tflite")
    assert "\n" not in str(err.value)


def test_conversion_is_byte_reproducible(frozen, calibration, tmp_path):
    for precision in ("FP32", "INT8"):
        a, b = tmp_path / "a.tflite", tmp_path / "b.tflite"
        for path in (a, b):
            convert(frozen, INPUTS, OUTPUTS, precision, 2, calibration, path)
        assert a.read_bytes() == b.read_bytes(), precision


def test_converter_chatter_stays_off_stderr_unless_verbose(frozen, tmp_path, capfd):
    convert(frozen, INPUTS, OUTPUTS, "FP32", 1, None, tmp_path / "m.tflite")
    assert capfd.readouterr().err == ""
    convert(frozen, INPUTS, OUTPUTS, "FP32", 1, None, tmp_path / "m.tflite", verbose=True)
    # (what verbose shows depends on TF's log level; it must at least not fail)


def test_max_abs_diff():
    a = [np.array([0.1, 0.9]), np.array([[1.0]])]
    assert max_abs_diff(a, [np.array([0.2, 0.9]), np.array([[1.0]])]) == pytest.approx(0.1)
    assert max_abs_diff(a, a) == 0.0
    assert max_abs_diff([np.array([np.nan])], [np.array([0.0])]) == float("inf")


def test_latency_numbers_are_sane(converted, frozen):
    tflite = lambda n: tflite_timer(converted("FP32", 4)[0], {"input": seeded_batch(SHAPE[1:], n)})  # noqa: E731
    stats = versus_frozen(tflite, 4, BenchCfg(warmup=1, runs=5), frozen, INPUTS, OUTPUTS)
    for figures in (stats, stats["frozen"]):
        assert figures["batch_size"] == 4 and figures["runs"] == 5 * 3 and figures["windows"] >= 3
        assert 0 < figures["p10_ms"] <= figures["median_ms"] <= figures["p90_ms"] < 10_000
        assert figures["throughput_per_s"] == pytest.approx(4 / (figures["median_ms"] / 1e3))
        assert figures["memory_mb"] > 0


def test_works_with_eager_execution_disabled(tmp_path):
    """Graph mode is process-wide and one-way, so check it in a fresh interpreter."""
    script = textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(REPO)!r}, {str(Path(__file__).parent)!r}]
        from pathlib import Path
        import numpy as np, tensorflow as tf
        tf.compat.v1.disable_eager_execution()
        from test_tflite import build_frozen_graph, INPUTS, OUTPUTS
        from tfbuild.inputs.calibration import load_calibration
        from tfbuild.tf.graph_io import run_frozen, max_abs_diff, seeded_batch
        from tfbuild.tf.runtimes import run_tflite
        from tfbuild.tf.tflite_convert import TOLERANCE, convert
        tmp = Path({str(tmp_path)!r})
        with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
            png = sess.run(tf.io.encode_png(tf.zeros([20, 24, 3], tf.uint8)))
        (tmp / "imgs").mkdir()
        (tmp / "imgs" / "a.png").write_bytes(png)
        cal = load_calibration({{"path": str(tmp / "imgs")}}, [None, 16, 16, 3])
        assert cal.shape == (1, 16, 16, 3), cal.shape
        pb = build_frozen_graph(tmp / "f.pb")
        x = seeded_batch([16, 16, 3], 2)
        expected = run_frozen(pb, {{"input": x}}, OUTPUTS)
        cal = np.concatenate([cal, seeded_batch([16, 16, 3], 8, seed=5)])
        for precision in ("FP32", "INT8"):
            convert(pb, INPUTS, OUTPUTS, precision, 2, {{"input": cal}}, tmp / "m.tflite")
            diff = max_abs_diff(run_tflite(tmp / "m.tflite", {{"input": x}})[:1], expected[:1])
            assert diff <= TOLERANCE[precision], (precision, diff)
        print("OK")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]


# --------------------------------------------------------------- runtime: LiteRT or tf.lite

def hide_litert(monkeypatch):
    """This process as if ai-edge-litert were not installed (loaded submodules too: an
    import finds a loaded `ai_edge_litert.interpreter` without looking at its parent)."""
    for name in ["ai_edge_litert", *[n for n in sys.modules if n.startswith("ai_edge_litert.")]]:
        monkeypatch.setitem(sys.modules, name, None)


@pytest.fixture
def without_litert(monkeypatch):
    hide_litert(monkeypatch)


def test_litert_and_tf_lite_give_the_same_outputs(converted, monkeypatch):
    pytest.importorskip("ai_edge_litert")
    x = seeded_batch(SHAPE[1:], 4)
    for precision in ("FP32", "INT8"):
        path = converted(precision, 4)[0]
        assert tflite_runtime()[1].startswith("litert ")
        litert = run_tflite(path, {"input": x})
        with monkeypatch.context() as m:
            hide_litert(m)
            assert tflite_runtime()[1] == f"tf.lite {tf.__version__}"
            assert max_abs_diff(run_tflite(path, {"input": x}), litert) <= 1e-6, precision


def test_tf_lite_fallback_silences_exactly_its_deprecation_warning(converted, without_litert):
    path = str(converted("FP32", 1)[0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tf.lite.Interpreter(model_path=path)            # what load_interpreter must hide
        assert any("tf.lite.Interpreter is deprecated" in str(w.message) for w in caught)
        caught.clear()
        interpreter = load_interpreter(model_path=path)
        warnings.warn("another warning still shows")
    assert isinstance(interpreter, tf.lite.Interpreter)
    assert [str(w.message) for w in caught] == ["another warning still shows"]


@pytest.mark.parametrize("precision", ["FP32", "FP16", "INT8"])
def test_xnnpack_count_agrees_with_one_partition_per_op(converted, precision):
    """With delegate node fusion off, XNNPACK makes one DELEGATE node per op it takes:
    an independent count of what xnnpack_ops works out from fused partitions."""
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    path = str(converted(precision, 1)[0])
    counts = xnnpack_ops(load_interpreter(model_path=path))
    unfused = load_interpreter(model_path=path, experimental_disable_delegate_node_fusion=True)
    assert counts["xnnpack_ops"] == sum(n["op_name"] == "DELEGATE" for n in unfused._get_ops_details()) > 0
    assert counts["xnnpack_ops"] + sum(counts["undelegated"].values()) == counts["total_ops"]
    if precision != "INT8":  # every float op of this graph has an XNNPACK kernel
        assert counts["undelegated"] == {}
    plain = xnnpack_ops(load_interpreter(
        model_path=path, experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
    assert plain["xnnpack_ops"] == 0 and plain["total_ops"] == counts["total_ops"]
    assert sum(plain["undelegated"].values()) == counts["total_ops"]


def test_latency_records_runtime_threads_and_delegation(converted):
    with tflite_timer(converted("INT8", 1)[0], {"input": seeded_batch(SHAPE[1:], 1)}, threads=1) as timed:
        assert timed.info["backend"] == tflite_runtime()[1] and timed.info["threads"] == 1
        assert 0 < timed.info["xnnpack_ops"] <= timed.info["total_ops"]


def test_versus_frozen_measures_the_graph_at_the_same_batch(converted, frozen):
    tflite = lambda n: tflite_timer(converted("FP32", 4)[0], {"input": seeded_batch(SHAPE[1:], n)}, 1)  # noqa: E731
    b = BenchCfg(warmup=1, runs=3)
    compared = versus_frozen(tflite, 4, b, frozen, INPUTS, OUTPUTS)
    assert compared["frozen_ms"] > 0 and compared["frozen"]["batch_size"] == 4
    assert compared["speedup"] == pytest.approx(compared["frozen_ms"] / compared["median_ms"])
    # A reference that cannot run leaves the speed-up empty; the model's figures stand.
    missing = versus_frozen(tflite, 4, b, frozen.parent / "gone.pb", INPUTS, OUTPUTS)
    assert missing["frozen_ms"] is None and missing["speedup"] is None
    assert "gone.pb" in missing["frozen_error"] and missing["median_ms"] > 0


@pytest.mark.parametrize("runtime", ["litert", "tf.lite"])
def test_tiny_tflite_build_prints_no_deprecation_warning(tmp_path, runtime):
    if runtime == "litert":
        pytest.importorskip("ai_edge_litert")
    env = dict(os.environ)
    if runtime == "tf.lite":  # a package of that name that cannot be imported hides the real one
        (tmp_path / "hide" / "ai_edge_litert").mkdir(parents=True)
        (tmp_path / "hide" / "ai_edge_litert" / "__init__.py").write_text("raise ImportError('hidden')\n")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp_path / "hide"), env.get("PYTHONPATH")]))
    (tmp_path / "p").mkdir()
    proc = subprocess.run([sys.executable, "-m", "tfbuild", "target=tiny_tflite", "tflite.precision=INT8",
                           "bench.runs=3", "report_file=r.json"],
                          capture_output=True, text=True, cwd=tmp_path / "p", env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "deprecat" not in (proc.stdout + proc.stderr).lower(), proc.stderr
    bench = json.loads((tmp_path / "p" / "r.json").read_text())["benchmark"]
    assert bench["backend"].split()[0] == runtime
    assert 0 < bench["xnnpack_ops"] <= bench["total_ops"] and bench["speedup"] > 0


def test_pre_activation_batch_norms_become_depthwise_convolutions_xnnpack_runs(tfbuild, project):
    """The tiny DenseNet's batch norms after each concat: same math in float, and in INT8 each
    norm, its bias and ReLU become one op (DenseNet-169: INT8 ops outside XNNPACK 91 -> 4)."""
    from collections import Counter

    from tfbuild.tf.graph_io import read_graph_def
    from tfbuild.tf.tflite_convert import batch_norms_as_depthwise
    run = tfbuild("target=tiny_tflite", "tflite.precision=INT8")
    assert run.code == 0, run.err
    meta = run.report["metadata"]
    frozen = next(Path("build/store/freeze").glob("*/frozen.pb"))
    graph = read_graph_def(frozen)
    rewritten, count = batch_norms_as_depthwise(graph)
    norms = Counter(n.op for n in graph.node)["FusedBatchNormV3"]
    assert meta["batch_norms_as_depthwise"] == count and 0 < count < norms   # those after a conv are folded anyway
    assert Counter(n.op for n in rewritten.node)["DepthwiseConv2dNative"] == count
    x = seeded_batch([32, 32, 3], 4)
    (tmp := project / "rewritten.pb").write_bytes(rewritten.SerializeToString())
    assert max_abs_diff(run_frozen(frozen, {"input": x}, ["probs"]), run_frozen(tmp, {"input": x}, ["probs"])) < 1e-6
    fp32 = tfbuild("target=tiny_tflite")
    assert meta["parity_max_abs_diff"] <= meta["parity_tolerance"] and "batch_norms_as_depthwise" not in fp32.report["metadata"]
