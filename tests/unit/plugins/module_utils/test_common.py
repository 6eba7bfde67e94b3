"""Unit tests of the shared pieces (plugins/module_utils/_common.py): the one atomic write."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ansible_collections.sre.rollout.plugins.module_utils import _common
from ansible_collections.sre.rollout.plugins.module_utils._common import atomic_symlink, atomic_write


def test_atomic_write_creates_directories_and_sets_the_mode(tmp_path):
    path = tmp_path / "a" / "b" / "state.json"
    atomic_write(str(path), "{}\n", mode=0o600)
    assert path.read_text() == "{}\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(path.parent) == ["state.json"]


def test_atomic_write_replaces_the_file_a_reader_has_open(tmp_path):
    path = tmp_path / "upstream.conf"
    path.write_text("old\n")
    reader = open(path, encoding="utf-8")  # a reader of the old file keeps seeing it whole
    atomic_write(str(path), "new ünïcode\n".encode("utf-8"))
    assert reader.read() == "old\n"
    reader.close()
    assert path.read_text(encoding="utf-8") == "new ünïcode\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert os.listdir(tmp_path) == ["upstream.conf"]


def test_atomic_write_failure_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "timeline.json"
    path.write_text("old\n")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(_common.os, "replace", broken_replace)
    with pytest.raises(OSError):
        atomic_write(str(path), "new\n")
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["timeline.json"]


def test_exclusive_atomic_write_refuses_an_existing_file(tmp_path):
    path = tmp_path / "lock.json"
    atomic_write(str(path), "mine\n", exclusive=True)
    with pytest.raises(FileExistsError):
        atomic_write(str(path), "theirs\n", exclusive=True)
    assert path.read_text() == "mine\n"
    assert os.listdir(tmp_path) == ["lock.json"]


def test_atomic_symlink_swaps_an_existing_link(tmp_path):
    (tmp_path / "releases" / "a").mkdir(parents=True)
    (tmp_path / "releases" / "b").mkdir()
    link = tmp_path / "current"
    atomic_symlink("releases/a", str(link))
    atomic_symlink("releases/b", str(link))
    assert os.readlink(link) == "releases/b"
    assert sorted(os.listdir(tmp_path)) == ["current", "releases"]


def test_atomic_symlink_failure_leaves_no_temporary_link(tmp_path):
    (tmp_path / "current").mkdir()  # a real directory: rename of a link over it fails
    (tmp_path / "current" / "x").write_text("")
    with pytest.raises(OSError):
        atomic_symlink("releases/a", str(tmp_path / "current"))
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == ["current"]
