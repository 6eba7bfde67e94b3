# Copyright: sre.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What is wrong with a release's name, in the words of ``module_utils/_vocab.py``: the message
an assert shows when a P(sre.rollout.version#test) (or release_id, artifact_name, app_name) test fails."""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.sre.rollout.plugins.module_utils import _vocab
from ansible_collections.sre.rollout.plugins.module_utils._common import RolloutError


def vocab_refusal(value: Any, kind: str, what: str | None = None) -> str:
    """Why ``value`` is not a ``kind`` (app, version, artifact, release_id); "" when it is one."""
    try:
        return _vocab.refusal(value, kind, what)
    except RolloutError as exc:
        raise AnsibleFilterError(exc.msg) from None


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"vocab_refusal": vocab_refusal}
