"""API conformance of tfbuild's TensorRT route against NVIDIA's real Python bindings, without a GPU.

How: for each TensorRT major this installs, with pip, NVIDIA's real binding wheel
(`tensorrt_cu12_bindings` 10.x, `tensorrt_cu13_bindings` 11.x), NVIDIA's `tensorrt`
frontend (`tensorrt-cu12` / `tensorrt-cu13`, whose `tensorrt/__init__.py` is
`from tensorrt_bindings import *`) and Polygraphy, into a cache directory; compiles
tests/tf/tensorrt_stubs/stub.c with `cc` into stand-ins for libnvinfer, libnvinfer_plugin
and libnvonnxparser (the nine C entry points the bindings import; every factory
returns NULL, as createInferBuilder does when CUDA cannot start); and runs
tests/tf/tensorrt_stubs/check_api.py in a subprocess per major (10 and 11 cannot share a
process) with the real `tensorrt` imported. The TensorRT and Polygraphy uses it checks
are collected from tfbuild's source with `ast` (every `trt.X.Y` chain, every import
from polygraphy, every call on those names, methods on instances of Polygraphy
classes), so a new call is checked without editing this file; the methods tfbuild
calls on objects TensorRT returns (engine, inspector, serialized bytes) and the calls
Polygraphy makes on tfbuild's build path are listed below by hand.

What it proves, on the pinned TensorRT 10 and 11 bindings and Polygraphy:
- every TensorRT and Polygraphy name tfbuild uses exists (classes, functions,
  properties, enum members), in NVIDIA's own compiled bindings, not a fake;
- every such call accepts the number of positional arguments and the keyword names
  tfbuild passes (from pybind11's signature docstrings; inspect.signature for Polygraphy);
- the cheap probes (backends) recognise the real distributions and versions;
- pre-flight, where TensorRT cannot start CUDA, raises one tfbuild error in one line
  (and, once defect 4 of issue 17 is fixed, says that CUDA cannot start, passing on
  the reason TensorRT logs).

What it cannot prove: that an engine builds, runs, or gives the right numbers; that
TensorRT's ONNX parser accepts tfbuild's models; which argument *types and values*
TensorRT accepts at run time (no TensorRT object can be made without CUDA, so methods
are checked by name and arity, never called); or what the real libnvinfer logs when
CUDA fails (the stand-in logs the texts NVIDIA's users have reported, at WARNING and
at INTERNAL_ERROR, or nothing). Nothing behind the C ABI runs here: only a GPU can
tell the rest (tests/test_backends.py -k real_engine).

Skipped, with the reason, where pip cannot install the wheels (no registry, no wheel
for this Python) or there is no C compiler; TFBUILD_TRT_API_REQUIRED=1 makes those
failures instead (for CI). Downloads are cached in ~/.cache/tfbuild-tests (or
$TFBUILD_TEST_CACHE), keyed by the versions below.
"""
from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "tfbuild"
STUBS = Path(__file__).resolve().parent / "tensorrt_stubs"

# The newest release of each major that installs from PyPI (the `tensorrt` metapackage
# and tensorrt_cu1x_libs need NVIDIA's own index; the bindings and frontend do not).
TENSORRT = {
    10: {"frontend": "tensorrt-cu12", "bindings": "tensorrt_cu12_bindings", "version": "10.16.1.11", "log_slot": 0},
    11: {"frontend": "tensorrt-cu13", "bindings": "tensorrt_cu13_bindings", "version": "11.4.0.106", "log_slot": 4},
}
POLYGRAPHY = "0.53.6"
STUB_LIBS = ("nvinfer", "nvinfer_plugin", "nvonnxparser")

# ----------------------------------------------------------------------------- uses, from tfbuild's source

ROOTS = ("tensorrt", "polygraphy")


def _chain(node):
    """Name.a.b -> ("Name", ["a", "b"]), else None."""
    attrs = []
    while isinstance(node, ast.Attribute):
        attrs.append(node.attr)
        node = node.value
    return (node.id, attrs[::-1]) if isinstance(node, ast.Name) else None


