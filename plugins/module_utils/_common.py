# Copyright: sre.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared pieces of the sre.rollout clients.

This module is private to the sre.rollout collection: its interface may change
without notice and it must not be used from outside the collection.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from typing import Any, Union


class RolloutError(Exception):
    """An error a module turns into ``fail_json`` and a plugin into ``AnsibleError``.

    ``msg`` says what went wrong and what to do about it; ``details`` are extra
    result keys (never secrets) that help the user see the state.
    """

    def __init__(self, msg: str, **details: Any) -> None:
        super().__init__(msg)
        self.msg = msg
        self.details = details


def fsync_dir(path: str) -> None:
    """Make a rename or link in ``path`` durable (a crash after it cannot undo it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str, data: Union[str, bytes], mode: int = 0o644, exclusive: bool = False) -> None:
    """Write ``path`` so that a reader sees the old content or the new, never a part.

    The data goes to a temporary file in the same directory (``.sre-rollout-<name>.*``), is synced,
    gets ``mode`` and is renamed over ``path``; the directory is synced after the rename. With
    ``exclusive`` the file is linked into place instead and ``FileExistsError`` is raised when
    ``path`` already exists (a lock file taken by someone else since it was looked at).
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".sre-rollout-{os.path.basename(path)}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        if exclusive:
            os.link(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    fsync_dir(directory)


def atomic_symlink(target: str, link: str) -> None:
    """Point the symlink ``link`` at ``target`` with one rename: there is no moment without a link.

    The new link is made as ``<link>.tmp-<hex>`` next to it (a leftover of a crash has that name).
    """
    tmp = f"{link}.tmp-{secrets.token_hex(4)}"
    os.symlink(target, tmp)
    try:
        os.replace(tmp, link)
    except OSError:
        os.unlink(tmp)
        raise
    fsync_dir(os.path.dirname(os.path.abspath(link)))
