"""Unit tests of the canary judging logic, on recorded Prometheus answers."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

from ansible_collections.sre.rollout.plugins.module_utils._canary import (
    DEFAULT_METRICS,
    AppMetrics,
    FAIL,
    INCONCLUSIVE,
    OK,
    CanaryConfigError,
    Judgement,
    MetricSpec,
    Reading,
    Settings,
    apply_policy,
    build_metrics,
    explain_no_series,
    interval_outcome,
    judge,
    measure_interval,
    planned_times,
    reading_from_error,
    reading_from_result,
    regex_alternation,
    resolve_all,
    resolve_query,
    run_analysis,
    validate,
)
from ansible_collections.sre.rollout.plugins.module_utils._prometheus import (
    PrometheusError,
    QueryResult,
    Sample,
    parse_response,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "prometheus"


def recorded(name: str) -> QueryResult:
    """A recorded answer as the client returns it (raises PrometheusError for the error envelopes)."""
    doc = json.loads((FIXTURES / f"{name}.json").read_text())
    return parse_response(doc["body"].encode(), status=doc["http_status"], url="http://prom")


def recorded_error(name: str) -> PrometheusError:
    with pytest.raises(PrometheusError) as err:
        recorded(name)
    return err.value


def value(v: float) -> QueryResult:
    return QueryResult("vector", (Sample({}, v),))


ERRORS = MetricSpec(name="errors", query='sum(x{host=~"$HOSTS"})', max=0.05, max_ratio_to_baseline=2.0,
                    min_baseline=0.01)
SUCCESS = MetricSpec(name="success", query='sum(x{host=~"$HOSTS"})', min=0.9, max_ratio_to_baseline=1.1,
                     direction="higher_is_better")


# --- query templates ------------------------------------------------------------------------------

def test_alternation_escapes_regex_metacharacters_for_a_promql_string():
    # web01.example must not match web01xexample: \. in RE2, written \\. in a double-quoted PromQL string
    assert regex_alternation(["web01.example", "web02"]) == "web01\\\\.example|web02"
    assert regex_alternation(["a(b)+c"]) == "a\\\\(b\\\\)\\\\+c"


def test_alternation_drops_duplicates_and_keeps_order():
    assert regex_alternation(["web02", "web01", "web02"]) == "web02|web01"


def test_resolve_query_fills_every_placeholder_and_leaves_other_dollars():
    template = ('label_replace(sum(rate(m{host=~"$HOSTS",server=~"${SERVERS}",proxy="$BACKEND"}[$WINDOW])),'
                ' "x", "$1", "y", "(.*)")')
    out = resolve_query(template, ["web01", "web02"], ["srv1"], 'be"x', "30s")
    assert out == ('label_replace(sum(rate(m{host=~"web01|web02",server=~"srv1",proxy="be\\"x"}[30s])),'
                   ' "x", "$1", "y", "(.*)")')


def test_resolve_all_uses_server_names_and_no_baseline_query_without_baseline():
    spec = MetricSpec(name="m", query='sum(x{server=~"$SERVERS"})', max=1)
    queries = resolve_all([spec], ["web01"], [], {"web01": "web01-blue"}, "app", "1m")
    assert queries == {"m": {"canary": 'sum(x{server=~"web01-blue"})', "baseline": None}}


def test_default_queries_resolve_for_both_sides():
    queries = resolve_all(list(DEFAULT_METRICS), ["web01"], ["web02", "web03"], {}, "app", "15s")
    assert set(queries) == {"haproxy_5xx_ratio", "haproxy_response_time", "haproxy_connection_errors",
                            "app_error_ratio", "app_p99_latency", "process_cpu", "process_memory"}
    assert 'server=~"web01",code="5xx"}[15s]' in queries["haproxy_5xx_ratio"]["canary"]
    assert 'instance=~"web02|web03"' in queries["app_p99_latency"]["baseline"]
    for sides in queries.values():
        assert "$" not in sides["canary"] + sides["baseline"]


def test_app_metrics_names_and_instances_come_from_the_configuration():
    app = AppMetrics(requests="shop_requests_total", duration="shop_latency_seconds", code_label="status",
                     instance_label="node", selector='job="shop"')
    metrics = build_metrics(None, app)
    queries = resolve_all(metrics, ["web01"], ["web02"], {}, "be_shop", "30s",
                          {"web01": "10.0.0.1:8080", "web02": "10.0.0.2:8080"})
    assert queries["app_error_ratio"]["canary"] == (
        '(sum(rate(shop_requests_total{node=~"10\\\\.0\\\\.0\\\\.1:8080",status=~"5..",job="shop"}[30s]))'
        ' or vector(0)) / sum(rate(shop_requests_total{node=~"10\\\\.0\\\\.0\\\\.1:8080",job="shop"}[30s]))')
    assert "shop_latency_seconds_bucket{" in queries["app_p99_latency"]["baseline"]
    assert 'process_resident_memory_bytes{node=~"10\\\\.0\\\\.0\\\\.2:8080",job="shop"}' in \
        queries["process_memory"]["baseline"]


def test_without_an_haproxy_backend_the_haproxy_defaults_are_left_out():
    names = [m.name for m in build_metrics(None, has_backend=False)]
    assert names == ["app_error_ratio", "app_p99_latency", "process_cpu", "process_memory"]


def test_a_metric_on_haproxy_series_without_a_backend_is_refused():
    with pytest.raises(CanaryConfigError, match=r"haproxy_5xx_ratio.*no haproxy_backend"):
        validate(**good_config(metrics=build_metrics([{"name": "haproxy_5xx_ratio"}])), backend=None)


def test_base_metrics_catch_a_leak_and_a_cpu_burn_against_the_baseline():
    memory = next(m for m in DEFAULT_METRICS if m.name == "process_memory")
    cpu = next(m for m in DEFAULT_METRICS if m.name == "process_cpu")
    mib = 1024 * 1024
    assert judge(memory, Reading(120 * mib), Reading(22 * mib)).outcome == FAIL
    assert judge(memory, Reading(21 * mib), Reading(22 * mib)).outcome == OK
    assert judge(cpu, Reading(0.9), Reading(0.02)).outcome == FAIL
    assert judge(cpu, Reading(0.05), Reading(0.02)).outcome == OK


# --- configuration --------------------------------------------------------------------------------

def test_no_metrics_means_the_defaults():
    assert build_metrics(None) == list(DEFAULT_METRICS)
    assert build_metrics([]) == list(DEFAULT_METRICS)


def test_a_default_can_be_reused_by_name_with_other_bounds():
    [spec] = build_metrics([{"name": "app_error_ratio", "max": 0.01, "query": None, "min": None}])
    default = next(m for m in DEFAULT_METRICS if m.name == "app_error_ratio")
    assert spec.max == 0.01
    assert spec.query == default.query
    assert spec.max_ratio_to_baseline == default.max_ratio_to_baseline


def test_unknown_metric_without_query_is_refused():
    with pytest.raises(CanaryConfigError, match="has no `query` and is not a default"):
        build_metrics([{"name": "mystery", "max": 1}])


def test_metric_without_name_is_refused():
    with pytest.raises(CanaryConfigError, match="no `name`"):
        build_metrics([{"query": "x", "max": 1}])


def good_config(**over):
    args = dict(canary=["web01"], baseline=["web02"], metrics=[ERRORS], window="1m", duration=20,
                interval=5, failure_limit=1, inconclusive_limit=1)
    args.update(over)
    return args


def test_a_good_configuration_validates():
    validate(**good_config())
    validate(**good_config(baseline=[], metrics=[MetricSpec(name="m", query='x{host=~"$HOSTS"}', max=1)]))


@pytest.mark.parametrize("over, message", [
    (dict(canary=[]), "at least one host"),
    (dict(baseline=["web01", "web02"]), "in both `canary` and `baseline`"),
    (dict(window="1 minute"), "not a PromQL duration"),
    (dict(interval=0), "interval > 0"),
    (dict(duration=-1), "duration >= 0"),
    (dict(failure_limit=0), "must be >= 1"),
    (dict(inconclusive_limit=0), "must be >= 1"),
    (dict(metrics=[ERRORS, ERRORS]), "used more than once"),
    (dict(metrics=[MetricSpec(name="m", query="sum(x)", max=1)]), "none of $HOSTS, $INSTANCES or $SERVERS"),
    (dict(metrics=[MetricSpec(name="m", query='x{host=~"$HOSTS"}')]), "judges nothing"),
    (dict(metrics=[MetricSpec(name="m", query='x{host=~"$HOSTS"}', direction="sideways", max=1)]),
     "direction must be"),
    (dict(metrics=[MetricSpec(name="m", query='x{host=~"$HOSTS"}', max_ratio_to_baseline=0)]), "must be > 0"),
    (dict(metrics=[MetricSpec(name="m", query='x{host=~"$HOSTS"}', max_ratio_to_baseline=2,
                              direction="higher_is_better", min_baseline=0.1)]), "min_baseline"),
    (dict(metrics=[MetricSpec(name="m", query='x{host=~"$HOSTS"}', max_ratio_to_baseline=2, min_baseline=-1)]),
     "min_baseline"),
    (dict(baseline=[], metrics=[MetricSpec(name="m", query='x{host=~"$HOSTS"}', max_ratio_to_baseline=2)]),
     "no `baseline` hosts"),
])
def test_configurations_that_cannot_judge_are_refused(over, message):
    with pytest.raises(CanaryConfigError) as err:
        validate(**good_config(**over))
    assert message in err.value.msg


# --- readings from recorded answers ---------------------------------------------------------------

def test_normal_vector_is_a_usable_reading():
    reading = reading_from_result(recorded("vector_normal"))
    assert reading.usable
    assert reading.value > 0


def test_zero_error_ratio_is_a_usable_zero():
    reading = reading_from_result(recorded("vector_error_ratio_zero"))
    assert reading.usable
    assert reading.value == 0.0


def test_empty_vector_is_no_data():
    reading = reading_from_result(recorded("vector_empty"))
    assert not reading.usable
    assert "no data" in reading.problem


def test_nan_is_not_usable():
    reading = reading_from_result(recorded("vector_nan"))
    assert not reading.usable
    assert "NaN" in reading.problem


def test_several_series_are_not_usable():
    reading = reading_from_result(recorded("vector_several_series"))
    assert not reading.usable
    assert "6 series" in reading.problem
    assert "aggregate" in reading.problem


def test_scalar_and_inf_are_values():
    assert reading_from_result(recorded("scalar_normal")).value == 7.0
    inf = reading_from_result(recorded("scalar_inf"))
    assert inf.usable
    assert inf.value == math.inf


def test_matrix_is_a_configuration_error():
    with pytest.raises(CanaryConfigError, match="returns a matrix"):
        reading_from_result(recorded("matrix"))


def test_query_error_reading_keeps_the_message():
    reading = reading_from_error(recorded_error("error_execution"))
    assert not reading.usable
    assert "found duplicate series" in reading.problem


# --- judging one metric ---------------------------------------------------------------------------

def r(v: float) -> Reading:
    return Reading(value=v)


NO_DATA = reading_from_result(recorded("vector_empty"))
NAN = reading_from_result(recorded("vector_nan"))


@pytest.mark.parametrize("spec, canary, baseline, outcome, reason", [
    (ERRORS, r(0.0), r(0.0), OK, "<= 2 x baseline 0.01 (floor min_baseline 0.01)"),
    (ERRORS, r(0.06), r(0.05), FAIL, "canary 0.06 > max 0.05"),
    (ERRORS, r(0.03), r(0.01), FAIL, "canary 0.03 > 2 x baseline 0.01"),
    (ERRORS, r(0.015), r(0.0), OK, "floor min_baseline"),          # floor: no fail against a ~0 baseline
    (ERRORS, r(0.025), r(0.0), FAIL, "canary 0.025 > 2 x baseline 0.01 (floor"),
    (ERRORS, r(0.04), r(0.03), OK, "canary 0.04 <= 2 x baseline 0.03"),
    (ERRORS, NO_DATA, r(0.0), INCONCLUSIVE, "canary: no data"),
    (ERRORS, NAN, r(0.0), INCONCLUSIVE, "canary: NaN"),
    (ERRORS, r(0.01), NO_DATA, INCONCLUSIVE, "baseline: no data"),
    (ERRORS, r(0.01), NAN, INCONCLUSIVE, "baseline: NaN"),
    (ERRORS, r(0.2), NO_DATA, FAIL, "canary 0.2 > max 0.05"),       # absolute bound needs no baseline
    (ERRORS, r(0.01), r(math.inf), INCONCLUSIVE, "baseline: +Inf"),
    (ERRORS, r(math.inf), r(0.0), FAIL, "canary +Inf > max"),       # histogram_quantile in the +Inf bucket
    (ERRORS, r(0.01), None, OK, "no baseline hosts: ratio not checked"),
    (SUCCESS, r(0.99), r(1.0), OK, "canary 0.99 >= baseline 1 / 1.1"),
    (SUCCESS, r(0.85), r(1.0), FAIL, "canary 0.85 < min 0.9"),
    (SUCCESS, r(0.9), r(1.0), FAIL, "canary 0.9 < baseline 1 / 1.1"),
])
def test_judge(spec, canary, baseline, outcome, reason):
    verdict = judge(spec, canary, baseline)
    assert verdict.outcome == outcome
    assert reason in verdict.reason


def test_a_query_error_for_the_canary_is_inconclusive_never_ok():
    verdict = judge(ERRORS, reading_from_error(recorded_error("error_execution")), r(0.0))
    assert verdict.outcome == INCONCLUSIVE
    assert "query failed" in verdict.reason


def test_interval_outcome_fail_beats_inconclusive_beats_ok():
    ok, fail, inc = Judgement(OK, ""), Judgement(FAIL, ""), Judgement(INCONCLUSIVE, "")
    assert interval_outcome([ok, ok]) == OK
    assert interval_outcome([ok, inc]) == INCONCLUSIVE
    assert interval_outcome([inc, fail, ok]) == FAIL


@pytest.mark.parametrize("finding, policy, verdict", [
    ("pass", "fail", "pass"), ("fail", "pass", "fail"),
    ("inconclusive", "fail", "fail"), ("inconclusive", "pause", "inconclusive"), ("inconclusive", "pass", "pass"),
])
def test_apply_policy(finding, policy, verdict):
    assert apply_policy(finding, policy) == verdict


def test_planned_times():
    assert planned_times(Settings(duration=20, interval=5)) == [5, 10, 15, 20]
    assert planned_times(Settings(duration=20, interval=6)) == [6, 12, 18, 20]
    assert planned_times(Settings(duration=3, interval=10)) == [3]
    assert planned_times(Settings(duration=0, interval=10)) == [0.0]


# --- the soak loop --------------------------------------------------------------------------------

class FakeTime:
    """A clock that only moves when the analysis sleeps (or a query takes time)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def wallclock(self) -> float:
        return 1_700_000_000.0 + self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class FakePrometheus:
    """Answers per side from a script: ``answers[side]`` is a function of the interval number."""

    def __init__(self, canary, baseline, fake_time: FakeTime, query_seconds: float = 0.1) -> None:
        self.answers = {"CANARY": canary, "BASELINE": baseline}
        self.time = fake_time
        self.query_seconds = query_seconds
        self.calls: list[tuple[str, float]] = []

    def query(self, promql: str, at: float):
        self.calls.append((promql, at))
        self.time.now += self.query_seconds
        side = "CANARY" if "CANARY" in promql else "BASELINE"
        answer = self.answers[side](len(self.calls))
        if isinstance(answer, Exception):
            raise answer
        if answer.samples:  # like Prometheus: evaluated at `at`, or at its own "now"
            answer = dataclasses.replace(answer, time=at if at is not None else self.time.wallclock())
        return answer


