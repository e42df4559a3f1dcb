#!/usr/bin/env python3
"""Every extra, alone: for each extra, a fresh virtual environment with tfbuild's wheel
and only that extra, then one smoke build of what the extra serves.

    python3 .ci/extras.py [EXTRA ...] [--work DIR]      # default: every extra

Exit 0: all ok; 1: an extra failed; 3: the package registry could not be reached.
Stdlib only. uv installs (its cache, hard-linked into each venv, makes every install
after the first take seconds); moto, for the remote extra, runs from this interpreter.
"""
from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
UNREACHABLE = 3
# uv's and pip's words for a registry they cannot reach (matched against install output only).
NETWORK = re.compile(r"error sending request|dns error|failed to lookup address|tcp connect error|"
                     r"Network is unreachable|Connection refused|operation timed out|Could not connect|"
                     r"Failed to establish a new connection|Temporary failure in name resolution", re.I)
# Extras that need a GPU or a cluster: only check that they resolve.
RESOLVE_ONLY = {"tensorrt": "needs an NVIDIA GPU", "tensorrt-cu13": "needs an NVIDIA GPU",
                "tensorrt-cu12": "needs an NVIDIA GPU", "ray": "a Ray runtime is too heavy for CI"}
SUBMITIT = ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5", "hydra.launcher.cpus_per_task=1"]


class Failed(Exception):
    def __init__(self, why: str, output: str = ""):
        super().__init__(why)
        self.output = output


class Unreachable(Failed):
    pass


def run(cmd, cwd=None, env=None, timeout=600) -> str:
    """Run cmd; its output, or Failed saying why in one line, with the output."""
    shown = " ".join("<script>" if "\n" in str(c) else Path(c).name if i == 0 else str(c)
                     for i, c in enumerate(cmd))
    try:
        p = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, timeout=timeout,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except subprocess.TimeoutExpired as e:
        out = e.output.decode(errors="replace") if isinstance(e.output, bytes) else e.output or ""
        raise Failed(f"timed out after {timeout}s: {shown}", out) from None
    if p.returncode:
        last = next((line.strip() for line in reversed(p.stdout.splitlines()) if line.strip()), "")
        raise Failed(f"exit {p.returncode} from `{shown}`: {last[:300]}", p.stdout)
    return p.stdout


def uv() -> list:
    if importlib.util.find_spec("uv") is None and not shutil.which("uv"):
        install([sys.executable, "-m", "pip", "install", "-q", "uv"])
        importlib.invalidate_caches()   # find_spec would still answer from before the install
    return [sys.executable, "-m", "uv"] if importlib.util.find_spec("uv") else [shutil.which("uv")]


def install(cmd) -> str:
    try:
        return run(cmd, timeout=1200)   # the first run downloads TensorFlow
    except Failed as e:
        if NETWORK.search(e.output):
            raise Unreachable("package registry unreachable", e.output) from None
        raise


class Venv:
    """One extra's environment and its smoke project directory."""

    def __init__(self, root: Path):
        self.root, self.project = root / "venv", root / "project"
        self.project.mkdir(parents=True)
        self.env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        self.env.update(TF_CPP_MIN_LOG_LEVEL="3", COLUMNS="100", VIRTUAL_ENV=str(self.root),
                        PATH=f"{self.root / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")

    def python(self, code: str) -> str:
        return run([self.root / "bin/python", "-c", code], cwd=self.project, env=self.env)

    def tfbuild(self, *args: str, cwd: Path | None = None, env: dict | None = None) -> dict | None:
        """Run tfbuild in the project; a build returns its report, a sweep (-m) None."""
        cwd = cwd or self.project
        sweep = "-m" in args   # its jobs would share one report_file
        run([self.root / "bin/tfbuild", *args, *([] if sweep else ["report_file=r.json"])],
            cwd=cwd, env={**self.env, **(env or {})})
        return None if sweep else json.loads((cwd / "r.json").read_text())

    def sweep_file(self, name: str) -> Path:
        found = glob.glob(str(self.project / "build/sweeps/*" / name))
        expect(len(found) == 1, f"expected one build/sweeps/*/{name}, found {found}")
        return Path(found[0])


def expect(ok: bool, why: str) -> None:
    if not ok:
        raise Failed(why)


def statuses(report: dict) -> dict:
    return {s["name"]: s["status"] for s in report["stages"]}


def sweep_jobs_ok(v: Venv, n: int) -> None:
    jobs = json.loads(v.sweep_file("summary.json").read_text())["jobs"]
    expect([j["status"] for j in jobs] == ["ok"] * n, f"sweep jobs: {[(j['job'], j['status']) for j in jobs]}")


# ----------------------------------------------------------------------------- the smokes

def smoke_onnx(v: Venv) -> None:
    report = v.tfbuild("target=tiny_onnx", "onnx.precision=INT8", "bench.enabled=false")
    expect(statuses(report).get("onnx") == "built", f"onnx stage not built: {statuses(report)}")


