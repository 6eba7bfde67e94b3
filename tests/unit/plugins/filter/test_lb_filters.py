"""The snapshot comparison filters: lb_lost_members, lb_ready_members."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.sre.rollout.plugins.filter.lb import (
    FilterModule, lb_lost_members, lb_ready_members, lb_unknown_members,
)


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
    assert set(FilterModule().filters()) == {"lb_lost_members", "lb_ready_members", "lb_names", "lb_unknown_members"}


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


# --------------------------------------------------------------------------- lb_unknown_members

SNAPSHOT = {"pools": [
    {"name": "haproxy", "endpoint": "/run/haproxy.sock", "pool": "be_shop",
     "members": [{"name": "shop-a1", "address": "10.0.0.1:8080"}, {"name": "shop-a2", "address": "10.0.0.2:8080"}]},
    {"name": "nginx", "endpoint": "http://127.0.0.1:82/sre-rollout", "pool": "up_shop",
     "members": [{"name": "web01", "address": "10.0.0.1:8080"}, {"name": "web02", "address": "10.0.0.2:8080"}]},
]}


def _hostvars(haproxy_member: str, nginx_member: str = "{addr}:8080") -> dict:
    out = {}
    for i, host in enumerate(("web01", "web02"), start=1):
        out[host] = {"rollout_lbs": [
            {"name": "haproxy", "kind": "haproxy", "pool": "be_shop", "member": haproxy_member.format(i=i)},
            {"name": "nginx", "kind": "nginx", "pool": "up_shop", "member": nginx_member.format(addr=f"10.0.0.{i}")}]}
    return out


def test_lb_unknown_members_is_empty_when_every_member_is_there_by_name_or_address():
    assert lb_unknown_members(SNAPSHOT, _hostvars("shop-a{i}"), ["web01", "web02"]) == []


def test_lb_unknown_members_names_the_host_the_pool_and_what_the_pool_has():
    unknown = lb_unknown_members(SNAPSHOT, _hostvars("web0{i}"), ["web01", "web02"])
    assert [(u["host"], u["lb"], u["pool"], u["member"]) for u in unknown] == [
        ("web01", "haproxy", "be_shop", "web01"), ("web02", "haproxy", "be_shop", "web02")]
    assert unknown[0]["known"] == ["shop-a1", "shop-a2"]


def test_lb_unknown_members_ignores_a_pool_the_snapshot_does_not_have():
    hv = _hostvars("shop-a{i}")
    hv["web01"]["rollout_lbs"][0]["pool"] = "other"
    assert lb_unknown_members(SNAPSHOT, hv, ["web01"]) == []


def test_lb_unknown_members_refuses_a_host_not_in_the_inventory():
    with pytest.raises(AnsibleFilterError, match="not a host of the inventory"):
        lb_unknown_members(SNAPSHOT, {}, ["web09"])


def test_lb_unknown_members_is_registered():
    assert FilterModule().filters()["lb_unknown_members"] is lb_unknown_members
