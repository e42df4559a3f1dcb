"""`tfbuild doctor [target=NAME] [report_file=F]`: what this machine can build, one row per
piece (Python, TensorFlow, Keras, each backend, the GPU, the optional libraries): ready with
its version, or not ready with why and the command that fixes it.

Cheap by design: versions come from package metadata, presence from `find_spec`, the GPU
from `tfbuild.backends` (nvidia-smi, honouring CUDA_VISIBLE_DEVICES). TensorFlow is never
imported (it takes seconds); onnxruntime is, for its execution providers. With a target,
the stages' own pre-flights are not run (they may load TensorFlow or TensorRT): the same
cheap probes answer for each stage.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import List, Optional

from ... import backends
from ...errors import ConfigError
from ..report import Reporter


@dataclass
class Row:
    name: str
    ready: bool
    version: Optional[str] = None
    detail: str = ""
    fix: str = ""


def _extra(name: str) -> str:
    return f"pip install 'tfbuild[{name}]'"


def _found(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):   # a parent package missing, or a broken one
        return False


def _package(name: str, dist: str, module: str, extra: str, purpose: str) -> Row:
    version = backends.dist_version(dist)
    if version is not None and _found(module):
        return Row(name, True, version, purpose)
    return Row(name, False, None, f"not installed ({purpose})", _extra(extra))


# ----------------------------------------------------------------------------- the machine

def _python() -> Row:
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info >= (3, 10):
        return Row("Python", True, version, "")
    return Row("Python", False, version, "tfbuild needs Python 3.10 or newer", "use Python >= 3.10")


def _tensorflow() -> Row:
    version = backends.tensorflow_version()
    if version is None or not _found("tensorflow"):
        return Row("TensorFlow", False, None, "not installed: every stage needs it",
                   "pip install 'tensorflow>=2.13'")
    return Row("TensorFlow", True, version,
               "built with TensorRT" if backends.tf_built_with_tensorrt() else "built without TensorRT")


def _keras() -> List[Row]:
    rows = []
    keras = backends.dist_version("keras")
    if keras and backends.version_tuple(keras)[0] >= 3 and _found("keras"):
        rows.append(Row("Keras 3", True, keras, ".keras files of Keras 3"))
    else:
        why = f"Keras {keras} is not Keras 3" if keras else "not installed"
        rows.append(Row("Keras 3", False, keras, f"{why} (TensorFlow >= 2.16 brings it)",
                        "pip install 'keras>=3'"))
    tf_keras = backends.dist_version("tf-keras", "tf_keras")
    if tf_keras and _found("tf_keras"):
        rows.append(Row("tf_keras (Keras 2)", True, tf_keras, "models saved by Keras 2"))
    else:
        rows.append(Row("tf_keras (Keras 2)", False, None,
                        "not installed (models saved by Keras 2)", _extra("keras2")))
    return rows


def _tensorrt_extra() -> str:
    """tensorrt's CUDA 13 build, or its CUDA 12 build where the driver is too old for 13."""
    driver = backends.driver_version()
    if driver and backends.DRIVER_FOR_CUDA[12] <= backends.version_tuple(driver)[0] < backends.DRIVER_FOR_CUDA[13]:
        return _extra("tensorrt-cu12")
    return _extra("tensorrt")


def _gpu() -> List[Row]:
    found = backends.gpu()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    shown = f"CUDA_VISIBLE_DEVICES={visible!r}" if visible is not None else "CUDA_VISIBLE_DEVICES unset"
    if found:
        cc = found["compute_capability"] or "unknown"
        gpu = Row("GPU (as CUDA sees it)", True, None,
                  f"{found['name']}, compute capability {cc}; {shown}")
    else:
        fix = "unset CUDA_VISIBLE_DEVICES" if "CUDA_VISIBLE_DEVICES" in backends.no_gpu() else \
            "none on CPU: build onnx or tflite (target=tiny_onnx)"
        gpu = Row("GPU (as CUDA sees it)", False, None,
                  backends.no_gpu() + (f"; {shown}" if visible is not None else ""), fix)
    driver = backends.driver_version()
    if driver is None:
        return [gpu, Row("NVIDIA driver", False, None, "nvidia-smi does not answer",
                         "an NVIDIA driver: r580+ (CUDA 13) or r535+ (CUDA 12)")]
    cuda = backends.tensorrt_cuda()
    need = backends.DRIVER_FOR_CUDA.get(cuda)
    if need and backends.version_tuple(driver)[0] < need:
        fix = backends.TO_CU12 if cuda == 13 and backends.version_tuple(driver)[0] >= 535 else \
            f"update the NVIDIA driver to r{need}+"
        return [gpu, Row("NVIDIA driver", False, driver, backends.driver_advice(), fix)]
    detail = backends.driver_advice() if cuda else f"r580+ for CUDA 13, r535+ for CUDA 12; {shown}"
    return [gpu, Row("NVIDIA driver", True, driver, detail)]


