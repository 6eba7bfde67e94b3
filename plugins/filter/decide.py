# Copyright: sre.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for the release role's decisions over pure data: an artifact's checksum, a host's rollback target.

The rules live in ``module_utils/_checksums.py`` and ``module_utils/_rollback.py``; these
filters only turn their errors into ``AnsibleFilterError``.
"""

from __future__ import annotations

from typing import Any, Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.sre.rollout.plugins.module_utils import _checksums, _rollback
from ansible_collections.sre.rollout.plugins.module_utils._common import RolloutError


def checksum_for(sums: Any, filename: str, source: str = "SHA256SUMS") -> str:
    """``sha256:<hex>`` of ``filename`` in a SHA256SUMS text (or a registered ``uri`` result with ``content``)."""
    text = sums.get("content", "") if isinstance(sums, Mapping) else sums
    if not isinstance(text, str):
        raise AnsibleFilterError(f"checksum_for needs the text of a SHA256SUMS file, got {type(text).__name__}")
    try:
        return _checksums.checksum_for(text, str(filename), str(source))
    except RolloutError as exc:
        raise AnsibleFilterError(exc.msg) from None


def rollback_target(state: Any, rollback_to: str | None = None, release_id: str = "",
                    reach: Any = None) -> dict[str, Any]:
    """Where a host goes back to, or why it does not: ``{to, reason, left_alone}``."""
    return _rollback.rollback_target(state, rollback_to=rollback_to, release_id=release_id or "", reach=reach)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"checksum_for": checksum_for, "rollback_target": rollback_target}
