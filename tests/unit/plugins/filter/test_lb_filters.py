"""The snapshot comparison filters: lb_lost_members, lb_ready_members."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.sre.rollout.plugins.filter.lb import FilterModule, lb_lost_members, lb_ready_members


def m(name: str, state: str = "ready", health: str = "UP", weight: int = 100) -> dict:
    return {"name": name, "address": f"10.0.0.{name[-1]}:8080", "state": state, "health": health,
            "weight": weight, "ready": state == "ready" and health == "UP" and weight > 0}


def snapshot(*pools: tuple[str, list[dict]]) -> dict:
    return {"changed": False, "pools": [{"endpoint": e, "backend": "haproxy", "pool": "app", "members": ms}
                                        for e, ms in pools]}


def test_nothing_lost():
    before = snapshot(("a", [m("web1"), m("web2")]))
    assert lb_lost_members(before, before) == []


def test_lost_by_state_health_weight_and_removal():
    before = snapshot(("a", [m("web1"), m("web2"), m("web3"), m("web4"), m("web5", "maint")]))
    after = snapshot(("a", [m("web1"), m("web2", "maint", "DOWN"), m("web3", weight=0), m("web5")]))
    lost = lb_lost_members(before, after)
    assert [x["member"] for x in lost] == ["web2", "web3", "web4"]
    assert lost[0]["reason"] == "state maint, health DOWN"
    assert lost[0]["before"]["state"] == "ready" and lost[0]["after"]["state"] == "maint"
    assert lost[1]["reason"] == "weight 0"
    assert lost[2]["after"] is None and lost[2]["reason"] == "missing from the pool"
    assert lost[2]["address"] == "10.0.0.4:8080"


def test_per_endpoint():
    before = snapshot(("a", [m("web1")]), ("b", [m("web1")]))
    after = snapshot(("a", [m("web1")]), ("b", [m("web1", "drain")]))
    assert [(x["endpoint"], x["member"]) for x in lb_lost_members(before, after)] == [("b", "web1")]


def test_accepts_pools_lists_single_pools_and_loop_results():
    pool_before = {"endpoint": "a", "pool": "app", "members": [m("web1"), m("web2")]}
    pool_after = {"endpoint": "a", "pool": "app", "members": [m("web1")]}
    assert len(lb_lost_members([pool_before], pool_after)) == 1
    looped = {"results": [snapshot(("a", [m("web1"), m("web2")]))]}
    assert len(lb_lost_members(looped, {"results": [snapshot(("a", [m("web1")]))]})) == 1


def test_rejects_failed_or_foreign_snapshots():
    with pytest.raises(AnsibleFilterError, match="failed lb_pool_info result"):
        lb_lost_members({"failed": True, "msg": "socket gone"}, snapshot())
    with pytest.raises(AnsibleFilterError, match="not an lb_pool_info result"):
        lb_lost_members(snapshot(), "web1")


def test_ready_members_on_every_endpoint():
    snap = snapshot(("a", [m("web1"), m("web2"), m("web3")]), ("b", [m("web1"), m("web2", "maint"), m("web3")]))
    assert lb_ready_members(snap) == ["web1", "web3"]
    assert lb_ready_members({"pools": []}) == []


def test_registered_names():
    assert set(FilterModule().filters()) == {"lb_lost_members", "lb_ready_members", "lb_names"}


def test_lb_names_reads_each_hosts_lb_set():
    from ansible_collections.sre.rollout.plugins.filter.lb import lb_names

    def lbs(server, address):
        return [{"name": "haproxy", "kind": "haproxy", "pool": "be_shop", "member": server},
                {"name": "nginx", "kind": "nginx", "pool": "shop_up", "member": address}]
    hostvars = {"web01": {"rollout_lbs": lbs("shop-a1", "10.0.0.1:8080")},
                "web02": {"rollout_lbs": lbs("shop-a2", "10.0.0.2:8080")},
                "web03": {"rollout_lbs": [{"backend": "haproxy", "pool": "be_old", "member": "old-3"}]},
                "web04": {}}
    assert lb_names(hostvars, ["web01", "web02"], "haproxy") == {
        "pool": "be_shop", "pools": ["be_shop"], "members": {"web01": "shop-a1", "web02": "shop-a2"}}
    assert lb_names(hostvars, ["web02"], "nginx")["members"] == {"web02": "10.0.0.2:8080"}
    assert lb_names(hostvars, ["web01", "web03"], "haproxy")["pools"] == ["be_shop", "be_old"]
    assert lb_names(hostvars, ["web04"], "haproxy") == {"pool": None, "pools": [], "members": {}}
    with pytest.raises(AnsibleFilterError, match="'web09' is not a host"):
        lb_names(hostvars, ["web09"], "haproxy")
