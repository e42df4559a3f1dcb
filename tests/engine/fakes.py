"""Fake stages for the engine's unit tests: no TensorFlow, no tfbuild.stages.

A tiny pipeline over text files:

    source  -> copies the user's input file (a PATH setting) into its artifact
    double  -> repeats the source's text `factor` times        (upstream: source)
    tail    -> appends a suffix to double's text, else source's (upstream: double or source)
    strict  -> its `check` refuses a negative limit             (upstream: tail)
    gpu     -> its `preflight` says this machine cannot build it (upstream: tail)
    boom    -> its `run` fails                                  (upstream: double)
    after   -> anything downstream of boom                      (upstream: boom)

Stages are registered in a test-local `Registry` (see `registry()`).
"""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from tfbuild.engine.spec import Registry, StageSpec, section
from tfbuild.marks import PATH, key
from tfbuild.errors import BackendUnavailable, ConfigError, StageFailed

OUT = "data.txt"


# ----------------------------------------------------------------------------- config

@dataclass
class SourceCfg:
    path: str = "data/in.txt"
    label: str = "x"


@dataclass
class DoubleCfg:
    factor: int = 2


@dataclass
class TailCfg:
    suffix: str = "!"


@dataclass
class StrictCfg:
    limit: int = 1


@dataclass
class GpuCfg:
    device: str = "fake0"


@dataclass
class BoomCfg:
    message: str = "boom: the fake stage failed"
    kind: str = "stage"        # "stage": StageFailed; "bug": RuntimeError; "full": a full disk


@dataclass
class AfterCfg:
    pass


@dataclass
class Cfg:
    source: Optional[SourceCfg] = field(default_factory=SourceCfg)
    double: Optional[DoubleCfg] = field(default_factory=DoubleCfg)
    tail: Optional[TailCfg] = field(default_factory=TailCfg)
    strict: Optional[StrictCfg] = None
    gpu: Optional[GpuCfg] = None
    boom: Optional[BoomCfg] = None
    after: Optional[AfterCfg] = None


# ----------------------------------------------------------------------------- calls seen

# What the fake stages were called with, for the tests to inspect: {stage: [settings, ...]}.
CALLS: Dict[str, list] = {}
BENCHES: List[dict] = []
GPU = {"available": True}


def reset() -> None:
    CALLS.clear()
    BENCHES.clear()
    GPU["available"] = True


def _seen(stage: str, settings) -> None:
    CALLS.setdefault(stage, []).append(settings)


def _text(artifact) -> str:
    return (artifact.path / artifact.metadata["file"]).read_text()


def _write(out: Path, text: str, **extra) -> dict:
    (out / OUT).write_text(text)
    return {"file": OUT, "length": len(text), **extra}


# ----------------------------------------------------------------------------- source

@dataclass(frozen=True)
class SourceSettings:
    path: str = field(metadata=PATH)
    label: str = field(metadata=key("source.label"))


def source_run(inputs, s: SourceSettings, out: Path, log) -> dict:
    _seen("source", s)
    return _write(out, Path(s.path).read_text(), label=s.label)


SOURCE = StageSpec(
    "source", lambda cfg, deps: SourceSettings(cfg.source.path, cfg.source.label), source_run,
    present=section("source"), artifact=OUT, files=lambda s: {"data": [Path(s.path)]})


# ----------------------------------------------------------------------------- double

@dataclass(frozen=True)
class DoubleSettings:
    factor: int = field(metadata=key("double.factor"))


def double_run(inputs, s: DoubleSettings, out: Path, log) -> dict:
    _seen("double", s)
    return _write(out, _text(inputs["source"]) * s.factor)


DOUBLE = StageSpec("double", lambda cfg, deps: DoubleSettings(cfg.double.factor), double_run,
                   present=section("double"), upstream=("source",), artifact=OUT)


# ----------------------------------------------------------------------------- tail

@dataclass(frozen=True)
class TailSettings:
    suffix: str = field(metadata=key("tail.suffix"))


def tail_run(inputs, s: TailSettings, out: Path, log) -> dict:
    _seen("tail", s)
    (upstream,) = inputs.values()   # double's or source's, whichever the graph picked
    return _write(out, _text(upstream) + s.suffix, upstream=sorted(inputs))


def tail_bench(artifact, bench, inputs) -> dict:
    BENCHES.append({"path": artifact.path, "metadata": artifact.metadata, "bench": bench})
    return {"length": artifact.metadata["length"], "runs": bench["runs"]}


