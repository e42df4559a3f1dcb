"""trt.backend: which backend builds the trt stage (tf-trt, tensorrt, auto), the onnx
stage the graph adds for a TensorRT engine, validation and pre-flight (issue: fast
deployment on today's stacks).

Choice, validation, pre-flight and the graph run everywhere, with this machine's
probes faked where a test needs a GPU or the tensorrt wheel. Real engine builds
need both and skip elsewhere with the reason.
"""
from __future__ import annotations

import contextlib
import importlib
import json
import os
import subprocess
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

from tfbuild import backends
from tfbuild.engine.fingerprint import settings_record
from tfbuild.errors import BackendUnavailable, StageFailed
from tfbuild.tf import trt_engine

REPO = Path(__file__).resolve().parents[1]
L4 = {"name": "NVIDIA L4", "compute_capability": "8.9"}
P4 = {"name": "Tesla P4", "compute_capability": "6.1"}
P100 = {"name": "Tesla P100-PCIE-16GB", "compute_capability": "6.0"}
V100 = {"name": "Tesla V100-SXM2-16GB", "compute_capability": "7.0"}
T4 = {"name": "Tesla T4", "compute_capability": "7.5"}
REAL_GPU, REAL_PREFLIGHT = backends.gpu, trt_engine.preflight


@pytest.fixture
def machine(monkeypatch):
    """machine(...): fake what the probes find; the choice logic above them is real."""
    def fake(tf="2.21.0", tf_trt_build=False, tensorrt=None, polygraphy=True, gpu=None):
        monkeypatch.setattr(backends, "tensorflow_version", lambda: tf)
        monkeypatch.setattr(backends, "tf_built_with_tensorrt", lambda: tf_trt_build)
        monkeypatch.setattr(backends, "tensorrt_version", lambda: tensorrt)
        monkeypatch.setattr(backends, "has_polygraphy", lambda: polygraphy)
        monkeypatch.setattr(backends, "gpu", lambda: gpu)
        monkeypatch.setattr(trt_engine, "preflight", lambda: None)  # would import tensorrt
    return fake


def target_cfg(name: str, *overrides: str):
    """The validated Config of a shipped target, as the command line would make it."""
    importlib.import_module("tfbuild.cli.main")   # registers the targets' config source
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from tfbuild.config import validate
    from tfbuild.cli.targets import data_dir
    with initialize_config_dir(config_dir=str(data_dir("conf")), version_base="1.3"):
        return validate(OmegaConf.to_object(compose("config", overrides=[f"target={name}", *overrides])))


def graph(name: str, *overrides: str) -> dict:
    from tfbuild.engine.graph import make_graph
    from tfbuild.stages import REGISTRY
    return {n.name: n for n in make_graph(target_cfg(name, *overrides), REGISTRY)}


def one_line_error(run) -> str:
    lines = [l for l in run.err.splitlines() if l.strip()]
    assert run.code == 2 and len(lines) == 1 and "Traceback" not in run.err, run.err
    return lines[0]


# ----------------------------------------------------------------------------- choice

@pytest.mark.parametrize("found, chosen", [
    (dict(tf="2.17.0", tf_trt_build=True, gpu=L4), "tf-trt"),            # TF-TRT where TensorFlow has it
    (dict(tf="2.17.0", tf_trt_build=True, gpu=L4, tensorrt="10.9.0"), "tf-trt"),
    (dict(tf="2.21.0", gpu=L4, tensorrt="10.9.0"), "tensorrt"),          # else the engine
    (dict(tf="2.17.0", tf_trt_build=False, gpu=L4, tensorrt="11.1.0"), "tensorrt"),
    (dict(tf="2.17.0", tf_trt_build=True, gpu=None), "tensorrt"),        # neither: planned, pre-flight says
    (dict(tf="2.21.0"), "tensorrt"),
])
def test_auto_picks_tf_trt_where_tensorflow_has_it_else_tensorrt(machine, found, chosen):
    machine(**found)
    assert backends.resolve("auto") == chosen
    assert backends.resolve("tf-trt") == "tf-trt" and backends.resolve("tensorrt") == "tensorrt"


@pytest.mark.parametrize("found, problem", [
    (dict(tf=None), "TensorFlow is not installed"),
    (dict(tf="2.18.0", tf_trt_build=True, gpu=L4), "TensorFlow 2.18.0 has no TF-TRT"),
    (dict(tf="2.16.1", tf_trt_build=False, gpu=L4), "2.16.1 build has no TensorRT support"),
    (dict(tf="2.17.0", tf_trt_build=True, gpu=None), "no NVIDIA GPU"),
    (dict(tf="2.17.0", tf_trt_build=True, gpu=L4), None),
])
def test_tf_trt_problem(machine, found, problem):
    machine(**found)
    got = backends.tf_trt_problem()
    assert got == problem if problem is None else problem in got


@pytest.mark.parametrize("found, problem", [
    (dict(tensorrt=None, gpu=L4), "tensorrt wheel is not installed"),
    (dict(tensorrt="8.6.1", gpu=L4), "TensorRT 8.6.1 is too old"),
    (dict(tensorrt="10.9.0", polygraphy=False, gpu=L4), "Polygraphy is not installed"),
    (dict(tensorrt="10.9.0", gpu=None), "no NVIDIA GPU"),
    (dict(tensorrt="11.1.0", gpu=L4), None),
])
def test_tensorrt_problem(machine, found, problem):
    machine(**found)
    got = backends.tensorrt_problem()
    assert got == problem if problem is None else problem in got


def test_tensorflow_build_record_is_read_without_importing_it():
    import tensorflow as tf
    backends.tf_built_with_tensorrt.cache_clear()
    assert backends.tf_built_with_tensorrt() == bool(tf.sysconfig.get_build_info().get("is_tensorrt_build"))


_SMI = r"""#!{python}
# a stand-in nvidia-smi: rows in PCI bus order, as NVML lists them
import sys
gpus, old_driver = {gpus!r}, {old_driver!r}
args = sys.argv[1:]
if not gpus:
    print("No devices were found"); sys.exit(6)
if args == ["-L"]:
    for i, g in enumerate(gpus):
        print(f"GPU {{i}}: {{g['name']}} (UUID: {{g['uuid']}})")
        for j, mig in enumerate(g.get("mig", [])):
            print(f"  MIG 1g.10gb     Device  {{j}}: (UUID: {{mig}})")
    sys.exit(0)
fields = args[0].split("=", 1)[1].split(",")
if old_driver and "compute_cap" in fields:
    print('Field "compute_cap" is not a valid field to query.'); sys.exit(2)
for i, g in enumerate(gpus):
    print(", ".join(str({{"index": i, "driver_version": "550.54.15"}}.get(f, g.get(f))) for f in fields))
"""


