"""The swap's vocabulary: last completed step and outcome from what the role registered."""

from __future__ import annotations

import pytest

from ansible_collections.sre.rollout.plugins.module_utils import _outcome

OK = {"changed": True}
SKIPPED = {"skipped": True, "changed": False}
UNREACHABLE = {"unreachable": True, "msg": "Failed to connect to the host via ssh"}
FAILED = {"failed": True, "msg": "boom"}
TIMED_OUT = {"failed": True, "msg": "The command action failed to execute in the expected time frame (5)",
             "timedout": {"period": 5}}


def getter(**values):
    return values.get


@pytest.mark.parametrize("registered, step", [
    ({}, "none"),
    ({"_step_silenced": UNREACHABLE}, "none"),
    ({"_step_silenced": OK}, "silenced"),
    ({"_step_silenced": SKIPPED, "_step_drained": OK}, "drained"),  # no Alertmanager: silence skipped
    ({"_step_silenced": OK, "_step_drained": OK, "_step_quiet": OK}, "drained"),  # quiet: a wait, drained
    # the stop (an included role) registers nothing: it completed when activation ran at all
    ({"_step_silenced": OK, "_step_drained": OK, "_step_quiet": OK, "_step_activated": UNREACHABLE}, "stopped"),
    ({"_step_silenced": OK, "_step_drained": OK, "_step_quiet": OK, "_step_activated": FAILED}, "stopped"),
    ({"_step_silenced": OK, "_step_drained": OK, "_step_quiet": OK, "_step_activated": OK}, "activated"),
    ({"_step_silenced": OK, "_step_drained": OK, "_step_quiet": OK, "_step_activated": OK,
      "_step_health": FAILED}, "started"),
    ({"_step_silenced": OK, "_step_drained": OK, "_step_quiet": OK, "_step_activated": OK,
      "_step_health": OK, "_step_enabled": OK}, "enabled"),
    ({"_step_silenced": OK, "_step_drained": OK, "_step_quiet": OK, "_step_activated": OK,
      "_step_health": OK, "_step_enabled": TIMED_OUT}, "health"),
])
def test_last_step(registered, step):
    assert _outcome.last_step(registered.get) == step


def test_a_host_that_dropped_mid_swap_is_unreachable_at_its_last_step():
    get = getter(_swap_state=OK, _step_silenced=OK, _step_drained=OK, _app_service_probe=UNREACHABLE)
    assert _outcome.dropped(get)
    found = _outcome.host_outcome(get)
    assert (found["outcome"], found["last_step"], found["restored"]) == ("unreachable", "drained", False)
    assert "after step 'drained'" in found["failure"]["msg"]


def test_a_host_dropped_without_an_unreachable_result_is_failed():
    get = getter(_swap_state=OK, _step_silenced=OK)
    assert _outcome.host_outcome(get)["outcome"] == "failed"


def test_a_host_lost_during_its_restore_keeps_the_step_of_its_failure():
    failure = {"task": "Steps | Wait until the application is healthy", "msg": "x", "kind": "failed",
               "step": "started"}
    get = getter(_swap_state=OK, _swap_restoring=True, _swap_failure=failure, _restore_state=UNREACHABLE)
    found = _outcome.host_outcome(get)
    assert (found["outcome"], found["last_step"]) == ("unreachable", "started")
    assert found["failure"] == failure


def test_recorded_outcomes_win():
    assert _outcome.host_outcome(getter(_swap_state=OK, _swap_outcome="released"))["last_step"] == "enabled"
    assert _outcome.host_outcome(getter(_swap_state=OK, _swap_outcome="skipped"))["last_step"] == "none"
    timed = _outcome.host_outcome(getter(_swap_state=OK, _swap_outcome="timed_out", _swap_restored=True,
                                         _swap_failure={"step": "quiet", "kind": "timed_out"}))
    assert (timed["outcome"], timed["last_step"], timed["restored"]) == ("timed_out", "quiet", True)
    assert not _outcome.dropped(getter(_swap_state=OK, _swap_outcome="not touched"))


def test_a_host_that_never_began_is_not_dropped():
    assert not _outcome.dropped(getter())
    assert _outcome.host_outcome(getter())["outcome"] == ""


@pytest.mark.parametrize("history, outcome", [
    ([], "not touched"),
    ([{"action": "lock"}], "not touched"),
    ([{"action": "activate", "outcome": "ok"}], "released"),
    ([{"action": "activate", "outcome": "ok"}, {"action": "rollback", "outcome": "ok"}], "rolled_back"),
    ([{"action": "activate", "outcome": "unhealthy"}], "unhealthy"),
])
def test_outcome_from_history(history, outcome):
    assert _outcome.outcome_from_history(history) == outcome


def test_vocabulary_is_consistent():
    assert set(_outcome.OK_OUTCOMES).isdisjoint(_outcome.FAILED_OUTCOMES)
    assert _outcome.STEP_NAMES[0] == "silenced" and _outcome.STEP_NAMES[-1] == "enabled"
