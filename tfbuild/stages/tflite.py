"""tflite: the CPU/edge sibling of trt — the frozen graph as a .tflite model
at a fixed batch size, FP32, FP16 (float16 weights) or INT8 (calibrated)."""
from __future__ import annotations

from pathlib import Path

from ..config import PRECISIONS
from ..errors import ConfigError, ParityError
from . import deploy

ARTIFACT = "model.tflite"


def check(cfg) -> None:
    t = cfg.tflite
    if t.precision not in PRECISIONS:
        raise ConfigError(f"tflite.precision={t.precision!r} is unknown: use one of {', '.join(PRECISIONS)}")
    if t.batch_size < 1:
        raise ConfigError(f"tflite.batch_size={t.batch_size}: use a batch size of 1 or more")
    if t.precision == "INT8" and not deploy.given(t.calibration):
        raise ConfigError("tflite.precision=INT8 needs calibration data: set tflite.calibration.path "
                          "to a .npy/.npz or an image folder (or tflite.calibration.random=true for a demo)")


def build(ctx) -> dict:
    from ..measure import max_abs_diff, run_frozen, run_tflite
    from ..tflite_convert import TOLERANCE, convert

    t = ctx.cfg.tflite
    inputs, outputs = deploy.graph_io(ctx)
    data = deploy.calibration(ctx, "tflite", needed=t.precision == "INT8")
    out = ctx.out / ARTIFACT
    meta = convert(deploy.frozen(ctx), inputs, outputs, t.precision, t.batch_size,
                   data if t.precision == "INT8" else None, out)
    feeds = deploy.parity_feeds(inputs, t.batch_size, data)
    expected = run_frozen(deploy.frozen(ctx), {i["name"]: f for i, f in zip(inputs, feeds)}, outputs)
    diff = max_abs_diff(expected, run_tflite(out, feeds))
    if diff > TOLERANCE[t.precision]:
        raise ParityError(f"TFLite {t.precision} model differs from the frozen graph by {diff:.3g} "
                          f"(> {TOLERANCE[t.precision]})")
    return {**meta, "parity_max_abs_diff": diff, "parity_tolerance": TOLERANCE[t.precision]}


def bench(cfg, artifact: Path, meta: dict) -> dict:
    from ..measure import latency_tflite, seeded_batch
    feeds = [seeded_batch(i["shape"][1:], i["shape"][0]).astype(i["dtype"]) for i in meta["inputs"]]
    return latency_tflite(artifact / ARTIFACT, feeds, warmup=cfg.bench.warmup, runs=cfg.bench.runs)
