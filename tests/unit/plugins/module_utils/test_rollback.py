"""The rollback decision for one host: where it goes back to, or why it is left out (each rule once)."""

from __future__ import annotations

import pytest

from ansible_collections.sre.rollout.plugins.module_utils._rollback import rollback_target


def state(current="app-1.1.0", previous="app-1.0.0", staged=("app-1.0.0", "app-1.1.0"), failed=(), history=None):
    return {
        "changed": False, "current": current, "previous": previous,
        "releases": [{"artifact": a, "complete": True, "failed": a in failed} for a in staged],
        "history": history if history is not None else [
            {"release_id": "r1", "action": "activate", "artifact": "app-1.0.0"},
            {"release_id": "r2", "action": "activate", "artifact": "app-1.1.0"}],
    }


def test_goes_back_to_the_recorded_previous():
    assert rollback_target(state()) == {"to": "app-1.0.0", "reason": "", "left_alone": False}


def test_rollback_to_overrides_the_previous():
    assert rollback_target(state(staged=("app-0.9.0", "app-1.0.0", "app-1.1.0")), rollback_to="app-0.9.0") == \
        {"to": "app-0.9.0", "reason": "", "left_alone": False}


def test_unreachable_host_is_excluded_not_left_alone():
    skipped = {"skipped": True, "changed": False}
    ping = {"unreachable": True, "msg": "Failed to connect to the host via ssh: timed out\n"}
    assert rollback_target(skipped, reach=ping) == \
        {"to": "", "reason": "unreachable: Failed to connect to the host via ssh: timed out", "left_alone": False}


def test_unreachable_in_the_state_query_counts_too():
    found = rollback_target({"unreachable": True, "msg": "gone"}, reach={"ping": "pong"})
    assert (found["reason"], found["left_alone"]) == ("unreachable: gone", False)


def test_unreadable_state_is_excluded_not_left_alone():
    found = rollback_target({"failed": True, "msg": "state.json is not JSON"}, reach={"ping": "pong"})
    assert found == {"to": "", "reason": "release state unreadable: state.json is not JSON", "left_alone": False}


def test_a_host_the_release_did_not_change_is_left_alone():
    found = rollback_target(state(), release_id="r9")
    assert found == {"to": "app-1.0.0", "reason": "not changed by release r9 (runs app-1.1.0)", "left_alone": True}
    assert rollback_target(state(), release_id="r2")["reason"] == ""


def test_only_an_activation_of_the_current_artifact_by_the_release_counts():
    history = [{"release_id": "r2", "action": "activate", "artifact": "app-1.0.0"},
               {"release_id": "r2", "action": "rollback", "artifact": "app-1.1.0"}]
    assert rollback_target(state(history=history), release_id="r2")["reason"].startswith("not changed by release r2")


def test_not_changed_names_nothing_when_the_host_runs_nothing():
    found = rollback_target(state(current=None, previous=None, staged=()), release_id="r2")
    assert found["reason"] == "not changed by release r2 (runs nothing)"


def test_nothing_recorded_to_go_back_to():
    found = rollback_target(state(previous=None))
    assert found == {"to": "", "reason": "nothing to roll back to: no previous artifact is recorded",
                     "left_alone": True}
    assert rollback_target(state(), rollback_to="")["reason"].startswith("nothing to roll back to")


def test_a_target_that_is_not_staged():
    found = rollback_target(state(), rollback_to="app-0.5.0")
    assert found["reason"] == "app-0.5.0 is not staged on the host (staged: app-1.0.0, app-1.1.0)"
    assert found["left_alone"] is True


def test_an_incomplete_staging_is_not_staged():
    st = state()
    st["releases"][0]["complete"] = False
    assert rollback_target(st)["reason"] == "app-1.0.0 is not staged on the host (staged: app-1.1.0)"


def test_already_on_the_target():
    found = rollback_target(state(), rollback_to="app-1.1.0")
    assert (found["reason"], found["left_alone"]) == ("already on app-1.1.0", True)


@pytest.mark.parametrize("failed", [("app-1.0.0",), ("app-1.1.0",)], ids=["previous failed", "current failed"])
def test_a_second_rollback_does_not_undo_the_first(failed):
    # after a rollback the host runs the old artifact again and its recorded previous is the one it left
    found = rollback_target(state(failed=failed))
    assert found == {"to": "app-1.0.0", "reason": "already rolled back from app-1.1.0", "left_alone": True}


def test_rollback_to_goes_even_to_a_release_rolled_back_from():
    assert rollback_target(state(failed=("app-1.0.0",)), rollback_to="app-1.0.0")["reason"] == ""


def test_reasons_come_in_order():
    # unreachable wins over everything the state would say
    assert rollback_target({"failed": True, "msg": "x"}, reach={"unreachable": True, "msg": "m"})["reason"] == \
        "unreachable: m"
    # not changed by the release wins over nothing to roll back to
    assert rollback_target(state(previous=None), release_id="r9")["reason"].startswith("not changed")
    # not staged wins over already on it
    assert rollback_target(state(current="app-2.0.0", staged=()), rollback_to="app-2.0.0")["reason"] == \
        "app-2.0.0 is not staged on the host (staged: )"
