"""The layering the architecture promises, checked on the import graph (no imports run):
the engine imports no stage and no TensorFlow helper; TensorFlow helpers import no engine."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tfbuild.engine import fingerprint

PKG = Path(fingerprint.__file__).resolve().parents[1]


def closure(module: str) -> set:
    return set(fingerprint.code_record(module, fingerprint.StatCache(Path(os.devnull))))


def modules(folder: str) -> list:
    return [f"tfbuild.{folder}.{p.stem}" for p in sorted((PKG / folder).glob("*.py")) if p.stem != "__init__"]


@pytest.mark.parametrize("module", modules("engine"))
def test_engine_imports_no_stage_and_no_tensorflow_helper(module):
    bad = {m for m in closure(module) if m.startswith(("tfbuild/stages/", "tfbuild/tf/", "tfbuild/cli"))}
    assert not bad, f"{module} imports {sorted(bad)}"


@pytest.mark.parametrize("module", modules("tf"))
def test_tensorflow_helpers_import_no_engine_and_no_stage(module):
    bad = {m for m in closure(module) if m.startswith(("tfbuild/engine/", "tfbuild/stages/"))}
    assert not bad, f"{module} imports {sorted(bad)}"


def test_engine_source_names_no_stage():
    names = ("train", "placeholder", "freeze", "trt", "tflite")
    for path in (PKG / "engine").glob("*.py"):
        text = path.read_text()
        for name in names:
            assert f'"{name}"' not in text and f"'{name}'" not in text, f"{path.name} names {name}"
