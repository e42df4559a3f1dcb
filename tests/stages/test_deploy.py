"""Deployment stages: TFLite conversions, sweeps, TF-TRT pre-flight, calibration
(issue: deployment stages). Real TFLite conversions of the tiny DenseNet."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


def metadata(stage_link: str) -> dict:
    return json.loads((Path(stage_link) / "tfbuild.json").read_text())["metadata"]


@pytest.mark.parametrize("precision", ["FP32", "FP16", "INT8"])
@pytest.mark.parametrize("batch", [1, 4])
def test_tflite_precisions_and_batches(project, tfbuild, shared_build, precision, batch):
    run = tfbuild("target=tiny_tflite", f"build_dir={shared_build}", f"lock_file={shared_build}/lock",
                  f"tflite.precision={precision}", f"tflite.batch_size={batch}")
    assert run.code == 0, run.err
    meta = run.report["metadata"]
    assert meta["precision"] == precision and meta["batch_size"] == batch
    assert meta["inputs"][0]["shape"] == [batch, 32, 32, 3]
    assert meta["parity_max_abs_diff"] <= meta["parity_tolerance"]
    if precision == "FP32":
        assert meta["parity_max_abs_diff"] < 1e-4


def test_changing_precision_rebuilds_only_tflite(project, tfbuild):
    assert tfbuild("target=tiny_tflite").code == 0
    run = tfbuild("target=tiny_tflite", "tflite.precision=FP16")
    assert run.status() == {"train": "fresh", "placeholder": "fresh", "freeze": "fresh", "tflite": "built"}
    assert "tflite.precision changed: FP32 → FP16" in run.reasons()["tflite"]


def test_sweep_shares_upstream_and_ends_in_one_table(project, tfbuild):
    run = tfbuild("-m", "target=tiny_tflite", "tflite.precision=FP32,FP16,INT8",
                  "tflite.batch_size=1,2")  # the demo target ships its calibration data
    assert run.code == 0, run.err
    summary = json.loads(next(Path("build/sweeps").glob("*/summary.json")).read_text())["jobs"]
    assert len(summary) == 6
    assert all(job["status"] == "ok" for job in summary)
    built = [stage for job in summary for stage in job["built"].split(",") if stage]
    assert {s: built.count(s) for s in set(built)} == {"train": 1, "placeholder": 1, "freeze": 1,
                                                      "tflite": 6}
    assert {(j["precision"], j["batch"]) for j in summary} == {
        (p, b) for p in ("FP32", "FP16", "INT8") for b in (1, 2)}
    assert "sweep: 6 jobs" in run.out and "summary.csv" in run.out
    assert next(Path("build/sweeps").glob("*/summary.csv")).read_text().count("\n") == 7


def test_sweep_failed_job_shows_and_others_finish(project, tfbuild):
    run = tfbuild("-m", "target=tiny_tflite", "tflite.precision=INT8", "tflite.tolerance=0.5,0",
                  "bench.enabled=false")
    assert run.code == 1  # an INT8 model cannot hold parity 0: that job fails, the other builds
    jobs = json.loads(next(Path("build/sweeps").glob("*/summary.json")).read_text())["jobs"]
    assert [j["status"] for j in jobs] == ["ok", "failed"]
    assert "tflite.tolerance=0" in jobs[1]["error"]


def test_trt_preflight_fails_before_upstream_work(project, tfbuild):
    from tfbuild.backends import tensorrt_problem, tf_trt_problem
    if tf_trt_problem() is None or tensorrt_problem() is None:
        pytest.skip("a TensorRT backend may work here: the pre-flight passes")
    run = tfbuild("target=tiny_trt")   # trt.backend: auto
    assert run.code == 2
    assert "TensorRT engines cannot be built here" in run.err and "tflite" in run.err
    assert not Path("build/store").exists()  # no upstream stage ran


@pytest.mark.parametrize("args, expect", [
    (["tflite.batch_size=0"], "tflite.batch_size=0"),
    (["tflite.precision=INT8", "tflite.calibration.path=null"], "needs calibration data"),
    (["tflite.precision=INT8", "tflite.calibration.path=nope.npy"], "nope.npy does not exist"),
    (["tflite.precision=INT8", "tflite.calibration.path=wrong_shape.npy"], "expected [N, 32, 32, 3]"),
    (["tflite.precision=INT8", "tflite.calibration.path=strings.npy"], "strings.npy"),
    (["tflite.precision=INT8", "tflite.calibration.path=empty"], "empty"),
    (["trt.precision=FP8"], "trt.precision"),
])
def test_bad_deploy_requests(project, tfbuild, args, expect):
    np.save(project / "wrong_shape.npy", np.zeros((4, 28, 28, 3), np.float32))
    np.save(project / "strings.npy", np.array([["a"] * 3] * 4))
    (project / "empty").mkdir()
    target = "target=tiny_trt" if args[0].startswith("trt") else "target=tiny_tflite"
    run = tfbuild(target, *args)
    assert run.code == 2, run.out
    assert expect in run.err
    assert "Traceback" not in run.err
    assert not (Path("build/store/tflite").exists() and any(Path("build/store/tflite").iterdir()))


def test_calibration_from_npy_and_images(project, tfbuild, shared_build):
    import tensorflow as tf
    rng = np.random.default_rng(0)
    np.save(project / "cal.npy", rng.uniform(0, 255, (8, 32, 32, 3)).astype(np.float32))
    (project / "images").mkdir()
    for i in range(4):  # other size than the model's input: resized
        png = tf.io.encode_png(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).numpy()
        (project / "images" / f"{i}.png").write_bytes(png)
    common = ["target=tiny_tflite", f"build_dir={shared_build}", f"lock_file={shared_build}/lock",
              "tflite.precision=INT8"]
    from_npy = tfbuild(*common, "tflite.calibration.path=cal.npy")
    assert from_npy.code == 0, from_npy.err
    from_images = tfbuild(*common, "tflite.calibration.path=images")
    assert from_images.code == 0, from_images.err
    assert from_images.status()["tflite"] == "built"
    assert from_npy.report["stages"][-1]["fingerprint"] != from_images.report["stages"][-1]["fingerprint"]
    # The data's content is part of the fingerprint.
    assert tfbuild(*common, "tflite.calibration.path=cal.npy").status()["tflite"] == "fresh"
    np.save(project / "cal.npy", rng.uniform(0, 255, (8, 32, 32, 3)).astype(np.float32))
    changed = tfbuild(*common, "tflite.calibration.path=cal.npy")
    assert changed.status()["tflite"] == "built"
    assert "input calibration content changed" in changed.reasons()["tflite"]


def test_benchmark_is_recorded_and_not_a_build_input(project):
    from tfbuild.cli.main import main
    assert main(["target=tiny_tflite", "report_file=r.json", "bench.runs=5"]) == 0
    bench = json.loads(Path("r.json").read_text())["benchmark"]
    assert bench["median_ms"] > 0 and bench["p90_ms"] >= bench["median_ms"]
    assert bench["throughput_per_s"] > 0
    assert main(["target=tiny_tflite", "report_file=r.json", "bench.again=true", "bench.runs=5"]) == 0
    report = json.loads(Path("r.json").read_text())
    assert {s["status"] for s in report["stages"]} == {"fresh"}


def test_parallel_sweep_builds_shared_stages_once(project, tfbuild):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    run = tfbuild("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "target=tiny_tflite",
                  "tflite.precision=FP32,FP16")
    assert run.code == 0, run.err
    jobs = json.loads(next(Path("build/sweeps").glob("*/summary.json")).read_text())["jobs"]
    built = [stage for job in jobs for stage in job["built"].split(",") if stage]
    # Both jobs need train/placeholder/freeze; the store's lock lets only one build them.
    assert sorted(built) == ["freeze", "placeholder", "tflite", "tflite", "train"]


# ----------------------------------------------------------------------------- parity measures (issue 19, part 2)

def store_dirs(build_dir: Path) -> set:
    root = build_dir / "store"
    return {(s.name, d.name) for s in root.iterdir() for d in s.iterdir()} if root.is_dir() else set()


@pytest.mark.parametrize("target, stage", [("tiny_tflite", "tflite"), ("tiny_onnx", "onnx")])
def test_parity_measures_recorded_and_gated_by_name(project, tfbuild, shared_build, target, stage):
    common = [f"target={target}", f"build_dir={shared_build}", f"lock_file={shared_build}/lock"]
    plain = tfbuild(*common)   # a number (here null): today's max-abs gate, the figures beside it
    assert plain.code == 0, plain.err
    meta = plain.report["metadata"]
    m = meta["parity_measures"]
    assert set(m) == {"max_abs_error", "mean_abs_error", "max_rel_error", "mean_rel_error",
                      "cosine_min", "top1_agreement", "samples"}
    assert isinstance(meta["parity_tolerance"], float)
    assert m["samples"] == meta["parity_samples"] >= 8
    assert m["max_abs_error"] == pytest.approx(meta["parity_max_abs_diff"], abs=1e-12)
    assert 0 <= m["mean_abs_error"] <= m["max_abs_error"] < 1e-4   # FP32: (nearly) the same math
    assert 0 <= m["mean_rel_error"] <= m["max_rel_error"]
    assert m["cosine_min"] == pytest.approx(1.0, abs=1e-9) and m["top1_agreement"] == 1.0

    gated = tfbuild(*common, f"{stage}.tolerance={{top1_agreement: 0.99, cosine_min: 0.999}}")
    assert gated.code == 0, gated.err
    assert gated.status()[stage] == "built"   # the gate is part of the settings
    assert "tolerance.top1_agreement changed: null → 0.99" in gated.reasons()[stage]
    meta = gated.report["metadata"]
    assert meta["parity_tolerance"] == {"top1_agreement": 0.99, "cosine_min": 0.999}
    assert meta["parity_measures"]["top1_agreement"] == 1.0
    assert tfbuild(*common, f"{stage}.tolerance={{top1_agreement: 0.99, cosine_min: 0.999}}"
                   ).status()[stage] == "fresh"


def test_parity_gate_on_a_measure_fails_in_one_line_and_publishes_nothing(project, tfbuild, shared_build):
    common = ["target=tiny_tflite", f"build_dir={shared_build}", f"lock_file={shared_build}/lock",
              "tflite.precision=INT8"]
    assert tfbuild(*common).code == 0   # upstream stages built and published
    before = store_dirs(shared_build)
    # INT8 is within its max-abs default, but not within a bound no quantized model holds.
    run = tfbuild(*common, "tflite.tolerance={cosine_min: 0.5, max_abs_error: 1e-12}")
    assert run.code == 1, run.out
    assert run.status()["tflite"] == "failed"
    reason = run.reasons()["tflite"]
    assert "\n" not in reason
    assert reason.startswith("TFLite INT8 model vs the frozen graph over 8 samples: max_abs_error ")
    assert reason.endswith("> 1e-12 (tflite.tolerance)")
    assert "cosine_min" not in reason   # only the measures beyond their bounds are named
    assert run.report["stages"][-1]["artifact"] is None
    assert store_dirs(shared_build) == before
    assert "Traceback" not in run.err + run.out


@pytest.mark.parametrize("value, expect", [
    ("{bogus: 1}", "tflite.tolerance.bogus is not a parity measure"),
    ("{cosine_min: abc}", "tflite.tolerance.cosine_min='abc' is not a number"),
    ("abc", "tflite.tolerance='abc' is not a number"),
    ("{}", "tflite.tolerance={} gates on nothing"),
])
def test_bad_parity_tolerance_refused_before_any_stage(project, tfbuild, value, expect):
    run = tfbuild("target=tiny_tflite", f"tflite.tolerance={value}")
    assert run.code == 2, run.out
    lines = [line for line in run.err.splitlines() if line.strip()]
    assert len(lines) == 1 and expect in lines[0], run.err
    assert "max_abs_error, mean_abs_error, max_rel_error, mean_rel_error, cosine_min, top1_agreement" in lines[0]
    assert not Path("build/store").exists()   # no stage ran


def test_tolerance_forms_and_their_settings():
    """No TensorFlow: numbers stay floats (fingerprints as before), mappings plain dicts."""
    from omegaconf import OmegaConf

    from tfbuild.engine.fingerprint import settings_record
    from tfbuild.errors import ConfigError
    from tfbuild.stages import deploy, tflite

    assert deploy.checked_tolerance("tflite.tolerance", None) is None
    assert deploy.checked_tolerance("tflite.tolerance", 1) == 1.0
    given = OmegaConf.create({"top1_agreement": 1, "max_abs_error": 0.2})
    assert deploy.checked_tolerance("tflite.tolerance", given) == {"top1_agreement": 1.0, "max_abs_error": 0.2}
    for bad, expect in [(-1, "tflite.tolerance=-1.0 is out of range"), (True, "not a number"),
                        ({"top1_agreement": 1.5}, "can never hold"),
                        ({"max_rel_error": -0.1}, "tflite.tolerance.max_rel_error=-0.1 is out of range")]:
        with pytest.raises(ConfigError, match=expect.replace(".", r"\.").replace("(", r"\(")):
            deploy.checked_tolerance("tflite.tolerance", bad)
    cfg = tflite.TfliteCfg(tolerance=deploy.checked_tolerance("tflite.tolerance", given))
    record = settings_record(tflite.Settings(cfg))
    assert record["tflite.tolerance.top1_agreement"] == 1.0 and record["tflite.tolerance.max_abs_error"] == 0.2
    assert settings_record(tflite.Settings(tflite.TfliteCfg(tolerance=0.5)))["tflite.tolerance"] == 0.5