def _star_keys(func, name):
    """Keys of the dict literals assigned to `name` in func (for `**name` arguments)."""
    keys = set()
    for node in ast.walk(func):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            for d in ast.walk(node.value):
                if isinstance(d, ast.Dict):
                    keys |= {k.value for k in d.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
    return keys


def collect_uses(package: Path = PACKAGE) -> list:
    """Every TensorRT/Polygraphy name, attribute chain and call in tfbuild: [{kind, root, chain, ...}]."""
    uses = []
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        rel = path.relative_to(package.parent).as_posix()
        aliases, others = {}, set()     # local name -> (module, attribute prefix)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] in ROOTS:
                        local = a.asname or a.name.split(".")[0]
                        aliases[local] = (a.name if a.asname else local, [])
                        uses.append({"kind": "import", "module": a.name, "name": None,
                                     "where": f"{rel}:{node.lineno}", "what": f"import {a.name}"})
                    else:
                        others.add(a.asname or a.name.split(".")[0])
            elif isinstance(node, ast.ImportFrom):
                for a in node.names:
                    if node.level == 0 and node.module and node.module.split(".")[0] in ROOTS:
                        aliases[a.asname or a.name] = (node.module, [a.name])
                        uses.append({"kind": "import", "module": node.module, "name": a.name,
                                     "where": f"{rel}:{node.lineno}", "what": f"from {node.module} import {a.name}"})
                    else:
                        others.add(a.asname or a.name)
        if not aliases:
            continue
        clash = sorted(set(aliases) & others)
        if clash:
            raise ValueError(f"{rel} binds {clash} both to TensorRT/Polygraphy and to something else: rename one")

        def resolve(node, bound=None):
            c = _chain(node)
            if c is None:
                return None
            if bound and c[0] in bound:
                return bound[c[0]], c[1]
            if c[0] in aliases:
                module, prefix = aliases[c[0]]
                return module, prefix + c[1]
            return None

        # functions that return an instance of a TensorRT/Polygraphy class (`_runner` -> TrtRunner)
        returns = {}
        for fn in tree.body:
            if isinstance(fn, ast.FunctionDef):
                found = {ast.dump(r.value.func) for r in ast.walk(fn) if isinstance(r, ast.Return)
                         and isinstance(r.value, ast.Call) and resolve(r.value.func)}
                rets = [r for r in ast.walk(fn) if isinstance(r, ast.Return)]
                if rets and len(found) == 1 and all(isinstance(r.value, ast.Call) for r in rets):
                    returns[fn.name] = resolve(rets[0].value.func)

        def instance_of(call):
            if not isinstance(call, ast.Call):
                return None
            if isinstance(call.func, ast.Name) and call.func.id in returns:
                return returns[call.func.id]
            return resolve(call.func)

        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        scope_of = {}
        for fn in functions:              # innermost function wins: visit outer ones first
            for n in ast.walk(fn):
                scope_of[n] = fn

        # instances: x = Profile(); with _runner(...) as runner
        instances = {}
        for fn in functions:
            bound = {}
            for n in ast.walk(fn):
                if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name):
                    kind = instance_of(n.value)
                    if kind:
                        bound[n.targets[0].id] = kind
                elif isinstance(n, ast.withitem) and isinstance(n.optional_vars, ast.Name):
                    kind = instance_of(n.context_expr)
                    if kind:
                        bound[n.optional_vars.id] = kind
            instances[fn] = bound

        for node in ast.walk(tree):
            where = f"{rel}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Attribute) and not isinstance(parents.get(node), ast.Attribute):
                target = resolve(node)
                if target and target[1]:
                    uses.append({"kind": "attr", "root": target[0], "chain": target[1], "where": where,
                                 "what": ast.unparse(node)})
            if not isinstance(node, ast.Call):
                continue
            npos = sum(not isinstance(a, ast.Starred) for a in node.args)
            keywords = sorted(k.arg for k in node.keywords if k.arg)
            for k in node.keywords:
                if k.arg is None and isinstance(k.value, ast.Name) and node in scope_of:
                    keywords = sorted(set(keywords) | _star_keys(scope_of[node], k.value.id))
            use = {"kind": "call", "npos": npos, "keywords": keywords, "where": where,
                   "what": ast.unparse(node)[:120]}
            target = resolve(node.func)
            if target and target[1]:
                uses.append({**use, "root": target[0], "chain": target[1]})
            elif isinstance(node.func, ast.Call) and resolve(node.func.func):       # loader(...)()
                module, chain = resolve(node.func.func)
                uses.append({**use, "root": module, "chain": chain, "instance_call": True})
            elif isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name):
                kind = instances.get(scope_of.get(node), {}).get(node.func.value.id)
                if kind:                                                             # instance.method(...)
                    uses.append({**use, "root": kind[0], "chain": kind[1], "method": node.func.attr})
    return uses