def _tf_trt() -> Row:
    problem = backends.tf_trt_problem()
    if problem is None:
        return Row("TF-TRT", True, backends.tensorflow_version(), "trt.backend=auto picks it")
    return Row("TF-TRT", False, None, problem, f"trt.backend=tensorrt: {_tensorrt_extra()}")


def _tensorrt() -> List[Row]:
    version = backends.tensorrt_version()
    if version is None:
        wheel = Row("tensorrt wheel", False, None, "not installed (trt.backend=tensorrt)",
                    _tensorrt_extra())
    elif backends.version_tuple(version)[0] < 10:
        wheel = Row("tensorrt wheel", False, version, "too old: engines need TensorRT 10 or 11",
                    _tensorrt_extra())
    else:
        cuda = backends.tensorrt_cuda()
        wheel = Row("tensorrt wheel", True, version, f"CUDA {cuda} build" if cuda else "TensorRT engines")
    poly = _package("Polygraphy", "polygraphy", "polygraphy", "tensorrt", "builds TensorRT engines")
    if not poly.ready:
        poly.fix = _tensorrt_extra()
    return [wheel, poly]


def _onnxruntime() -> Row:
    row = _package("onnxruntime", "onnxruntime", "onnxruntime", "onnx", "runs ONNX models")
    if not row.ready:
        row.version = backends.dist_version("onnxruntime-gpu")
        if row.version is None:
            return row
        row.ready, row.fix = _found("onnxruntime"), ""
    try:
        import onnxruntime   # a fraction of a second, no TensorFlow
        providers = [p.removesuffix("ExecutionProvider") for p in onnxruntime.get_available_providers()]
        row.detail = "providers: " + ", ".join(providers)
    except Exception as e:  # noqa: BLE001  a broken install: say so, never a traceback
        row.ready, row.detail = False, f"cannot be loaded: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
        row.fix = "pip install --force-reinstall 'onnxruntime>=1.20'"
    return row


def _tflite() -> List[Row]:
    litert = backends.dist_version("ai-edge-litert")
    tf = backends.tensorflow_version()
    if litert and _found("ai_edge_litert"):
        runtime = Row("LiteRT (ai-edge-litert)", True, litert, "runs .tflite models")
    elif tf:
        runtime = Row("LiteRT (ai-edge-litert)", False, None,
                      f"not installed: tf.lite {tf} runs .tflite models",
                      _extra("litert"))
    else:
        runtime = Row("LiteRT (ai-edge-litert)", False, None, "neither LiteRT nor tf.lite is installed",
                      _extra("litert"))
    ready = bool((litert and runtime.ready) or tf)
    by = f"LiteRT {litert}" if runtime.ready else f"tf.lite {tf}" if tf else ""
    xnnpack = Row("XNNPACK", ready, None,
                  f"built into LiteRT/tf.lite ({by})" if ready else "built into LiteRT/tf.lite: neither is installed",
                  "" if ready else _extra("litert"))
    return [runtime, xnnpack]


def machine() -> List[Row]:
    """One row per piece, in the order of the table."""
    rows = [_python(), _tensorflow(), *_keras(), _tf_trt(), *_tensorrt(), _onnxruntime(),
            _package("tf2onnx", "tf2onnx", "tf2onnx", "onnx", "the onnx stage"),
            _package("sympy", "sympy", "sympy", "onnx", "INT8 ONNX models"),
            *_tflite(), *_gpu(),
            _package("s3fs", "s3fs", "s3fs", "remote", "cache.url=s3://..."),
            _package("gcsfs", "gcsfs", "gcsfs", "remote", "cache.url=gs://..."),
            _package("hydra-joblib-launcher", "hydra-joblib-launcher", "hydra_plugins.hydra_joblib_launcher",
                     "parallel", "hydra/launcher=joblib"),
            _package("hydra-submitit-launcher", "hydra-submitit-launcher",
                     "hydra_plugins.hydra_submitit_launcher", "slurm", "hydra/launcher=submitit_slurm"),
            _package("hydra-ray-launcher", "hydra-ray-launcher", "hydra_plugins.hydra_ray_launcher",
                     "ray", "hydra/launcher=ray"),
            _package("hydra-optuna-sweeper", "hydra-optuna-sweeper", "hydra_plugins.hydra_optuna_sweeper",
                     "optuna", "hydra/sweeper=optuna"),
            _package("model-signing", "model-signing", "model_signing", "sign", "sign.key, sign.public_key"),
            _package("pyopenssl", "pyopenssl", "OpenSSL", "sign", "model-signing imports it"),
            _package("matplotlib", "matplotlib", "matplotlib", "plot", "a sweep's summary.png"),
            _package("Pillow", "pillow", "PIL", "eval", "evaluate.data as an image folder")]
    return rows


