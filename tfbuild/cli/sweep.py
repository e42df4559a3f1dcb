"""Multirun sweeps: each job saves its result; one table compares them at the end.

Jobs may run in other processes (joblib launcher), so results travel through
`result.json` in each job's directory under the sweep dir (inside build_dir).
"""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any, List, Optional

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from rich.table import Table

from ..engine.store import write_json
from .report import Reporter, human_size

_state = {"code": 0}

COLUMNS = ("job", "stage", "precision", "batch", "size", "parity", "metric", "value", "drop", "latency_ms",
           "p10_ms", "p90_ms", "cv", "settled", "per_s", "memory_mb", "backend", "threads", "speedup", "frozen_ms",
           "frozen_cv", "frozen_memory_mb", "xnnpack_ops", "total_ops", "built", "status")
FIELDS = (*COLUMNS, "overrides", "artifact", "error", "code")
# Short headers and unwrapped numbers keep the table readable at 80 columns.
# The table shows what compares jobs (each job's line above says what it built);
# the CSV/JSON have every field (backend versions, p90, throughput, ...).
# A job that did not end ok has no latency: its status stands in that cell.
SHOWN = ("job", "backend", "precision", "batch", "threads", "size", "parity", "value", "latency_ms", "speedup")
HEADERS = {"precision": "prec", "threads": "thr", "latency_ms": "ms", "speedup": "vs TF"}
NUMERIC = ("threads", "size", "parity", "value", "latency_ms", "speedup")
BACKENDS = {"onnxruntime": "ort", "tensorflow": "tf", "tensorrt": "trt"}  # short names for the table


def exit_code() -> int:
    code, _state["code"] = _state["code"], 0
    return code


def save_job(job_dir: Path, dcfg: DictConfig, overrides: List[str], report: dict, code: int) -> None:
    stages = report.get("stages") or []
    final = stages[-1] if stages else {}
    meta = report.get("metadata") or {}
    bench = report.get("benchmark") or {}
    evaluation = report.get("evaluation") or {}
    row = {
        "job": job_dir.name,
        "overrides": " ".join(overrides),
        "stage": final.get("name"),
        "precision": meta.get("precision"),
        "batch": meta.get("batch_size") or bench.get("batch_size"),
        "size": final.get("size"),
        "parity": meta.get("parity_max_abs_diff"),
        **{k: evaluation.get(k) for k in ("metric", "value", "drop")},
        "artifact": report.get("artifact"),
        "latency_ms": bench.get("median_ms"),
        **{k: bench.get(k) for k in ("p10_ms", "p90_ms", "cv", "settled")},
        "per_s": bench.get("throughput_per_s"),
        **{k: bench.get(k) for k in ("memory_mb", "backend", "threads", "speedup", "frozen_ms")},
        "frozen_cv": (bench.get("frozen") or {}).get("cv"),
        "frozen_memory_mb": (bench.get("frozen") or {}).get("memory_mb"),
        **{k: bench.get(k) for k in ("xnnpack_ops", "total_ops")},
        "built": ",".join(s["name"] for s in stages if s["status"] == "built"),
        "status": "ok" if code == 0 else ("failed" if code == 1 else "invalid"),
        "error": report.get("error") or next((s["reason"] for s in stages if s["status"] == "failed"), None),
        "code": code,
    }
    write_json(job_dir / "result.json", row)