def analyse(canary, baseline, metrics=(ERRORS,), **settings):
    fake_time = FakeTime()
    prom = FakePrometheus(canary, baseline, fake_time)
    metrics = list(metrics)
    queries = resolve_all(metrics, ["CANARY"], ["BASELINE"], {}, "app", "1m")
    opts = dict(duration=20, interval=5)
    opts.update(settings)
    result = run_analysis(metrics, queries, Settings(**opts), prom.query, clock=fake_time.clock,
                          sleep=fake_time.sleep, wallclock=fake_time.wallclock)
    return result, prom, fake_time


def always(answer):
    return lambda call: answer


def test_good_canary_passes_after_the_whole_soak():
    result, prom, fake_time = analyse(always(value(0.0)), always(value(0.0)))
    assert result["verdict"] == "pass"
    assert result["inconclusive"] is False
    assert (result["intervals"], result["ok_intervals"]) == (4, 4)
    assert (result["failed_intervals"], result["inconclusive_intervals"]) == (0, 0)
    assert result["stopped_early"] is False
    assert len(result["measurements"]) == 4
    assert all(m["ok"] for m in result["measurements"])
    # measured at the end of each interval: the clock reached the full duration
    assert fake_time.now >= 1000 + 20
    assert result["summary"].startswith("pass: 4 of 4 intervals")


