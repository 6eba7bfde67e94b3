"""The role's decision filters: checksum_for and rollback_target."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.sre.rollout.plugins.filter.decide import FilterModule, checksum_for, rollback_target

A = "a" * 64


def test_filters_are_registered():
    assert set(FilterModule().filters()) == {"checksum_for", "rollback_target"}


def test_checksum_for_takes_the_text_or_a_uri_result():
    text = f"{A}  app-1.1.0.tar.gz\n"
    assert checksum_for(text, "app-1.1.0.tar.gz") == f"sha256:{A}"
    assert checksum_for({"status": 200, "content": text}, "app-1.1.0.tar.gz") == f"sha256:{A}"


def test_checksum_for_fails_with_the_reason():
    with pytest.raises(AnsibleFilterError, match="Unknown artifact app-9.9.9: http://r/SHA256SUMS does not list"):
        checksum_for(f"{A}  app-1.1.0.tar.gz\n", "app-9.9.9.tar.gz", "http://r/SHA256SUMS")


def test_checksum_for_refuses_what_is_not_text():
    with pytest.raises(AnsibleFilterError, match="needs the text of a SHA256SUMS file, got int"):
        checksum_for(3, "app-1.1.0.tar.gz")


def test_rollback_target_passes_the_options_through():
    st = {"current": "app-1.1.0", "previous": "app-1.0.0",
          "releases": [{"artifact": "app-1.0.0", "complete": True}, {"artifact": "app-1.1.0", "complete": True}],
          "history": [{"release_id": "r2", "action": "activate", "artifact": "app-1.1.0"}]}
    assert rollback_target(st, None, "r2", {"ping": "pong"}) == {"to": "app-1.0.0", "reason": "", "left_alone": False}
    assert rollback_target(st, release_id=None)["reason"] == ""
    assert rollback_target(st, rollback_to="app-1.1.0")["reason"] == "already on app-1.1.0"
