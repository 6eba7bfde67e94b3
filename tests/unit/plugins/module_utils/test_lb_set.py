"""The LB set (module_utils/_lb.py): several LBs of different kinds as one unit, the kind registry, the contract."""

from __future__ import annotations

import threading
import time

import pytest

from ansible_collections.sre.rollout.plugins.module_utils import _haproxy, _nginx
from ansible_collections.sre.rollout.plugins.module_utils._common import RolloutError
from ansible_collections.sre.rollout.plugins.module_utils._lb import (
    KINDS, LB_SPEC, Operation, Options, lb_specs, make_drivers, pool_snapshot,
)
from ansible_collections.sre.rollout.plugins.module_utils._lbtypes import Driver, is_ready, member_record

from .test_lb_operation import Clock, FakeDriver, member, pool

HAPROXY = {"name": "haproxy", "kind": "haproxy", "endpoints": ["/run/haproxy/admin.sock"], "pool": "app",
           "member": "web01"}
NGINX = {"name": "nginx", "kind": "nginx", "endpoints": ["/etc/nginx/upstream_app.conf"], "pool": "app",
         "member": "10.0.0.1:8080", "health_uri": "/health", "options": {"pidfile": "/run/lb.pid"}}


def params(**kw):
    base = {"lbs": None, "backend": "haproxy", "endpoints": None, "pool": None, "member": None, "members": None,
            "address": None, "health_uri": None, "timeout": 2.0}
    base.update(kw)
    return base


# --------------------------------------------------------------------------- the set as given


def test_registry_has_each_kind_once_and_the_argument_spec_lists_them():
    assert set(KINDS) == {"haproxy", "nginx"} and KINDS["haproxy"] is _haproxy.KIND and KINDS["nginx"] is _nginx.KIND
    assert LB_SPEC["kind"]["choices"] == sorted(KINDS) and LB_SPEC["kind"]["aliases"] == ["backend"]


def test_one_set_of_two_kinds_makes_one_driver_per_lb_member_and_endpoint():
    drivers = make_drivers(params(lbs=[HAPROXY, NGINX]))
    assert [(type(d).__name__, d.lb.name, d.member) for d in drivers] == [
        ("HAProxyDriver", "haproxy", "web01"), ("NginxDriver", "nginx", "10.0.0.1:8080")]
    nginx = drivers[1]
    assert (nginx.instance.pidfile, nginx.instance.conf, nginx.health_uri) == (
        "/run/lb.pid", "/etc/nginx/nginx.conf", "/health")
    assert drivers[0].has_health_check and nginx.has_health_check
    assert drivers[0].percent_weights and not nginx.percent_weights


def test_single_lb_form_is_one_lb_of_the_set():
    [spec] = lb_specs(params(backend="nginx", endpoints=["/x.conf"], pool="app", member="web01",
                             nginx_pidfile="/run/x.pid", nginx_mode=None))
    assert (spec.kind, spec.endpoints, spec.members, spec.options) == ("nginx", ["/x.conf"], ["web01"],
                                                                       {"pidfile": "/run/x.pid"})


def test_top_level_member_applies_to_lbs_without_their_own():
    specs = lb_specs(params(lbs=[dict(HAPROXY, member=None), NGINX], member="web09"))
    assert [s.members for s in specs] == [["web09"], ["10.0.0.1:8080"]]


@pytest.mark.parametrize("lbs,message", [
    ([], "lbs is empty"),
    ([dict(HAPROXY, endpoints=[])], "LB haproxy: endpoints is empty"),
    ([dict(HAPROXY, member=None)], "LB haproxy: no member"),
    ([dict(HAPROXY, members=[], member=None)], "LB haproxy: members is empty"),
    ([dict(HAPROXY, kind="f5")], "kind 'f5' is not one of haproxy, nginx"),
    ([dict(NGINX, options={"pidfle": "/x"})], "'pidfle' is not an option of kind nginx (did you mean 'pidfile'?)"),
    ([dict(HAPROXY, options={"conf": "/x"})], "'conf' is not an option of kind haproxy"),
    ([dict(HAPROXY, endpoints=[{"upstream_file": "/x"}])], "socket path or tcp://host:port"),
])
def test_a_bad_set_is_refused_before_anything_is_read(lbs, message):
    with pytest.raises(RolloutError) as err:
        make_drivers(params(lbs=lbs))
    assert message in err.value.msg


def test_pool_info_needs_no_member():
    drivers = make_drivers(params(lbs=[dict(HAPROXY, member=None)]), need_members=False)
    assert [d.member for d in drivers] == [""]


def test_the_drivers_meet_the_contract():
    names = sorted({n for n in list(dir(Driver)) + list(Driver.__annotations__) if not n.startswith("_")})
    assert {"kind", "lb", "has_health_check", "percent_weights", "take_out", "remaining"} <= set(names)
    lua = dict(NGINX, endpoints=[{"mode": "lua", "admin_url": "http://a/b"}])
    for driver in make_drivers(params(lbs=[HAPROXY, NGINX, lua])):
        missing = [n for n in names if not hasattr(driver, n)]
        assert not missing, (type(driver).__name__, missing)


def test_one_ready_rule():
    assert is_ready("ready", "UP", 1, False) and is_ready("ready", "UNKNOWN", None, False)
    assert not is_ready("drain", "UP", 1, False) and not is_ready("ready", "DOWN", 1, False)
    assert not is_ready("ready", "UP", 0, False) and not is_ready("ready", "UP", 1, True)
    record = member_record("web01", "10.0.0.1:80", "ready", "NOLB", 10, 0)
    assert record["ready"] is False and record["admin_flags"] is None


