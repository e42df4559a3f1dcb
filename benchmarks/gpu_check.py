"""GPU check: do tfbuild's TensorRT routes really build, match and speed up, on this GPU?

What it proves, on a machine with an NVIDIA GPU: that `tfbuild target=tiny_trt
trt.backend=tensorrt` builds an INT8, an FP16 and an FP32 engine with every
TensorRT major installed (TensorRT 11 for CUDA 13, 10.x for CUDA 12), that each
engine matches the frozen graph within its parity bound, how long the engine
took to build and how much faster it runs than the frozen graph in TensorFlow;
then the same for `densenet_trt_fp16` (and TF-TRT where TensorFlow has it).
It runs in the order of ../shared/docs/tensorrt-check.md §6 (INT8 first, the
likeliest failure, on every major; then FP16, FP32; the `layers` column checks
§6 step 3), each build in a fresh project directory (a cold timing cache), each
with a timeout, and all of it within 10 minutes; whatever is not installed is
skipped with what is missing and the command that installs it.

Run it on a lent GPU machine (PyPI may be unreachable there: it checks first):
    pip install -e '.[tensorrt]'              # TensorRT for CUDA 13, driver r580+
    python3 benchmarks/gpu_check.py           # --json OUT for the rows as JSON
Both majors, from two virtual environments (each: pip install -e '.[tensorrt-cu12]', ...):
    python3 benchmarks/gpu_check.py --venv-cu12 /tmp/cu12 --venv-cu13 /tmp/cu13
    python3 benchmarks/gpu_check.py --dry-run   # the commands, nothing run

Exit: 0 every attempted build built and matched; 1 one did not, or none could be
attempted; 2 no NVIDIA GPU. Logs and build dirs stay in the printed work dir.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

REPO = Path(__file__).resolve().parent.parent
BUDGET_S = 600                                  # everything, nvidia-smi to the table
STEP_S = {"tiny_trt": 150, "densenet_trt_fp16": 300}
MIN_STEP_S = 30                                 # less left than this: not started
EXTRA = {None: "tensorrt", 13: "tensorrt-cu13", 12: "tensorrt-cu12"}   # tfbuild's extras, by CUDA major
# Module -> what the tensorrt route needs it for (tfbuild[tensorrt] installs them all).
NEEDS = {"tfbuild": "tfbuild", "tensorflow": "tensorflow", "tf2onnx": "tf2onnx", "onnx": "onnx",
         "onnxruntime": "onnxruntime", "sympy": "sympy (INT8 ONNX)", "tensorrt": "tensorrt",
         "polygraphy": "polygraphy"}

# Runs in each environment's interpreter: what is installed, never a traceback.
PROBE = r"""
import importlib.util, json, sys
out = {"python": sys.version.split()[0], "missing": [m for m in sys.argv[1:] if importlib.util.find_spec(m) is None]}
try:
    import tensorrt
    out["tensorrt"] = tensorrt.__version__
except Exception as e:
    out["tensorrt_error"] = (f"{type(e).__name__}: {e}".splitlines() or ["?"])[0]
try:
    from tfbuild import backends as b
    out.update(cuda=b.tensorrt_cuda(), tf_trt_problem=b.tf_trt_problem(), tensorflow=b.tensorflow_version())
except Exception as e:
    out["tfbuild_error"] = (f"{type(e).__name__}: {e}".splitlines() or ["?"])[0]
print(json.dumps(out))
"""


@dataclass
class Env:
    label: str                     # "this", "cu12", "cu13"
    python: str
    probe: dict = field(default_factory=dict)

    def tensorrt_problem(self) -> Optional[str]:
        p = self.probe
        if not p or "missing" not in p:
            return p.get("tfbuild_error") or f"{self.python} did not run"
        missing = [NEEDS[m] for m in p.get("missing", [])]
        if missing:
            cuda = p.get("cuda") or {"cu12": 12, "cu13": 13}.get(self.label)
            return f"missing {', '.join(missing)}: {self.python} -m pip install -e '{REPO}[{EXTRA[cuda]}]'"
        if "tensorrt" not in p:
            return f"import tensorrt failed: {p.get('tensorrt_error')}"
        return None

    def tf_trt_problem(self) -> Optional[str]:
        if "tfbuild_error" in self.probe or not self.probe:
            return self.probe.get("tfbuild_error", f"{self.python} did not run")
        return self.probe.get("tf_trt_problem")


@dataclass
class Step:
    env: Env
    target: str
    backend: str
    precision: str
    skip: Optional[str] = None

    def command(self, report: str) -> List[str]:
        cmd = [self.env.python, "-m", "tfbuild", f"target={self.target}", f"trt.backend={self.backend}"]
        if self.target == "tiny_trt":
            cmd.append(f"trt.precision={self.precision}")
        return cmd + ["bench.enabled=true", f"report_file={report}"]


# ----------------------------------------------------------------------------- steps

def run(cmd: List[str], timeout: float, cwd: Optional[Path] = None, log: Optional[Path] = None):
    """(exit code or None on timeout, output). The child gets its own process group, killed on timeout."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    try:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
    except OSError as e:
        return 127, str(e)
    try:
        out, rc = proc.communicate(timeout=timeout)[0], proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, rc = proc.communicate()[0], None
    if log:
        log.write_text(out or "")
    return rc, out or ""


