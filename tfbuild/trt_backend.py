"""Which TensorRT backend builds the trt stage on this machine, found cheaply.

- `tf-trt`: TF-TRT, a TensorRT-optimised GraphDef; only TensorFlow <=2.17 built
  with TensorRT has it, on an NVIDIA GPU.
- `tensorrt`: a serialized engine built from the onnx stage's model with the
  `tensorrt` wheel (10.x or 11.x) and Polygraphy, on an NVIDIA GPU.
- `auto`: TF-TRT where TensorFlow has it, else `tensorrt`. Where the machine has
  neither, `tensorrt` is still planned (the supported route) and its pre-flight
  says what is missing, before any stage runs.

A leaf module: the probes read package metadata, TensorFlow's build_info.py as
text and `nvidia-smi`; nothing here imports TensorFlow or tensorrt. The onnx
stage reads it too (a tensorrt engine needs an ONNX model), so it stays small.
"""
from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import re
import subprocess
from pathlib import Path
from typing import Optional

from .errors import BackendUnavailable

LAST_TF_WITH_TRT = (2, 17)
FIRST_STRONGLY_TYPED = 11    # TensorRT 11 dropped the FP16/INT8 builder flags
INSTALL = "pip install 'tfbuild[tensorrt]' (TensorRT 10 or 11, Polygraphy) on a machine with an NVIDIA GPU"
TF_TRT_NEEDS = "TensorFlow <=2.17 built with TensorRT 8.6, on an NVIDIA GPU"
CPU = "On CPU, build the onnx or tflite stage instead (e.g. target=tiny_onnx or target=tiny_tflite)"
NO_GPU = "no NVIDIA GPU was found (nvidia-smi is missing or lists none)"


# ----------------------------------------------------------------------------- probes

def dist_version(*names: str) -> Optional[str]:
    """The first installed distribution's version, from package metadata."""
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def version_tuple(version: str) -> tuple:
    return tuple(int(p) for p in re.findall(r"\d+", version)[:2])


def tensorflow_version() -> Optional[str]:
    return dist_version("tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tf-nightly")


def tensorrt_version() -> Optional[str]:
    """The `tensorrt` module's version, where it can be imported (without importing it)."""
    if importlib.util.find_spec("tensorrt") is None:
        return None
    return dist_version("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu11",
                        "tensorrt-cu13-bindings", "tensorrt-cu12-bindings")


def has_polygraphy() -> bool:
    return importlib.util.find_spec("polygraphy") is not None


@functools.lru_cache(maxsize=None)
def tf_built_with_tensorrt() -> bool:
    """TensorFlow's own build record (python/platform/build_info.py), read as text."""
    spec = importlib.util.find_spec("tensorflow")
    if spec is None or not spec.submodule_search_locations:
        return False
    for root in spec.submodule_search_locations:
        info = Path(root) / "python" / "platform" / "build_info.py"
        if info.is_file():
            return bool(re.search(r"is_tensorrt_build['\"]?\s*[,:=]\s*True", info.read_text(errors="replace")))
    return False


@functools.lru_cache(maxsize=None)
def _nvidia_smi(query: str) -> tuple:
    try:
        proc = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return ()
    if proc.returncode != 0:
        return ()
    return tuple(tuple(f.strip() for f in line.split(",")) for line in proc.stdout.splitlines() if line.strip())


def gpu() -> Optional[dict]:
    """{name, compute_capability ("8.9", or None where the driver cannot say)} of the
    first NVIDIA GPU, or None; one nvidia-smi call per process."""
    rows = _nvidia_smi("name,compute_cap")
    if rows and len(rows[0]) == 2:
        return {"name": rows[0][0], "compute_capability": rows[0][1]}
    rows = _nvidia_smi("name")   # drivers older than 510 have no compute_cap field
    return {"name": rows[0][0], "compute_capability": None} if rows else None


# ----------------------------------------------------------------------------- choice

def tf_trt_problem() -> Optional[str]:
    """Why TF-TRT cannot build here (None: it may; its pre-flight then loads TensorFlow to be sure)."""
    version = tensorflow_version()
    if version is None:
        return "TensorFlow is not installed"
    if version_tuple(version) > LAST_TF_WITH_TRT:
        return f"TensorFlow {version} has no TF-TRT (TensorFlow 2.18 removed it)"
    if not tf_built_with_tensorrt():
        return f"this TensorFlow {version} build has no TensorRT support"
    if gpu() is None:
        return NO_GPU
    return None


