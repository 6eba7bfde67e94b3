"""Unit tests for the release planning rules (plugins/module_utils/_plan.py)."""

from __future__ import annotations

import pytest

from ansible_collections.sre.rollout.plugins.module_utils._common import RolloutError
from ansible_collections.sre.rollout.plugins.module_utils._plan import (
    UNZONED,
    PlanError,
    build_plan,
    format_table,
    largest_step,
    parse_count,
    zone_balanced_batches,
    Host,
)


def lab_hosts(count: int = 6, zones: str = "abc") -> list[dict]:
    """web01..webNN spread over zones round-robin, like the lab's CMDB."""
    return [{"name": f"web{i:02d}", "zone": f"zone-{zones[(i - 1) % len(zones)]}"} for i in range(1, count + 1)]


def refused(**kwargs) -> PlanError:
    with pytest.raises(PlanError) as info:
        build_plan(**kwargs)
    return info.value


def zones_of(plan, names):
    zone_of = {n: z for z, ns in plan.zones.items() for n in ns}
    return [zone_of[n] for n in names]


# --------------------------------------------------------------------------- the lab's default plan


def test_default_plan_for_six_hosts_is_one_canary_then_batches_of_two():
    plan = build_plan(lab_hosts()).as_dict()

    assert plan["canary"] == ["web01"]
    assert plan["batches"] == [["web02", "web03"], ["web04", "web05"], ["web06"]]
    assert plan["serial"] == [2, 2, 1]
    assert plan["order"] == ["web01", "web02", "web03", "web04", "web05", "web06"]
    assert plan["pool_size"] == 6
    assert plan["batch_size"] == 2
    assert plan["min_ready"] == 1
    assert plan["excluded"] == []
    assert plan["zones"] == {"zone-a": ["web01", "web04"], "zone-b": ["web02", "web05"],
                             "zone-c": ["web03", "web06"]}


def test_plan_is_an_error_of_the_collection():
    assert issubclass(PlanError, RolloutError)


@pytest.mark.parametrize("pool", range(3, 60))
def test_every_step_stays_under_half_the_pool_and_keeps_min_ready(pool):
    plan = build_plan([f"h{i}" for i in range(pool)], min_ready=1)
    steps = [plan.canary] + plan.batches
    assert all(2 * len(step) < pool for step in steps)
    assert all(pool - len(step) >= 1 for step in steps)
    released = [name for step in steps for name in step]
    assert sorted(released) == sorted(f"h{i}" for i in range(pool))
    assert plan.batch_size == largest_step(pool) == (pool - 1) // 2


# --------------------------------------------------------------------------- 50% rule


@pytest.mark.parametrize("batch_size", [3, "3", "50%", "60%", 5])
def test_batch_of_half_the_pool_or_more_is_refused_naming_the_largest_allowed(batch_size):
    error = refused(hosts=lab_hosts(), batch_size=batch_size)
    assert "under 50%" in error.msg
    assert "largest allowed is 2" in error.msg
    assert error.details["largest_allowed"] == 2
    assert error.details["pool_size"] == 6


def test_batch_just_under_half_is_accepted():
    plan = build_plan(lab_hosts(), batch_size="49%")
    assert plan.batch_size == 2
    assert plan.as_dict()["serial"] == [2, 2, 1]


def test_percent_batch_rounds_down_but_never_to_zero():
    assert build_plan(lab_hosts(), batch_size="10%").batch_size == 1
    assert build_plan(lab_hosts(10), batch_size="25%").batch_size == 2


@pytest.mark.parametrize("batch_size", [0, "0", "0%"])
def test_batch_of_zero_is_refused(batch_size):
    assert "use at least 1" in refused(hosts=lab_hosts(), batch_size=batch_size).msg


@pytest.mark.parametrize("batch_size", [-1, 2.5, "two", "%", True, [2]])
def test_batch_size_that_is_not_a_count_is_refused(batch_size):
    error = refused(hosts=lab_hosts(), batch_size=batch_size)
    assert "batch_size" in error.msg


def test_pool_of_one_is_refused_unless_allowed():
    error = refused(hosts=["web01"])
    assert "allow_single_host" in error.msg
    assert error.details["largest_batch"] == 0


