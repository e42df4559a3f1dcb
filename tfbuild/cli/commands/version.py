"""`tfbuild --version`: tfbuild and the tools it drives, as installed."""
from __future__ import annotations

from importlib import metadata
from typing import List

from ..report import Reporter

_TOOLS = ("tensorflow", "hydra-core", "omegaconf", "tensorrt", "onnxruntime", "tf2onnx")


def run(args: List[str], reporter: Reporter) -> int:
    reporter.console.print(version(), soft_wrap=True)
    return 0


def version() -> str:
    from ... import __version__
    found = {"tfbuild": __version__}
    for name in _TOOLS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return " ".join(f"{k} {v}" for k, v in found.items())
