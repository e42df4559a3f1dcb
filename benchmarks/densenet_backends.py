"""DenseNet-169 on this machine's CPU, every backend with every core, in one run:
ONNX Runtime and TFLite at FP32/FP16/INT8, each timed by tfbuild's own bench in
turns with the frozen graph in TensorFlow (window by window until both settle:
tfbuild/measure.py), so each "vs TF" is a ratio measured side by side, with its
spread (p10-p90, coefficient of variation), whether it settled, and the peak
memory each runtime session takes.

Two sweeps share one build dir (train, placeholder and freeze are built once):
    tfbuild -m target=densenet_onnx   onnx.precision=FP32,FP16,INT8   onnx.batch_size=1
    tfbuild -m target=densenet_tflite tflite.precision=FP32,FP16,INT8 tflite.batch_size=1

Goals (issue "Measurements you can trust, and INT8 that pays", batch 1, within parity):
the best artifact >= 2.5x the frozen graph, TFLite INT8 >= 1.5x TFLite FP32, the
best FP32 artifact >= 1.5x.

Run: python benchmarks/densenet_backends.py [--batches 1,8]   (about 15 minutes at batch 1)
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import banner, human_size, machine, run, snapshot_code, table, tfbuild_cmd, verdict, workdir  # noqa: E402


def sweep(tmp: Path, stage: str, target: str, batches: str) -> list:
    args = ["-m", f"target={target}", f"{stage}.precision=FP32,FP16,INT8", f"{stage}.batch_size={batches}"]
    print("$ tfbuild", " ".join(args), flush=True)
    r = run([*tfbuild_cmd(), *args], tmp, timeout=3600)
    summary = max((tmp / "build" / "sweeps").glob("*/summary.json"), key=lambda p: p.stat().st_mtime)
    rows = json.loads(summary.read_text())["jobs"]
    print(f"  {len(rows)} jobs in {r.wall_s:.0f} s (exit {r.rc})", flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1")
    args = parser.parse_args()
    print("tfbuild DenseNet-169 backends benchmark —", machine())
    with workdir("backends") as tmp:
        print(snapshot_code(tmp), flush=True)
        banner("sweeps")
        rows = sweep(tmp, "onnx", "densenet_onnx", args.batches) + sweep(tmp, "tflite", "densenet_tflite", args.batches)
        shown = []
        for x in sorted(rows, key=lambda x: (x["stage"] or "", int(x["batch"] or 0), x["precision"] or "")):
            spread = f"{x['p10_ms']:.1f}-{x['p90_ms']:.1f}" if x.get("p10_ms") else ""
            shown.append([x["stage"], x["precision"], x["batch"], x.get("latency_ms"), spread, x.get("cv"),
                          x.get("frozen_ms"), x.get("speedup") and f"{'' if x.get('settled') else '~'}{x['speedup']:.2f}x",
                          x.get("memory_mb"), x.get("frozen_memory_mb"), x.get("parity"), human_size(x.get("size")),
                          _xnnpack(x), x.get("status")])
        banner("DenseNet-169, every backend with all cores; TF timed in turns with each (~: did not settle)")
        print(table(["stage", "prec", "batch", "median ms", "p10-p90", "cv", "TF ms", "vs TF", "MiB",
                     "TF MiB", "parity", "size", "XNNPACK", "status"], shown))
        ok = [x for x in rows if x.get("status") == "ok" and x.get("speedup") and int(x["batch"]) == 1]
        best = max((x["speedup"] for x in ok), default=0.0)
        fp32 = max((x["speedup"] for x in ok if x["precision"] == "FP32"), default=0.0)
        tfl = {x["precision"]: x["speedup"] for x in ok if x["stage"] == "tflite"}
        int8_gain = tfl["INT8"] / tfl["FP32"] if "INT8" in tfl and "FP32" in tfl else 0.0
        print(verdict(best >= 2.5, f"best artifact at batch 1: {best:.2f}x the frozen graph (goal >= 2.5x)"))
        print(verdict(int8_gain >= 1.5, f"TFLite INT8 over TFLite FP32 at batch 1: {int8_gain:.2f}x (goal >= 1.5x)"))
        print(verdict(fp32 >= 1.5, f"best FP32 artifact at batch 1: {fp32:.2f}x the frozen graph (goal >= 1.5x)"))
        return 0


def _xnnpack(row: dict):
    """TFLite: ops the XNNPACK delegate took of all (the rest run in TFLite's own,
    slower kernels: what an INT8 model that gains little over FP32 is short of)."""
    return f"{row['xnnpack_ops']}/{row['total_ops']}" if row.get("total_ops") else None


if __name__ == "__main__":
    sys.exit(main())
