"""engine/files.py: atomic replacement and flock."""
from __future__ import annotations

import os

from tfbuild.engine.files import atomic_write, flock


def test_atomic_write_creates_folders_replaces_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "a" / "b" / "f.txt"
    atomic_write(path, "one")
    atomic_write(path, "two")
    assert path.read_text() == "two"
    assert os.listdir(path.parent) == ["f.txt"]


def test_an_exclusive_lock_excludes_and_is_released(tmp_path):
    path = tmp_path / "meta" / "x.lock"
    with flock(path) as held:
        assert held and path.exists()
        with flock(path, wait=False) as other:
            assert other is False
        with flock(path, shared=True, wait=False) as reader:
            assert reader is False
    with flock(path, wait=False) as again:
        assert again is True


def test_shared_locks_share_but_exclude_a_writer(tmp_path):
    path = tmp_path / "x.lock"
    with flock(path, shared=True) as one, flock(path, shared=True, wait=False) as two:
        assert one and two
        with flock(path, wait=False) as writer:
            assert writer is False
