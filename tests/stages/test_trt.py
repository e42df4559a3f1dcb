"""TF-TRT stage: settings validation, preflight, and real conversion.

Conversion tests need TensorFlow <=2.17 built with TensorRT 8.6 and an NVIDIA
GPU; elsewhere they skip with the reason preflight() gives.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tfbuild.tf import trt_convert as trt
from tfbuild.backends import version_tuple
from tfbuild.errors import (BackendUnavailable, CalibrationError, ConfigError,
                            StageFailed)

REPO = Path(__file__).resolve().parents[2]

GOOD = dict(precision="FP16", max_batch_size=8, max_workspace_size_bytes=1 << 30,
            minimum_segment_size=3, is_dynamic_op=True, maximum_cached_engines=1,
            calibration=None)
INT8 = dict(GOOD, precision="INT8", calibration={"random": True, "num_samples": 32})


def _trt_skip_reason():
    """None where TF-TRT works here, else why not (computed once)."""
    try:
        trt.preflight()
    except BackendUnavailable as e:
        return str(e).replace("TF-TRT is not available", "TF-TRT unavailable", 1)
    return None


TRT_SKIP = _trt_skip_reason()
needs_trt = pytest.mark.skipif(TRT_SKIP is not None, reason=str(TRT_SKIP))


def _tensorrt_enabled():
    from tensorflow.python.compiler.tensorrt import trt_convert as tftrt
    return bool(tftrt._pywrap_py_utils.is_tensorrt_enabled())


# ---------------------------------------------------------------- validate()

@pytest.mark.parametrize("override, exc, key", [
    ({"precision": "FP64"}, ConfigError, "trt.precision"),
    ({"precision": None}, ConfigError, "trt.precision"),
    ({"max_batch_size": 0}, ConfigError, "trt.max_batch_size"),
    ({"max_batch_size": "8"}, ConfigError, "trt.max_batch_size"),
    ({"is_dynamic_op": False, "max_batch_size": None}, ConfigError,
     "static engines need trt.max_batch_size"),
    ({"is_dynamic_op": "yes"}, ConfigError, "trt.is_dynamic_op"),
    ({"max_workspace_size_bytes": 0}, ConfigError, "trt.max_workspace_size_bytes"),
    ({"minimum_segment_size": 0}, ConfigError, "trt.minimum_segment_size"),
    ({"maximum_cached_engines": 0}, ConfigError, "trt.maximum_cached_engines"),
    ({"precision": "INT8"}, CalibrationError, "trt.calibration.path"),
    ({"precision": "INT8", "calibration": {}}, CalibrationError,
     "trt.calibration.random=true"),
    (dict(INT8, is_dynamic_op=False), ConfigError, "trt.is_dynamic_op=true"),
    (dict(INT8, calibration={"random": True, "num_samples": 0}),
     CalibrationError, "trt.calibration.num_samples"),
    (dict(INT8, calibration={"random": True, "path": "x.npy"}), ConfigError,
     "trt.calibration.path"),
])
def test_validate_rejects(override, exc, key):
    with pytest.raises(exc) as info:
        trt.validate({**GOOD, **override})
    assert key in str(info.value)
    assert "\n" not in str(info.value)


def test_validate_unknown_precision_lists_valid_ones():
    with pytest.raises(ConfigError, match="FP32, FP16, INT8"):
        trt.validate({**GOOD, "precision": "BF16"})


@pytest.mark.parametrize("settings", [
    GOOD,
    dict(GOOD, precision="FP32", is_dynamic_op=False),
    dict(GOOD, precision="fp16", max_batch_size=None),  # dynamic: no batch cap
    INT8,
    dict(INT8, calibration={"path": "calib.npz", "num_samples": 64}),
    dict(GOOD, calibration={"random": True}),  # ignored outside INT8
])
def test_validate_accepts(settings):
    trt.validate(settings)


def test_validate_and_environment_do_not_import_tensorflow():
    code = ("import sys; from tfbuild.tf import trt_convert as t; "
            f"t.validate({INT8!r}); env = t.environment(); "
            "assert set(env) == {'tensorflow', 'tensorrt', 'gpu'}, env; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_environment_is_cached_copy():
    env = trt.environment()
    env["gpu"] = "edited"
    assert trt.environment()["gpu"] != "edited"
    assert trt._environment.cache_info().hits >= 1


# --------------------------------------------------------------- preflight()

def test_preflight_matches_this_machine():
    env = trt.environment()
    version = env["tensorflow"]
    available = (version is not None
                 and version_tuple(version) <= (2, 17)
                 and env["gpu"] is not None
                 and _tensorrt_enabled())
    if available:
        trt.preflight()
        return
    with pytest.raises(BackendUnavailable) as info:
        trt.preflight()
    msg = str(info.value)
    assert "TensorFlow <=2.17" in msg and "tflite" in msg
    assert "\n" not in msg


# ------------------------------------------------------- graph + run helpers

def _tiny_graph_def():
    import tensorflow as tf
    rng = np.random.default_rng(0)

    def const(*shape):
        return tf.constant(rng.normal(0, 0.3, shape).astype(np.float32))

    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 16, 16, 3], name="input")
        h = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, const(3, 3, 3, 8), 1, "SAME"),
                                      const(8)))
        h = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(h, const(3, 3, 8, 8), 1, "SAME"),
                                      const(8)))
        h = tf.reduce_mean(h, axis=[1, 2])
        tf.nn.softmax(tf.nn.bias_add(tf.matmul(h, const(8, 5)), const(5)),
                      name="probs")
    return g.as_graph_def()


@pytest.fixture(scope="module")
def frozen_pb(tmp_path_factory):
    path = tmp_path_factory.mktemp("trt") / "frozen.pb"
    path.write_bytes(_tiny_graph_def().SerializeToString(deterministic=True))
    return path


def _load(path):
    import tensorflow as tf
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(Path(path).read_bytes())
    return graph_def


def _run(graph_def, x):
    import tensorflow as tf
    g = tf.Graph()
    with g.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=g) as sess:
        return sess.run("probs:0", {"input:0": x})


def _images(seed, n):
    return np.random.default_rng(seed).uniform(0, 1, (n, 16, 16, 3)).astype(np.float32)


# ----------------------------------------- convert() plumbing (runs anywhere)

class _FakeConverter:
    """Stands in for TrtGraphConverter: records what convert() asks of it."""
    calls = {}

    def __init__(self, **kwargs):
        self.calls.clear()
        self.calls["init"] = kwargs
        self.graph_def = kwargs["input_graph_def"]

    def convert(self):
        import tensorflow as tf
        out = tf.compat.v1.GraphDef()
        out.node.add(name="input", op="Placeholder")
        out.node.add(name="TRTEngineOp_000_000", op="TRTEngineOp", input=["input"])
        out.node.add(name="probs", op="Softmax", input=["TRTEngineOp_000_000"])
        return out

    def calibrate(self, fetch_names, num_runs, feed_dict_fn=None):
        self.calls["calibrate"] = (fetch_names, num_runs,
                                   [feed_dict_fn() for _ in range(num_runs)])
        return self.convert()


@pytest.fixture
def fake_trt(monkeypatch):
    from tensorflow.python.compiler.tensorrt import trt_convert as tftrt
    monkeypatch.setattr(trt, "preflight", lambda: None)
    monkeypatch.setattr(tftrt, "TrtGraphConverter", _FakeConverter)
    return _FakeConverter.calls


def test_convert_plumbing_int8(fake_trt, frozen_pb, tmp_path):
    out = tmp_path / "trt.pb"
    meta = trt.convert(frozen_pb, ["probs:0"], INT8, _images(1, 20), "input", out)
    init = fake_trt["init"]
    assert init["nodes_denylist"] == ["probs"]
    assert init["max_batch_size"] is None  # TF rejects a batch size in dynamic mode
    assert init["precision_mode"] == "INT8" and init["use_calibration"] is True
    fetches, runs, feeds = fake_trt["calibrate"]
    assert fetches == ["probs:0"] and runs == 2  # 20 samples -> 2 full batches of 8
    assert all(set(f) == {"input:0"} and f["input:0"].shape == (8, 16, 16, 3)
               for f in feeds)
    assert meta["trt_engine_ops"] == 1 and meta["ops_after"] == 3
    assert meta["ops_before"] == len(_load(frozen_pb).node)
    # 10 compute ops before; only the denylisted Softmax still runs in TF.
    assert meta["converted_share"] == pytest.approx(0.9)
    assert out.read_bytes() == _FakeConverter(input_graph_def=None).convert() \
        .SerializeToString(deterministic=True)


def test_convert_int8_without_calibration_array(fake_trt, frozen_pb, tmp_path):
    with pytest.raises(CalibrationError, match="trt.calibration"):
        trt.convert(frozen_pb, ["probs"], INT8, None, "input", tmp_path / "x.pb")


@pytest.mark.skipif(TRT_SKIP is None, reason="TF-TRT is available here")
def test_convert_reaches_real_converter_without_eager(monkeypatch, frozen_pb,
                                                      tmp_path):
    # Past preflight, the real V1 converter must get as far as its TensorRT
    # check: proves the graph context satisfies its "not eager" requirement.
    if _tensorrt_enabled():
        pytest.skip("TensorFlow has TensorRT here; the real tests cover it")
    monkeypatch.setattr(trt, "preflight", lambda: None)
    with pytest.raises(StageFailed, match="not been built with TensorRT") as info:
        trt.convert(frozen_pb, ["probs"], GOOD, None, "input", tmp_path / "x.pb")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "x.pb").exists()


# ------------------------------------------- real conversion (TF-TRT only)

@needs_trt
@pytest.mark.parametrize("settings", [
    dict(GOOD, precision="FP32", is_dynamic_op=False),  # static engine
    dict(GOOD, precision="FP16", max_batch_size=None),
    INT8,
], ids=["FP32", "FP16", "INT8"])
def test_real_conversion(settings, frozen_pb, tmp_path):
    out = tmp_path / "trt.pb"
    meta = trt.convert(frozen_pb, ["probs"], settings, _images(1, 32), "input", out)
    converted = _load(out)
    assert sum(n.op == "TRTEngineOp" for n in converted.node) >= 1
    x = _images(2, 4)
    diff = np.abs(_run(converted, x) - _run(_load(frozen_pb), x)).max()
    assert diff <= trt.TOLERANCE[settings["precision"]], diff
    assert meta["precision"] == settings["precision"]
    assert meta["trt_engine_ops"] >= 1 and 0 < meta["converted_share"] <= 1
    for key in ("tensorrt_linked", "tensorrt_loaded", "tensorflow", "gpu",
                "ops_before", "ops_after"):
        assert meta[key], key
