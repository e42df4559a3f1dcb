"""Finding a user's TF1 checkpoint on disk, without TensorFlow.

A checkpoint is a prefix (`dir/model.ckpt-1000`) with `.index`, `.data-*` and
usually `.meta` files, or a directory whose `checkpoint` state file names one.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import List

from .errors import CheckpointError

_STATE_LINE = re.compile(r'^model_checkpoint_path:\s*"(.*)"\s*$', re.M)


def checkpoint_prefix(path: str) -> Path:
    """A checkpoint prefix from a prefix or a directory with a `checkpoint` state file."""
    p = Path(path).expanduser()
    if p.is_dir():
        state = p / "checkpoint"
        if not state.is_file():
            found = sorted(str(i.with_suffix("")) for i in p.glob("*.index"))
            hint = f" (found: {', '.join(found[:3])})" if found else ""
            raise CheckpointError(
                f"checkpoint directory {p} has no 'checkpoint' state file: give the prefix "
                f"instead, e.g. checkpoint.path={found[0] if found else p / 'model.ckpt-1000'}{hint}")
        m = _STATE_LINE.search(state.read_text(errors="replace"))
        if not m:
            raise CheckpointError(f"{state} names no model_checkpoint_path: give the prefix instead")
        # State files often hold absolute paths from the training machine: the
        # directory given is what the user means, so look there first.
        named = Path(m.group(1))
        inside = p / (named.name if named.is_absolute() else named)
        p = named if not Path(f"{inside}.index").is_file() and named.is_absolute() else inside
    if not Path(f"{p}.index").is_file():
        raise CheckpointError(
            f"checkpoint not found: {p}.index does not exist; set checkpoint.path to a prefix "
            "(dir/model.ckpt-1000) or a directory holding a 'checkpoint' file")
    return p


def checkpoint_files(path: str) -> List[Path]:
    prefix = checkpoint_prefix(path)
    files = [Path(f"{prefix}.index"), *sorted(prefix.parent.glob(prefix.name + ".data-*"))]
    if Path(f"{prefix}.meta").is_file():
        files.append(Path(f"{prefix}.meta"))
    if len(files) < 2 or files[1].suffix == ".meta":
        raise CheckpointError(f"checkpoint {prefix} has an .index but no .data-* shard: "
                              "copy the whole checkpoint (index, data and meta files)")
    return files
