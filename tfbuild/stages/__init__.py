"""The stages, each declared once as a `StageSpec` in its own module.

A stage module holds its config section (a dataclass, named in `config.Config`),
its settings dataclass, `settings(cfg, deps)`, its plain function
`run(inputs, settings, out, log) -> metadata`, optional `check`, `preflight` and
`bench`, and `SPEC`. Its TensorFlow code lives in `tfbuild.tf`, imported inside
`run`, `preflight` and `bench` only. `deploy.py` is no stage: what the stages
share. Adding a stage: a module here, its TensorFlow code in `tfbuild.tf`, its
section in `Config` and `conf/`, a target, and one entry below.
"""
from __future__ import annotations

from ..engine.spec import Registry
from . import freeze, onnx, placeholder, tflite, train, trt

REGISTRY = Registry((train.SPEC, placeholder.SPEC, freeze.SPEC, onnx.SPEC, trt.SPEC, tflite.SPEC))