def test_pool_of_one_allowed_is_canary_only_with_a_warning():
    plan = build_plan(["web01"], allow_single_host=True)
    assert plan.as_dict()["canary"] == ["web01"]
    assert plan.as_dict()["batches"] == []
    assert plan.as_dict()["serial"] == []
    assert len(plan.warnings) == 1
    assert "single host" in plan.warnings[0] and "min_ready" in plan.warnings[0]


def test_pool_of_two_is_refused_even_with_allow_single_host():
    error = refused(hosts=["web01", "web02"], allow_single_host=True)
    assert "a pool of 2 hosts" in error.msg and "under 50%" in error.msg


def test_pool_of_three_goes_one_host_at_a_time():
    plan = build_plan(["a", "b", "c"]).as_dict()
    assert plan["canary"] == ["a"] and plan["batches"] == [["b"], ["c"]]


# --------------------------------------------------------------------------- min_ready and excluded


def test_excluded_hosts_are_left_out_but_count_in_the_pool():
    plan = build_plan(lab_hosts(), excluded={"web06": "unhealthy: /health answered 503"}).as_dict()
    assert "web06" not in plan["order"]
    assert plan["pool_size"] == 6
    assert plan["excluded"] == [{"host": "web06", "reason": "unhealthy: /health answered 503"}]
    assert plan["zones"]["zone-c"] == ["web03", "web06"]


def test_excluded_as_a_list_of_dicts_joins_reasons_for_the_same_host():
    plan = build_plan(lab_hosts(), excluded=[{"host": "web02", "reason": "unreachable"},
                                             {"host": "web02", "reason": "disk full"},
                                             {"host": "web03"}])
    assert plan.excluded == {"web02": "unreachable; disk full", "web03": "no reason given"}


def test_min_ready_lowers_the_default_batch_size():
    plan = build_plan(lab_hosts(), excluded={"web06": "down"}, min_ready=3)
    # 6 - 1 excluded - 2 = 3 ready: batches of 2 still fit.
    assert plan.batch_size == 2
    plan = build_plan(lab_hosts(), excluded={"web06": "down"}, min_ready=4)
    assert plan.batch_size == 1
    assert plan.as_dict()["serial"] == [1, 1, 1, 1]


def test_explicit_batch_breaking_min_ready_is_refused_with_the_numbers():
    error = refused(hosts=lab_hosts(), excluded={"web06": "down"}, batch_size=2, min_ready=4)
    assert "pool 6 - excluded 1 - 2 = 3" in error.msg
    assert "min_ready 4" in error.msg
    assert "Use at most 1 host per step" in error.msg
    assert error.details == {"size": 2, "pool_size": 6, "excluded": 1, "min_ready": 4, "ready": 3}


def test_canary_must_respect_min_ready_too():
    error = refused(hosts=lab_hosts(), excluded={"web06": "down"}, min_ready=5)
    assert error.msg.startswith("a canary of 1 host leaves 4 hosts ready")
    assert "No step size fits" in error.msg


def test_min_ready_as_a_percentage_rounds_up():
    assert build_plan(lab_hosts(10), min_ready="75%").min_ready == 8  # 7.5 -> 8
    assert build_plan(lab_hosts(10), min_ready="75%").batch_size == 2


def test_min_ready_above_the_pool_is_refused():
    assert "more than the pool of 6" in refused(hosts=lab_hosts(), min_ready=7).msg


def test_every_host_excluded_is_refused():
    error = refused(hosts=["a", "b", "c"], excluded={"a": "x", "b": "y", "c": "z"})
    assert "every host is excluded" in error.msg
    assert len(error.details["excluded"]) == 3


def test_unknown_excluded_host_is_refused():
    error = refused(hosts=lab_hosts(), excluded={"web99": "typo"})
    assert "web99" in error.msg and error.details["unknown"] == ["web99"]


@pytest.mark.parametrize("excluded", ["web01", 3, [{"reason": "no host"}], ["web01"]])
def test_malformed_excluded_is_refused(excluded):
    assert "excluded" in refused(hosts=lab_hosts(), excluded=excluded).msg


# --------------------------------------------------------------------------- pool size


def test_pool_size_larger_than_hosts_allows_bigger_steps_of_a_limited_release():
    plan = build_plan(["web01", "web02", "web03"], pool_size=12)
    assert plan.pool_size == 12
    assert plan.batch_size == 5
    assert plan.as_dict()["batches"] == [["web02", "web03"]]


