"""What the user has on disk, found by content and without TensorFlow.

- a TF1 checkpoint: a prefix (`dir/model.ckpt-1000`) with `.index`, `.data-*`
  and usually `.meta` files, or a directory whose `checkpoint` state file names one;
- a TF2 object-based checkpoint: the same files, its index holding the object graph;
- a SavedModel directory (`saved_model.pb`, `variables/`, `assets/`);
- a `.keras` file (a zip with `config.json`).
"""
from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import List

from ..errors import CheckpointError

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


TF1, TF2, SAVED_MODEL, KERAS = "TF1 checkpoint", "TF2 checkpoint", "SavedModel", "Keras file"
# Object-based (TF2) checkpoints keep their object graph under this key in the index.
_OBJECT_GRAPH_KEY = b"_CHECKPOINTABLE_OBJECT_GRAPH"


def detect(path: str) -> str:
    """Which of the formats `path` holds, by content."""
    p = Path(path).expanduser()
    if p.is_file() and zipfile.is_zipfile(p):
        with zipfile.ZipFile(p) as archive:
            if "config.json" in archive.namelist():
                return KERAS
    if p.is_dir() and (p / "saved_model.pb").is_file():
        return SAVED_MODEL
    if p.is_file() and p.suffix in (".keras", ".h5"):
        raise CheckpointError(f"{p} is not a Keras v3 file (a zip with config.json): save the model with "
                              "model.save('model.keras'), or export a SavedModel with model.export(DIR)")
    looks_like_checkpoint = (p / "checkpoint").is_file() or any(p.glob("*.index")) if p.is_dir() \
        else Path(f"{p}.index").is_file()
    if not looks_like_checkpoint:
        if not p.exists():
            raise CheckpointError(f"checkpoint not found: {p} does not exist (nor {p}.index); set "
                                  "checkpoint.path to a checkpoint prefix or directory, a SavedModel "
                                  "directory or a .keras file")
        raise CheckpointError(f"{p} is none of the formats tfbuild reads: looked for a .keras file, "
                              "a SavedModel directory (saved_model.pb), a checkpoint directory (with "
                              "a 'checkpoint' state file) or a checkpoint prefix (PREFIX.index)")
    index = Path(f"{checkpoint_prefix(str(p))}.index")
    with open(index, "rb") as f:
        return TF2 if _OBJECT_GRAPH_KEY in f.read() else TF1


def saved_model_files(path: str) -> List[Path]:
    """What a SavedModel is: its graph, variables and assets (fingerprint.pb is metadata)."""
    root = Path(path).expanduser()
    return [root / "saved_model.pb",
            *sorted(f for d in ("variables", "assets") for f in (root / d).rglob("*") if f.is_file())]


def model_files(path: str) -> List[Path]:
    """The files whose content is the model `path` names, in any format."""
    kind = detect(path)
    if kind == KERAS:
        return [Path(path).expanduser()]
    if kind == SAVED_MODEL:
        return saved_model_files(path)
    return checkpoint_files(path)


def checkpoint_files(path: str) -> List[Path]:
    prefix = checkpoint_prefix(path)
    files = [Path(f"{prefix}.index"), *sorted(prefix.parent.glob(prefix.name + ".data-*"))]
    if Path(f"{prefix}.meta").is_file():
        files.append(Path(f"{prefix}.meta"))
    if len(files) < 2 or files[1].suffix == ".meta":
        raise CheckpointError(f"checkpoint {prefix} has an .index but no .data-* shard: "
                              "copy the whole checkpoint (index, data and meta files)")
    return files
