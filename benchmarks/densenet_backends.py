"""DenseNet-169 on this machine's CPU, every backend with every core, in one run:
the frozen graph in TensorFlow, ONNX Runtime FP32/FP16/INT8, TFLite FP32/FP16/INT8,
at batch 1 and 8.

Two sweeps share one build dir (so train, placeholder and freeze are built once):
    tfbuild -m target=densenet_onnx   onnx.precision=FP32,FP16,INT8   onnx.batch_size=1,8
    tfbuild -m target=densenet_tflite tflite.precision=FP32,FP16,INT8 tflite.batch_size=1,8
Each job's artifact is measured by tfbuild's own bench (bench.threads: all cores);
the frozen graph is measured here with the same call (measure.latency_frozen), in
the same run.

Goals (issue "Fast deployment on today's stacks", batch 1): the best FP32 artifact
>= 1.3x faster than the frozen graph in TensorFlow, the best artifact overall >= 1.8x,
each within its parity tolerance.

Run: python benchmarks/densenet_backends.py   (about 10-15 minutes; works in a temp dir)
"""
from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import banner, human_size, machine, run, snapshot_code, table, tfbuild_cmd, verdict, workdir  # noqa: E402

BATCHES = (1, 8)
FROZEN = textwrap.dedent("""
    import json, sys
    from tfbuild.tf.graph_io import seeded_batch
    from tfbuild.tf.timing import latency_frozen
    pb, meta, out = sys.argv[1], json.load(open(sys.argv[2]))["metadata"], sys.argv[3]
    rows = {}
    for b in (1, 8):
        feeds = {i["name"]: seeded_batch(i["shape"][1:], b).astype(i["dtype"]) for i in meta["inputs"]}
        rows[b] = latency_frozen(pb, feeds, [o["name"] for o in meta["outputs"]], warmup=3, runs=20)
    json.dump(rows, open(out, "w"))
""")


def sweep(tmp: Path, stage: str, target: str) -> list:
    args = ["-m", f"target={target}", f"{stage}.precision=FP32,FP16,INT8",
            f"{stage}.batch_size={','.join(map(str, BATCHES))}"]
    print("$ tfbuild", " ".join(args), flush=True)
    r = run([*tfbuild_cmd(), *args], tmp, timeout=2400)
    summary = max((tmp / "build" / "sweeps").glob("*/summary.json"), key=lambda p: p.stat().st_mtime)
    rows = json.loads(summary.read_text())["jobs"]
    print(f"  {len(rows)} jobs in {r.wall_s:.0f} s (exit {r.rc}); built: "
          + ", ".join(sorted({s for x in rows for s in (x.get('built') or '').split(',') if s})), flush=True)
    return [{**x, "stage": stage} for x in rows]


def main() -> int:
    print("tfbuild DenseNet-169 backends benchmark —", machine())
    with workdir("backends") as tmp:
        print(snapshot_code(tmp), flush=True)
        banner("sweeps")
        rows = sweep(tmp, "onnx", "densenet_onnx") + sweep(tmp, "tflite", "densenet_tflite")
        (frozen,) = (tmp / "build" / "store" / "freeze").iterdir()   # the one frozen graph both sweeps used
        run([sys.executable, "-c", FROZEN, str(frozen / "frozen.pb"), str(frozen / "tfbuild.json"),
             str(tmp / "frozen.json")], tmp).check()
        base = {int(b): v for b, v in json.loads((tmp / "frozen.json").read_text()).items()}
        size = (frozen / "frozen.pb").stat().st_size
        table_rows = [["frozen (TF)", "FP32", b, base[b]["median_ms"], base[b]["p90_ms"],
                       base[b]["throughput_per_s"], "1.00x", "reference", human_size(size), None] for b in BATCHES]
        for x in sorted(rows, key=lambda x: (x["stage"], x["batch"], x["precision"])):
            speed = base[int(x["batch"])]["median_ms"] / x["latency_ms"] if x.get("latency_ms") else None
            x["speedup"] = speed
            table_rows.append([x["stage"], x["precision"], x["batch"], x.get("latency_ms"), x.get("p90_ms"),
                               x.get("per_s"), f"{speed:.2f}x" if speed else "", x.get("parity"),
                               human_size(x.get("size")), _xnnpack(x)])
        banner(f"DenseNet-169, every backend with all cores (threads: {base[1].get('threads')})")
        print(table(["model", "precision", "batch", "median ms", "p90 ms", "img/s", "vs TF", "parity",
                     "size", "XNNPACK ops"], table_rows))
        ok_rows = [x for x in rows if x.get("status") == "ok" and x.get("speedup") and int(x["batch"]) == 1]
        fp32 = max((x["speedup"] for x in ok_rows if x["precision"] == "FP32"), default=0.0)
        best = max((x["speedup"] for x in ok_rows), default=0.0)
        print(verdict(fp32 >= 1.3, f"best FP32 artifact at batch 1: {fp32:.2f}x the frozen graph (goal >= 1.3x)"))
        print(verdict(best >= 1.8, f"best artifact at batch 1: {best:.2f}x the frozen graph (goal >= 1.8x)"))
        return 0


def _xnnpack(row: dict):
    """TFLite: ops the XNNPACK delegate took of all (the rest run in TFLite's own,
    slower kernels: what an INT8 model that gains little over FP32 is short of)."""
    return f"{row['xnnpack_ops']}/{row['total_ops']}" if row.get("total_ops") else None


if __name__ == "__main__":
    sys.exit(main())
