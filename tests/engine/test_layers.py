"""The layering the architecture promises, checked on the import graph (no imports run):
the engine imports no stage and no TensorFlow helper; TensorFlow helpers import no engine,
no stage and no config; stages load no TensorFlow when they are declared; the
TensorFlow-free domain helpers (inputs/, backends.py) import only errors; nothing below
the shell imports it; no module imports itself through others (no cycle)."""
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


@pytest.mark.parametrize("module", modules("tf"))
def test_tensorflow_helpers_import_no_config_and_no_shell(module):
    """They take plain values and sections, never the schema: stages hand them what they need."""
    bad = {m for m in closure(module) if m == "tfbuild/config.py" or m.startswith("tfbuild/cli")}
    assert not bad, f"{module} imports {sorted(bad)}"


def top_level_imports(path: Path) -> set:
    """Modules a file imports when it is imported (not inside functions, not for type checkers)."""
    import ast
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            found.add("." * node.level + (node.module or ""))
    return found


@pytest.mark.parametrize("path", sorted((PKG / "stages").glob("*.py")), ids=lambda p: p.name)
def test_stages_import_no_tensorflow_at_module_level(path):
    """Declaring the stages (every command does) loads no TensorFlow: it comes with run."""
    bad = {m for m in top_level_imports(path)
           if m.split(".")[0] in ("tensorflow", "numpy", "onnx", "onnxruntime", "tensorrt")
           or m.startswith(("..tf", "tfbuild.tf"))}
    assert not bad, f"{path.name} imports {sorted(bad)} at module level"


def test_stages_and_config_do_not_import_each_other_in_a_cycle():
    """config.py imports the stages' sections; a stage names config's types for type checkers only."""
    for path in (PKG / "stages").glob("*.py"):
        assert not {m for m in top_level_imports(path) if m in ("..config", "tfbuild.config")}, path.name
    assert not {m for m in closure("tfbuild.stages.freeze") if m == "tfbuild/config.py"}


def test_no_module_imports_another_modules_private_names():
    import ast
    for path in PKG.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module != "__future__":
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.endswith("__")]
                assert not private, f"{path.relative_to(PKG)} imports {private} from {node.module}"


def every_module() -> dict:
    """{path under the repo: module name} of every tfbuild module."""
    found = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__main__":
            continue
        found[path.relative_to(PKG.parent).as_posix()] = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    return found


DOMAIN_HELPERS = [*modules("inputs"), "tfbuild.backends"]


@pytest.mark.parametrize("module", DOMAIN_HELPERS)
def test_domain_helpers_import_only_errors(module):
    """Checkpoint detection, calibration data, samples and the backend choice: plain
    knowledge that the config, the stages and tf/ share, so they import none of them."""
    inside = module.replace(".", "/") + ".py"
    assert set(closure(module)) - {inside} <= {"tfbuild/errors.py", "tfbuild/inputs/samples.py"}, module


@pytest.mark.parametrize("path", [*sorted((PKG / "inputs").glob("*.py")), PKG / "backends.py"],
                         ids=lambda p: p.relative_to(PKG).as_posix())
def test_domain_helpers_import_no_tensorflow_at_module_level(path):
    bad = {m for m in top_level_imports(path) if m.split(".")[0] in ("tensorflow", "onnx", "onnxruntime",
                                                                     "tensorrt", "tf2onnx", "PIL")}
    assert not bad, f"{path.name} imports {sorted(bad)} at module level"


def test_nothing_below_the_shell_imports_it():
    for path, module in every_module().items():
        if not path.startswith("tfbuild/cli/"):
            bad = {m for m in closure(module) if m.startswith("tfbuild/cli/")}
            assert not bad, f"{module} imports {sorted(bad)}"


def test_commands_do_not_import_the_entry_point():
    """cli.main dispatches through the command table; the commands never import main back
    (only the package's console_main shim does, lazily)."""
    for path, module in every_module().items():
        if path.startswith("tfbuild/cli/") and path not in ("tfbuild/cli/main.py", "tfbuild/cli/__init__.py"):
            assert "tfbuild/cli/main.py" not in closure(module), module


def test_no_import_cycle():
    closures = {path: set(closure(module)) for path, module in every_module().items()}
    cycles = sorted((a, b) for a, reach in closures.items() for b in reach
                    if a < b and a in closures.get(b, ()))
    assert not cycles, f"modules that import each other (directly or not): {cycles}"