@pytest.fixture
def nvidia_smi(tmp_path, monkeypatch):
    """nvidia_smi(gpus, old_driver=False): a fake nvidia-smi first on PATH; CUDA_* variables unset."""
    for name in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER"):
        monkeypatch.setenv(name, "")   # so monkeypatch restores what the probe sets
        monkeypatch.delenv(name)

    def fake(gpus, old_driver=False):
        script = tmp_path / "bin" / "nvidia-smi"
        script.parent.mkdir(exist_ok=True)
        script.write_text(_SMI.format(python=sys.executable, gpus=gpus, old_driver=old_driver))
        script.chmod(0o755)
        monkeypatch.setenv("PATH", f"{script.parent}{os.pathsep}{os.environ['PATH']}")
        backends._smi.cache_clear()
    yield fake
    backends._smi.cache_clear()


SMI_P4 = {"uuid": "GPU-aaaa1111-0000", "name": "Tesla P4", "compute_cap": "6.1"}
SMI_L4 = {"uuid": "GPU-bbbb2222-0000", "name": "NVIDIA L4", "compute_cap": "8.9", "mig": ["MIG-cccc3333-0000"]}


def test_gpu_probe_reads_nvidia_smi_and_falls_back_for_old_drivers(nvidia_smi):
    nvidia_smi([{"uuid": "GPU-1", "name": "NVIDIA H100 80GB HBM3", "compute_cap": "9.0"}])
    assert backends.gpu() == {"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}
    assert backends.driver_version() == "550.54.15"
    nvidia_smi([{"uuid": "GPU-1", "name": "NVIDIA H100 80GB HBM3"}], old_driver=True)  # no compute_cap field
    assert backends.gpu() == {"name": "NVIDIA H100 80GB HBM3", "compute_capability": None}
    nvidia_smi([{"uuid": "GPU-1", "name": "GRID T4-16C", "compute_cap": "[N/A]"}])   # some vGPUs
    assert backends.gpu() == {"name": "GRID T4-16C", "compute_capability": None}
    backends.require_gpu("11.1.0")                   # unknown: TensorRT says
    backends.require_precision("INT8")
    nvidia_smi([])
    assert backends.gpu() is None and backends.no_gpu() == backends.NO_GPU


@pytest.mark.parametrize("order, visible, expect", [
    (None, None, "Tesla P4"),                # several GPUs: tfbuild makes CUDA count in PCI order
    ("PCI_BUS_ID", "1", "NVIDIA L4"),         # an index in CUDA's order
    (None, "1,0", "NVIDIA L4"),
    ("FASTEST_FIRST", None, "NVIDIA L4"),     # the user's choice: the fastest (guessed: highest cc) first
    ("FASTEST_FIRST", "1", "Tesla P4"),
    (None, "GPU-bbbb", "NVIDIA L4"),          # a UUID prefix
    (None, "MIG-cccc3333", "NVIDIA L4"),      # a MIG instance: its GPU
    (None, "MIG-GPU-aaaa1111-0000/1/0", "Tesla P4"),   # the older MIG form
    (None, "2,1", None),                      # the first entry that matches nothing ends the list
    (None, "GPU-ffff", None),
    (None, "", None),                         # no GPU
    (None, "-1", None),
])
def test_gpu_probe_names_the_gpu_cuda_uses(nvidia_smi, monkeypatch, order, visible, expect):
    nvidia_smi([SMI_P4, SMI_L4])
    for name, value in (("CUDA_DEVICE_ORDER", order), ("CUDA_VISIBLE_DEVICES", visible)):
        if value is not None:
            monkeypatch.setenv(name, value)
    assert (backends.gpu() or {}).get("name") == expect
    assert os.environ["CUDA_DEVICE_ORDER"] == (order or "PCI_BUS_ID")   # TensorRT will count as nvidia-smi does
    if expect is None:
        assert backends.no_gpu() == (f"no NVIDIA GPU is visible (CUDA_VISIBLE_DEVICES={visible!r} names "
                                        "none of those nvidia-smi lists)")


def test_the_gpu_check_and_identity_follow_cuda_visible_devices(project, tfbuild, machine, nvidia_smi, monkeypatch):
    machine(tensorrt="10.9.0")
    monkeypatch.setattr(backends, "gpu", REAL_GPU)   # the probe itself, on the fake nvidia-smi
    nvidia_smi([SMI_P4, SMI_L4])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert backends.environment()["gpu"] == "NVIDIA L4"
    backends.require_gpu("10.9.0")   # the L4 builds it; the P4 it cannot see is no reason to refuse
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    line = one_line_error(tfbuild("target=tiny_trt", "trt.backend=tensorrt", "trt.precision=FP16"))
    assert "the Tesla P4 (compute capability 6.1) cannot run TensorRT 10.9.0" in line


def test_probes_and_planning_never_import_tensorflow_or_tensorrt(project):
    code = ("import sys; from tfbuild import backends as b; b.resolve('auto'); b.environment(); "
            "b.tensorrt_problem(); from tfbuild.cli.main import main; "
            "assert main(['target=densenet_trt_fp16', 'dry_run=true', 'bench.enabled=false']) == 0; "
            "heavy = {'tensorflow', 'tensorrt', 'polygraphy', 'onnx'} & set(sys.modules); "
            "assert not heavy, heavy")
    proc = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-2000:]


# ----------------------------------------------------------------------------- validation, pre-flight

def test_unknown_backend_lists_the_choices(project, tfbuild):
    line = one_line_error(tfbuild("target=tiny_trt", "trt.backend=fastest"))
    assert "trt.backend='fastest' is unknown: use one of auto, tf-trt, tensorrt" in line
    assert not Path("build").exists()


def test_backend_is_written_in_any_case(project):
    assert target_cfg("tiny_trt", "trt.backend=TensorRT").trt.backend == "tensorrt"
    assert target_cfg("tiny_trt", "trt.backend=TF-TRT").trt.backend == "tf-trt"


def test_shipped_trt_targets_use_auto(project):
    for name in ("tiny_trt", "densenet_trt", "densenet_trt_fp16"):
        assert target_cfg(name).trt.backend == "auto", name