def gpu_summary() -> Optional[str]:
    """nvidia-smi's view of the GPUs, one line each; None where there is none."""
    rc, out = run(["nvidia-smi", "--query-gpu=index,name,driver_version,memory.total,compute_cap",
                   "--format=csv,noheader"], timeout=20)
    lines = [l.strip() for l in out.splitlines() if l.strip()] if rc == 0 else []
    return "\n".join(lines) or None


def probe(env: Env) -> None:
    rc, out = run([env.python, "-c", PROBE, *NEEDS], timeout=120, cwd=Path("/"))   # not this checkout
    try:
        env.probe = json.loads(out.strip().splitlines()[-1])
    except (IndexError, ValueError):
        env.probe = {"tfbuild_error": f"{env.python} did not run (exit {rc}): {one_line(out)[-200:]}"}


def plan(envs: List[Env]) -> List[Step]:
    """§6's order: INT8 on every major first, then FP16, then FP32, then DenseNet."""
    steps = [Step(e, "tiny_trt", "tensorrt", p, e.tensorrt_problem()) for p in ("INT8", "FP16", "FP32") for e in envs]
    for e in envs:
        steps.append(Step(e, "densenet_trt_fp16", "tensorrt", "FP16", e.tensorrt_problem()))
        steps.append(Step(e, "densenet_trt_fp16", "tf-trt", "FP16", e.tf_trt_problem()))
    return steps


def one_line(text: str, width: int = 1000) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= width else line[:width - 3] + "..."


def read_report(path: Path, rc: Optional[int], output: str, timeout: float) -> dict:
    """The row's figures from tfbuild's report JSON (and the last output line where there is none)."""
    last = next((l for l in reversed(output.splitlines()) if l.strip()), "")
    if rc is None:
        return {"status": "timeout", "error": f"timed out after {timeout:.0f} s" + (f"; last output: {one_line(last)}" if last else "")}
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"status": "failed", "error": one_line(last or f"exit {rc}, no report")}
    trt = (report.get("stages") or [{}])[-1]              # the target's last stage: trt
    meta, bench = report.get("metadata") or {}, report.get("benchmark") or {}
    failed = next((f"{s['name']}: {s.get('reason')}" for s in report.get("stages", []) if s["status"] == "failed"), None)
    ok = rc == 0 and report.get("ok") and trt.get("status") in ("built", "fresh")
    return {"status": "built" if ok else "failed",
            "error": None if ok else one_line(report.get("error") or failed or last or f"exit {rc}"),
            "tensorrt": meta.get("tensorrt") or meta.get("tensorrt_loaded"),
            "parity_max_abs_diff": meta.get("parity_max_abs_diff"), "parity_tolerance": meta.get("parity_tolerance"),
            "trt_stage_s": trt.get("seconds"), "speedup": bench.get("speedup"), "median_ms": bench.get("median_ms"),
            "frozen_ms": bench.get("frozen_ms"), "layers": meta.get("layers"), "gpu": meta.get("gpu")}


def run_step(i: int, n: int, step: Step, work: Path, deadline: float) -> dict:
    row = {"env": step.env.label, "target": step.target, "backend": step.backend, "precision": step.precision,
           "tensorrt": step.env.probe.get("tensorrt")}
    left = deadline - time.monotonic()
    skip = step.skip or (f"not started: {left:.0f} s of the {BUDGET_S} s budget left" if left < MIN_STEP_S else None)
    if skip:
        print(f"[{i}/{n}] skip {step.target} {step.backend} {step.precision} ({step.env.label}): {skip}", flush=True)
        return {**row, "status": "skipped", "error": skip}
    project = work / f"{i:02d}-{step.env.label}-{step.target}-{step.backend}-{step.precision}"
    project.mkdir(parents=True)
    cmd = step.command(str(project / "report.json"))
    print(f"[{i}/{n}] $ {shlex.join(cmd)}", flush=True)
    started = time.monotonic()
    timeout = min(STEP_S[step.target], left)
    rc, out = run(cmd, timeout, cwd=project, log=project / "output.log")
    row.update({k: v for k, v in read_report(project / "report.json", rc, out, timeout).items() if v is not None})
    row["wall_s"] = round(time.monotonic() - started, 1)
    print(f"        {row['status']} in {row['wall_s']} s" + (f": {row['error']}" if row.get("error") else ""), flush=True)
    return row


