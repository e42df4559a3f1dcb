"""The deployment backends: the one list of precisions and the rule every deployment
stage applies to them, and which TensorRT backend builds the trt stage on this
machine, found cheaply.

- `tf-trt`: TF-TRT, a TensorRT-optimised GraphDef; only TensorFlow <=2.17 built
  with TensorRT has it, on an NVIDIA GPU.
- `tensorrt`: a serialized engine built from the onnx stage's model with the
  `tensorrt` wheel (10.x or 11.x) and Polygraphy, on an NVIDIA GPU.
- `auto`: TF-TRT where TensorFlow has it, else `tensorrt`. Where the machine has
  neither, `tensorrt` is still planned (the supported route) and its pre-flight
  says what is missing, before any stage runs.

A leaf module (no TensorFlow, nothing of the engine): the probes read package
metadata, TensorFlow's build_info.py as text and `nvidia-smi`; nothing here
imports TensorFlow or tensorrt. The stages and the converters in tfbuild.tf share
it (the onnx stage too: a tensorrt engine needs an ONNX model), so it stays small.
"""
from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import os
import re
import subprocess
from pathlib import Path
from typing import Optional

from .errors import BackendUnavailable, CalibrationError, ConfigError

PRECISIONS = ("FP32", "FP16", "INT8")   # written in any case, kept upper case


def check_precision(section: str, precision, path: Optional[str], random: bool, num_samples: int) -> str:
    """The precision in upper case, and INT8 has its calibration data."""
    if not isinstance(precision, str) or precision.upper() not in PRECISIONS:
        raise ConfigError(f"{section}.precision={precision!r} is unknown: use one of {', '.join(PRECISIONS)}")
    if path and random:
        raise ConfigError(f"set only one of {section}.calibration.path and {section}.calibration.random")
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise CalibrationError(f"{section}.calibration.num_samples must be an integer >= 1, got {num_samples!r}")
    precision = precision.upper()
    if precision == "INT8" and not (path or random):
        raise CalibrationError(f"{section}.precision=INT8 needs calibration data: set "
                               f"{section}.calibration.path to a .npy/.npz or an image folder "
                               f"(or {section}.calibration.random=true for a demo)")
    return precision


LAST_TF_WITH_TRT = (2, 17)
FIRST_STRONGLY_TYPED = 11    # TensorRT 11 dropped the FP16/INT8 builder flags
INSTALL = ("pip install 'tfbuild[tensorrt]' (TensorRT 10 or 11 for CUDA 13, NVIDIA driver r580+; "
           "'tfbuild[tensorrt-cu12]' for CUDA 12, driver r535+) on a machine with an NVIDIA GPU")
# The NVIDIA driver each CUDA build of the tensorrt wheels needs (TensorRT's prerequisites, Linux).
DRIVER_FOR_CUDA = {13: 580, 12: 535}
# Both builds install the same modules (tensorrt, tensorrt_bindings, tensorrt_libs): remove one first.
TO_CU12 = ("pip uninstall -y tensorrt tensorrt-cu13 tensorrt-cu13-bindings tensorrt-cu13-libs && "
           "pip install 'tfbuild[tensorrt-cu12]'")
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