def test_pool_size_smaller_than_hosts_is_refused():
    error = refused(hosts=lab_hosts(), pool_size=4)
    assert "smaller than the 6 hosts" in error.msg


# --------------------------------------------------------------------------- canary


@pytest.mark.parametrize("canary", [0, "0"])
def test_no_canary_is_refused(canary):
    assert "canary is mandatory" in refused(hosts=lab_hosts(), canary=canary).msg


@pytest.mark.parametrize("canary", [3, ["web01", "web02", "web03"]])
def test_more_than_two_canaries_are_refused(canary):
    assert "use 1 or 2 canary hosts" in refused(hosts=lab_hosts(), canary=canary).msg


def test_canary_is_picked_from_the_largest_zone():
    hosts = [{"name": "a1", "zone": "a"}, {"name": "b1", "zone": "b"}, {"name": "b2", "zone": "b"},
             {"name": "c1", "zone": "c"}, {"name": "b3", "zone": "b"}, {"name": "a2", "zone": "a"}]
    assert build_plan(hosts).canary == ["b1"]


def test_two_canaries_come_from_the_largest_zones_in_turn():
    hosts = [{"name": "a1", "zone": "a"}, {"name": "b1", "zone": "b"}, {"name": "b2", "zone": "b"},
             {"name": "c1", "zone": "c"}, {"name": "b3", "zone": "b"}, {"name": "a2", "zone": "a"},
             {"name": "a3", "zone": "a"}]
    assert build_plan(hosts, canary=2).canary == ["a1", "b1"]


def test_largest_zone_is_counted_without_excluded_hosts():
    hosts = [{"name": "a1", "zone": "a"}, {"name": "a2", "zone": "a"}, {"name": "a3", "zone": "a"},
             {"name": "b1", "zone": "b"}, {"name": "b2", "zone": "b"}, {"name": "c1", "zone": "c"}]
    plan = build_plan(hosts, excluded={"a1": "down", "a2": "down"}, min_ready=1)
    assert plan.canary == ["b1"]


def test_canary_given_as_names_or_comma_string():
    assert build_plan(lab_hosts(), canary=["web04"]).canary == ["web04"]
    plan = build_plan(lab_hosts(10), canary="web03, web07")
    assert plan.canary == ["web03", "web07"]
    assert "web03" not in plan.as_dict()["batches"][0]


def test_canary_count_given_as_a_string():
    assert len(build_plan(lab_hosts(), canary="2").canary) == 2


def test_two_canaries_of_a_small_pool_are_refused_by_the_50_percent_rule():
    error = refused(hosts=["a", "b", "c", "d"], canary=2)
    assert "a canary of 2 hosts is 50% of the pool of 4" in error.msg
    assert "Use canary: 1." in error.msg


def test_unknown_canary_host_is_refused():
    error = refused(hosts=lab_hosts(), canary=["web01", "web77"])
    assert "web77" in error.msg and error.details["unknown"] == ["web77"]


def test_excluded_canary_host_is_refused_with_the_reason():
    error = refused(hosts=lab_hosts(), canary=["web02"], excluded={"web02": "unreachable"})
    assert "web02 is excluded (unreachable)" in error.msg


def test_duplicate_canary_host_is_refused():
    assert "more than once" in refused(hosts=lab_hosts(), canary=["web01", "web01"]).msg


def test_more_canaries_than_releasable_hosts_is_refused():
    error = refused(hosts=["web01", "web02"], pool_size=10, excluded={"web02": "down"}, canary=2)
    assert "only 1 host can be released" in error.msg


@pytest.mark.parametrize("canary", [True, 1.5, {"web01": 1}, [1]])
def test_malformed_canary_is_refused(canary):
    assert "canary" in refused(hosts=lab_hosts(), canary=canary).msg


# --------------------------------------------------------------------------- hosts


def test_zero_hosts_is_refused():
    assert "nothing to release" in refused(hosts=[]).msg


def test_duplicate_hosts_are_refused():
    error = refused(hosts=["web01", "web02", {"name": "web01", "zone": "a"}])
    assert "web01" in error.msg and error.details["duplicates"] == ["web01"]


@pytest.mark.parametrize("item", [None, "", {"zone": "a"}, {"name": ""}, 7])
def test_host_without_a_name_is_refused(item):
    assert "hosts[1] has no host name" in refused(hosts=["web01", item, "web03"]).msg