def check_jobs(args: List[str]) -> None:
    """Every job of a sweep composed and checked as its build would (config, each stage's
    settings and checks) before the first one builds: a bad value is one line, exit 2,
    nothing built. Sweeps Hydra's grid cannot list (e.g. an Optuna interval) are left to it."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from ..config import validate
    from ..engine.graph import make_graph
    from ..errors import ConfigError
    from ..stages import REGISTRY
    from .targets import compose
    try:
        parsed = OverridesParser.create().parse_overrides([a for a in args if not a.startswith(("-", "hydra"))])
        jobs = [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
        swept = {o.get_key_element() for o in parsed if o.is_sweep_override()}
    except Exception:  # noqa: BLE001  Hydra says what is wrong with the sweep itself
        return
    for num, job in enumerate(jobs):
        target = next((o.split("=", 1)[1] for o in job if o.startswith("target=")), None)
        rest = [o for o in job if not o.startswith("target=")]
        try:
            make_graph(validate(compose(target, rest)), REGISTRY)
        except ConfigError as e:
            shown = " ".join(o for o in job if o.split("=", 1)[0] in swept)
            raise ConfigError(f"sweep job {num} ({shown}): {e}") from None


def summarize(sweep_dir: Path, reporter: Reporter, minimize: str = "ms") -> int:
    rows = []
    for f in sorted(sweep_dir.glob("*/result.json"), key=lambda p: int(p.parent.name)):
        rows.append(json.loads(f.read_text()))
    if not rows:
        return 0
    stages = sorted({str(r["stage"]) for r in rows if r.get("stage")})
    table = Table(title=f"sweep: {len(rows)} jobs, final stage {', '.join(stages)}", title_justify="left")
    metric = next((r["metric"] for r in rows if r.get("metric")), None)
    # The metric's column where the target evaluates; threads (the same for every job as a
    # rule, and in the CSV) make room for it at 80 columns.
    shown = [c for c in SHOWN if (c != "value" or metric) and (c != "threads" or not metric)]
    for col in shown:
        table.add_column(metric if col == "value" else HEADERS.get(col, col),
                         justify="right" if col in NUMERIC else "left")
    best = choose(rows, minimize)
    for r in rows:
        cells = [_cell(c, r.get(c)) for c in shown]
        if r.get("settled") is False and r.get("speedup") is not None:   # a ratio of figures that still moved
            cells[shown.index("speedup")] = "~" + cells[shown.index("speedup")]
        if r is best:
            cells[0] = f"[bold green]{r['job']}*[/]"
        if r.get("status") != "ok":
            cells[shown.index("latency_ms")] = f"[bold red]{r.get('status')}[/]"
        table.add_row(*cells)
    reporter.console.print(table)
    for line in slower_than_fp32(rows):
        reporter.warn(line)
    _announce(best, rows, metric, sweep_dir, reporter)
    for r in rows:
        if r["code"]:
            reporter.error(f"job {r['job']} ({r['overrides']}): {r['error']}")
    write_json(sweep_dir / "summary.json", {"jobs": rows})
    with open(sweep_dir / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    reporter.console.print(f"sweep table: {sweep_dir / 'summary.csv'} and summary.json", soft_wrap=True)
    _plot_line(rows, sweep_dir / "summary.png", reporter)
    return max(r["code"] for r in rows)


SLOWER = 1.1   # within 10% is noise on a shared machine, not a slower artifact


def slower_than_fp32(rows: list) -> List[str]:
    """Where a lower precision measured slower than FP32 of the same stage, backend and
    batch: one line each, with the cause the figures show (ops left outside XNNPACK)."""
    def key(r):
        return (r.get("stage"), str(r.get("backend")).split()[0], r.get("batch"), r.get("threads"))
    fp32 = {key(r): r for r in rows if r.get("precision") == "FP32" and r.get("latency_ms")}
    lines = []
    for r in rows:
        base = fp32.get(key(r))
        if r.get("precision") in ("FP16", "INT8") and base and r.get("latency_ms") and \
                r["latency_ms"] > SLOWER * base["latency_ms"]:
            left = (r.get("total_ops") or 0) - (r.get("xnnpack_ops") or 0)
            why = (f": {left} of its {r['total_ops']} ops run outside XNNPACK (summary.json: undelegated)"
                   if r.get("total_ops") and left > (base.get("total_ops") or 0) - (base.get("xnnpack_ops") or 0)
                   else ": the conversion adds work (casts, quantize/dequantize) this backend does not fuse")
            lines.append(f"job {r['job']} ({r['precision']}) is slower than job {base['job']} (FP32): "
                         f"{r['latency_ms']:.3g} ms vs {base['latency_ms']:.3g} ms{why}")
    return lines


def choose(rows: list, minimize: str = "ms") -> Optional[dict]:
    """The fastest (or, minimize="size", the smallest) job that built, was measured and,
    where the target evaluates, held its accuracy goal (a job that missed it failed): the
    one to ship. Ties go to the other figure."""
    measured = [r for r in rows if r.get("code") == 0 and r.get("latency_ms") is not None]
    figures = (lambda r: (r.get("size") or 0, r["latency_ms"])) if minimize == "size" else \
        (lambda r: (r["latency_ms"], r.get("size") or 0))
    return min(measured, key=figures, default=None)


def _announce(best: Optional[dict], rows: list, metric: Optional[str], sweep_dir: Path, reporter: Reporter) -> None:
    """best.json and a `best` link in the sweep folder, and one line saying which."""
    if best is None:
        if any(r.get("code") == 0 for r in rows):
            return   # built but not measured (bench.enabled=false): nothing to choose by
        reporter.error("no job built an artifact that holds its goals: nothing to ship")
        return
    keys = ("job", "overrides", "artifact", "metric", "value", "drop", "latency_ms", "size")
    write_json(sweep_dir / "best.json", {k: best.get(k) for k in keys})
    link = sweep_dir / "best"
    if link.is_symlink():
        link.unlink()
    link.symlink_to(best["job"])
    held = f"{metric} {best['value']:.4f}, " if metric and best.get("value") is not None else ""
    reporter.console.print(f"best: job {best['job']} ({best['overrides']}): {held}{best['latency_ms']:.3g} ms, "
                           f"{human_size(best.get('size'))} (* in the table; {link} -> {best['job']})",
                           soft_wrap=True)


def _plot_line(rows: list, path: Path, reporter: Reporter) -> None:
    if not any(_plotted(r) for r in rows):  # nothing measured (e.g. bench.enabled=false)
        return
    if plot(rows, path):
        reporter.console.print(f"latency against size: {path}", soft_wrap=True)
    else:
        reporter.console.print("(pip install 'tfbuild[plot]' to draw latency against size: summary.png)",
                               markup=False)


def plot(rows: list, path: Path) -> bool:
    """Write `path` (PNG): median latency against artifact size, one point per measured
    job, labelled by stage, precision and batch; the picture to choose an artifact from.
    False where matplotlib is not installed."""
    try:  # lazily: matplotlib is an optional extra and slow to import
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return False
    points = [r for r in rows if _plotted(r)]
    unit, scale = _unit(max(r["size"] for r in points))
    xy = [(r["size"] / scale, r["latency_ms"]) for r in points]
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    FigureCanvasAgg(figure)  # Agg: no display needed, pyplot's global state untouched
    ax = figure.add_subplot()
    for stage in sorted({str(r["stage"]) for r in points}):
        ax.scatter(*zip(*[p for p, r in zip(xy, points) if str(r["stage"]) == stage]), label=stage)
    xmax, ymax = max(x for x, _ in xy), max(y for _, y in xy)
    seen: dict = {}
    for (x, y), r in zip(xy, points):
        # Jobs at (nearly) the same point get their labels stacked, not overprinted.
        spot = (round(x / xmax, 2), round(y / ymax, 2))
        k = seen[spot] = seen.get(spot, -1) + 1
        label = " ".join(str(v) for v in (r["stage"], r.get("precision"), r.get("batch") and f"b{r['batch']}") if v)
        ax.annotate(label, (x, y), xytext=(5, 3 - 10 * k), textcoords="offset points", fontsize=8)
    ax.set(xlabel=f"artifact size ({unit})", ylabel="median latency (ms)", xlim=(0, xmax * 1.3),
           ylim=(0, ymax * 1.1), title="latency against size (lower left is better)")
    ax.grid(alpha=0.3)
    ax.legend(title="stage")
    figure.savefig(path, dpi=120)
    return True


def _plotted(row: dict) -> bool:
    return bool(row.get("latency_ms") and row.get("size"))


def _unit(largest: float):
    """The size unit of the x axis: (name, bytes per unit)."""
    for name, scale in (("GB", 1024 ** 3), ("MB", 1024 ** 2), ("KB", 1024)):
        if largest >= scale:
            return name, scale
    return "B", 1


def _cell(col: str, value: Any) -> str:
    if value is None:
        return ""
    if col == "size":
        return human_size(value)
    if col == "parity":
        return f"{value:.1e}"
    if col == "value":   # the evaluation metric: enough digits to tell 98.3% from 98.5%
        return f"{value:.4f}"
    if col == "latency_ms" and value < 1:   # tiny models run in microseconds
        return f"{value:.2g}"
    if col == "backend":  # e.g. "onnxruntime 1.32.0" -> "ort"; the CSV has the version
        name = str(value).split()[0]
        return BACKENDS.get(name, name)
    if col == "speedup":
        return f"{value:.2f}x" if value < 10 else f"{value:.1f}x" if value < 100 else f"{value:.0f}x"
    if isinstance(value, float):
        return f"{value:.0f}" if value >= 100 else f"{value:.2f}"
    if col == "status" and value != "ok":
        return f"[bold red]{value}[/]"
    return str(value)


def stopped(text: str, reporter: Reporter) -> Optional[int]:
    """The launcher raised after jobs started (a job killed, out of memory, past its time
    limit): the table of the jobs that saved a result, one line for the rest; exit >= 1.
    None when no job started in this process: `text` is then a config error."""
    sweep_dir = _state.pop("dir", None)
    jobs = [p for p in Path(sweep_dir).glob("*") if p.name.isdigit()] if sweep_dir else []
    if not jobs:
        return None
    code = summarize(Path(sweep_dir), reporter)
    lost = sorted(int(p.name) for p in jobs if not (p / "result.json").exists())
    reporter.error(f"the launcher stopped the sweep: {_exception_line(text)}; jobs without a result "
                   f"(killed, out of memory, past a time limit or still running): "
                   f"{', '.join(map(str, lost)) or 'none'}")
    return max(code, 1)


def _exception_line(text: str) -> str:
    """The first line of the last exception in a traceback, without the module path."""
    lines = text.strip().splitlines()
    frames = [i for i, line in enumerate(lines) if line.startswith("  File ")]
    after = lines[frames[-1] + 1:] if frames else lines
    line = next((l for l in after if l and not l[0].isspace()), after[-1] if after else "")
    return re.sub(r"^[\w.]*\.(\w+:)", r"\1", line.strip())


class SweepSummary(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _state["dir"] = str(config.hydra.sweep.dir)  # for `stopped`: the launcher may raise

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        _state.pop("dir", None)
        _state["code"] = summarize(Path(config.hydra.sweep.dir), Reporter(),
                                   OmegaConf.select(config, "select.minimize", default="ms"))
