"""trt: TF-TRT on the frozen graph (TensorFlow <=2.17 + TensorRT 8.6 + GPU).

Settings are validated and the backend checked before any upstream work, so a
machine without TF-TRT fails at once with what to do instead.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..engine.spec import StageSpec, section
from . import deploy

if TYPE_CHECKING:
    from ..config import TrtCfg

ARTIFACT = "trt.pb"


@dataclass(frozen=True)
class Settings:
    trt: TrtCfg


def settings(cfg, deps) -> Settings:
    deploy.check_calibration(cfg, "trt")
    return Settings(cfg.trt)


def check(s: Settings) -> None:
    from ..tf.trt_convert import validate
    validate(dataclasses.asdict(s.trt))


def preflight(s: Settings) -> None:
    from ..tf.trt_convert import preflight as trt_preflight
    trt_preflight()


def environment(s: Settings) -> dict:
    from ..tf.trt_convert import environment as trt_environment
    return trt_environment()


def run(inputs, s: Settings, out: Path, log) -> dict:
    from ..tf.measure import run_frozen
    from ..tf.trt_convert import TOLERANCE, convert

    t, freeze = s.trt, inputs["freeze"]
    graph_inputs, outputs = deploy.graph_io(freeze)
    data = deploy.calibration(freeze, "trt", t.calibration, t.precision == "INT8", log)
    path = out / ARTIFACT
    meta = convert(deploy.frozen(freeze), outputs, dataclasses.asdict(t), data, graph_inputs[0]["name"], path)
    batch = t.max_batch_size or 1
    names = [i["name"] for i in graph_inputs]
    checked = deploy.parity(freeze, deploy.parity_feeds(graph_inputs, batch, data),
                            lambda f: run_frozen(path, dict(zip(names, f)), outputs),
                            f"TF-TRT {t.precision} graph", "trt", t.tolerance, TOLERANCE[t.precision])
    return {**meta, "batch_size": batch, "inputs": graph_inputs, "outputs": freeze.metadata["outputs"], **checked}


def bench(artifact, b, inputs) -> dict:
    from ..tf.measure import latency_frozen, seeded_batch
    meta = artifact.metadata
    feeds = {i["name"]: seeded_batch(i["shape"][1:], meta["batch_size"]) for i in meta["inputs"]}
    return latency_frozen(artifact.path / ARTIFACT, feeds, [o["name"] for o in meta["outputs"]],
                          warmup=b.warmup, runs=b.runs, threads=b.threads)


SPEC = StageSpec("trt", settings, run, present=section("trt"),
                 upstream=("freeze",), artifact=ARTIFACT, environment=environment,
                 files=lambda s: deploy.calibration_input(s.trt.calibration),
                 check=check, preflight=preflight, bench=bench)