# ----------------------------------------------------------------------------- uses listed by hand

ENGINE = "tfbuild/tf/trt_engine.py"

# Methods tfbuild calls on objects TensorRT returns (their types are not in the source).
# `needle` must occur in ENGINE: when it no longer does, this table is stale.
OBJECT_API = [
    {"needle": "bytes(engine_bytes)", "where": ENGINE, "what": "bytes(IHostMemory)  (EngineBytesFromNetwork()() result)",
     "cls": ["IHostMemory"], "member": None, "kind": "buffer"},
    {"needle": ".create_engine_inspector()", "where": ENGINE, "what": "ICudaEngine.create_engine_inspector()",
     "cls": ["ICudaEngine"], "member": "create_engine_inspector", "kind": "call", "npos": 0},
    {"needle": ".get_engine_information(trt.LayerInformationFormat.JSON)", "where": ENGINE,
     "what": "EngineInspector.get_engine_information(format)",
     "cls": ["EngineInspector"], "member": "get_engine_information", "kind": "call", "npos": 1},
    {"needle": '"hardware_compatibility_level"', "where": ENGINE, "what": "ICudaEngine.hardware_compatibility_level",
     "cls": ["ICudaEngine"], "member": "hardware_compatibility_level", "kind": "property"},
    {"needle": "level.name", "where": ENGINE, "what": "HardwareCompatibilityLevel.NONE (.name of the default)",
     "cls": ["HardwareCompatibilityLevel"], "member": "NONE", "kind": "member"},
]

# What Polygraphy 0.53 calls on TensorRT on tfbuild's path: NetworkFromOnnxPath -> CreateConfig
# -> EngineBytesFromNetwork -> EngineFromBytes -> TrtRunner.infer (polygraphy/backend/trt/
# loader.py, config.py, runner.py). `majors`: only where tfbuild reaches it.
_P = [
    ("Builder", "create_network", "call", 0, ["flags"]), ("Builder", "create_builder_config", "call", 0),
    ("Builder", "create_optimization_profile", "call", 0), ("Builder", "build_serialized_network", "call", 2),
    ("IOptimizationProfile", "set_shape", "call", 4), ("NetworkDefinitionCreationFlag", "STRONGLY_TYPED", "member"),
    ("", "init_libnvinfer_plugins", "call", 2), ("OnnxParser", "__init__", "call", 2),
    ("OnnxParser", "parse_from_file", "call", 1), ("OnnxParser", "num_errors", "property"),
    ("OnnxParser", "get_error", "call", 1),
    ("IBuilderConfig", "set_memory_pool_limit", "call", 2), ("IBuilderConfig", "profiling_verbosity", "property"),
    ("IBuilderConfig", "create_timing_cache", "call", 1), ("IBuilderConfig", "set_timing_cache", "call", 2),
    ("IBuilderConfig", "get_timing_cache", "call", 0), ("IBuilderConfig", "add_optimization_profile", "call", 1),
    ("IBuilderConfig", "set_flag", "call", 1), ("IBuilderConfig", "clear_flag", "call", 1),
    ("IBuilderConfig", "get_flag", "call", 1), ("BuilderFlag", "TF32", "member"),
    ("ITimingCache", "combine", "call", 2), ("ITimingCache", "serialize", "call", 0),
    ("Runtime", "__init__", "call", 1), ("Runtime", "deserialize_cuda_engine", "call", 1),
    ("ICudaEngine", "create_execution_context", "call", 0), ("ICudaEngine", "num_io_tensors", "property"),
    ("ICudaEngine", "get_tensor_name", "call", 1), ("ICudaEngine", "get_tensor_mode", "call", 1),
    ("ICudaEngine", "get_tensor_dtype", "call", 1), ("ICudaEngine", "get_tensor_shape", "call", 1),
    ("IExecutionContext", "set_input_shape", "call", 2), ("IExecutionContext", "set_tensor_address", "call", 2),
    ("IExecutionContext", "execute_async_v3", "call", 1),
    # TensorRT 10 only: tfbuild passes fp16=/int8= there (weak typing); Polygraphy sets these flags
    ("BuilderFlag", "FP16", "member", None, None, [10]), ("BuilderFlag", "INT8", "member", None, None, [10]),
]
POLYGRAPHY_PATH = [
    {"what": f"{cls + '.' if cls else 'tensorrt.'}{member}" + ("(...)" if kind == "call" else ""),
     "where": "polygraphy (tfbuild's build/run path)", "cls": [cls] if cls else [], "member": member, "kind": kind,
     "npos": rest[0] if rest else 0, "keywords": rest[1] if len(rest) > 1 and rest[1] else [],
     "majors": rest[2] if len(rest) > 2 else [10, 11]}
    for cls, member, kind, *rest in _P
]