@pytest.mark.parametrize("found, expect", [
    (dict(gpu=L4, tensorrt=None), ["tensorrt wheel is not installed", "pip install 'tfbuild[tensorrt]'"]),
    (dict(gpu=None, tensorrt="10.9.0"), ["no NVIDIA GPU"]),
    (dict(gpu=L4, tensorrt="10.9.0", polygraphy=False), ["Polygraphy is not installed",
                                                          "pip install 'tfbuild[tensorrt]'"]),
])
def test_tensorrt_without_wheel_or_gpu_stops_before_upstream_work(project, tfbuild, machine, found, expect):
    machine(**found)
    line = one_line_error(tfbuild("target=tiny_trt", "trt.backend=tensorrt"))
    for text in expect + ["target=tiny_onnx", "target=tiny_tflite", "tf-trt backend: TensorFlow 2.21.0 has no TF-TRT"]:
        assert text in line
    assert not Path("build/store").exists()  # no upstream stage ran


def test_tensorrt_missing_says_when_tf_trt_works_here(project, tfbuild, machine):
    machine(tf="2.17.0", tf_trt_build=True, gpu=L4, tensorrt=None)
    line = one_line_error(tfbuild("target=tiny_trt", "trt.backend=tensorrt"))
    assert "tf-trt backend: works here: set trt.backend=tf-trt" in line


def test_auto_with_neither_backend_names_both_ways_and_the_cpu_stages(project, tfbuild, machine):
    machine(tf="2.21.0", gpu=None, tensorrt=None)
    line = one_line_error(tfbuild("target=tiny_trt"))
    for text in ("TensorRT engines cannot be built here", "tensorrt backend:", "tf-trt backend:",
                 "TensorFlow <=2.17", "target=tiny_onnx", "target=tiny_tflite"):
        assert text in line
    assert not Path("build/store").exists()


def test_tf_trt_on_tensorflow_2_18_and_later_says_why(project, tfbuild, machine):
    machine(tf="2.18.0", tf_trt_build=True, gpu=L4)
    line = one_line_error(tfbuild("target=tiny_trt", "trt.backend=tf-trt"))
    assert line.startswith("tfbuild: error: TF-TRT is not available: TensorFlow 2.18.0 has no TF-TRT "
                           "(TensorFlow 2.18 removed it). TF-TRT needs TensorFlow <=2.17")
    assert "or use trt.backend=tensorrt: pip install 'tfbuild[tensorrt]'" in line and "target=tiny_tflite" in line
    assert not Path("build/store").exists()


@pytest.mark.parametrize("gpu, tensorrt, expect", [
    (P4, "10.9.0", "the Tesla P4 (compute capability 6.1) cannot run TensorRT 10.9.0, which needs compute "
                   "capability 7.5 or newer (Turing or a later GPU); trt.backend=tf-trt (TensorRT 8.6) may run on it"),
    (P100, "10.4.0", "the Tesla P100-PCIE-16GB (compute capability 6.0) cannot run TensorRT 10.4.0, which needs "
                     "compute capability 7.0 or newer (Volta or a later GPU)"),
    (V100, "11.1.0", "TensorRT 11.1.0, which needs compute capability 7.5 or newer (Turing or a later GPU); "
                     "TensorRT 10.0-10.4 still runs on it: pip install 'tensorrt-cu12>=10,<10.5'"),
])
def test_a_gpu_tensorrt_10_or_11_cannot_run_is_refused(project, tfbuild, machine, gpu, tensorrt, expect):
    machine(gpu=gpu, tensorrt=tensorrt)
    line = one_line_error(tfbuild("target=tiny_trt", "trt.backend=tensorrt", "trt.precision=FP32"))
    assert expect in line and "target=tiny_onnx" in line
    assert not Path("build/store").exists()


@pytest.mark.parametrize("gpu, tensorrt", [(V100, "10.4.0"), (T4, "10.5.0"), (T4, "11.4.0.106"), (L4, "11.1.0")])
def test_gpus_tensorrt_10_or_11_runs_on_pass_at_every_precision(machine, gpu, tensorrt):
    machine(gpu=gpu, tensorrt=tensorrt)
    backends.require_gpu(tensorrt)   # Volta and newer have FP16 and INT8 kernels


@pytest.mark.parametrize("gpu, precision, expect", [
    (P4, "FP16", "the Tesla P4 (compute capability 6.1) has no TensorRT FP16 kernels; use FP32, INT8"),
    (P100, "INT8", "the Tesla P100-PCIE-16GB (compute capability 6.0) has no TensorRT INT8 kernels; "
                   "use FP32, FP16"),
])
def test_tf_trt_refuses_a_reduced_precision_tensorrt_8_6_has_no_kernels_for(machine, gpu, precision, expect):
    machine(gpu=gpu)
    with pytest.raises(BackendUnavailable) as info:
        backends.require_precision(precision)
    assert f"trt.precision={precision}: {expect}" in str(info.value)


def test_precision_check_passes_where_the_gpu_has_kernels_or_cannot_say(machine):
    for found in (L4, {"name": "old driver", "compute_capability": None}, None):
        machine(gpu=found)
        backends.require_gpu("11.1.0")
        for precision in ("FP32", "FP16", "INT8"):
            backends.require_precision(precision)


def test_tensorrt_needs_a_max_batch_size(project, tfbuild, machine):
    machine(gpu=L4, tensorrt="10.9.0")
    line = one_line_error(tfbuild("target=tiny_trt", "trt.backend=tensorrt", "trt.max_batch_size=null",
                                  "dry_run=true"))
    assert "trt.backend=tensorrt needs trt.max_batch_size" in line


@pytest.mark.parametrize("tensorrt, overrides, expect", [
    ("10.9.0", ["onnx.batch_size=1", "trt.max_batch_size=8"], "set onnx.batch_size=null, or trt.max_batch_size=1"),
    ("10.9.0", ["onnx.batch_size=null", "trt.precision=INT8"], "trt.precision=INT8 builds on the onnx stage's FP32 model: "
                                              "set onnx.precision=INT8, or onnx=null"),
    ("11.1.0", ["onnx.batch_size=null", "trt.precision=FP16"], "FP32 model (TensorRT 11 types the network from it)"),
])
def test_the_targets_own_onnx_section_must_fit_the_engine(project, tfbuild, machine, tensorrt, overrides, expect):
    machine(gpu=L4, tensorrt=tensorrt)
    line = one_line_error(tfbuild("target=tiny_trt", "+onnx=fp32", "trt.backend=tensorrt", *overrides))
    assert expect in line


def test_fp16_engine_from_an_fp32_onnx_model_on_tensorrt_10(project, machine):
    machine(gpu=L4, tensorrt="10.9.0")   # the FP16 builder flag does it
    nodes = graph("tiny_trt", "+onnx=fp32", "onnx.batch_size=null", "trt.backend=tensorrt", "trt.precision=FP16")
    assert nodes["onnx"].settings.onnx.precision == "FP32" and nodes["trt"].settings.trt.precision == "FP16"


