"""Multirun sweeps: each job saves its result; one table compares them at the end.

Jobs may run in other processes (joblib launcher), so results travel through
`result.json` in each job's directory under the sweep dir (inside build_dir).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, List

from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from rich.table import Table

from .engine.store import write_json
from .report import Reporter, human_size

_state = {"code": 0}

COLUMNS = ("job", "stage", "precision", "batch", "size", "parity", "latency_ms", "p90_ms",
           "per_s", "built", "status")
FIELDS = (*COLUMNS, "overrides", "error", "code")
# Short headers and unwrapped numbers keep the table readable at 80 columns.
# The table shows what compares jobs (each job's line above says what it built);
# the CSV/JSON have every field.
SHOWN = ("job", "precision", "batch", "size", "parity", "latency_ms", "p90_ms", "per_s", "status")
HEADERS = {"precision": "prec", "latency_ms": "ms", "p90_ms": "p90 ms", "per_s": "per s"}
NUMERIC = ("size", "parity", "latency_ms", "p90_ms", "per_s")


def exit_code() -> int:
    code, _state["code"] = _state["code"], 0
    return code


def save_job(job_dir: Path, dcfg: DictConfig, overrides: List[str], report: dict, code: int) -> None:
    stages = report.get("stages") or []
    final = stages[-1] if stages else {}
    meta = report.get("metadata") or {}
    bench = report.get("benchmark") or {}
    row = {
        "job": job_dir.name,
        "overrides": " ".join(overrides),
        "stage": final.get("name"),
        "precision": meta.get("precision"),
        "batch": meta.get("batch_size") or bench.get("batch_size"),
        "size": final.get("size"),
        "parity": meta.get("parity_max_abs_diff"),
        "latency_ms": bench.get("median_ms"),
        "p90_ms": bench.get("p90_ms"),
        "per_s": bench.get("throughput_per_s"),
        "built": ",".join(s["name"] for s in stages if s["status"] == "built"),
        "status": "ok" if code == 0 else ("failed" if code == 1 else "invalid"),
        "error": report.get("error") or next((s["reason"] for s in stages if s["status"] == "failed"), None),
        "code": code,
    }
    write_json(job_dir / "result.json", row)


def summarize(sweep_dir: Path, reporter: Reporter) -> int:
    rows = []
    for f in sorted(sweep_dir.glob("*/result.json"), key=lambda p: int(p.parent.name)):
        rows.append(json.loads(f.read_text()))
    if not rows:
        return 0
    stages = sorted({str(r.get("stage")) for r in rows})
    table = Table(title=f"sweep: {len(rows)} jobs, final stage {', '.join(stages)}", title_justify="left")
    for col in SHOWN:
        table.add_column(HEADERS.get(col, col), justify="right" if col in NUMERIC else "left")
    for r in rows:
        table.add_row(*[_cell(c, r.get(c)) for c in SHOWN])
    reporter.console.print(table)
    for r in rows:
        if r["code"]:
            reporter.error(f"job {r['job']} ({r['overrides']}): {r['error']}")
    write_json(sweep_dir / "summary.json", {"jobs": rows})
    with open(sweep_dir / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    reporter.console.print(f"sweep table: {sweep_dir / 'summary.csv'} and summary.json", soft_wrap=True)
    return max(r["code"] for r in rows)


def _cell(col: str, value: Any) -> str:
    if value is None:
        return ""
    if col == "size":
        return human_size(value)
    if col == "parity":
        return f"{value:.1e}"
    if isinstance(value, float):
        return f"{value:.0f}" if value >= 100 else f"{value:.2f}"
    if col == "status" and value != "ok":
        return f"[bold red]{value}[/]"
    return str(value)


class SweepSummary(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        _state["code"] = summarize(Path(config.hydra.sweep.dir), Reporter())