# Pre-flight where CUDA cannot start. The stand-in Builder factory returns NULL after
# logging, through the caller's ILogger, what TensorRT has been reported to log:
# 8.6-10.x at WARNING ("[TRT] [W] CUDA initialization failure with error: 35 ..."),
# 8.0 at INTERNAL_ERROR ("Error Code 6: Internal Error (...)"); or nothing.
CUDA_HELP = "Please check your CUDA installation: http://docs.nvidia.com/cuda/cuda-installation-guide-linux/index.html"
SCENARIOS = {
    "silent": (None, None),
    "warning": (2, f"CUDA initialization failure with error: 100. {CUDA_HELP}"),
    "internal-error": (0, "[runtime.cpp::isCudaInstalledCorrectly::41] Error Code 6: Internal Error "
                          f"(CUDA initialization failure with error 35. {CUDA_HELP})"),
}
CUDA_REASON = re.compile(r"no CUDA(-capable)? device|CUDA (cannot|could not|can't|did not|failed to) start|"
                         r"(cannot|could not|can't) start CUDA|CUDA initiali[sz]ation fail", re.I)

# A stand-in nvidia-smi: one H100 with driver r580, for any --query-gpu field list and -L.
FAKE_SMI = """#!{python}
import sys
GPU = {{"index": "0", "uuid": "GPU-5e3f2a10-0000-0000-0000-000000000000", "name": "NVIDIA H100 80GB HBM3",
       "compute_cap": "9.0", "driver_version": "580.65.06", "memory.total": "81559 MiB"}}
args = sys.argv[1:]
if "-L" in args:
    print(f"GPU 0: {{GPU['name']}} (UUID: {{GPU['uuid']}})")
    sys.exit(0)
query = next((a.split("=", 1)[1] for a in args if a.startswith("--query-gpu=")), None)
if query is None or any(f not in GPU for f in query.split(",")):
    sys.exit(2)
print(", ".join(GPU[f] for f in query.split(",")))
"""

# ----------------------------------------------------------------------------- environment


def _unavailable(reason: str):
    if os.environ.get("TFBUILD_TRT_API_REQUIRED") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def _cache_root() -> Path:
    return Path(os.environ.get("TFBUILD_TEST_CACHE") or Path.home() / ".cache" / "tfbuild-tests")