# ----------------------------------------------------------------------------- the graph

def test_dry_run_plans_the_onnx_stage_for_an_engine(project, tfbuild, machine):
    machine(gpu=L4, tensorrt="10.9.0")
    run = tfbuild("dry_run=true", "target=densenet_trt_fp16", "trt.backend=tensorrt")
    assert run.code == 0, run.err
    assert run.status() == {s: "planned" for s in ("train", "placeholder", "freeze", "onnx", "trt")}
    assert run.report["stages"][-1]["artifact"].endswith("model.engine")


def test_tf_trt_plan_has_no_onnx_stage(project, tfbuild, machine):
    machine(tf="2.17.0", tf_trt_build=True, gpu=L4)
    run = tfbuild("dry_run=true", "target=densenet_trt_fp16")   # auto
    assert run.code == 0, run.err
    assert list(run.status()) == ["train", "placeholder", "freeze", "trt"]
    assert run.report["stages"][-1]["artifact"].endswith("trt.pb")


@pytest.mark.parametrize("max_batch, onnx_batch", [(8, None), (32, None), (1, 1)])
def test_the_added_onnx_stage_follows_the_trt_settings(project, machine, max_batch, onnx_batch):
    machine(gpu=L4, tensorrt="10.9.0")
    nodes = graph("densenet_trt", "trt.precision=INT8", f"trt.max_batch_size={max_batch}")  # auto
    onnx, trt = nodes["onnx"].settings.onnx, nodes["trt"]
    assert (onnx.precision, onnx.batch_size, onnx.opset) == ("INT8", onnx_batch, 17)
    assert nodes["onnx"].settings.symmetric   # zero points of 0: TensorRT's parser needs them
    assert onnx.calibration == target_cfg("densenet_trt").trt.calibration   # quantized on trt's data
    assert trt.deps == ("freeze", "onnx") and trt.spec.artifact == "model.engine"
    assert nodes["onnx"].files["calibration"][0].name == "densenet169_calibration.npy"


def test_a_sweep_over_trt_keys_shares_onnx_models_and_engines(project, machine):
    machine(gpu=L4, tensorrt="10.9.0")
    record = {b: {name: settings_record(n.settings) for name, n in graph("densenet_trt", *args).items()}
              for b, args in {8: ["trt.max_batch_size=8"], 32: ["trt.max_batch_size=32"],
                              "segments": ["trt.max_batch_size=32", "trt.minimum_segment_size=9",
                                           "trt.is_dynamic_op=false"]}.items()}
    assert record[8]["onnx"] == record[32]["onnx"]               # one ONNX model for every batch cap
    assert record[8]["trt"] != record[32]["trt"]
    assert record[32]["trt"] == record["segments"]["trt"]        # TF-TRT-only keys are not an engine's identity


def test_engine_identity_is_the_backend_used_and_this_gpu(project, machine, monkeypatch):
    machine(gpu=L4, tensorrt="10.9.0")
    auto, named = graph("tiny_trt")["trt"], graph("tiny_trt", "trt.backend=tensorrt")["trt"]
    assert settings_record(auto.settings) == settings_record(named.settings)
    record = settings_record(named.settings)
    assert record["trt.backend"] == "tensorrt" and "timing_cache" not in record
    assert not {"trt.minimum_segment_size", "trt.is_dynamic_op", "trt.maximum_cached_engines"} & set(record)
    env = named.spec.environment(named.settings)
    assert env == {"tensorrt": "10.9.0", "polygraphy": backends.dist_version("polygraphy"),
                   "gpu": "NVIDIA L4", "compute_capability": "8.9"}
    monkeypatch.setattr(backends, "gpu", lambda: {"name": "NVIDIA H100", "compute_capability": "9.0"})
    assert named.spec.environment(named.settings) != env   # never reused on another GPU


def test_timing_cache_lives_in_build_dir_per_tensorrt_and_gpu(project, machine):
    machine(gpu=L4, tensorrt="10.9.0")
    cache = Path(graph("tiny_trt", "trt.backend=tensorrt", "build_dir=out")["trt"].settings.timing_cache)
    assert cache == Path("out/.tfbuild/trt-timing-10.9.0-NVIDIA-L4-sm8.9.cache")


def test_a_target_with_its_own_onnx_section_keeps_it(project, machine):
    machine(gpu=L4, tensorrt="10.9.0")
    nodes = graph("tiny_trt", "+onnx=fp16", "onnx.batch_size=null", "onnx.opset=13", "trt.backend=tensorrt")
    assert (nodes["onnx"].settings.onnx.opset, nodes["onnx"].settings.onnx.precision) == (13, "FP16")
    nodes = graph("tiny_trt", "+onnx=fp32", "trt.backend=tf-trt")
    assert nodes["trt"].deps == ("freeze",) and "onnx" in nodes   # both built, independently


def test_engine_upstream_and_artifact_may_depend_on_settings():
    """The engine's generic hooks: `upstream` a function of the config, `artifact` of the settings."""
    from tfbuild.engine.graph import make_graph
    from tfbuild.engine.spec import Registry, StageSpec, section

    @dataclass
    class C:
        a: object = 1
        b: object = 1
        via: str = "a"

    def stage(name, **kw):
        return StageSpec(name, lambda cfg, deps: deps, lambda *a: {}, present=section(name), **kw)

    reg = Registry((stage("a"), stage("b", upstream=lambda cfg: (cfg.via,),
                                      artifact=lambda deps: f"from-{deps[0]}.bin")))
    assert make_graph(C(), reg)[1].spec.upstream == ("a",)
    assert make_graph(C(), reg)[1].spec.artifact == "from-a.bin"
    with pytest.raises(ValueError, match="upstream 'b' must be registered first"):
        make_graph(C(via="b"), reg)
    with pytest.raises(ValueError, match="upstream 'z' must be registered first"):
        make_graph(C(via="z"), reg)


# ----------------------------------------------------------------------------- engine helpers (no GPU)

def test_profile_spans_one_to_max_where_the_onnx_batch_is_dynamic():
    inputs = [{"name": "input", "shape": [None, 32, 32, 3]}, {"name": "scale", "shape": [4, 1]}]
    assert trt_engine.profile(inputs, 8) == {
        "input": ((1, 32, 32, 3), (8, 32, 32, 3), (8, 32, 32, 3)),
        "scale": ((4, 1), (4, 1), (4, 1))}   # a fixed ONNX batch is the profile
    with pytest.raises(StageFailed, match="needs all but the batch fixed"):
        trt_engine.profile([{"name": "image", "shape": [None, None, None, 3]}], 8)


