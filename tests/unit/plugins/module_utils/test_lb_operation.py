"""lb_member's logic across LBs (module_utils/_lb.py), with in-memory LB drivers and a fake clock."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import pytest

from ansible_collections.sre.rollout.plugins.module_utils._common import RolloutError
from ansible_collections.sre.rollout.plugins.module_utils._lb import (
    Operation, Options, capacity_check, make_drivers, parse_quantity, pool_snapshot,
)
from ansible_collections.sre.rollout.plugins.module_utils._lbtypes import LBSpec
from ansible_collections.sre.rollout.plugins.module_utils._nginx import nginx_instance


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def member(name: str, state: str = "ready", health: str = "UP", weight: int = 100, sessions: int = 0) -> dict:
    flags = {"ready": 0, "drain": 0x08, "maint": 0x01}[state]
    return {"name": name, "address": f"{name}:8080", "state": state, "admin_flags": flags, "health": health,
            "weight": weight, "initial_weight": 100, "sessions": sessions, "queued": 0, "backup": False,
            "ready": state == "ready" and health == "UP" and weight > 0}


class FakeDriver:
    """One LB holding a pool in memory; ``remaining`` answers from a list, then 0 (or forever ``stuck``)."""

    kind = "haproxy"
    reloads = 0

    def __init__(self, endpoint: str, members: list[dict], name: str = "web01",
                 remaining: list[int] | None = None, stuck: int = 0, unreachable: bool = False,
                 fail_on: str | None = None, healthy_after: int = 0, health_check: bool = True,
                 percent_weights: bool = True, lb_weight=None) -> None:
        self.lb = LBSpec(kind="haproxy", endpoints=[endpoint], pool="app", name=f"lb-{endpoint}", members=[name],
                         weight=lb_weight)
        self.has_health_check = health_check
        self.percent_weights = percent_weights
        self.endpoint = endpoint
        self.pool = "app"
        self.member = name
        self.name = name
        self.members = members
        self.remaining_answers = list(remaining or [])
        self.stuck = stuck
        self.unreachable = unreachable
        self.fail_on = fail_on
        self.healthy_after = healthy_after
        self.calls: list[Any] = []

    @property
    def lb_key(self) -> tuple:
        return (self.kind, self.endpoint, self.pool)

    @property
    def instance_key(self):
        return ("instance", self.endpoint)

    @staticmethod
    def batch():
        return nullcontext()

    def _me(self) -> dict:
        return next(m for m in self.members if m["name"] == self.name)

    def _set(self, state: str) -> None:
        if self.fail_on == state:
            raise RolloutError(f"{self.endpoint}: cannot set {state}")
        self.calls.append(state)
        me = self._me()
        me["state"] = state
        me["admin_flags"] = {"ready": 0, "drain": 0x08, "maint": 0x01}[state]
        me["ready"] = state == "ready" and me["health"] == "UP" and me["weight"] > 0

    def snapshot(self) -> list[dict]:
        if self.unreachable:
            raise RolloutError(f"{self.endpoint} is unreachable")
        return [dict(m) for m in self.members]

    def find(self, members: list[dict]) -> dict:
        for m in members:
            if m["name"] == self.member:
                return m
        raise RolloutError(f"no {self.member}", members=[m["name"] for m in members])

    def preflight(self) -> None:
        self.calls.append("preflight")

    @staticmethod
    def in_state(current: dict, target: str) -> bool:
        return bool(current["admin_flags"] & 0x01) if target == "maint" else not current["admin_flags"] & 0x09

    @staticmethod
    def sessions(current: dict) -> int:
        return current["sessions"] + current["queued"]

    def take_out(self, current: dict) -> None:
        if current["state"] != "drain":
            self._set("drain")

    def remaining(self) -> int:
        self.calls.append("poll")
        if self.remaining_answers:
            return self.remaining_answers.pop(0)
        return self.stuck

    def force(self) -> None:
        self.calls.append("force")

    def finish(self) -> None:
        self._set("maint")

    def disable(self) -> None:
        self._set("maint")

    def enable(self) -> None:
        self._set("ready")

    def restore(self, previous: dict) -> None:
        self.calls.append(("restore", previous["state"]))
        self._set(previous["state"])

    def resolve_weight(self, current: dict, weight: Any) -> int:
        text = str(weight)
        return current["initial_weight"] * int(text[:-1]) // 100 if text.endswith("%") else int(text)

    def set_weight(self, weight: int) -> None:
        self.calls.append(("weight", weight))
        self._me()["weight"] = weight

    def healthy(self) -> tuple[bool, str]:
        self.calls.append("health")
        if self.healthy_after > 0:
            self.healthy_after -= 1
            return False, "DOWN"
        return True, "UP"


def pool(*states: str) -> list[dict]:
    return [member(f"web0{i + 1}", s) for i, s in enumerate(states)]


def operate(drivers, clock=None, check_mode=False, **opts) -> dict:
    clock = clock or Clock()
    return Operation(drivers, Options(**opts), check_mode=check_mode, clock=clock, sleep=clock.sleep).run()


# --------------------------------------------------------------------------- drain


def test_drain_waits_for_sessions_then_maint():
    lb = FakeDriver("sock", pool("ready", "ready", "ready"), remaining=[3, 1, 0])
    lb.members[0]["sessions"] = 3
    clock = Clock()
    result = operate([lb], clock, state="drained", poll_interval=0.5)
    assert lb.calls == ["preflight", "drain", "poll", "poll", "poll", "maint"]
    assert clock.sleeps == [0.5, 0.5]
    only = result["lbs"][0]
    assert (only["previous_state"], only["state"], only["changed"]) == ("ready", "maint", True)
    assert only["sessions_at_start"] == 3 and only["waited"] == 1.0 and not only["forced"]
    assert result["ready_members"] == ["web02", "web03"] and only["ready_members"] == ["web02", "web03"]
    assert result["diff"]["before"]["sock"]["state"] == "ready" and result["diff"]["after"]["sock"]["state"] == "maint"


def test_drain_of_a_drained_member_is_unchanged_after_one_read():
    lb = FakeDriver("sock", pool("maint", "ready"))
    result = operate([lb], state="drained")
    assert lb.calls == [] and result["changed"] is False
    assert result["lbs"][0]["waited"] == 0.0


def test_drain_resumes_a_member_left_in_drain():
    """A member stuck in DRAIN (an interrupted run) still reaches MAINT (ansible/ansible#37591)."""
    lb = FakeDriver("sock", pool("drain", "ready"), remaining=[0])
    result = operate([lb], state="drained")
    assert lb.calls == ["preflight", "poll", "maint"] and result["lbs"][0]["state"] == "maint"


def test_drain_polls_once_more_at_the_deadline():
    """The last poll happens at the deadline, not one interval before it (the off-by-one of others)."""
    lb = FakeDriver("sock", pool("ready", "ready"), remaining=[1, 1, 1, 1, 0])
    clock = Clock()
    result = operate([lb], clock, state="drained", drain_timeout=2.0, poll_interval=0.5)
    assert lb.calls.count("poll") == 5 and lb.calls[-1] == "maint"
    assert result["lbs"][0]["waited"] == 2.0


def test_drain_timeout_fails_and_restores_every_lb():
    a = FakeDriver("a", pool("ready", "ready"), stuck=2)
    b = FakeDriver("b", pool("ready", "ready"), remaining=[0])
    with pytest.raises(RolloutError) as err:
        operate([a, b], state="drained", drain_timeout=1.0, poll_interval=0.5)
    assert "drain_timeout=1.0" in err.value.msg and "on_timeout=force" in err.value.msg
    assert err.value.details["remaining"] == {"a": 2} and err.value.details["restored"] == ["a", "b"]
    assert ("restore", "ready") in a.calls and ("restore", "ready") in b.calls
    assert a.members[0]["state"] == b.members[0]["state"] == "ready"
    assert "maint" not in a.calls + b.calls


def test_drain_timeout_force_cuts_sessions_then_maint():
    a = FakeDriver("a", pool("ready", "ready"), stuck=2)
    result = operate([a], state="drained", drain_timeout=1.0, on_timeout="force", poll_interval=0.5)
    assert a.calls[-2:] == ["force", "maint"]
    assert result["lbs"][0]["forced"] is True and result["lbs"][0]["state"] == "maint"


def test_any_unreachable_lb_means_nothing_is_touched():
    good = FakeDriver("good", pool("ready", "ready"))
    bad = FakeDriver("bad", pool("ready", "ready"), unreachable=True)
    with pytest.raises(RolloutError, match="bad is unreachable"):
        operate([good, bad], state="drained")
    assert good.calls == [] and good.members[0]["state"] == "ready"


def test_unknown_member_on_one_lb_means_nothing_is_touched():
    good = FakeDriver("good", pool("ready", "ready"))
    other = FakeDriver("other", [member("web05"), member("web06")])
    with pytest.raises(RolloutError) as err:
        operate([good, other], state="disabled")
    assert err.value.details["members"] == ["web05", "web06"] and good.calls == []


def test_failure_half_way_restores_the_lbs_already_changed():
    a = FakeDriver("a", pool("ready", "ready"))
    b = FakeDriver("b", pool("ready", "ready"), fail_on="drain")
    with pytest.raises(RolloutError, match="cannot set drain") as err:
        operate([a, b], state="drained")
    assert a.calls[-1] == "ready" and a.members[0]["state"] == "ready"
    assert err.value.details["restored"] == ["a"]


def test_failed_restore_is_reported():
    a = FakeDriver("a", pool("ready", "ready"), stuck=1)
    original = a.restore

    def broken(previous):
        original(previous)
        raise RolloutError("socket gone")

    a.restore = broken
    with pytest.raises(RolloutError, match="FAILED on a: fix it by hand") as err:
        operate([a], state="drained", drain_timeout=0.5)
    assert err.value.details["restore_failed"] == {"a": "socket gone"}


# --------------------------------------------------------------------------- capacity guard


def test_guard_refuses_and_names_the_ready_members():
    lb = FakeDriver("sock", pool("ready", "ready", "maint", "ready"))
    with pytest.raises(RolloutError) as err:
        operate([lb], state="drained", min_ready=3)
    assert "only 2 other member(s) would stay ready (web02, web04)" in err.value.msg
    assert err.value.details["ready_members"] == ["web02", "web04"] and lb.calls == ["preflight"]


def test_guard_percentage_of_the_pool_rounded_up():
    lb = FakeDriver("sock", pool("ready", "ready", "ready", "ready", "maint"))
    with pytest.raises(RolloutError, match=r"min_ready is 70% \(4 of 5\)"):
        operate([lb], state="disabled", min_ready="70%")
    result = operate([FakeDriver("sock", pool("ready", "ready", "ready", "ready", "maint"))],
                     state="disabled", min_ready="60%")
    assert result["changed"]


def test_guard_counts_down_and_weight_zero_members_as_not_ready():
    members = pool("ready", "ready", "ready")
    members[1].update(health="DOWN", ready=False)
    members[2].update(weight=0, ready=False)
    with pytest.raises(RolloutError, match="only 0 other"):
        operate([FakeDriver("sock", members)], state="disabled", min_ready=1)


def test_guard_does_not_block_a_member_that_is_not_serving():
    members = pool("ready", "maint")
    members[0].update(health="DOWN", ready=False)
    lb = FakeDriver("sock", members)
    assert operate([lb], state="disabled", min_ready=1)["changed"]


def test_guard_off_with_zero():
    assert operate([FakeDriver("sock", pool("ready"))], state="disabled", min_ready=0)["changed"]


def test_guard_in_check_mode_too():
    with pytest.raises(RolloutError, match="refusing"):
        operate([FakeDriver("sock", pool("ready", "maint"))], check_mode=True, state="drained", min_ready=1)


# --------------------------------------------------------------------------- check mode


def test_check_mode_predicts_and_changes_nothing():
    lb = FakeDriver("sock", pool("ready", "ready", "ready"))
    result = operate([lb], check_mode=True, state="drained")
    assert lb.calls == ["preflight"] and lb.members[0]["state"] == "ready"  # preflight only reads
    only = result["lbs"][0]
    assert result["changed"] and (only["previous_state"], only["state"]) == ("ready", "maint")
    assert result["ready_members"] == ["web02", "web03"]


# --------------------------------------------------------------------------- enable, weight, warm-up


def test_enable_waits_for_health_without_looking_at_sessions():
    lb = FakeDriver("sock", pool("maint", "ready"), healthy_after=2)
    lb.members[0]["sessions"] = 5  # must not matter (community.general#12286)
    result = operate([lb], state="enabled", wait_healthy=True, health_timeout=10, poll_interval=0.5)
    assert lb.calls == ["preflight", "ready", "health", "health", "health"]
    assert result["lbs"][0]["state"] == "ready" and result["lbs"][0]["waited"] == 1.0


def test_enable_health_timeout_fails_with_the_status():
    lb = FakeDriver("sock", pool("maint", "ready"), healthy_after=100)
    with pytest.raises(RolloutError, match="not healthy after health_timeout=1.0s") as err:
        operate([lb], state="enabled", wait_healthy=True, health_timeout=1.0, poll_interval=0.5)
    assert err.value.details["health"] == {"sock": "DOWN"}


def test_enabled_and_healthy_member_is_unchanged():
    lb = FakeDriver("sock", pool("ready", "ready"))
    result = operate([lb], state="enabled", wait_healthy=True)
    assert result["changed"] is False and lb.calls == ["health"]


def test_warmup_steps_then_configured_weight():
    lb = FakeDriver("sock", pool("maint", "ready"))
    clock = Clock()
    result = operate([lb], clock, state="enabled",
                     warmup=[{"weight": "10%", "pause": 2}, {"weight": "50%", "pause": 3}])
    assert lb.calls == ["preflight", ("weight", 10), "ready", ("weight", 50), ("weight", 100)]
    assert clock.sleeps == [2, 3]
    assert result["lbs"][0]["weight"] == 100 and result["lbs"][0]["waited"] == 5


def test_warmup_ends_at_the_given_weight():
    lb = FakeDriver("sock", pool("maint", "ready"))
    operate([lb], state="enabled", weight=80, warmup=[{"weight": 20, "pause": 0}])
    assert [c for c in lb.calls if isinstance(c, tuple)] == [("weight", 20), ("weight", 80)]


def test_warmup_is_skipped_when_already_enabled():
    lb = FakeDriver("sock", pool("ready", "ready"))
    result = operate([lb], state="enabled", warmup=[{"weight": "10%", "pause": 5}])
    assert result["changed"] is False and lb.calls == []


def test_weight_change_alone():
    lb = FakeDriver("sock", pool("ready", "ready"))
    result = operate([lb], state="enabled", weight="50%")
    assert lb.calls == ["preflight", ("weight", 50)]
    assert (result["lbs"][0]["previous_weight"], result["lbs"][0]["weight"]) == (100, 50)
    assert operate([lb], state="enabled", weight="50%")["changed"] is False


# --------------------------------------------------------------------------- helpers


@pytest.mark.parametrize("value,total,expected", [(2, 6, 2), ("2", 6, 2), ("50%", 6, 3), ("50%", 5, 3),
                                                  ("34%", 6, 3), ("0", 6, 0), ("100%", 4, 4)])
def test_parse_quantity(value, total, expected):
    assert parse_quantity(value, total) == expected


@pytest.mark.parametrize("value", ["-1", "half", "150%", "1.5"])
def test_parse_quantity_rejects(value):
    with pytest.raises(RolloutError, match="count such as 2 or a percentage"):
        parse_quantity(value, 4)


def test_capacity_check_ignores_backups():
    members = pool("ready", "ready")
    backup = member("web09")
    backup.update(backup=True, ready=False)
    with pytest.raises(RolloutError, match=r"\(2 of 2\)"):
        capacity_check(members + [backup], members[0], "100%", "pool")


def test_pool_snapshot_ready_on_every_lb():
    a = FakeDriver("a", pool("ready", "ready", "maint"))
    b = FakeDriver("b", pool("ready", "drain", "ready"))
    snap = pool_snapshot([a, b])
    assert [p["endpoint"] for p in snap["pools"]] == ["a", "b"] and snap["ready_members"] == ["web01"]


def test_make_drivers_validates_endpoints():
    base = {"backend": "haproxy", "pool": "app", "member": "web01", "timeout": 1.0}
    with pytest.raises(RolloutError, match="endpoints is empty"):
        make_drivers({**base, "endpoints": []})
    with pytest.raises(RolloutError, match="socket path or tcp://host:port"):
        make_drivers({**base, "endpoints": [{"upstream_file": "/x"}]})
    drivers = make_drivers({**base, "endpoints": ["/run/haproxy.sock", "tcp://127.0.0.1:9999"]})
    assert [d.endpoint for d in drivers] == ["/run/haproxy.sock", "tcp://127.0.0.1:9999"]


def test_nginx_endpoint_dict_overrides_defaults():
    defaults = {"conf": "/etc/nginx/nginx.conf", "pidfile": "/run/nginx.pid", "binary": "/usr/sbin/nginx",
                "prefix": None, "upstream_file": None}
    inst = nginx_instance({"upstream_file": "/lb2/up.conf", "pidfile": "/lb2/nginx.pid"}, defaults, 3.0)
    assert (inst.upstream_file, inst.pidfile, inst.conf, inst.prefix) == (
        "/lb2/up.conf", "/lb2/nginx.pid", "/etc/nginx/nginx.conf", None)
    assert nginx_instance("/etc/nginx/up.conf", defaults, 3.0).upstream_file == "/etc/nginx/up.conf"
    with pytest.raises(RolloutError, match="unknown keys"):
        nginx_instance({"upstream_file": "/x", "pid": "/y"}, defaults, 3.0)


def test_nginx_weights():
    from ansible_collections.sre.rollout.plugins.module_utils._nginx import NginxDriver, NginxInstance

    driver = NginxDriver(LBSpec(kind="nginx", endpoints=["/x"], pool="app"), NginxInstance(upstream_file="/x"),
                         "web01")
    current = member("web01", weight=3)
    assert driver.resolve_weight(current, "100%") == 3
    assert driver.resolve_weight(current, 5) == 5
    for bad in ("50%", "0", "x"):
        with pytest.raises(RolloutError, match="whole numbers from 1"):
            driver.resolve_weight(current, bad)
