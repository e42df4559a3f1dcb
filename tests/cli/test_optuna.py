"""Budgeted search (issue 19, part 4): each job returns its objective, the final
artifact's median latency in ms (inf for a failed or unmeasured job), so Hydra's
Optuna sweeper searches the options within n_trials instead of a full grid."""
from __future__ import annotations

import json
import math

import pytest
import yaml

from tfbuild.cli.main import main, objective

N_TRIALS = 3


def test_objective_is_the_median_ms_or_inf():
    measured = {"ok": True, "benchmark": {"median_ms": 1.5}}
    assert objective(measured, 0) == 1.5
    assert math.isinf(objective({**measured, "ok": False}, 1))      # a failed stage (or a missed goal)
    assert math.isinf(objective(measured, 2))                         # an invalid request
    assert math.isinf(objective({"ok": True, "benchmark": None}, 0))  # bench.enabled=false, dry_run
    assert math.isinf(objective({"ok": True}, 0))


def test_optuna_sweep_minimizes_the_median_latency(project, capsys):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper",
                        reason="hydra-optuna-sweeper is not installed (pip install 'tfbuild[optuna]')")
    code = main(["-m", "hydra/sweeper=optuna", f"hydra.sweeper.n_trials={N_TRIALS}",
                 "hydra.sweeper.direction=minimize", "hydra.sweeper.sampler.seed=0",
                 "target=tiny_tflite", "tflite.precision=choice(FP32,FP16)", "bench.runs=3"])
    out = capsys.readouterr().out
    assert code == 0, out
    sweeps = list((project / "build" / "sweeps").iterdir())
    assert len(sweeps) == 1
    sweep_dir = sweeps[0]
    jobs = sorted(p for p in sweep_dir.iterdir() if p.name.isdigit())
    assert [p.name for p in jobs] == [str(i) for i in range(N_TRIALS)]
    rows = [json.loads((p / "result.json").read_text()) for p in jobs]
    assert all(r["code"] == 0 and r["latency_ms"] is not None for r in rows), rows
    assert {r["overrides"] for r in rows} <= {"tflite.precision=FP32", "tflite.precision=FP16"}

    # Optuna's result sits in tfbuild's sweep dir (inside build_dir), beside summary.json.
    result = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    fastest = min(rows, key=lambda r: r["latency_ms"])
    assert result["best_value"] == pytest.approx(fastest["latency_ms"], rel=1e-12)
    best = result["best_params"]
    assert set(best) == {"tflite.precision"}
    assert any(r["overrides"] == f"tflite.precision={best['tflite.precision']}"
               and r["latency_ms"] == pytest.approx(result["best_value"], rel=1e-12) for r in rows)
    # tfbuild's own choice (best.json) is the same measured latency.
    assert json.loads((sweep_dir / "best.json").read_text())["latency_ms"] == pytest.approx(result["best_value"])
    assert "sweep: 3 jobs" in out