def test_every_query_of_an_interval_uses_the_time_prometheus_evaluated_the_first_at():
    metrics = [ERRORS, MetricSpec(name="latency", query='x{host=~"$HOSTS"}', max=1.0)]
    result, prom, _unused = analyse(always(value(0.0)), always(value(0.0)), metrics=metrics)
    assert len(prom.calls) == 4 * 4
    for interval in range(4):
        calls = prom.calls[interval * 4:(interval + 1) * 4]
        assert calls[0][1] is None  # the first asks for Prometheus' "now"...
        evaluated = 1_700_000_000.0 + 1000.0 + 5 * (interval + 1) + 0.1  # the fake takes 0.1 s per query
        assert [at for _unused, at in calls[1:]] == pytest.approx([evaluated] * 3)  # ...the rest reuse its time
    assert result["measurements"][0]["time"] == "2023-11-14T22:30:05+00:00"


def test_without_any_prometheus_time_the_measurement_uses_the_controller_clock():
    result, prom, _unused = analyse(always(down()), always(down()), on_inconclusive="pause")
    assert all(at is None for _unused, at in prom.calls)
    assert result["measurements"][0]["time"] == "2023-11-14T22:30:05+00:00"


def test_sleeps_account_for_time_spent_querying():
    _unused, _unused, fake_time = analyse(always(value(0.0)), always(value(0.0)))
    # 2 queries x 0.1 s per interval are taken off the next wait
    assert fake_time.sleeps == pytest.approx([5.0, 4.8, 4.8, 4.8])


