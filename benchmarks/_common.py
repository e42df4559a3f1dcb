"""Helpers shared by the benchmark scripts (not a benchmark itself).

Every measurement runs tfbuild (or a bare TensorFlow script) in a fresh child
process; `run` reaps that child with os.wait4, so the peak RSS it reports is
that child's own (RUSAGE_CHILDREN would be the maximum over all children).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Sequence

REPO = Path(__file__).resolve().parent.parent


def tfbuild_cmd() -> List[str]:
    """The installed console script beside this interpreter (no pyenv shim in the timing)."""
    script = Path(sys.executable).parent / "tfbuild"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "tfbuild"]


_SNAPSHOT: dict = {}


def child_env(**extra: str) -> dict:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if _SNAPSHOT.get("src"):
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_SNAPSHOT["src"], env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def snapshot_code(tmp: Path) -> str:
    """Run the children on a copy of tfbuild taken now.

    The tree is edited while benchmarks run; a stage whose code changes
    mid-benchmark would be rebuilt (its fingerprint covers its code) and spoil
    the figures. The copy goes first on PYTHONPATH, ahead of the editable
    install's finder. Returns a line naming the code measured.
    """
    src = tmp / "_src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("tfbuild", "conf", "targets"):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    _SNAPSHOT["src"] = str(src)
    where = subprocess.run([sys.executable, "-c", "import tfbuild; print(tfbuild.__file__)"],
                           env=child_env(), capture_output=True, text=True, cwd=tmp).stdout.strip()
    if not where.startswith(str(src)):
        raise RuntimeError(f"children import tfbuild from {where!r}, not the snapshot in {src}")
    git = lambda *a: subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True).stdout.strip()
    head = git("rev-parse", "--short", "HEAD") or "?"
    dirty = git("status", "--porcelain", "--", "tfbuild", "conf", "targets")
    return f"code: tfbuild at {head}{' + uncommitted changes' if dirty else ''}, copied at start"


@dataclass
class Result:
    cmd: Sequence[str]
    rc: int
    wall_s: float
    maxrss_kb: int
    stdout: str
    stderr: str

    @property
    def rss_mb(self) -> float:
        return self.maxrss_kb / 1024.0

    def check(self) -> "Result":
        if self.rc != 0:
            raise RuntimeError(f"command failed (exit {self.rc}): {' '.join(map(str, self.cmd))}\n"
                               f"--- stdout ---\n{self.stdout[-4000:]}\n--- stderr ---\n{self.stderr[-4000:]}")
        return self


def run(cmd: Sequence[str], cwd: Path, env: Optional[dict] = None, timeout: float = 900) -> Result:
    """Run `cmd` in a fresh child; wall time and that child's own peak RSS (os.wait4)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(list(map(str, cmd)), cwd=str(cwd), env=env or child_env(),
                                stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        deadline = start + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.005)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # keep Popen from reaping again
        out.seek(0)
        err.seek(0)
        return Result(cmd, proc.returncode, wall, usage.ru_maxrss, out.read(), err.read())


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


@contextlib.contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    """A scratch directory outside the repository, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=f"tfbuild-bench-{prefix}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def read_report(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def statuses(report: dict) -> dict:
    return {s["name"]: s["status"] for s in report["stages"]}


def table(headers: Sequence[str], rows: Sequence[Sequence], title: str = "") -> str:
    cells = [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) if cells else len(str(h))
              for i, h in enumerate(headers)]
    line = "-+-".join("-" * w for w in widths)
    out = [title] if title else []
    out.append(" | ".join(str(h).ljust(w) for h, w in zip(headers, widths)))
    out.append(line)
    for r in cells:
        out.append(" | ".join(c.rjust(w) if _numeric(c) else c.ljust(w) for c, w in zip(r, widths)))
    return "\n".join(out)


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6):
            return f"{value:.2e}"
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def _numeric(text: str) -> bool:
    try:
        float(text.rstrip("x%"))
        return True
    except ValueError:
        return False


def human_size(n: Optional[int]) -> str:
    from tfbuild.cli.report import human_size as size  # one formatting for tables and benchmarks
    return "-" if n is None else size(n)


def verdict(ok: bool, text: str) -> str:
    return f"{'PASS' if ok else 'FAIL'}: {text}"


def banner(text: str) -> None:
    print()
    print("=" * len(text))
    print(text)
    print("=" * len(text), flush=True)


def machine() -> str:
    import platform
    from importlib import metadata
    try:
        tf = metadata.version("tensorflow")
    except metadata.PackageNotFoundError:
        tf = "?"
    return (f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"TensorFlow {tf}, {time.strftime('%Y-%m-%d %H:%M')}")