def tensorrt_cuda() -> Optional[int]:
    """The CUDA major version the installed tensorrt wheels are built for (their dist names
    say: tensorrt-cu13-bindings, tensorrt-cu12, ...), or None."""
    for suffix in ("-bindings", "", "-libs"):   # the bindings are the compiled part
        found = [m for m in DRIVER_FOR_CUDA if dist_version(f"tensorrt-cu{m}{suffix}")]
        if len(found) == 1:
            return found[0]
    return None


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
def _smi(*args: str) -> str:
    try:
        proc = subprocess.run(["nvidia-smi", *args], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return proc.stdout if proc.returncode == 0 else ""


def _nvidia_smi(query: str) -> tuple:
    out = _smi(f"--query-gpu={query}", "--format=csv,noheader")
    return tuple(tuple(f.strip() for f in line.split(",")) for line in out.splitlines() if line.strip())


def _capability(text: str) -> Optional[str]:
    """"8.9", or None where the driver cannot say ("[N/A]" on some vGPUs)."""
    return text if re.fullmatch(r"\d+\.\d+", text) else None


def _gpus() -> list:
    """[(uuid, name, compute capability)] in nvidia-smi's order, which is PCI bus order."""
    rows = _nvidia_smi("index,uuid,name,compute_cap")
    if rows and len(rows[0]) >= 4:
        return [(r[1], ",".join(r[2:-1]), _capability(r[-1])) for r in rows]
    # drivers older than 510 have no compute_cap field
    return [(r[1], ",".join(r[2:]), None) for r in _nvidia_smi("index,uuid,name") if len(r) >= 3]


def _cuda_order(gpus: list) -> list:
    """The GPUs in CUDA's order. CUDA numbers them fastest first unless CUDA_DEVICE_ORDER=PCI_BUS_ID;
    where there are several, tfbuild sets PCI_BUS_ID (unless set otherwise) before TensorRT or
    TensorFlow starts CUDA in this process, so CUDA numbers them as nvidia-smi does."""
    if len(gpus) > 1:
        os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    if os.environ.get("CUDA_DEVICE_ORDER") == "PCI_BUS_ID":
        return gpus
    # FASTEST_FIRST, set by the user: CUDA's heuristic is undocumented; guess the highest
    # compute capability, ties in PCI order (sorted is stable).
    return sorted(gpus, key=lambda g: version_tuple(g[2] or "0.0"), reverse=True)


def _mig_parent(mig: str) -> Optional[str]:
    """The UUID of the GPU a MIG instance (CUDA_VISIBLE_DEVICES=MIG-...) belongs to."""
    if mig.startswith("MIG-GPU-"):            # the pre-470 form MIG-GPU-<uuid>/<gi>/<ci>
        return mig[4:].split("/")[0]
    parent = None
    for line in _smi("-L").splitlines():     # GPU 0: ... (UUID: GPU-...), then its MIG devices
        found = re.search(r"\(UUID: ((?:GPU|MIG)-[^)]+)\)", line)
        if found and found.group(1).startswith("GPU-"):
            parent = found.group(1)
        elif found and found.group(1).startswith(mig):
            return parent
    return None


def _visible(gpus: list) -> list:
    """The GPUs CUDA_VISIBLE_DEVICES leaves, in its order. Like CUDA: entries are indices (in
    CUDA's order) or UUID prefixes (GPU-..., MIG-...), and the first that matches no GPU ends
    the list ("" and -1 hide every GPU)."""
    spec = os.environ.get("CUDA_VISIBLE_DEVICES")
    if spec is None:
        return gpus
    visible = []
    for entry in (e.strip() for e in spec.split(",")):
        if entry.isdigit():
            match = gpus[int(entry)] if int(entry) < len(gpus) else None
        else:
            uuid = _mig_parent(entry) if entry.startswith("MIG-") else entry if entry.startswith("GPU-") else None
            match = next((g for g in gpus if uuid and g[0].startswith(uuid)), None)
        if match is None:
            break
        visible.append(match)
    return visible


def gpu() -> Optional[dict]:
    """{name, compute_capability ("8.9", or None where the driver cannot say)} of the GPU
    CUDA (so TensorRT) uses, device 0: the first CUDA_VISIBLE_DEVICES leaves, in CUDA's
    order; None where there is none. nvidia-smi runs once per process."""
    visible = _visible(_cuda_order(_gpus()))
    return {"name": visible[0][1], "compute_capability": visible[0][2]} if visible else None


def no_gpu() -> str:
    """NO_GPU, naming CUDA_VISIBLE_DEVICES where it hides the GPUs nvidia-smi lists."""
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
    if hidden is not None and _gpus():
        return f"no NVIDIA GPU is visible (CUDA_VISIBLE_DEVICES={hidden!r} names none of those nvidia-smi lists)"
    return NO_GPU


def driver_version() -> Optional[str]:
    rows = _nvidia_smi("driver_version")
    return rows[0][0] if rows and rows[0] and rows[0][0] else None


def driver_advice() -> str:
    """Which NVIDIA driver the installed tensorrt build needs, against this machine's."""
    cuda, driver = tensorrt_cuda(), driver_version()
    need = DRIVER_FOR_CUDA.get(cuda)
    if need is None:
        return ("check the NVIDIA driver" + (f" ({driver})" if driver else "") +
                ": tensorrt's CUDA 13 build needs r580 or newer, its CUDA 12 build r535 or newer")
    if driver and version_tuple(driver)[0] >= need:
        return (f"the NVIDIA driver {driver} is new enough for tensorrt's CUDA {cuda} build (r{need}+): "
                "check that the GPU is visible (CUDA_VISIBLE_DEVICES) and works (nvidia-smi)")
    have = f", this machine has {driver}" if driver else ""
    switch = f"; on an older driver (r535+) use the CUDA 12 build: {TO_CU12}" if cuda == 13 else ""
    return f"tensorrt's CUDA {cuda} build needs NVIDIA driver r{need} or newer{have}{switch}"


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
        return no_gpu()
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
        return no_gpu()
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


def min_compute_capability(version: str) -> tuple:
    """The oldest GPUs a TensorRT 10/11 release runs on (support matrices): 10.0-10.4 are built
    for compute capability 7.0 (Volta) and newer; 10.5 dropped Volta, so 7.5 (Turing) and newer.
    Every one of those GPUs has FP16 and INT8 kernels."""
    return (7, 0) if version_tuple(version) < (10, 5) else (7, 5)


def require_gpu(version: str) -> None:
    """The tensorrt backend: refuse a GPU this TensorRT has no kernels for (unknown: let TensorRT say)."""
    found = gpu()
    cc = found and found["compute_capability"]
    need = min_compute_capability(version)
    if not cc or version_tuple(cc) >= need:
        return
    hint = ("TensorRT 10.0-10.4 still runs on it: pip install 'tensorrt-cu12>=10,<10.5'"
            if version_tuple(cc) >= (7, 0) else "trt.backend=tf-trt (TensorRT 8.6) may run on it")
    raise BackendUnavailable(f"the {found['name']} (compute capability {cc}) cannot run TensorRT {version}, "
                             f"which needs compute capability {need[0]}.{need[1]} or newer "
                             f"({'Volta' if need == (7, 0) else 'Turing'} or a later GPU); {hint}. {CPU}.")


# TF-TRT's TensorRT 8.6: compute capabilities with kernels for each reduced precision (its
# hardware support matrix: FP16 on 5.3, 6.0, 6.2 and 7.0+; INT8 on 6.1 and 7.0+).
_FAST = {"FP16": lambda cc: cc >= (7, 0) or cc in ((5, 3), (6, 0), (6, 2)),
         "INT8": lambda cc: cc >= (7, 0) or cc == (6, 1)}


def require_precision(precision: str) -> None:
    """TF-TRT: FP16/INT8 only where the GPU has TensorRT 8.6 kernels for it (unknown: let TensorRT say)."""
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