def test_erroring_canary_fails_at_the_first_failed_interval():
    result, _unused, _unused = analyse(always(value(0.1)), always(value(0.0)))
    assert result["verdict"] == "fail"
    assert result["failed_intervals"] == 1
    assert result["intervals"] == 1
    assert result["stopped_early"] is True
    assert result["measurements"][0] == {
        "interval": 1, "time": result["measurements"][0]["time"], "metric": "errors",
        "canary": 0.1, "baseline": 0.0, "ok": False, "outcome": "fail", "reason": "canary 0.1 > max 0.05"}
    assert "errors: canary 0.1 > max 0.05" in result["summary"]


def test_failure_limit_counts_failed_intervals():
    # intervals 1 and 3 fail (calls 1 and 5 are the canary's), 2 and 4 are fine
    def canary(call):
        return value(0.1) if call in (1, 5) else value(0.0)
    result, _unused, _unused = analyse(canary, always(value(0.0)), failure_limit=2)
    assert result["verdict"] == "fail"
    assert (result["intervals"], result["failed_intervals"], result["ok_intervals"]) == (3, 2, 1)


def test_failures_below_the_limit_pass():
    def canary(call):
        return value(0.1) if call == 1 else value(0.0)
    result, _unused, _unused = analyse(canary, always(value(0.0)), failure_limit=2)
    assert result["verdict"] == "pass"
    assert result["failed_intervals"] == 1