TAIL = StageSpec("tail", lambda cfg, deps: TailSettings(cfg.tail.suffix), tail_run,
                 present=section("tail"), upstream=(("double", "source"),), artifact=OUT,
                 bench=tail_bench)


# ----------------------------------------------------------------------------- strict

@dataclass(frozen=True)
class StrictSettings:
    limit: int = field(metadata=key("strict.limit"))


def strict_check(s: StrictSettings) -> None:
    _seen("strict.check", s)
    if s.limit < 0:
        raise ConfigError(f"strict.limit is {s.limit}: give a limit >= 0")


def strict_run(inputs, s: StrictSettings, out: Path, log) -> dict:
    _seen("strict", s)
    return _write(out, _text(inputs["tail"])[: s.limit])


STRICT = StageSpec("strict", lambda cfg, deps: StrictSettings(cfg.strict.limit), strict_run,
                   present=section("strict"), upstream=("tail",), artifact=OUT, check=strict_check)


# ----------------------------------------------------------------------------- gpu

@dataclass(frozen=True)
class GpuSettings:
    device: str = field(metadata=key("gpu.device"))


def gpu_preflight(s: GpuSettings) -> None:
    _seen("gpu.preflight", s)
    if not GPU["available"]:
        raise BackendUnavailable(f"no {s.device} on this machine: build on one that has it")


def gpu_run(inputs, s: GpuSettings, out: Path, log) -> dict:
    _seen("gpu", s)
    return _write(out, _text(inputs["tail"]).upper())


GPU_SPEC = StageSpec("gpu", lambda cfg, deps: GpuSettings(cfg.gpu.device), gpu_run,
                     present=section("gpu"), upstream=("tail",), artifact=OUT, preflight=gpu_preflight)


# ----------------------------------------------------------------------------- boom / after

@dataclass(frozen=True)
class BoomSettings:
    message: str = field(metadata=key("boom.message"))
    kind: str = field(metadata=key("boom.kind"))


def boom_run(inputs, s: BoomSettings, out: Path, log) -> dict:
    _seen("boom", s)
    (out / "partial.txt").write_text("half-written")
    if s.kind == "full":   # the kernel's own ENOSPC: /dev/full refuses every write
        (out / "model.bin").symlink_to("/dev/full")
        with open(out / "model.bin", "wb") as f:
            f.write(b"x" * 4096)
    if s.kind == "bug":
        raise RuntimeError(s.message)
    raise StageFailed(s.message)


BOOM = StageSpec("boom", lambda cfg, deps: BoomSettings(cfg.boom.message, cfg.boom.kind), boom_run,
                 present=section("boom"), upstream=("double",), artifact=OUT)


@dataclass(frozen=True)
class AfterSettings:
    pass


def after_run(inputs, s: AfterSettings, out: Path, log) -> dict:
    _seen("after", s)
    return _write(out, _text(inputs["boom"]))


AFTER = StageSpec("after", lambda cfg, deps: AfterSettings(), after_run, present=section("after"),
                  upstream=("boom",), artifact=OUT)


ALL = (SOURCE, DOUBLE, TAIL, STRICT, GPU_SPEC, BOOM, AFTER)


def registry(*names: str, **replace: StageSpec) -> Registry:
    """A fresh registry of the named fake stages (all by default), in declaration order;
    `replace` swaps in a variant of a spec, e.g. source=dataclasses.replace(SOURCE, tools=(...))."""
    chosen = [s for s in ALL if not names or s.name in names]
    return Registry(tuple(replace.get(s.name, s) for s in chosen))


def variant(spec: StageSpec, **changes) -> StageSpec:
    return dataclasses.replace(spec, **changes)


# ----------------------------------------------------------------------------- reporter

class FakeReporter:
    """The engine's Output (tfbuild.engine.output), recorded."""

    def __init__(self):
        self.events: List[tuple] = []

    def info(self, text: str) -> None:
        self.events.append(("info", text))

    def warn(self, text: str) -> None:
        self.events.append(("warn", text))

    def plan(self, target: str, decisions) -> None:
        self.events.append(("plan", target, [(d.name, d.stale, d.reason) for d in decisions]))

    @contextlib.contextmanager
    def running(self, stage: str, detail: str = ""):
        self.events.append(("running", stage))
        yield

    def crashed(self, trace: str) -> None:
        self.events.append(("crashed", trace))

    def ran(self) -> List[str]:
        return [e[1] for e in self.events if e[0] == "running"]


def statuses(report: dict) -> dict:
    return {s["name"]: s["status"] for s in report["stages"]}


def reasons(report: dict) -> dict:
    return {s["name"]: s["reason"] for s in report["stages"]}