def test_zones_mapping_applies_to_plain_names_and_dict_zone_wins():
    plan = build_plan(["web01", {"name": "web02", "zone": "z9"}, "web03"],
                      zones={"web01": "z1", "web02": "z2", "other": "z3"})
    assert plan.zones == {"z1": ["web01"], "z9": ["web02"], UNZONED: ["web03"]}


@pytest.mark.parametrize("order, expected", [
    ("inventory", ["web10", "web2", "web1"]),
    ("reverse_inventory", ["web1", "web2", "web10"]),
    ("sorted", ["web1", "web2", "web10"]),
    ("reverse_sorted", ["web10", "web2", "web1"]),
])
def test_order(order, expected):
    assert build_plan(["web10", "web2", "web1"], order=order).as_dict()["order"] == expected


def test_unknown_order_is_refused():
    assert "order must be one of" in refused(hosts=lab_hosts(), order="shuffle").msg


# --------------------------------------------------------------------------- zones


def test_batches_spread_over_as_many_zones_as_possible():
    plan = build_plan(lab_hosts(12, zones="abc"))  # pool 12 -> batches of 5
    for batch in plan.batches:
        zones = zones_of(plan, batch)
        assert len(set(zones)) == min(3, len(batch))


def test_batches_drain_the_fullest_zone_first():
    hosts = [Host(f"a{i}", "a") for i in range(6)] + [Host("b0", "b"), Host("c0", "c")]
    batches = zone_balanced_batches(hosts, 2)
    # zone a has most hosts left each time: it is in every batch, b and c are paired with it.
    assert [sorted({name[0] for name in b}) for b in batches] == [["a", "b"], ["a", "c"], ["a"], ["a"]]
    assert sorted(n for b in batches for n in b) == sorted(h.name for h in hosts)


def test_batches_keep_the_input_order_inside_a_batch():
    hosts = [Host("h1", "x"), Host("h2", "y"), Host("h3", "x"), Host("h4", "y")]
    assert zone_balanced_batches(hosts, 2) == [["h1", "h2"], ["h3", "h4"]]


def test_unzoned_hosts_are_batched_in_order():
    plan = build_plan([f"h{i}" for i in range(7)])
    assert plan.batches == [["h1", "h2", "h3"], ["h4", "h5", "h6"]]
    assert plan.zones == {UNZONED: [f"h{i}" for i in range(7)]}


# --------------------------------------------------------------------------- parse_count


@pytest.mark.parametrize("value, round_up, expected", [
    (3, False, (3, False)), ("3", False, (3, False)), ("33%", False, (1, True)),
    ("34%", False, (2, True)), ("1%", False, (1, True)), ("0%", False, (0, True)),
    ("17%", True, (2, True)), ("16.5%", True, (1, True)), ("100%", True, (6, True)),
])
def test_parse_count(value, round_up, expected):
    assert parse_count(value, 6, "x", round_up=round_up) == expected


# --------------------------------------------------------------------------- table


def test_table_lists_every_step_with_zones_and_the_excluded_reason():
    plan = build_plan(lab_hosts(), excluded={"web06": "unhealthy: /health answered 503"}).as_dict()
    lines = format_table(plan)
    assert lines[0] == ("release plan: 5 hosts in 3 steps (canary + 2 batches); pool 6, batch size 2, "
                        "min ready 1, excluded 1")
    assert lines[1].split() == ["step", "hosts", "zones", "names"]
    assert set(lines[2]) <= {"-", " "}
    assert lines[3].split() == ["canary", "1", "zone-a", "web01"]
    assert lines[4].split() == ["batch", "1", "2", "zone-b,", "zone-c", "web02,", "web03"]
    assert lines[5].split() == ["batch", "2", "2", "zone-a,", "zone-b", "web04,", "web05"]
    assert lines[6].startswith("excluded") and lines[6].endswith("web06: unhealthy: /health answered 503")
    assert len(lines) == 7
    # The columns line up: every row starts its names at the same column.
    assert len({line.index("web0") for line in lines[3:]}) == 1


def test_table_shortens_long_batches_and_counts_zones():
    plan = build_plan(lab_hosts(40, zones="ab")).as_dict()
    line = format_table(plan, max_names=4)[4]
    assert "(+15 more)" in line
    # web01 (zone-a) is the canary: zone-b has more hosts left and leads the first batch.
    assert "zone-b (10), zone-a (9)" in line