# --------------------------------------------------------------------------- one drain for the set


class SlowDriver(FakeDriver):
    """A FakeDriver whose take_out takes ``delay`` seconds and records when (wall clock) it ran."""

    def __init__(self, *args, delay: float = 0.2, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.delay = delay
        self.ran: tuple[float, float] | None = None
        self.thread = None

    def take_out(self, current: dict) -> None:
        start = time.monotonic()
        self.thread = threading.current_thread().name
        time.sleep(self.delay)
        super().take_out(current)
        self.ran = (start, time.monotonic())


def test_the_set_is_taken_out_at_once_and_drained_under_one_deadline():
    a = SlowDriver("haproxy.sock", pool("ready", "ready"), remaining=[2, 0])
    b = SlowDriver("nginx.conf", pool("ready", "ready"), remaining=[1, 1, 1, 0])
    result = Operation([a, b], Options(state="drained", drain_timeout=30, poll_interval=0.01)).run()
    assert a.ran[0] < b.ran[1] and b.ran[0] < a.ran[1], "the two LBs were taken out one after the other"
    assert a.thread != b.thread
    lbs = {lb["endpoint"]: lb for lb in result["lbs"]}
    assert all(lb["state"] == "maint" and lb["taken_out_at"] is not None for lb in lbs.values())
    assert lbs["haproxy.sock"]["drained_at"] <= lbs["nginx.conf"]["drained_at"]
    assert [lb["name"] for lb in result["lbs"]] == ["lb-haproxy.sock", "lb-nginx.conf"]


def test_a_failed_take_out_on_one_lb_puts_the_others_back():
    good = FakeDriver("good", pool("ready", "ready"))
    bad = FakeDriver("bad", pool("ready", "ready"), fail_on="drain")
    with pytest.raises(RolloutError, match="bad: cannot set drain") as err:
        Operation([good, bad], Options(state="drained")).run()
    assert good.calls[-1] == "ready" and ("restore", "ready") in good.calls
    assert err.value.details["restored"] == ["good"]


def test_capacity_is_checked_once_per_pool_before_any_lb_is_touched():
    a = FakeDriver("a", pool("ready", "ready"))
    b = FakeDriver("b", pool("ready", "maint"))  # on b, web01 is the only ready member
    with pytest.raises(RolloutError, match="refusing to take web01 out of pool 'app' at b"):
        Operation([a, b], Options(state="drained", min_ready=1)).run()
    assert "drain" not in a.calls and "drain" not in b.calls


# --------------------------------------------------------------------------- weights, warm-up, health per kind


def test_percent_warmup_runs_where_weights_are_percentages_and_each_lb_ends_at_its_own_weight():
    clock = Clock()
    haproxy = FakeDriver("h", pool("maint", "ready"))
    nginx = FakeDriver("n", pool("maint", "ready"), percent_weights=False, lb_weight=3)
    result = Operation([haproxy, nginx], Options(state="enabled", warmup=[{"weight": "50%", "pause": 1}]),
                       clock=clock, sleep=clock.sleep).run()
    by = {lb["endpoint"]: lb for lb in result["lbs"]}
    assert by["h"]["warmup_weights"] == [50] and by["h"]["weight"] == 100
    assert by["n"]["warmup_weights"] == [] and by["n"]["weight"] == 3
    assert ("weight", 50) in haproxy.calls and ("weight", 50) not in nginx.calls


def test_weight_configured_is_each_lbs_own_else_full():
    a = FakeDriver("a", pool("ready", "ready"), lb_weight=40)
    b = FakeDriver("b", pool("ready", "ready"))
    for driver in (a, b):
        driver.members[0]["weight"] = 25  # a canary at reduced weight
    result = Operation([a, b], Options(state="enabled", weight="configured")).run()
    assert [lb["weight"] for lb in result["lbs"]] == [40, 100]


def test_an_explicit_weight_overrides_each_lbs_own():
    a = FakeDriver("a", pool("ready", "ready"), lb_weight=40)
    result = Operation([a], Options(state="enabled", weight="25%")).run()
    assert result["lbs"][0]["weight"] == 25


def test_wait_healthy_waits_on_the_lbs_that_can_tell():
    clock = Clock()
    watched = FakeDriver("h", pool("maint", "ready"), healthy_after=2)
    blind = FakeDriver("n", pool("maint", "ready"), health_check=False, healthy_after=99)
    result = Operation([watched, blind], Options(state="enabled", wait_healthy=True, health_timeout=10),
                       clock=clock, sleep=clock.sleep).run()
    assert watched.calls.count("health") == 3 and "health" not in blind.calls
    assert all(lb["state"] == "ready" for lb in result["lbs"])


# --------------------------------------------------------------------------- the pool snapshot of a set


def test_serving_is_the_member_ready_in_every_lb_by_name_or_address():
    a = FakeDriver("a", pool("ready", "ready"))
    b = FakeDriver("b", pool("ready", "ready"))
    assert pool_snapshot([a, b])["serving"] is True
    b.members[0].update(state="maint", ready=False)
    snap = pool_snapshot([a, b])
    assert snap["serving"] is False and snap["members_serving"] == {"lb-a a web01": True, "lb-b b web01": False}
    gone = FakeDriver("c", [member("web05")])
    assert pool_snapshot([a, gone])["serving"] is False  # the member is not in c's pool
    anonymous = FakeDriver("d", pool("ready"), name="")
    assert pool_snapshot([anonymous])["serving"] is False  # no member named: nothing says it serves
