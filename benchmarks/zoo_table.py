"""What converts, per backend, measured: every zoo model (tests/zoo.py) as a .keras file
through freeze, ONNX and TFLite (FP32, and INT8 where meaningful, on random calibration),
each artifact compared with the ORIGINAL model's outputs on realistic samples.

    python3 benchmarks/zoo_table.py [--slow]

Prints one Markdown row per model: the worst |artifact - original| or the one-line refusal.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import numpy as np  # noqa: E402

import zoo  # noqa: E402
from test_zoo import install  # noqa: E402

STAGES = "onnx: {{precision: {p}, batch_size: null{cal}}}\ntflite: {{precision: {p}, batch_size: 2{cal}}}\n"
CAL = ", calibration: {random: true, num_samples: 16}"


def worst(case, model, runner, outputs) -> float:
    feeds = zoo.samples(case, n=2, seed=5)
    want = zoo.reference(case, model, feeds)
    got = runner(feeds, outputs)
    keys = sorted(want) if len(want) > 1 else list(want)
    return max(float(np.abs(np.asarray(want[k], np.float64) - np.asarray(g, np.float64)).max())
               for k, g in zip(keys, got))


def row(case, root: Path) -> str:
    from tfbuild.cli.main import main
    from tfbuild.tf.graph_io import run_frozen
    from tfbuild.tf.runtimes import run_onnx, run_tflite
    model = case.build()
    paths = zoo.save(case, root / "models", model)
    fmt = "keras" if "keras" in paths else "saved_model"
    outputs = list(zoo.frozen_outputs(case, fmt))
    cells = []
    for precision in ("FP32", "INT8") if case.int8 else ("FP32",):
        project = Path(tempfile.mkdtemp(dir=root))
        install(project, case, paths[fmt], STAGES.format(p=precision, cal=CAL if precision == "INT8" else ""))
        os.chdir(project)
        main(["target=m", "bench.enabled=false", "report_file=r.json"])
        import json
        report = json.loads((project / "r.json").read_text())
        stages = {s["name"]: s for s in report["stages"]}
        run = {"freeze": lambda f, o, p: run_frozen(p, f, o), "onnx": lambda f, o, p: run_onnx(p, f),
               "tflite": lambda f, o, p: run_tflite(p, f)}
        for name in ("freeze", "onnx", "tflite") if precision == "FP32" else ("onnx", "tflite"):
            s = stages[name]
            if s["status"] not in ("built", "fresh"):
                cells.append(f"refused: {report.get('error') or s.get('reason')}"[:80])
                continue
            path = Path(s["artifact"])
            cells.append(f"{worst(case, model, lambda f, o: run[name](f, o, path), outputs):.1e}")
    return f"| {case.name} ({fmt}) | " + " | ".join(cells + [""] * (5 - len(cells))) + " |"


def main() -> None:
    cases = zoo.CASES if "--slow" in sys.argv else zoo.fast_cases()
    print("| model | frozen FP32 | ONNX FP32 | TFLite FP32 | ONNX INT8 | TFLite INT8 |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            print(row(case, Path(tmp)), flush=True)


if __name__ == "__main__":
    main()