# ----------------------------------------------------------------------------- a target

def _compose(name: str, overrides: List[str]):
    """The target's validated config."""
    from ...config import validate
    from ..targets import compose
    return validate(compose(name, overrides))


def _stage(stage: str, settings, tf: Optional[str]) -> tuple:
    """(problem or None, fix) for one stage, by the cheap probes its pre-flight starts with."""
    if tf is None:
        return "TensorFlow is not installed", "pip install 'tensorflow>=2.13'"
    if stage == "onnx":
        missing = [m for m in ("tf2onnx", "onnxruntime") if not _found(m)]
        if settings.onnx.precision == "INT8" and not _found("sympy"):
            missing.append("sympy")
        if missing:
            return f"{', '.join(missing)} missing", _extra("onnx")
    if stage == "trt":
        backend = backends.resolve(settings.trt.backend)
        if backend == "tensorrt":
            problem = backends.tensorrt_problem()
            fix = _tensorrt_extra() if problem and "NVIDIA GPU" not in problem else backends.CPU
        else:
            problem, fix = backends.tf_trt_problem(), f"install {backends.TF_TRT_NEEDS}"
        return (f"{backend} backend: {problem}" if problem else None), fix
    return None, ""


def target_rows(name: str, overrides: List[str]) -> List[Row]:
    from ...engine.graph import make_graph
    from ...stages import REGISTRY

    cfg = _compose(name, overrides)
    nodes = make_graph(cfg, REGISTRY)
    rows = []
    if cfg.trt is not None:
        chosen = backends.resolve(cfg.trt.backend)
        why = backends.tf_trt_problem()
        detail = (f"trt.backend={cfg.trt.backend} picks {chosen}" +
                  (f" (TF-TRT: {why})" if cfg.trt.backend == "auto" and why else ""))
        rows.append(Row(f"{name}: trt.backend", True, chosen, detail))
    tf = backends.tensorflow_version()
    for node in nodes:
        problem, fix = _stage(node.name, node.settings, tf)
        rows.append(Row(f"{name}: {node.name}", problem is None, None,
                        "can be built here" if problem is None else f"cannot be built here: {problem}",
                        "" if problem is None else fix))
    return rows


# ----------------------------------------------------------------------------- the command

def run(args: List[str], reporter: Reporter) -> int:
    from rich.markup import escape
    from rich.table import Table

    name, report_file, overrides = None, None, []
    for arg in args:
        key, eq, value = arg.partition("=")
        if not eq:
            raise ConfigError(f"doctor takes target=NAME, report_file=F and the target's KEY=VALUE; got {arg!r}")
        if key == "target":
            name = value
        elif key == "report_file":
            report_file = value
        else:
            overrides.append(arg)
    if overrides and name is None:
        raise ConfigError(f"{overrides[0]!r} needs a target: tfbuild doctor target=NAME {overrides[0]}")
    rows = machine()
    if name is not None:
        rows += target_rows(name, overrides)

    table = Table(title="tfbuild doctor: what this machine can build", title_justify="left")
    table.add_column("piece", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("version")
    table.add_column("detail / fix", overflow="fold", ratio=1)
    for row in rows:
        status = "[green]ready[/]" if row.ready else "[yellow]not ready[/]"
        text = escape(row.detail) + (f"\n[bold]fix:[/] {escape(row.fix)}" if row.fix else "")
        table.add_row(escape(row.name), status, escape(row.version or ""), text,
                      end_section=name is not None and row.name == "Pillow")
    reporter.console.print(table)
    if report_file:
        try:
            from ...engine.store import write_json
            write_json(Path(report_file), [asdict(r) for r in rows])
        except OSError as e:
            raise ConfigError(f"report_file={report_file}: cannot write it ({e.strerror or e})") from None
    return 0