def down():
    return PrometheusError("cannot reach Prometheus at http://prom: [Errno 111] Connection refused",
                           "unreachable")


def test_prometheus_down_is_inconclusive_and_fails_by_default():
    # argoproj/argo-rollouts#4479: every measurement errored, yet the analysis said Successful
    result, _unused, _unused = analyse(always(down()), always(down()))
    assert result["verdict"] == "fail"
    assert result["inconclusive"] is True
    assert result["inconclusive_intervals"] == 1
    assert result["stopped_early"] is True
    m = result["measurements"][0]
    assert (m["canary"], m["baseline"], m["ok"], m["outcome"]) == (None, None, False, "inconclusive")
    assert "Connection refused" in m["reason"]
    assert "on_inconclusive=fail" in result["summary"]


def test_prometheus_down_with_pause_returns_inconclusive():
    result, _unused, _unused = analyse(always(down()), always(down()), on_inconclusive="pause")
    assert result["verdict"] == "inconclusive"
    assert "decide before going on" in result["summary"]


def test_prometheus_down_with_pass_passes_only_explicitly_and_says_so():
    result, _unused, _unused = analyse(always(down()), always(down()), on_inconclusive="pass")
    assert result["verdict"] == "pass"
    assert result["inconclusive"] is True
    assert result["inconclusive_intervals"] == 1
    assert "on_inconclusive=pass" in result["summary"]


def test_all_inconclusive_never_passes_even_under_a_generous_limit():
    result, _unused, _unused = analyse(always(recorded("vector_empty")), always(value(0.0)), inconclusive_limit=100)
    assert result["intervals"] == 4
    assert result["inconclusive_intervals"] == 4
    assert result["verdict"] == "fail"
    assert result["inconclusive"] is True


