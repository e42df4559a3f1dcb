"""The sweep's table, summary.csv/json and summary.png: backend, threads, speed-up
against the frozen graph (issue "Fast deployment…"). Rows written here for the
table's corners; one real sweep of the tiny model for the figures."""
from __future__ import annotations

import csv
import importlib.util
import io
import json
import os
import sys
from pathlib import Path

import pytest
from rich.console import Console

from tfbuild.cli.report import Reporter
from tfbuild.cli.sweep import summarize

PNG = b"\x89PNG\r\n\x1a\n"
# Wide values everywhere: the table must still fit 80 columns.
MEASURED = [
    {"stage": "tflite", "precision": "FP32", "batch": 16, "size": 1023 * 1024 ** 2, "parity": 1.2e-05,
     "latency_ms": 99.99, "speedup": 12.34, "frozen_ms": 1234.0, "backend": "tf.lite 2.21.0", "threads": 16,
     "xnnpack_ops": 58, "total_ops": 62},
    {"stage": "onnx", "precision": "INT8", "batch": 1, "size": 14 * 1024 ** 2, "parity": 3.9e-03,
     "latency_ms": 31.9, "speedup": 2.07, "frozen_ms": 66.0, "backend": "onnxruntime 1.32.0", "threads": 16},
    {"stage": "onnx", "precision": "FP32", "batch": 1, "size": 54 * 1024 ** 2, "parity": 2.0e-06,
     "latency_ms": 47.1, "speedup": 1.4, "frozen_ms": 66.0, "backend": "onnxruntime 1.32.0", "threads": 16},
    # Measured, but the frozen graph could not be (e.g. its batch is fixed): no speed-up.
    {"stage": "tflite", "precision": "FP16", "batch": 4, "size": 83_000, "parity": 3e-04,
     "latency_ms": 0.12, "backend": "litert 2.3.0", "threads": 2, "speedup": None, "frozen_ms": None},
]
UNMEASURED = [  # bench.enabled=false; a failed job; an invalid one
    {"stage": "tflite", "precision": "FP16", "batch": 1, "size": 83_000, "parity": 3e-04},
    {"stage": "tflite", "status": "failed", "code": 1, "error": "parity 0.5 > 0.1"},
    {"stage": None, "status": "invalid", "code": 2, "error": "INT8 needs calibration data"},
]


def write_sweep(sweep_dir: Path, rows=MEASURED + UNMEASURED) -> None:
    """result.json files as the jobs write them."""
    for job, row in enumerate(rows):
        (sweep_dir / str(job)).mkdir(parents=True)
        row = {"job": str(job), "overrides": f"x={job}", "built": "", "error": None, "status": "ok", "code": 0, **row}
        (sweep_dir / str(job) / "result.json").write_text(json.dumps(row))


def show(sweep_dir: Path):
    out = io.StringIO()
    code = summarize(sweep_dir, Reporter(Console(file=out, width=200, color_system=None)))
    return code, out.getvalue()


def table_lines(out: str) -> list:
    return [line for line in out.splitlines() if line[:1] in "┏┃┡│└"]


def test_table_fits_80_columns_with_short_backend_names(tmp_path):
    write_sweep(tmp_path)
    code, out = show(tmp_path)
    assert code == 2
    lines = table_lines(out)
    assert lines and max(len(line) for line in lines) <= 80, out
    header = [c.strip() for c in lines[1].strip("┃").split("┃")]
    assert header == ["job", "backend", "prec", "batch", "thr", "size", "parity", "ms", "vs TF"]
    cells = [[c.strip() for c in line.strip("│").split("│")] for line in lines[3:-1]]
    assert cells[0] == ["0", "tf.lite", "FP32", "16", "16", "1023.0 MB", "1.2e-05", "99.99", "12.3x"]
    assert cells[1][1] == "ort" and cells[1][-1] == "2.07x"
    # No reference, or not measured (bench off): empty cells, never "None".
    assert cells[3][7:] == ["0.12", ""] and cells[4][7:] == ["", ""]
    # A job that did not end ok shows its status where its latency would be.
    assert cells[5][7] == "failed" and cells[6][7] == "invalid" and cells[6][1:7] == [""] * 6
    assert "None" not in out and "final stage onnx, tflite" in out


