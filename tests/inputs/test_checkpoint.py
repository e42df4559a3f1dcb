"""tfbuild.inputs.checkpoint: finding a TF1 checkpoint on disk (no TensorFlow needed)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tfbuild.inputs.checkpoint import checkpoint_files, checkpoint_prefix
from tfbuild.errors import CheckpointError


def ckpt(folder: Path, name: str = "model.ckpt-5", meta: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for suffix in (".index", ".data-00000-of-00001") + ((".meta",) if meta else ()):
        (folder / f"{name}{suffix}").write_bytes(b"x")
    return folder / name


def state(folder: Path, named: str) -> None:
    (folder / "checkpoint").write_text(f'model_checkpoint_path: "{named}"\n')


def test_prefix_and_its_files(tmp_path):
    prefix = ckpt(tmp_path / "run")
    assert checkpoint_prefix(str(prefix)) == prefix
    assert [f.name for f in checkpoint_files(str(prefix))] == [
        "model.ckpt-5.index", "model.ckpt-5.data-00000-of-00001", "model.ckpt-5.meta"]


def test_state_file_with_an_absolute_path_reads_inside_the_given_directory(tmp_path):
    original = ckpt(tmp_path / "a")
    copy = ckpt(tmp_path / "b")
    state(tmp_path / "b", str(original))          # written on the machine that trained it
    assert checkpoint_prefix(str(tmp_path / "b")) == copy


def test_state_file_with_an_absolute_path_elsewhere_is_used_when_not_inside(tmp_path):
    original = ckpt(tmp_path / "a")
    (tmp_path / "b").mkdir()
    state(tmp_path / "b", str(original))
    assert checkpoint_prefix(str(tmp_path / "b")) == original


def test_state_file_with_a_relative_subfolder(tmp_path):
    prefix = ckpt(tmp_path / "run" / "sub")
    state(tmp_path / "run", "sub/model.ckpt-5")
    assert checkpoint_prefix(str(tmp_path / "run")) == prefix


@pytest.mark.parametrize("setup, message", [
    (lambda d: d.mkdir(), "has no 'checkpoint' state file"),
    (lambda d: (d.mkdir(), (d / "checkpoint").write_text("nothing\n")), "names no model_checkpoint_path"),
    (lambda d: (d.mkdir(), state(d, "model.ckpt-9")), "model.ckpt-9.index does not exist"),
])
def test_bad_checkpoint_directories(tmp_path, setup, message):
    setup(tmp_path / "run")
    with pytest.raises(CheckpointError, match=message):
        checkpoint_prefix(str(tmp_path / "run"))


def test_an_index_without_data_is_refused(tmp_path):
    prefix = ckpt(tmp_path / "run")
    Path(f"{prefix}.data-00000-of-00001").unlink()
    with pytest.raises(CheckpointError, match="no .data-"):
        checkpoint_files(str(prefix))
