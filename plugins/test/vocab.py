# Copyright: sre.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tests for the release's names, by the rules of ``module_utils/_vocab.py``: the role checks a
release id, a version or an artifact name by the same rule the modules apply on the hosts."""

from __future__ import annotations

from typing import Any

from ansible_collections.sre.rollout.plugins.module_utils import _vocab


def release_id(value: Any) -> bool:
    return _vocab.is_release_id(value)


def version(value: Any) -> bool:
    return _vocab.is_version(value)


def artifact_name(value: Any) -> bool:
    return _vocab.is_artifact_name(value)


def app_name(value: Any) -> bool:
    return _vocab.is_app_name(value)


class TestModule:
    def tests(self) -> dict[str, Any]:
        return {"release_id": release_id, "version": version, "artifact_name": artifact_name, "app_name": app_name}