def install(major: int) -> Path:
    """The pinned wheels for `major`, pip-installed (--no-deps --target) once per version."""
    pins = TENSORRT[major]
    py = f"py{sys.version_info[0]}{sys.version_info[1]}"
    target = _cache_root() / "tensorrt-api" / f"{py}-{pins['bindings']}-{pins['version']}-polygraphy-{POLYGRAPHY}"
    if (target / "tensorrt_bindings").is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(staging), "--quiet",
           "--disable-pip-version-check", "--no-input", "--retries", "1", "--timeout", "20",
           f"{pins['frontend']}=={pins['version']}", f"{pins['bindings']}=={pins['version']}",
           f"polygraphy=={POLYGRAPHY}"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        shutil.rmtree(staging, ignore_errors=True)
        _unavailable(f"pip could not install TensorRT {pins['version']}'s bindings: {e}")
    if proc.returncode != 0 or not (staging / "tensorrt_bindings").is_dir():
        shutil.rmtree(staging, ignore_errors=True)
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        tail = " | ".join([l for l in lines if l.startswith("ERROR")][-2:] or lines[-2:])
        _unavailable(f"pip could not install {pins['bindings']}=={pins['version']} (no registry, or no wheel "
                     f"for this Python): {tail}")
    try:
        os.replace(staging, target)
    except OSError:                     # another session installed it meanwhile
        shutil.rmtree(staging, ignore_errors=True)
    return target


def compile_stubs(major: int, out: Path) -> Path:
    """lib{nvinfer,nvinfer_plugin,nvonnxparser}.so.<major> from stub.c."""
    cc = shutil.which(os.environ.get("CC") or "cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        _unavailable("no C compiler (cc) to build the stand-in TensorRT libraries")
    out.mkdir(parents=True, exist_ok=True)
    for lib in STUB_LIBS:
        name = f"lib{lib}.so.{major}"
        try:
            proc = subprocess.run([cc, "-shared", "-fPIC", f"-DTRT_LOG_SLOT={TENSORRT[major]['log_slot']}",
                                   f"-Wl,-soname,{name}", "-o", str(out / name), str(STUBS / "stub.c")],
                                  capture_output=True, text=True, timeout=120, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            _unavailable(f"{cc} could not build the stand-in {name}: {e}")
        if proc.returncode != 0:
            _unavailable(f"{cc} could not build the stand-in {name}: {proc.stderr.strip()[-300:]}")
    return out


@pytest.fixture(scope="module", params=sorted(TENSORRT), ids=lambda m: f"trt{m}")
def report(request, tmp_path_factory):
    """check_api.py's findings for one TensorRT major, run against the real bindings."""
    major = request.param
    site = install(major)
    work = tmp_path_factory.mktemp(f"trt{major}-api")
    libs = compile_stubs(major, work / "lib")
    smi = work / "smi"
    smi.mkdir()
    (smi / "nvidia-smi").write_text(FAKE_SMI.format(python=sys.executable))
    (smi / "nvidia-smi").chmod(0o755)
    (work / "empty").mkdir()
    spec = {"uses": collect_uses(), "object_api": OBJECT_API,
            "polygraphy_path": [p for p in POLYGRAPHY_PATH if major in p["majors"]],
            "scenarios": SCENARIOS, "fake_smi_dir": str(smi), "no_smi_dir": str(work / "empty")}
    (work / "spec.json").write_text(json.dumps(spec))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("TRT_STUB_") and k not in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER")}
    env.update(PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]), PYTHONNOUSERSITE="1",
               LD_LIBRARY_PATH=os.pathsep.join(filter(None, [str(libs), os.environ.get("LD_LIBRARY_PATH")])))
    proc = subprocess.run([sys.executable, "-s", str(STUBS / "check_api.py"), str(work / "spec.json")],
                          capture_output=True, text=True, env=env, cwd=str(work), timeout=300, check=False)
    if proc.returncode != 0:
        pytest.fail(f"check_api.py failed on TensorRT {major}:\n{proc.stderr[-3000:]}")
    data = json.loads(proc.stdout)
    data["major"] = major
    return data


def _failures(report, category):
    rows = report.get(category, [])
    bad = [f"{r['where']}: {r['what']}: {r['detail']}" for r in rows if not r["ok"]]
    return rows, bad


# ----------------------------------------------------------------------------- tests (no TensorRT needed)