def test_csv_and_json_keep_the_full_fields(tmp_path):
    write_sweep(tmp_path)
    show(tmp_path)
    with open(tmp_path / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["backend"] == "tf.lite 2.21.0" and rows[0]["threads"] == "16"
    assert float(rows[0]["frozen_ms"]) == 1234.0 and (rows[0]["xnnpack_ops"], rows[0]["total_ops"]) == ("58", "62")
    assert rows[3]["speedup"] == "" and rows[4]["backend"] == ""
    jobs = json.loads((tmp_path / "summary.json").read_text())["jobs"]
    assert jobs[1]["backend"] == "onnxruntime 1.32.0" and jobs[1]["speedup"] == 2.07


def test_plot_has_one_labelled_point_per_measured_job(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.axes import Axes
    points, labels = [], []
    scatter, annotate = Axes.scatter, Axes.annotate
    monkeypatch.setattr(Axes, "scatter", lambda ax, x, y, **kw: points.extend(zip(x, y)) or scatter(ax, x, y, **kw))
    monkeypatch.setattr(Axes, "annotate", lambda ax, text, xy, **kw: labels.append(text) or annotate(ax, text, xy, **kw))
    write_sweep(tmp_path)
    _, out = show(tmp_path)
    png = tmp_path / "summary.png"
    assert png.read_bytes()[:8] == PNG
    assert f"latency against size: {png}" in out
    # x in MB: the largest artifact is under 1 GB
    assert sorted(points) == sorted((r["size"] / 1024 ** 2, r["latency_ms"]) for r in MEASURED)
    assert sorted(labels) == ["onnx FP32 b1", "onnx INT8 b1", "tflite FP16 b4", "tflite FP32 b16"]


def test_no_matplotlib_no_png_no_error(tmp_path, monkeypatch):
    for name in ["matplotlib", *[n for n in sys.modules if n.startswith("matplotlib.")]]:
        monkeypatch.setitem(sys.modules, name, None)
    write_sweep(tmp_path)
    code, out = show(tmp_path)
    assert code == 2 and (tmp_path / "summary.csv").exists()
    assert not (tmp_path / "summary.png").exists()
    assert "pip install 'tfbuild[plot]'" in out


def test_nothing_measured_no_png_and_no_hint(tmp_path):
    write_sweep(tmp_path, UNMEASURED)
    _, out = show(tmp_path)
    assert not (tmp_path / "summary.png").exists()
    assert "summary.png" not in out and "latency against size" not in out


def test_real_sweep_measures_backend_threads_and_speedup(project, capsys):
    from tfbuild.cli.main import main
    assert main(["-m", "target=tiny_tflite", "tflite.precision=FP32,INT8", "bench.runs=5"]) == 0
    out = capsys.readouterr().out
    (sweep_dir,) = Path("build/sweeps").iterdir()
    jobs = json.loads((sweep_dir / "summary.json").read_text())["jobs"]
    assert [j["precision"] for j in jobs] == ["FP32", "INT8"]
    for j in jobs:
        assert j["backend"].split()[0] in ("litert", "tf.lite") and j["threads"] == os.cpu_count()
        assert j["frozen_ms"] > 0 and j["speedup"] == pytest.approx(j["frozen_ms"] / j["latency_ms"])
        assert 0 < j["xnnpack_ops"] <= j["total_ops"]
    assert max(len(line) for line in table_lines(out)) <= 80, out
    assert (sweep_dir / "summary.png").exists() == (importlib.util.find_spec("matplotlib") is not None)


def test_real_sweep_over_targets_frozen_graph_is_the_reference(project, capsys):
    pytest.importorskip("tf2onnx")
    pytest.importorskip("onnxruntime")
    import tensorflow as tf

    from tfbuild.cli.main import main
    assert main(["-m", "target=tiny_frozen,tiny_onnx", "bench.runs=5", "bench.threads=1"]) == 0
    (sweep_dir,) = Path("build/sweeps").iterdir()
    frozen, onnx = json.loads((sweep_dir / "summary.json").read_text())["jobs"]
    assert (frozen["stage"], frozen["backend"], frozen["speedup"]) == ("freeze", f"tensorflow {tf.__version__}", 1.0)
    assert onnx["stage"] == "onnx" and onnx["backend"].startswith("onnxruntime ")
    assert frozen["threads"] == onnx["threads"] == 1 and onnx["speedup"] > 0
    assert "│ tf " in capsys.readouterr().out


def test_best_is_the_fastest_job_that_holds_its_goals(tmp_path):
    rows = [{"stage": "tflite", "latency_ms": 5.0, "size": 10},
            {"stage": "tflite", "latency_ms": 1.0, "size": 30, "status": "failed", "code": 1},
            {"stage": "tflite", "latency_ms": 2.0, "size": 20, "metric": "top1", "value": 0.97, "artifact": "/a/m.tflite"},
            {"stage": "tflite", "latency_ms": 2.0, "size": 40}]
    write_sweep(tmp_path, rows)
    code, out = show(tmp_path)
    best = json.loads((tmp_path / "best.json").read_text())
    assert best["job"] == "2" and best["artifact"] == "/a/m.tflite" and best["value"] == 0.97   # job 1 failed
    assert os.readlink(tmp_path / "best") == "2" and code == 1
    assert "best: job 2 (x=2): top1 0.9700" in out and any("2*" in line for line in table_lines(out))


def test_select_minimize_size_picks_the_smallest_job_within_its_goals(tmp_path):
    rows = [{"stage": "tflite", "latency_ms": 1.0, "size": 40},
            {"stage": "tflite", "latency_ms": 3.0, "size": 5, "status": "failed", "code": 1},
            {"stage": "tflite", "latency_ms": 4.0, "size": 10},
            {"stage": "tflite", "latency_ms": 2.0, "size": 10}]
    write_sweep(tmp_path, rows)
    summarize(tmp_path, Reporter(Console(file=io.StringIO(), width=200)), minimize="size")
    assert json.loads((tmp_path / "best.json").read_text())["job"] == "3"   # 10 bytes, the faster of two


def test_select_minimize_is_checked_before_any_job(project, capsys):
    from tfbuild.cli.main import main
    assert main(["-m", "target=tiny_tflite", "tflite.precision=FP32,FP16", "select.minimize=speed"]) == 2
    assert "select.minimize='speed': a sweep's best minimizes one of ms, size" in capsys.readouterr().err
    assert not (project / "build").exists()


def test_no_job_holds_its_goals_says_so_in_one_line(tmp_path):
    write_sweep(tmp_path, [{"stage": "tflite", "latency_ms": 1.0, "status": "failed", "code": 1,
                            "error": "top1 0.5: below"}])
    code, out = show(tmp_path)
    assert code == 1 and "nothing to ship" in out and not (tmp_path / "best.json").exists()


def test_real_evaluated_sweep_marks_the_fastest_within_the_drop(project, capsys):
    from tfbuild.cli.main import main
    assert main(["-m", "target=digits_tflite", "tflite.precision=FP32,INT8", "bench.runs=5"]) == 0
    out = capsys.readouterr().out
    (sweep_dir,) = Path("build/sweeps").iterdir()
    jobs = json.loads((sweep_dir / "summary.json").read_text())["jobs"]
    assert all(j["metric"] == "top1" and j["value"] > 0.95 and j["drop"] <= 0.01 for j in jobs)
    best = json.loads((sweep_dir / "best.json").read_text())
    assert best["latency_ms"] == min(j["latency_ms"] for j in jobs)
    assert Path(best["artifact"]).is_file() and "top1" in table_lines(out)[1]


def test_a_lower_precision_slower_than_fp32_is_named_with_its_cause(tmp_path):
    base = {"stage": "tflite", "backend": "litert 2.3.0", "batch": 1, "threads": 2}
    write_sweep(tmp_path, [{**base, "precision": "FP32", "latency_ms": 10.0, "xnnpack_ops": 40, "total_ops": 40},
                           {**base, "precision": "INT8", "latency_ms": 12.0, "xnnpack_ops": 28, "total_ops": 40},
                           {**base, "precision": "FP16", "latency_ms": 8.0}])
    _, out = show(tmp_path)
    assert "job 1 (INT8) is slower than job 0 (FP32): 12 ms vs 10 ms: 12 of its 40 ops run outside XNNPACK" in out
    assert "job 2" not in out.split("slower")[1].split("\n")[0]


@pytest.mark.parametrize("args, expect", [
    (["tflite.precision=FP32,fp64"], "sweep job 1 (tflite.precision=fp64): tflite.precision='fp64' is unknown"),
    (["tflite.batch_size=1,0", "tflite.precision=FP32,FP16"], "sweep job 2 (tflite.batch_size=0 tflite.precision=FP32)"),
])
def test_a_sweep_with_one_bad_job_builds_no_job(project, capsys, args, expect):
    from tfbuild.cli.main import main
    assert main(["-m", "target=tiny_tflite", *args]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"tfbuild: error: {expect}"), err
    assert not (project / "build").exists()