def test_layers_are_counted_by_the_precision_they_read():
    layers = [
        {"Inputs": [{"Format/Datatype": "Row major linear FP32 format"}], "Outputs": [{"Format/Datatype": "Int8"}]},
        {"Inputs": [{"Format/Datatype": "Int8"}], "Outputs": [{"Format/Datatype": "Float"}]},
        {"Inputs": [{"Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}]},
        {"Inputs": [{"Format/Datatype": "Half"}, {"Format/Datatype": "Float"}]},
        {"Inputs": [{"Format/Datatype": "Int32"}], "Outputs": [{"Format/Datatype": "Float"}]},   # shape math
        {"Inputs": [{"Format/Datatype": "Row major linear BFloat16 format"}]},
        {"Inputs": [{"Format/Datatype": "Int64"}], "Outputs": [{"Format/Datatype": "Bool"}]},
        "conv1 + relu1",   # profiling verbosity without details
    ]
    assert trt_engine.layer_precisions(layers) == {"BF16": 1, "FP16": 2, "FP32": 2, "INT8": 1, "other": 2}


def _qdq_model(zero_point: int):
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    inits = [numpy_helper.from_array(np.array(0.1, np.float32), "s"),
             numpy_helper.from_array(np.array(zero_point, np.int8), "z")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q"),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="dq")]
    return helper.make_model(helper.make_graph(nodes, "qdq", [x], [y], inits))


def test_asymmetric_qdq_nodes_are_found_before_tensorrt_parses_them(tmp_path):
    import onnx
    assert trt_engine.asymmetric_qdq(_qdq_model(0)) == []
    assert trt_engine.asymmetric_qdq(_qdq_model(-3)) == ["q", "dq"]
    onnx.save(_qdq_model(-3), tmp_path / "m.onnx")
    with pytest.raises(StageFailed, match=r"asymmetric \(2 with a non-zero zero point, e.g. q\): TensorRT takes"):
        trt_engine._check_qdq(tmp_path / "m.onnx")


def test_int8_onnx_models_are_symmetric_for_tensorrt_and_asymmetric_for_onnxruntime(
        project, tfbuild, machine, monkeypatch, shared_build):
    """TensorRT's parser takes zero points of 0 only; onnxruntime on a CPU runs
    asymmetric activations ~30% faster (DenseNet-169), so each gets its own."""
    import onnx
    from tfbuild.errors import StageFailed
    machine(gpu=L4, tensorrt="10.9.0")
    seen = {}

    def build(onnx_path, out, **_):
        seen["asymmetric"] = trt_engine.asymmetric_qdq(onnx.load(str(onnx_path)))
        raise StageFailed("stop: the model is what this test checks")
    monkeypatch.setattr(trt_engine, "build", build)
    common = [f"build_dir={shared_build}", f"lock_file={shared_build}/backends.lock"]
    run = tfbuild("target=tiny_trt", "trt.precision=INT8", *common)
    assert run.status()["onnx"] in ("built", "fresh") and run.status()["trt"] == "failed"
    assert seen["asymmetric"] == []
    run = tfbuild("target=tiny_onnx", "onnx.precision=INT8", *common)
    assert run.code == 0, run.err
    assert trt_engine.asymmetric_qdq(onnx.load(run.report["artifact"])) != []


class PolygraphyException(Exception):
    """What Polygraphy's G_LOGGER.critical raises (polygraphy.exception)."""


# What TensorRT 10's parser and Polygraphy print on a model it refuses: TensorRT's own log lines
# (through Polygraphy's logger), the parser's errors, then Polygraphy's summary on stderr.
PARSE_FAILURE = [
    ("out", "[E] ModelImporter.cpp:836: While parsing node number 3 [DequantizeLinear -> \"bias_dq\"]:"),
    ("out", "[E] ModelImporter.cpp:837: --- Begin node ---\n    input: \"bias_q\"\n    output: \"bias_dq\""),
    ("out", "[E] ModelImporter.cpp:838: --- End node ---"),
    ("out", "\x1b[31m[E] In node 3 with name: bias_dq and operator: DequantizeLinear (parseGraph): INVALID_NODE: "
            "Assertion failed: inputType == DataType::kINT8\x1b[0m"),
    ("err", "[!] Could not parse ONNX correctly"),
]


class _Polygraphy:
    """Stands in for tensorrt and polygraphy.backend.trt: records what build() asks of them, prints
    and raises as Polygraphy does (polygraphy/backend/trt/util.py, logger/logger.py)."""

    def __init__(self, version: str, fail: bool = False):
        self.calls, self.fail, self.quiet = {}, fail, False
        self.trt = types.SimpleNamespace(
            __version__=version, MemoryPoolType=types.SimpleNamespace(WORKSPACE="WORKSPACE"),
            ProfilingVerbosity=types.SimpleNamespace(DETAILED="DETAILED"),
            LayerInformationFormat=types.SimpleNamespace(JSON="JSON"))
        logger = types.SimpleNamespace(ERROR=40, verbosity=self.verbosity)
        self.modules = {"tensorrt": self.trt, "polygraphy": types.ModuleType("polygraphy"),
                        "polygraphy.backend": types.ModuleType("polygraphy.backend"),
                        "polygraphy.backend.trt": types.SimpleNamespace(
                            CreateConfig=self.config, Profile=self.Profile,
                            NetworkFromOnnxPath=self.record("network", None),
                            EngineBytesFromNetwork=self.record("build", lambda: self.built()),
                            EngineFromBytes=self.record("load", lambda: self.engine())),
                        "polygraphy.logger": types.SimpleNamespace(G_LOGGER=logger)}

    @contextlib.contextmanager
    def verbosity(self, level):
        self.quiet = True
        try:
            yield
        finally:
            self.quiet = False

    def config(self, **kwargs):
        self.calls["config"] = ((), kwargs)
        if not self.quiet:   # CreateConfig logs at INFO as it is made
            print("[I] TF32 is disabled by default. Turn on TF32 for better performance ...")
        return None

    def record(self, name, result):
        def call(*args, **kwargs):
            self.calls[name] = (args, kwargs)
            return result
        return call

    class Profile(dict):
        def add(self, name, min, opt, max):
            self[name] = (min, opt, max)
            return self

    def built(self):
        if self.fail:
            for stream, text in PARSE_FAILURE:
                print(text, file=sys.stdout if stream == "out" else sys.stderr)
            raise PolygraphyException("Could not parse ONNX correctly")
        return b"serialized engine"

    def engine(self):
        layers = [{"Inputs": [{"Format/Datatype": "Half"}]}, {"Inputs": [{"Format/Datatype": "Float"}]}]
        info = json.dumps({"Layers": layers, "Bindings": ["input", "probs"]})
        inspector = types.SimpleNamespace(get_engine_information=lambda fmt: info)
        return types.SimpleNamespace(hardware_compatibility_level=types.SimpleNamespace(name="NONE"),
                                     create_engine_inspector=lambda: inspector)


INPUTS = [{"name": "input", "shape": [None, 32, 32, 3], "dtype": "float32"}]


@pytest.mark.parametrize("version, precision, strong, flags", [
    ("10.9.0", "FP16", False, {"fp16": True, "int8": False}),   # TensorRT 10: the precision flags
    ("10.9.0", "INT8", False, {"fp16": True, "int8": True}),    # INT8 with FP16 outside the Q/DQ pairs
    ("10.9.0", "FP32", False, {"fp16": False, "int8": False}),
    ("11.1.0", "FP16", True, {}),                               # TensorRT 11: strong typing, no flag exists
    ("11.1.0", "INT8", True, {}),
])
def test_build_asks_tensorrt_for_profile_workspace_cache_and_precision(monkeypatch, tmp_path, capsys, version,
                                                                       precision, strong, flags):
    fake = _Polygraphy(version)
    for name, module in fake.modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(trt_engine, "_check_qdq", lambda path: None)
    cache, out = tmp_path / "bd/.tfbuild/trt-timing.cache", tmp_path / "model.engine"
    meta = trt_engine.build(tmp_path / "model.onnx", out, inputs=INPUTS, precision=precision, max_batch_size=8,
                            workspace=1 << 28, timing_cache=str(cache))
    config = fake.calls["config"][1]
    assert config["profiles"] == [{"input": ((1, 32, 32, 3), (8, 32, 32, 3), (8, 32, 32, 3))}]
    assert config["memory_pool_limits"] == {"WORKSPACE": 1 << 28}
    assert config["load_timing_cache"] is None and cache.parent.is_dir()   # none yet: TensorRT starts empty
    assert {k: config[k] for k in ("fp16", "int8") if k in config} == flags
    assert config["tf32"] is True   # TensorRT's default, which Polygraphy's CreateConfig would turn off
    assert fake.calls["network"] == ((str(tmp_path / "model.onnx"),), {"strongly_typed": strong})
    assert fake.calls["build"][1]["save_timing_cache"] == str(cache)
    assert out.read_bytes() == b"serialized engine"
    assert meta == {"tensorrt": version, "strongly_typed": strong, "tf32": True, "hardware_compatibility_level": "NONE",
                    "profile": {"input": {"min": [1, 32, 32, 3], "opt": [8, 32, 32, 3], "max": [8, 32, 32, 3]}},
                    "layers": {"FP16": 1, "FP32": 1}, "size_bytes": len(b"serialized engine")}
    assert capsys.readouterr() == ("", "")   # the config is made in the quiet block: no TF32 notice
    cache.write_bytes(b"tactics")
    trt_engine.build(tmp_path / "model.onnx", out, inputs=INPUTS, precision=precision, max_batch_size=8,
                     workspace=1 << 28, timing_cache=str(cache))
    assert fake.calls["config"][1]["load_timing_cache"] == str(cache)   # the next build starts from it


def test_build_failure_is_one_line_with_the_parsers_reason_and_leaves_no_engine(monkeypatch, tmp_path, capsys):
    fake = _Polygraphy("10.9.0", fail=True)
    for name, module in fake.modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    with pytest.raises(StageFailed) as info:
        trt_engine.build(tmp_path / "model.onnx", tmp_path / "model.engine", inputs=INPUTS, precision="FP32",
                         max_batch_size=1, workspace=1, timing_cache=str(tmp_path / "t.cache"))
    assert str(info.value) == ("TensorRT 10.9.0 could not build a FP32 engine from model.onnx: Could not parse "
                               "ONNX correctly: In node 3 with name: bias_dq and operator: DequantizeLinear "
                               "(parseGraph): INVALID_NODE: Assertion failed: inputType == DataType::kINT8")
    assert capsys.readouterr() == ("", "")   # Polygraphy's lines are in the message, not on the terminal
    assert not list(tmp_path.glob("model.engine*"))


@pytest.mark.parametrize("printed, expect", [
    ("".join(text + "\n" for _, text in PARSE_FAILURE), "In node 3 with name: bias_dq and operator: "
     "DequantizeLinear (parseGraph): INVALID_NODE: Assertion failed: inputType == DataType::kINT8"),
    # a builder failure: TensorRT's error through Polygraphy's logger, then "Invalid Engine"
    ("[E] 10: Could not find any implementation for node conv1.\n"
     "[!] Invalid Engine. Please ensure the engine was built correctly\n",
     "10: Could not find any implementation for node conv1."),
    ("[W] colored is not installed\n[!] Could not parse ONNX correctly\n", None),
])
def test_the_first_real_error_is_found_in_what_polygraphy_printed(printed, expect):
    assert trt_engine.first_error(printed) == expect


class _TensorRT(types.ModuleType):
    """Stands in for tensorrt where no CUDA starts: Builder logs the reason (to the logger only)
    and pybind raises, as TensorRT's Python Builder does (python/src/infer/pyCore.cpp)."""

    def __init__(self, logged=None, version="11.4.0.106"):
        super().__init__("tensorrt")
        self.__version__, self.logged = version, logged

        class ILogger:
            def __init__(self):
                pass

        self.ILogger = ILogger
        self.Logger = types.SimpleNamespace(INTERNAL_ERROR=0, ERROR=1, WARNING=2, INFO=3, VERBOSE=4)

    def Builder(self, logger):
        assert isinstance(logger, self.ILogger)
        logger.log(self.Logger.WARNING, "a warning about something else is not the reason")
        for severity, message in self.logged or ():
            logger.log(getattr(self.Logger, severity), message)
        if self.logged is None:
            return object()
        raise TypeError("pybind11::init(): factory function returned nullptr")


# TensorRT 10 logs it as a warning (8.0: an internal error, "Error Code 6: Internal Error (...)")
CUDA_35 = (("INFO", "not even a warning"), ("ERROR", "an error after it"),
           ("WARNING", "CUDA initialization failure with error: 35. Please check your CUDA installation: "
                       "http://docs.nvidia.com/cuda\nmore"))


@pytest.mark.parametrize("cuda, driver, logged, expect", [
    (13, "550.54.15", CUDA_35,
     "TensorRT 11.4.0.106 cannot start CUDA (no CUDA device, or a driver too old for this tensorrt build): "
     "CUDA initialization failure with error: 35. Please check your CUDA installation: http://docs.nvidia.com/cuda; "
     "tensorrt's CUDA 13 build needs NVIDIA driver r580 or newer, this machine has 550.54.15; on an older driver "
     "(r535+) use the CUDA 12 build: pip uninstall -y tensorrt tensorrt-cu13 tensorrt-cu13-bindings "
     "tensorrt-cu13-libs && pip install 'tfbuild[tensorrt-cu12]'"),
    (12, "580.65.06", (), "cannot start CUDA (no CUDA device, or a driver too old for this tensorrt build); "
     "the NVIDIA driver 580.65.06 is new enough for tensorrt's CUDA 12 build (r535+): check that the GPU is "
     "visible (CUDA_VISIBLE_DEVICES)"),
    (None, None, (), "; check the NVIDIA driver: tensorrt's CUDA 13 build needs r580 or newer, its CUDA 12 "
     "build r535 or newer"),
    (None, "470.1", [("INTERNAL_ERROR", "Error Code 6: Internal Error (Unable to load library: libnvinfer_builder_"
                                        "resource.so.10.9.0)")], "cannot start CUDA (no CUDA device, or a driver "
     "too old for this tensorrt build): Error Code 6: Internal Error (Unable to load library: libnvinfer_builder_"
     "resource.so.10.9.0); check the NVIDIA driver (470.1): tensorrt's CUDA 13 build needs r580"),
])
def test_engine_preflight_says_why_tensorrt_cannot_start_cuda_and_which_driver_it_needs(
        monkeypatch, cuda, driver, logged, expect):
    monkeypatch.setitem(sys.modules, "tensorrt", _TensorRT(logged))
    monkeypatch.setattr(backends, "tensorrt_cuda", lambda: cuda)
    monkeypatch.setattr(backends, "driver_version", lambda: driver)
    with pytest.raises(BackendUnavailable) as info:
        trt_engine.preflight()
    assert expect in str(info.value) and "\n" not in str(info.value) and "nullptr" not in str(info.value)


def test_engine_preflight_says_when_tensorrt_cannot_be_loaded(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)   # import fails, as with its libraries missing
    with pytest.raises(BackendUnavailable, match=r"^TensorRT cannot be loaded: .*; reinstall it: pip install "
                                                 r"'tfbuild\[tensorrt\]'"):
        trt_engine.preflight()


def test_engine_preflight_says_when_polygraphy_finds_no_cuda_runtime(monkeypatch):
    def wrapper():
        raise OSError("libcudart.so: cannot open shared object file: No such file or directory")
    monkeypatch.setitem(sys.modules, "tensorrt", _TensorRT())   # CUDA starts
    monkeypatch.setitem(sys.modules, "polygraphy", types.ModuleType("polygraphy"))
    monkeypatch.setitem(sys.modules, "polygraphy.cuda", types.SimpleNamespace(wrapper=wrapper))
    monkeypatch.setattr(trt_engine, "tensorrt_cuda", lambda: 13)
    with pytest.raises(BackendUnavailable, match=r"^Polygraphy cannot load the CUDA runtime \(libcudart\) to run "
                                                 r"engines: libcudart.so: cannot open .*; pip install "
                                                 r"'nvidia-cuda-runtime>=13,<14', or put"):
        trt_engine.preflight()
    monkeypatch.setitem(sys.modules, "polygraphy.cuda", types.SimpleNamespace(wrapper=lambda: "loaded"))
    trt_engine.preflight()


@pytest.mark.parametrize("cuda, first", [(13, "cu13"), (12, "cuda_runtime"), (None, "cu13")])
def test_the_runner_finds_the_pip_cuda_runtime_of_the_tensorrt_build(monkeypatch, tmp_path, cuda, first):
    """Polygraphy searches LD_LIBRARY_PATH first and never nvidia/cu13/lib, where CUDA 13's wheel puts it."""
    libs = {sub: tmp_path / "site" / "nvidia" / sub / "lib" for sub in ("cu13", "cuda_runtime")}
    for sub, lib in libs.items():
        lib.mkdir(parents=True)
        (lib / f"libcudart.so.{13 if sub == 'cu13' else 12}").write_bytes(b"")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(trt_engine, "tensorrt_cuda", lambda: cuda)
    monkeypatch.setenv("LD_LIBRARY_PATH", "/opt/mine")
    trt_engine._cuda_runtime_on_path()
    trt_engine._cuda_runtime_on_path()   # once only
    second = "cuda_runtime" if first == "cu13" else "cu13"
    paths = os.environ["LD_LIBRARY_PATH"].split(os.pathsep)   # (a machine's own nvidia wheels may add more)
    assert paths[0] == "/opt/mine" and len(paths) == len(set(paths))
    assert [p for p in paths if p.startswith(str(tmp_path))] == [str(libs[first]), str(libs[second])]


def test_engine_stage_runs_end_to_end_with_onnxruntime_standing_in_for_tensorrt(project, tfbuild, machine,
                                                                                 monkeypatch, shared_build):
    """Everything of the tensorrt route but TensorRT itself: the added onnx stage is built for
    real, the "engine" is that ONNX model, run and timed by onnxruntime."""
    from tfbuild.cli.main import main
    from tfbuild.tf.runtimes import run_onnx
    from tfbuild.tf.timing import onnx_timer
    machine(gpu=L4, tensorrt="10.9.0")
    seen = {}

    def build(onnx_path, out, *, inputs, precision, max_batch_size, workspace, timing_cache):
        seen.update(inputs=inputs, precision=precision, timing_cache=timing_cache)
        out.write_bytes(onnx_path.read_bytes())
        shapes = trt_engine.profile(inputs, max_batch_size)
        return {"tensorrt": "10.9.0", "layers": {"FP32": 1},
                "profile": {n: dict(zip(("min", "opt", "max"), map(list, s))) for n, s in shapes.items()}}

    monkeypatch.setattr(trt_engine, "build", build)
    monkeypatch.setattr(trt_engine, "run", lambda path, feeds, outputs: run_onnx(path, feeds))
    monkeypatch.setattr(trt_engine, "engine_timer", onnx_timer)
    common = ["target=tiny_trt", "trt.precision=FP32", f"build_dir={shared_build}",
              f"lock_file={shared_build}/backends.lock"]
    run = tfbuild(*common)   # auto: the engine route on this (faked) machine
    assert run.code == 0, run.err
    assert [s["name"] for s in run.report["stages"]] == ["train", "placeholder", "freeze", "onnx", "trt"]
    assert seen["inputs"] == [{"name": "input", "dtype": "float32", "shape": [None, 32, 32, 3]}]  # dynamic
    assert seen["timing_cache"].startswith(str(shared_build / ".tfbuild" / "trt-timing-10.9.0-NVIDIA-L4"))
    meta = run.report["metadata"]
    assert (meta["backend"], meta["precision"], meta["batch_size"], meta["gpu"], meta["compute_capability"]) == \
        ("tensorrt", "FP32", 8, "NVIDIA L4", "8.9")
    assert meta["inputs"] == [{"name": "input", "dtype": "float32", "shape": [8, 32, 32, 3]}]
    assert meta["parity_max_abs_diff"] < 1e-4 and meta["parity_tolerance"] == 2e-3
    final = run.report["stages"][-1]
    assert final["artifact"].endswith("model.engine") and final["size"] == Path(final["artifact"]).stat().st_size
    again = tfbuild(*common, "trt.minimum_segment_size=9", "trt.backend=tensorrt")
    assert again.status()["trt"] == "fresh", again.reasons()
    assert main([*common, "report_file=r.json", "bench.runs=2", "bench.warmup=0"]) == 0
    bench = json.loads(Path("r.json").read_text())["benchmark"]
    assert bench["batch_size"] == 8 and bench["median_ms"] > 0


def test_an_int8_engine_is_held_to_its_onnx_models_bound(project, tfbuild, machine, monkeypatch, shared_build):
    """The engine runs the very model the onnx stage accepted at its INT8 bound; with that model
    standing in for the engine, parity must pass at that bound."""
    from tfbuild.stages import trt as trt_stage
    from tfbuild.tf import onnx_convert
    from tfbuild.tf.runtimes import run_onnx
    assert trt_stage.ENGINE_INT8_TOLERANCE == onnx_convert.TOLERANCE["INT8"]
    machine(gpu=L4, tensorrt="10.9.0")

    def build(onnx_path, out, *, inputs, precision, max_batch_size, workspace, timing_cache):
        out.write_bytes(onnx_path.read_bytes())
        shapes = trt_engine.profile(inputs, max_batch_size)
        return {"tensorrt": "10.9.0", "profile": {n: dict(zip(("min", "opt", "max"), map(list, s)))
                                                  for n, s in shapes.items()}}

    monkeypatch.setattr(trt_engine, "build", build)
    monkeypatch.setattr(trt_engine, "run", lambda path, feeds, outputs: run_onnx(path, feeds))
    run = tfbuild("target=tiny_trt", "trt.precision=INT8", f"build_dir={shared_build}",
                  f"lock_file={shared_build}/backends.lock")
    assert run.code == 0, run.err
    meta = run.report["metadata"]
    assert meta["parity_tolerance"] == onnx_convert.TOLERANCE["INT8"] >= meta["parity_max_abs_diff"]


# ----------------------------------------------------------------------------- real engines (GPU + wheel)

def real_engine_problem():
    """Why no real engine can be built here: the cheap probes, then (where they pass) the real
    pre-flight, so a GPU machine whose wheel and driver do not match skips with the reason."""
    problem = backends.tensorrt_problem()
    if problem is None:
        try:
            backends.require_gpu(backends.tensorrt_version())
            trt_engine.preflight()
        except BackendUnavailable as e:
            problem = str(e)
    return problem


TENSORRT_SKIP = real_engine_problem()
needs_tensorrt = pytest.mark.skipif(TENSORRT_SKIP is not None,
                                    reason=f"tensorrt backend unavailable here: {TENSORRT_SKIP}")


def test_real_engine_tests_skip_on_a_failed_pre_flight(machine, monkeypatch):
    machine(gpu=L4, tensorrt="11.4.0.106")   # the cheap probes pass
    assert real_engine_problem() is None
    monkeypatch.setitem(sys.modules, "tensorrt", _TensorRT(CUDA_35))
    monkeypatch.setattr(trt_engine, "preflight", REAL_PREFLIGHT)
    assert real_engine_problem().startswith("TensorRT 11.4.0.106 cannot start CUDA (no CUDA device, or a "
                                            "driver too old for this tensorrt build): CUDA initialization failure")
    machine(gpu=P4, tensorrt="11.4.0.106")
    assert "cannot run TensorRT 11.4.0.106" in real_engine_problem()


@needs_tensorrt
@pytest.mark.parametrize("precision", ["FP32", "FP16", "INT8"])
def test_real_engine(project, tfbuild, shared_build, precision):
    import numpy as np
    common = ["target=tiny_trt", "trt.backend=tensorrt", f"build_dir={shared_build}",
              f"lock_file={shared_build}/backends.lock"]
    run = tfbuild(*common, f"trt.precision={precision}")
    assert run.code == 0, run.err
    meta = run.report["metadata"]
    assert (meta["backend"], meta["precision"], meta["batch_size"]) == ("tensorrt", precision, 8)
    assert meta["tensorrt"] == backends.tensorrt_version() and meta["compute_capability"]
    assert meta["strongly_typed"] == backends.strongly_typed(meta["tensorrt"]) and meta["tf32"] is True
    assert meta["parity_max_abs_diff"] <= meta["parity_tolerance"]
    assert meta["profile"]["input"] == {"min": [1, 32, 32, 3], "opt": [8, 32, 32, 3], "max": [8, 32, 32, 3]}
    assert meta["layers"].get(precision, 0) > 0, meta["layers"]
    engine = Path(run.report["artifact"])
    assert engine.name == "model.engine" and run.status()["onnx"] in ("built", "fresh")
    assert list((shared_build / ".tfbuild").glob("trt-timing-*.cache"))
    # a dynamic profile runs any batch up to its max
    probs = trt_engine.run(engine, {"input": np.zeros((1, 32, 32, 3), np.float32)}, ["probs"])[0]
    assert probs.shape == (1, 2) and abs(float(probs.sum()) - 1) < 1e-2
    again = tfbuild(*common, f"trt.precision={precision}", "trt.minimum_segment_size=7")
    assert again.status()["trt"] == "fresh"   # a TF-TRT-only key does not rebuild an engine


@needs_tensorrt
def test_real_engine_benchmark_runs_through_tensorrt(project):
    import json

    from tfbuild.cli.main import main
    assert main(["target=tiny_trt", "trt.backend=tensorrt", "report_file=r.json", "bench.runs=5"]) == 0
    bench = json.loads(Path("r.json").read_text())["benchmark"]
    assert bench["backend"] == f"tensorrt {backends.tensorrt_version()}" and bench["median_ms"] > 0
    assert bench["batch_size"] == 8 and bench["gpu"]