def test_collector_finds_tfbuild_uses():
    """The ast scan sees the calls this file was written against (guards the scanner itself)."""
    uses = collect_uses()
    chains = {".".join(u["chain"]) for u in uses if u["kind"] in ("attr", "call")}
    for expected in ("Builder", "MemoryPoolType.WORKSPACE", "ProfilingVerbosity.DETAILED",
                     "LayerInformationFormat.JSON", "__version__", "G_LOGGER.verbosity"):
        assert expected in chains, f"{expected} not found among {sorted(chains)}"
    calls = {(".".join(u["chain"]), u.get("method"), bool(u.get("instance_call"))): u for u in uses
             if u["kind"] == "call"}
    assert {"fp16", "int8", "profiles", "memory_pool_limits", "load_timing_cache",
            "profiling_verbosity"} <= set(calls[("CreateConfig", None, False)]["keywords"])
    assert calls[("Profile", "add", False)]["keywords"] == ["max", "min", "opt"]
    assert calls[("TrtRunner", "infer", False)]["npos"] == 1
    assert ("EngineBytesFromNetwork", None, True) in calls
    imports = {(u["module"], u["name"]) for u in uses if u["kind"] == "import"}
    assert ("polygraphy.backend.common", "BytesFromPath") in imports


def test_object_api_table_matches_source():
    source = (ROOT / ENGINE).read_text()
    stale = [e["needle"] for e in OBJECT_API if e["needle"] not in source]
    assert not stale, f"OBJECT_API in this file lists uses {ENGINE} no longer has: {stale}; update the table"


# ----------------------------------------------------------------------------- tests against the real bindings

def test_versions_and_probes_recognise_the_real_wheels(report):
    major, pins = report["major"], TENSORRT[report["major"]]
    v = report["preflight"]["probes:version"]
    assert v["trt.__version__"] == pins["version"]
    assert v["tensorrt_version"] == pins["version"], "backends.tensorrt_version() misreads the dists"
    assert v["strongly_typed"] == (major >= 11)
    assert v["has_polygraphy"]


def test_every_name_resolves(report):
    rows, bad = _failures(report, "names")
    assert len(rows) >= 10 and not bad, "\n".join(bad)


def test_every_enum_member_exists(report):
    rows, bad = _failures(report, "enums")
    assert len(rows) >= 4 and not bad, "\n".join(bad)


def test_every_call_accepts_its_arguments(report):
    rows, bad = _failures(report, "calls")
    assert len(rows) >= 12 and not bad, "\n".join(bad)


def test_methods_on_returned_objects(report):
    rows, bad = _failures(report, "object_api")
    assert len(rows) == len(OBJECT_API) and not bad, "\n".join(bad)


def test_polygraphy_calls_on_the_build_path(report):
    rows, bad = _failures(report, "polygraphy_path")
    assert rows and not bad, "\n".join(bad)


def test_probes_without_and_with_a_gpu(report):
    none = report["preflight"]["probes:no-gpu"]
    assert none["backend_unavailable"], none
    assert "\n" not in none["message"] and "no NVIDIA GPU" in none["message"], none["message"]
    found = report["preflight"]["probes:gpu"]
    assert found["raised"] is None, f"with nvidia-smi listing an H100 the cheap probes refused: {found}"


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_preflight_raises_one_tfbuild_error_in_one_line(report, scenario):
    r = report["preflight"][scenario]
    assert r["tfbuild_error"], f"pre-flight raised {r['raised']}: {r['message']}"
    assert r["message"] and "\n" not in r["message"].strip(), r["message"]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_preflight_says_cuda_cannot_start(report, scenario):
    """One line naming CUDA (not pybind11's "factory function returned nullptr"), the reason
    TensorRT logged where it logged one, and nothing else on stdout/stderr."""
    r = report["preflight"][scenario]
    message = r["message"] or ""
    assert r["backend_unavailable"], r
    assert "\n" not in message.strip(), message
    assert "pybind11" not in message and "nullptr" not in message, message
    assert CUDA_REASON.search(message), message
    if SCENARIOS[scenario][1]:
        assert re.search(r"error:? (100|35)\b", message), f"the logged CUDA error is lost: {message}"
    assert not r["output"].strip(), f"pre-flight also printed: {r['output']!r}"
