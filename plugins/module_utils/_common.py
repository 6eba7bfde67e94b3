# Copyright: sre.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared pieces of the sre.rollout clients.

This module is private to the sre.rollout collection: its interface may change
without notice and it must not be used from outside the collection.
"""

from __future__ import annotations

from typing import Any


class RolloutError(Exception):
    """An error a module turns into ``fail_json`` and a plugin into ``AnsibleError``.

    ``msg`` says what went wrong and what to do about it; ``details`` are extra
    result keys (never secrets) that help the user see the state.
    """

    def __init__(self, msg: str, **details: Any) -> None:
        super().__init__(msg)
        self.msg = msg
        self.details = details