def tensorrt_problem() -> Optional[str]:
    """Why the tensorrt backend cannot build here (None: it can, as far as cheap probes tell)."""
    version = tensorrt_version()
    if version is None:
        return "the tensorrt wheel is not installed"
    if version_tuple(version)[0] < 10:
        return f"TensorRT {version} is too old (tfbuild builds engines with TensorRT 10 or 11)"
    if not has_polygraphy():
        return "Polygraphy is not installed"
    if gpu() is None:
        return NO_GPU
    return None


def resolve(backend: str) -> str:
    """'tf-trt' or 'tensorrt'. `auto`: TF-TRT where TensorFlow has it, else tensorrt."""
    if backend != "auto":
        return backend
    return "tf-trt" if tf_trt_problem() is None else "tensorrt"


def needs_onnx(cfg) -> bool:
    """Does this target's trt stage build its engine from an ONNX model?"""
    return cfg.trt is not None and resolve(cfg.trt.backend) == "tensorrt"


def onnx_batch(max_batch_size: Optional[int]) -> Optional[int]:
    """The ONNX batch an engine for up to `max_batch_size` needs: fixed at 1 where the
    profile is (1..1), else dynamic (profile min 1, opt and max = max_batch_size)."""
    return 1 if max_batch_size == 1 else None


def strongly_typed(version: Optional[str]) -> bool:
    """TensorRT 11+: precision comes from the network's types, not from builder flags."""
    return version is not None and version_tuple(version)[0] >= FIRST_STRONGLY_TYPED


# ----------------------------------------------------------------------------- pre-flight

def require_tensorrt() -> None:
    """Raise BackendUnavailable, naming both ways and the CPU stages, unless the
    tensorrt backend can build here."""
    problem = tensorrt_problem()
    if problem is None:
        return
    other = tf_trt_problem()
    tf_trt = "works here: set trt.backend=tf-trt" if other is None else f"{other}; it needs {TF_TRT_NEEDS}"
    raise BackendUnavailable(f"TensorRT engines cannot be built here. tensorrt backend: {problem}; "
                             f"{INSTALL}. tf-trt backend: {tf_trt}. {CPU}.")


# Compute capabilities with TensorRT kernels for each reduced precision (TensorRT's
# hardware support matrix: FP16 on 5.3, 6.0, 6.2 and 7.0+; INT8 on 6.1 and 7.0+).
_FAST = {"FP16": lambda cc: cc >= (7, 0) or cc in ((5, 3), (6, 0), (6, 2)),
         "INT8": lambda cc: cc >= (7, 0) or cc == (6, 1)}


def require_precision(precision: str) -> None:
    """FP16/INT8 only where the GPU has TensorRT kernels for it (unknown: let TensorRT say)."""
    found = gpu()
    cc = found and found["compute_capability"]
    if not cc or precision not in _FAST or _FAST[precision](version_tuple(cc)):
        return
    usable = ", ".join(["FP32"] + [p for p, ok in _FAST.items() if ok(version_tuple(cc))])
    raise BackendUnavailable(f"trt.precision={precision}: the {found['name']} (compute capability {cc}) "
                             f"has no TensorRT {precision} kernels; use {usable}, or a GPU with "
                             f"compute capability 7.0 or newer")


def environment() -> dict:
    """What makes an engine valid on a machine: TensorRT, Polygraphy (it configures the
    builder) and the exact GPU, so an engine is never reused on another one."""
    found = gpu() or {}
    return {"tensorrt": tensorrt_version(), "polygraphy": dist_version("polygraphy"),
            "gpu": found.get("name"), "compute_capability": found.get("compute_capability")}


def timing_cache(build_dir: str) -> str:
    """Where the tactic timing cache for this TensorRT and GPU lives: build_dir state that
    makes later builds faster, never part of an engine's identity."""
    env = environment()
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", f"{env['tensorrt']}-{env['gpu']}-sm{env['compute_capability']}")
    return str(Path(build_dir) / ".tfbuild" / f"trt-timing-{slug.strip('-')}.cache")