def smoke_litert(v: Venv) -> None:
    v.python("import ai_edge_litert.interpreter")
    # The benchmark names the interpreter that ran the model (tf.lite without the extra).
    report = v.tfbuild("target=tiny_tflite", "bench.runs=3")
    backend = (report.get("benchmark") or {}).get("backend", "")
    expect(backend.startswith("litert "), f"tflite measured with {backend!r}, not LiteRT")


def smoke_plot(v: Venv) -> None:
    v.tfbuild("-m", "target=tiny_tflite", "tflite.precision=FP32,FP16", "bench.runs=3")   # the plot needs timings
    sweep_jobs_ok(v, 2)
    expect(v.sweep_file("summary.png").stat().st_size > 0, "summary.png is empty")


def smoke_remote(v: Venv) -> None:
    with S3() as endpoint:
        env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}
        args = ("target=tiny_tflite", "bench.enabled=false", f"cache.url=s3://{S3.BUCKET}/ci")
        first = v.tfbuild(*args, env=env)   # builds and pushes
        expect(set(statuses(first).values()) == {"built"}, f"first build: {statuses(first)}")
        clone = v.project / "clone"
        clone.mkdir()
        second = v.tfbuild(*args, cwd=clone, env=env)
        reasons = {s["name"]: s["reason"] for s in second["stages"]}
        expect(set(reasons.values()) == {"fetched from cache"}, f"second build, empty project: {reasons}")


KEYGEN = """
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
key = ec.generate_private_key(ec.SECP256R1())
open("key.pem", "wb").write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
open("pub.pem", "wb").write(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo))
"""


def smoke_sign(v: Venv) -> None:
    v.python(KEYGEN)
    report = v.tfbuild("target=tiny_tflite", "sign.key=key.pem", "bench.enabled=false")
    unsigned = [s["name"] for s in report["stages"]
                if not glob.glob(str(v.project / "build/store" / s["name"] / "*/model.sig"))]
    expect(not unsigned, f"no model.sig for {unsigned}")
    # verify=true rebuilds elsewhere and checks this copy's signatures: model-signing's verifier.
    report = v.tfbuild("target=tiny_tflite", "verify=true", "sign.public_key=pub.pem", "bench.enabled=false")
    expect(report["ok"], f"verify=true with the public key: {report['stages']}")


KERAS2 = """
import tf_keras as k
k.utils.set_random_seed(0)
x = k.Input((8, 8, 3), name="image")
h = k.layers.GlobalAveragePooling2D()(k.layers.Conv2D(4, 3)(x))
y = k.layers.Dense(2, activation="softmax", name="probs")(h)
k.Model(x, y).save("k2.keras")
"""


def smoke_keras2(v: Venv) -> None:
    v.python(KERAS2)   # a Keras 2 .keras file, which only tf_keras reads
    (v.project / "targets").mkdir()
    (v.project / "targets/k2.yaml").write_text("checkpoint: {path: k2.keras}\nfreeze: {}\n")
    report = v.tfbuild("target=k2", "bench.enabled=false")
    expect(statuses(report) == {"freeze": "built"}, f"k2.keras: {statuses(report)}")


PNGS = """
from pathlib import Path
from PIL import Image
for name, gray in (("dark", 40), ("light", 220)):
    Path("images", name).mkdir(parents=True)
    for k in range(4):
        Image.new("RGB", (32, 32), (gray + k,) * 3).save(f"images/{name}/{k}.png")
"""
EVAL_TARGET = """\
defaults:
  - tiny_tflite
  - _self_
evaluate:
  data: {path: images}
  metric: top1
"""


def smoke_eval(v: Venv) -> None:
    v.python(PNGS)
    (v.project / "targets").mkdir()
    (v.project / "targets/ev.yaml").write_text(EVAL_TARGET)
    report = v.tfbuild("target=ev", "bench.enabled=false")
    got = report.get("evaluation") or {}
    expect(got.get("metric") == "top1" and got.get("samples") == 8, f"evaluation of 8 PNGs: {got}")


def smoke_optuna(v: Venv) -> None:
    v.tfbuild("-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=2", "target=tiny_tflite",
              "tflite.precision=choice(FP32,FP16)", "bench.runs=3")
    sweep_jobs_ok(v, 2)
    expect("best_value" in v.sweep_file("optimization_results.yaml").read_text(), "no best_value")


def smoke_parallel(v: Venv) -> None:
    v.tfbuild("-m", "hydra/launcher=joblib", "target=tiny_tflite", "tflite.precision=FP32,FP16",
              "bench.enabled=false")
    sweep_jobs_ok(v, 2)


def smoke_slurm(v: Venv) -> None:
    # submitit's local executor: each job in its own process, as on a SLURM node.
    v.tfbuild("-m", *SUBMITIT, "target=tiny_frozen", "bench.enabled=false")
    sweep_jobs_ok(v, 1)