# ----------------------------------------------------------------------------- output

def fmt(x, spec: str) -> str:
    """A number in `spec`; a tolerance given as {measure: bound} as it is."""
    return "-" if x is None else format(x, spec) if isinstance(x, (int, float)) else str(x)


def table(rows: List[dict]) -> str:
    head = ("env", "target", "backend", "TensorRT", "prec", "status", "parity worst/bound", "trt s", "speed-up",
            "layers / error")
    body = []
    for r in rows:
        parity = (f"{fmt(r.get('parity_max_abs_diff'), '.1e')}/{fmt(r.get('parity_tolerance'), '.0e')}"
                  if r.get("parity_tolerance") is not None else "-")
        layers = " ".join(f"{k}:{v}" for k, v in (r.get("layers") or {}).items())
        body.append((r["env"], r["target"], r["backend"], r.get("tensorrt") or "-", r["precision"], r["status"],
                     parity, fmt(r.get("trt_stage_s"), ".1f"),
                     f"{fmt(r.get('speedup'), '.2f')}x" if r.get("speedup") else "-",
                     one_line(r.get("error") or layers or "-", 110)))
    widths = [max(len(str(c)) for c in col) for col in zip(head, *body)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()
    return "\n".join([line(head), line("-" * w for w in widths), *map(line, body)])


def venv_python(path: str) -> str:
    p = Path(path)
    return str(p / "bin" / "python") if p.is_dir() else str(p)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--venv-cu12", metavar="PATH", help="a virtual env (or its python) with tfbuild[tensorrt-cu12]")
    ap.add_argument("--venv-cu13", metavar="PATH", help="a virtual env (or its python) with tfbuild[tensorrt-cu13]")
    ap.add_argument("--json", metavar="OUT", help="also write the rows as JSON")
    ap.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = ap.parse_args(argv)
    deadline = time.monotonic() + BUDGET_S
    envs = [Env("this", sys.executable)] + [Env(label, venv_python(p)) for label, p in
                                            (("cu12", args.venv_cu12), ("cu13", args.venv_cu13)) if p]
    if args.dry_run:
        return dry_run(envs)

    print("1. nvidia-smi", flush=True)
    gpus = gpu_summary()
    if gpus is None:
        hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
        print("no NVIDIA GPU: nvidia-smi is missing or lists none"
              + (f" (CUDA_VISIBLE_DEVICES={hidden!r})" if hidden is not None else "") + "; nothing to check", flush=True)
        return 2
    print("   " + gpus.replace("\n", "\n   "), flush=True)
    print("2. tfbuild --version, and what each environment has", flush=True)
    for env in envs:
        rc, out = run([env.python, "-m", "tfbuild", "--version"], timeout=60)
        print(f"   {env.label} ({env.python}): {one_line(out) if rc == 0 else 'tfbuild did not run: ' + one_line(out)}")
        probe(env)
        print(f"   {env.label}: tensorrt {env.probe.get('tensorrt') or '-'} (CUDA {env.probe.get('cuda') or '?'}), "
              f"engines: {env.tensorrt_problem() or 'ready'}; TF-TRT: {env.tf_trt_problem() or 'ready'}", flush=True)

    print("3. builds (§6: INT8, FP16, FP32 on every TensorRT major, then DenseNet-169)", flush=True)
    work = Path(tempfile.mkdtemp(prefix="tfbuild-gpu-check-"))
    steps = plan(envs)
    rows = [run_step(i, len(steps), s, work, deadline) for i, s in enumerate(steps, 1)]
    print(f"\nGPU: {gpus.splitlines()[0]}   work dir: {work}\n{table(rows)}")
    if args.json:
        Path(args.json).write_text(json.dumps({"gpus": gpus.splitlines(), "envs": {e.label: e.probe for e in envs},
                                               "rows": rows}, indent=1))
    attempted = [r for r in rows if r["status"] != "skipped"]
    if not attempted:
        print("nothing was built: see why each row was skipped")
    return 0 if attempted and all(r["status"] == "built" for r in attempted) else 1


def dry_run(envs: List[Env]) -> int:
    print("$ nvidia-smi --query-gpu=index,name,driver_version,memory.total,compute_cap --format=csv,noheader")
    for env in envs:
        print(f"$ {shlex.join([env.python, '-m', 'tfbuild', '--version'])}")
        probe(env)
    for i, step in enumerate(plan(envs), 1):
        report = f"$WORK/{i:02d}-{step.env.label}-{step.target}-{step.backend}-{step.precision}/report.json"
        print(f"$ {shlex.join(step.command(report)[:-1])} report_file={report}   # timeout {STEP_S[step.target]} s"
              + (f"; here it would skip: {step.skip}" if step.skip else ""))
    print(f"# each in a fresh project dir $WORK/NN-.../, all within {BUDGET_S} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
