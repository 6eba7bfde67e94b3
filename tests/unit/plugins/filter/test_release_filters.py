"""Filters over what the release role recorded on each host: dropped hosts, ledger records, verdict."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.sre.rollout.plugins.filter.release import (
    FilterModule, count_outcomes, host_records, release_verdict, swap_dropped, swap_last_step)

OK = {"changed": True}
LBS = [{"name": "haproxy", "backend": "haproxy", "pool": "app", "member": "web2"},
       {"name": "nginx", "backend": "nginx", "pool": "up", "member": "10.0.0.2:8080"}]


def pools(web2_ready: bool) -> list[dict]:
    web2 = "ready" if web2_ready else "maint"
    return [
        {"endpoint": "/s", "pool": "app", "members": [
            {"name": "web1", "ready": True, "state": "ready"},
            {"name": "web2", "ready": web2_ready, "state": web2}]},
        {"endpoint": "/u", "pool": "up", "members": [
            {"name": "10.0.0.1:8080", "address": "10.0.0.1:8080", "ready": True, "state": "ready"},
            {"name": "10.0.0.2:8080", "address": "10.0.0.2:8080", "ready": web2_ready, "state": web2}]},
    ]


def fin_state(release_id: str) -> dict:
    return {"changed": False, "current": "app-1.1.0", "previous": "app-1.0.0",
            "history": [{"release_id": release_id, "action": "activate", "outcome": "ok"},
                        {"release_id": "older", "action": "activate", "outcome": "ok"}]}


def hostvars(rid: str = "r1") -> dict:
    return {
        "web1": {"rollout_lbs": [dict(LBS[0], member="web1"), dict(LBS[1], member="10.0.0.1:8080")],
                 "_swap_state": {"current": "app-1.0.0"}, "_swap_outcome": "released", "_fin_state": fin_state(rid),
                 "_step_silenced": {"silence": {"endsAt": "2030-01-01T00:15:00Z"}},
                 "_step_unsilenced": {"action": "expired"}, "cmdb_zone": "a"},
        "web2": {"rollout_lbs": LBS, "_swap_state": {"current": "app-1.0.0", "previous": None},
                 "_step_silenced": {"silence": {"endsAt": "2030-01-01T00:15:00Z"}}, "_step_drained": OK,
                 "_app_service_probe": {"unreachable": True}},
        "web3": {"rollout_lbs": [], "_swap_state": OK, "_swap_outcome": "not touched",
                 "_fin_state": {"current": "app-1.0.0", "history": []}},
        "web4": {"rollout_lbs": [], "_fin_state": {"current": "app-1.1.0", "history": fin_state(rid)["history"]}},
    }


def test_dropped_hosts():
    assert swap_dropped(hostvars(), ["web1", "web2", "web3", "web4"]) == ["web2"]
    assert swap_last_step(hostvars(), "web2") == "drained"


def test_unknown_host_is_an_error():
    with pytest.raises(AnsibleFilterError, match="web9 is not in the inventory"):
        swap_dropped(hostvars(), ["web9"])


def test_records_for_reachable_and_unreachable_hosts():
    rerun = "ansible-playbook playbooks/release.yml -e rollout_version=1.1.0"
    records = {r["host"]: r for r in host_records(hostvars(), ["web1", "web2", "web3", "web4"], "r1", pools(False), rerun)}
    web1, web2 = records["web1"], records["web2"]
    assert (web1["outcome"], web1["last_step"], web1["silence"], web1["lock"]) == (
        "released", "enabled", "lifted", "released")
    assert web1["history"] == [{"release_id": "r1", "action": "activate", "outcome": "ok"}]
    assert web1["out_of_traffic"] == [] and web1["action"] == "" and web1["zone"] == "a"
    assert (web2["outcome"], web2["last_step"], web2["lock"], web2["silence"]) == (
        "unreachable", "drained", "held", "kept")
    assert web2["out_of_traffic"] == ["haproxy", "nginx"]
    assert web2["silence_ends"] == "2030-01-01T00:15:00Z"
    assert web2["action"].startswith("web2 UNREACHABLE after step 'drained': left as it was, out of traffic in "
                                     "haproxy, nginx, silenced until 2030-01-01T00:15:00Z and locked by r1.")
    assert "-e rollout_release_id=r1" in web2["action"]
    assert records["web3"]["outcome"] == "not touched"
    assert records["web4"]["outcome"] == "released"  # a phase run alone: from the host's history


def test_silence_that_could_not_be_lifted():
    hv = hostvars()
    hv["web1"]["_step_unsilenced"] = {"changed": False, "msg": "Alertmanager did not answer"}
    hv["web1"]["_fin_unsilence"] = {"changed": False, "msg": "Alertmanager did not answer"}
    assert host_records(hv, ["web1"], "r1")[0]["silence"] == "lift failed"


@pytest.mark.parametrize("outcomes, kwargs, verdict", [
    (["released", "skipped"], {}, "success"),
    (["released", "rolled_back"], {}, "failed"),
    (["rolled_back", "rolled_back"], {"mode": "rollback"}, "success"),
    (["released", "unreachable"], {}, "failed"),
    (["released", "timed_out"], {}, "failed"),
    (["released", "not touched"], {"halted": True}, "failed"),
    (["released"], {"lost": [{"member": "web1"}]}, "failed"),
    (["released", "not touched"], {"paused": True}, "paused"),
])
def test_verdict(outcomes, kwargs, verdict):
    assert release_verdict([{"outcome": o} for o in outcomes], **kwargs) == verdict


def test_a_released_host_finalize_could_not_reach_fails_the_run_and_says_why():
    hv = hostvars()
    hv["web1"]["_fin_state"] = {"unreachable": True, "msg": "ssh: connection refused"}
    rec = host_records(hv, ["web1"], "r1")[0]
    assert (rec["outcome"], rec["lock"]) == ("released", "held")
    assert rec["action"].startswith("web1 released but did not answer at finalize")
    assert release_verdict([rec]) == "failed"


def test_counts_and_registration():
    assert count_outcomes([{"outcome": "released"}, {"outcome": "released"}, {"outcome": "unreachable"}]) == {
        "released": 2, "unreachable": 1}
    assert set(FilterModule().filters()) >= {
        "swap_dropped", "swap_last_step", "host_records", "release_verdict", "count_outcomes"}


@pytest.mark.parametrize("failure,rollback,restore_failed,outcome", [
    ({"kind": "timed_out"}, False, False, "timed_out"),
    ({"kind": "timed_out"}, True, True, "timed_out"),
    ({"kind": "failed"}, False, False, "rolled_back"),
    ({"kind": "failed"}, False, True, "failed"),
    ({"kind": "failed"}, True, False, "failed"),
    (None, False, False, "rolled_back"),
])
def test_failed_swap_outcome(failure, rollback, restore_failed, outcome):
    from ansible_collections.sre.rollout.plugins.filter.release import failed_swap_outcome

    assert failed_swap_outcome(failure, rollback=rollback, restore_failed=restore_failed) == outcome


def test_metrics_instances_reads_each_hosts_instance_label_or_its_name():
    from ansible_collections.sre.rollout.plugins.filter.release import metrics_instances
    hv = {"web01": {"rollout_metrics_instance": "127.0.13.1:8080"}, "web02": {}}
    assert metrics_instances(hv, ["web01", "web02"]) == {"web01": "127.0.13.1:8080", "web02": "web02"}
    assert "metrics_instances" in FilterModule().filters()