def test_some_inconclusive_intervals_under_the_limit_pass_and_are_reported():
    def canary(call):
        return recorded("vector_nan") if call == 1 else value(0.0)
    result, _unused, _unused = analyse(canary, always(value(0.0)), inconclusive_limit=2)
    assert result["verdict"] == "pass"
    assert result["inconclusive"] is False
    assert result["inconclusive_intervals"] == 1
    assert "1 inconclusive interval(s) tolerated" in result["summary"]


def test_nan_and_inf_are_reported_as_strings():
    result, _unused, _unused = analyse(always(recorded("vector_nan")), always(recorded("scalar_inf")), on_inconclusive="pause")
    m = result["measurements"][0]
    assert (m["canary"], m["baseline"]) == ("NaN", "+Inf")
    json.dumps(result, allow_nan=False)  # the whole result is strict JSON


def test_a_failure_wins_over_missing_data_in_the_same_interval():
    metrics = [ERRORS, MetricSpec(name="latency", query='x{host=~"$HOSTS"}', max=1.0)]
    # call 1: errors canary 0.1 (fail); call 3: latency canary -> no data

    def canary(call):
        return value(0.1) if call == 1 else recorded("vector_empty")
    result, _unused, _unused = analyse(canary, always(value(0.0)), metrics=metrics)
    assert result["verdict"] == "fail"
    assert result["inconclusive"] is False
    assert [m["outcome"] for m in result["measurements"]] == ["fail", "inconclusive"]


def test_an_invalid_query_stops_the_analysis_at_once():
    error = recorded_error("error_bad_data")
    with pytest.raises(CanaryConfigError) as err:
        analyse(always(error), always(value(0.0)))
    assert "rejected the query as invalid" in err.value.msg
    assert "metric 'errors'" in err.value.msg
    assert err.value.details["query"] == 'sum(x{host=~"CANARY"})'


def test_a_range_vector_query_stops_the_analysis_at_once():
    with pytest.raises(CanaryConfigError, match="returns a matrix"):
        analyse(always(recorded("matrix")), always(value(0.0)))


def test_duration_zero_measures_once_without_sleeping():
    result, _unused, fake_time = analyse(always(value(0.0)), always(value(0.0)), duration=0)
    assert result["intervals"] == 1
    assert fake_time.sleeps == []


def test_result_lists_the_resolved_queries_and_criteria():
    result, _unused, _unused = analyse(always(value(0.0)), always(value(0.0)))
    assert result["queries"] == {"errors": {"canary": 'sum(x{host=~"CANARY"})', "baseline": 'sum(x{host=~"BASELINE"})'}}
    assert result["criteria"][0]["name"] == "errors"
    assert result["criteria"][0]["max"] == 0.05


def test_a_query_with_no_series_names_the_matcher_that_matched_nothing():
    answers = {
        "count(http_requests_total{})": [{}],
        'count(http_requests_total{instance=~"web01"})': [],
        "count by (instance) (http_requests_total{})": [{"instance": "127.0.13.1:8080"},
                                                        {"instance": "127.0.13.2:8080"}],
        "count(nope_total{})": [],
    }

    def query_fn(promql, at):
        return QueryResult("vector", tuple(Sample(labels, 1.0) for labels in answers.get(promql, [])), 1.0)

    why = explain_no_series('sum(rate(http_requests_total{instance=~"web01",code=~"5.."}[1m]))', query_fn, 1.0)
    assert why == ('no http_requests_total series matches instance=~"web01" '
                   "(its instance values are 127.0.13.1:8080, 127.0.13.2:8080)")
    assert explain_no_series("sum(nope_total{job=\"x\"})", query_fn, 1.0) == "no series is named nope_total"


def test_an_empty_result_is_inconclusive_with_the_explanation_and_the_query():
    def query_fn(promql, at):
        return QueryResult("vector", (), 1.0)

    spec = MetricSpec(name="m", query='sum(x_total{instance=~"$INSTANCES"})', max=1)
    queries = resolve_all([spec], ["web01"], [], {}, None, "1m")
    [row] = measure_interval(1, [spec], queries, query_fn)
    assert row["outcome"] == INCONCLUSIVE
    assert row["reason"] == 'canary: no data: no series is named x_total (query: sum(x_total{instance=~"web01"}))'