SMOKES = {name[len("smoke_"):]: fn for name, fn in globals().items() if name.startswith("smoke_")}


class S3:
    """moto's S3 server on 127.0.0.1, from this interpreter (moto is in the test extra, not remote)."""
    BUCKET = "extras"

    def __enter__(self) -> str:
        if importlib.util.find_spec("moto") is None:
            raise Failed(f"moto[server] is not installed in {sys.executable} (pip install -e '.[test]')")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(300):
            try:   # moto takes unsigned requests: a plain PUT makes the bucket
                urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/{self.BUCKET}", method="PUT"),
                                       timeout=1)
                return self.endpoint
            except OSError:
                time.sleep(0.1)
        self.__exit__()
        raise Failed("moto's S3 server did not start")

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


# ----------------------------------------------------------------------------- the driver

def declared_extras() -> list:
    """The user-facing extras in pyproject.toml (all but test), in their order."""
    try:
        import tomllib
    except ImportError:   # Python 3.10: trust this script's own list
        return [*SMOKES, *RESOLVE_ONLY]
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    return [e for e in extras if e != "test"]


def build_wheel(uv_cmd: list, work: Path) -> Path:
    # From a copy: setuptools leaves build/ and egg-info behind, and stale build/lib files
    # would end up in the wheel.
    src = work / "src"
    shutil.rmtree(src, ignore_errors=True)
    shutil.rmtree(work / "dist", ignore_errors=True)
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".git", "build", "*.egg-info", "__pycache__", ".pytest_cache", ".benchmarks", ".whl", ".venv",
        "outputs", "multirun", "tfbuild.lock"))
    install([*uv_cmd, "build", "--wheel", "--out-dir", work / "dist", src])
    (wheel,) = (work / "dist").glob("tfbuild-*.whl")
    return wheel


def check(extra: str, uv_cmd: list, wheel: Path, root: Path) -> str:
    """One extra: its line after `extra NAME: `; Failed otherwise."""
    if extra not in SMOKES and extra not in RESOLVE_ONLY:
        raise Failed("no smoke for this extra in .ci/extras.py: add one")
    shutil.rmtree(root, ignore_errors=True)   # --work may hold an earlier run
    v = Venv(root)
    run([*uv_cmd, "venv", "-q", "--python", sys.executable, v.root])
    t0 = time.monotonic()
    if extra in RESOLVE_ONLY:
        install([*uv_cmd, "pip", "install", "--dry-run", "--python", v.root / "bin/python", f"{wheel}[{extra}]"])
        return f"ok (resolves in {time.monotonic() - t0:.0f}s; not installed: {RESOLVE_ONLY[extra]})"
    install([*uv_cmd, "pip", "install", "--python", v.root / "bin/python", f"{wheel}[{extra}]"])
    t1 = time.monotonic()
    SMOKES[extra](v)
    return f"ok (install {t1 - t0:.0f}s, smoke {time.monotonic() - t1:.0f}s)"


def main(argv=None) -> int:
    declared = declared_extras()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("extras", nargs="*", metavar="EXTRA", help=f"default: all ({', '.join(declared)})")
    parser.add_argument("--work", type=Path, help="keep the venvs and projects here (default: a temp dir, removed)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.extras) - set(declared))
    if unknown:
        parser.error(f"not extras of tfbuild: {', '.join(unknown)}")
    start = time.monotonic()
    work = args.work.resolve() if args.work else Path(tempfile.mkdtemp(prefix="tfbuild-extras-"))
    work.mkdir(parents=True, exist_ok=True)
    failed, unreachable = [], []
    try:
        uv_cmd = uv()
        wheel = build_wheel(uv_cmd, work)
        print(f"wheel {wheel.name} built in {time.monotonic() - start:.0f}s", flush=True)
        for extra in args.extras or declared:
            try:
                print(f"extra {extra}: {check(extra, uv_cmd, wheel, work / extra)}", flush=True)
            except Failed as e:
                down = isinstance(e, Unreachable)
                (unreachable if down else failed).append(extra)
                tail = "".join(f"\n    {line}" for line in e.output.strip().splitlines()[-30:])
                print(f"extra {extra}: {'not checked' if down else 'FAILED'}: {e}{tail}", flush=True)
    except Failed as e:   # uv or the wheel
        print(f"extras: {'not checked' if isinstance(e, Unreachable) else 'FAILED'}: {e}\n{e.output.strip()[-3000:]}")
        return UNREACHABLE if isinstance(e, Unreachable) else 1
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    checked = len(args.extras or declared) - len(unreachable)
    print(f"extras: {checked - len(failed)} ok, {len(failed)} failed"
          + (f", {len(unreachable)} not checked (package registry unreachable)" if unreachable else "")
          + f"; total {time.monotonic() - start:.0f}s")
    return 1 if failed else UNREACHABLE if unreachable else 0


if __name__ == "__main__":
    sys.exit(main())
