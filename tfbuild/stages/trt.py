"""trt: TF-TRT on the frozen graph (TensorFlow <=2.17 + TensorRT 8.6 + GPU).

Settings are validated and the backend checked before any upstream work, so a
machine without TF-TRT fails at once with what to do instead.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from ..errors import ParityError
from . import deploy

ARTIFACT = "trt.pb"


def _settings(cfg) -> dict:
    s = dataclasses.asdict(cfg.trt)
    s["precision"] = s["precision"].upper()
    return s


def check(cfg) -> None:
    from ..trt_convert import validate
    validate(_settings(cfg))


def preflight(cfg) -> None:
    from ..trt_convert import preflight as trt_preflight
    trt_preflight()


def build(ctx) -> dict:
    from ..measure import max_abs_diff, run_frozen
    from ..trt_convert import TOLERANCE, convert

    settings = _settings(ctx.cfg)
    inputs, outputs = deploy.graph_io(ctx)
    data = deploy.calibration(ctx, "trt", needed=settings["precision"] == "INT8")
    out = ctx.out / ARTIFACT
    meta = convert(deploy.frozen(ctx), outputs, settings, data, inputs[0]["name"], out)
    batch = settings["max_batch_size"] or 1
    feeds = {i["name"]: f for i, f in zip(inputs, deploy.parity_feeds(inputs, batch, data))}
    diff = max_abs_diff(run_frozen(deploy.frozen(ctx), feeds, outputs), run_frozen(out, feeds, outputs))
    tolerance = TOLERANCE[settings["precision"]]
    if diff > tolerance:
        raise ParityError(f"TF-TRT {settings['precision']} graph differs from the frozen graph by "
                          f"{diff:.3g} (> {tolerance})")
    return {**meta, "batch_size": batch, "inputs": inputs, "outputs": ctx.metadata["freeze"]["outputs"],
            "parity_max_abs_diff": diff, "parity_tolerance": tolerance}


def bench(cfg, artifact: Path, meta: dict) -> dict:
    from ..measure import latency_frozen, seeded_batch
    batch = meta["batch_size"]
    feeds = {i["name"]: seeded_batch(i["shape"][1:], batch) for i in meta["inputs"]}
    return latency_frozen(artifact / ARTIFACT, feeds, [o["name"] for o in meta["outputs"]],
                          warmup=cfg.bench.warmup, runs=cfg.bench.runs)
