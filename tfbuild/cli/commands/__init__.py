"""The words that are not builds, one module each, and the table `main` dispatches
through. Their one-line summaries make the usage text of `--help`. None goes
through Hydra's command line; only `inspect` imports TensorFlow (when it runs).

Adding a command: a module here with `run(args, reporter) -> exit code`, and one
row in COMMANDS.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List

from ..report import Reporter
from . import doctor, gc, inspect, version
from . import list as list_  # the module `list`, not the builtin


@dataclass(frozen=True)
class Command:
    """A word after `tfbuild`: what follows it (`args`, for --help), one line on what it
    does, and `run(args after the word, reporter) -> exit code`."""
    args: str
    summary: str
    run: Callable[[List[str], Reporter], int]


COMMANDS: Dict[str, Command] = {
    "list": Command("", "the targets: ./targets/ first, then shipped", list_.run),
    "inspect": Command("target=NAME", "the target's model: inputs, likely outputs, signatures", inspect.run),
    "doctor": Command("[target=NAME] [report_file=F]", "what this machine can build, and how to fix what not", doctor.run),
    "gc": Command("[dry_run=true]", "delete what no lock entry and no link uses", gc.run),
    "--version": Command("", "tfbuild, TensorFlow, Hydra, TensorRT, ...", version.run),
}

# A build is no word: whatever does not start with one goes to Hydra.
BUILDS = (("[target=NAME] [KEY=VALUE ...]", "build NAME and whatever before it is stale"),
          ("-m target=NAME KEY=A,B ...", "a sweep, ending in one comparison table"))

_USAGE = """\
tfbuild: Make for TensorFlow deployment artifacts.

Usage:
{lines}

Run keys:    build_dir=build lock_file=tfbuild.lock report_file=PATH dry_run=true
             force=true|[STAGE,...] verify=true bench.enabled=false verbose=true
Target keys: checkpoint.path model placeholder freeze onnx trt tflite evaluate (docs/interface.md)

Examples:
  tfbuild target=densenet_tflite dry_run=true       # what is stale, and why
  tfbuild target=tiny_tflite tflite.precision=FP16  # rebuilds only tflite
  tfbuild -m target=tiny_tflite tflite.precision=FP32,FP16,INT8 tflite.batch_size=1,8

Hydra's own help follows.
"""


def usage() -> str:
    """`--help`'s text: the builds, then one line per command from the table."""
    rows = [*(f"tfbuild {args}" for args, _ in BUILDS),
            *(f"tfbuild {name} {c.args}".rstrip() for name, c in COMMANDS.items())]
    summaries = [summary for _, summary in BUILDS] + [c.summary for c in COMMANDS.values()]
    width = max(map(len, rows)) + 2
    return _USAGE.format(lines="\n".join(f"  {row:<{width}}{summary}" for row, summary in zip(rows, summaries)))
