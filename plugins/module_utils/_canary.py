# Copyright: sre.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Canary analysis: query templates, judging, and the soak loop.

This module is private to the sre.rollout collection: its interface may change
without notice and it must not be used from outside the collection.

Everything here is pure except ``run_analysis``, which takes the query
function, the clocks and ``sleep`` as arguments so that tests drive it.

Judging rules, per metric and interval:

- no usable canary value (query error, empty vector, several series, NaN)
  -> inconclusive; a missing value never counts as good;
- canary above ``max`` / below ``min`` -> fail (even without a baseline value);
- with ``max_ratio_to_baseline`` k: no usable baseline value -> inconclusive;
  lower_is_better fails when canary > k * max(baseline, min_baseline),
  higher_is_better fails when canary < baseline / k;
- otherwise ok.

An interval fails when any metric failed, else is inconclusive when any metric
was inconclusive, else is ok. The analysis fails once ``failure_limit``
intervals have failed, is inconclusive once ``inconclusive_limit`` intervals
were inconclusive (both stop the soak early), and passes only when neither
happened and at least one interval was fully ok.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Callable

from ansible_collections.sre.rollout.plugins.module_utils._common import RolloutError
from ansible_collections.sre.rollout.plugins.module_utils._prometheus import PrometheusError, QueryResult

LOWER_IS_BETTER = "lower_is_better"
HIGHER_IS_BETTER = "higher_is_better"
DIRECTIONS = (LOWER_IS_BETTER, HIGHER_IS_BETTER)

OK = "ok"
FAIL = "fail"
INCONCLUSIVE = "inconclusive"
PASS = "pass"
ON_INCONCLUSIVE = ("fail", "pass", "pause")

_PLACEHOLDER = re.compile(r"\$(?:\{(HOSTS|INSTANCES|SERVERS|BACKEND|WINDOW)\}|(HOSTS|INSTANCES|SERVERS|BACKEND|WINDOW)\b)")
_SELECTORS = ("HOSTS", "INSTANCES", "SERVERS")
_LB_PLACEHOLDERS = ("SERVERS", "BACKEND")
_WINDOW = re.compile(r"^(?:[0-9]+(?:ms|s|m|h|d|w|y))+$")
_RE2_META = set("\\.+*?()|[]{}^$")


class CanaryConfigError(RolloutError):
    """The analysis is configured so that it cannot judge anything."""


@dataclass(frozen=True)
class MetricSpec:
    """One metric to compare; ``query`` is a PromQL template (see ``resolve_query``)."""

    name: str
    query: str
    max: float | None = None
    min: float | None = None
    max_ratio_to_baseline: float | None = None
    direction: str = LOWER_IS_BETTER
    min_baseline: float | None = None

    @property
    def has_absolute_bound(self) -> bool:
        return self.max is not None or self.min is not None


@dataclass(frozen=True)
class AppMetrics:
    """How the app's requests are counted: the names its Prometheus client library gives them.

    The defaults are what the official client libraries' HTTP instrumentation exposes
    (``http_requests_total{code}`` and the ``http_request_duration_seconds`` histogram); the
    instance is told apart by the ``instance`` label Prometheus adds when it scrapes.
    ``selector`` adds matchers every app query carries, e.g. ``job="shop"``.
    """

    requests: str = "http_requests_total"
    duration: str = "http_request_duration_seconds"
    code_label: str = "code"
    instance_label: str = "instance"
    selector: str = ""

    def matchers(self, *extra: str) -> str:
        parts = [f'{self.instance_label}=~"$INSTANCES"', *extra] + ([self.selector] if self.selector else [])
        return ",".join(parts)


# Starting points: HAProxy's built-in exporter, the app's RED metrics and the process collector's
# base metrics (CPU and resident memory per instance; on a real fleet node_exporter's load and
# memory, see the module's docs). Real services tune the thresholds (or reuse a default by name
# with other ones). The "or vector(0)" keeps a ratio or rate at 0, not empty, while no error
# series exists.
def default_metrics(app: AppMetrics | None = None) -> tuple[MetricSpec, ...]:
    app = app or AppMetrics()
    errors = f'{app.code_label}=~"5.."'
    return (
        MetricSpec(
            name="haproxy_5xx_ratio",
            query=('(sum(rate(haproxy_server_http_responses_total{proxy="$BACKEND",server=~"$SERVERS",code="5xx"}'
                   '[$WINDOW])) or vector(0))'
                   ' / sum(rate(haproxy_server_http_responses_total{proxy="$BACKEND",server=~"$SERVERS"}[$WINDOW]))'),
            max=0.05, max_ratio_to_baseline=2.0, min_baseline=0.01),
        MetricSpec(
            name="haproxy_response_time",
            query='avg(haproxy_server_response_time_average_seconds{proxy="$BACKEND",server=~"$SERVERS"})',
            max=1.0, max_ratio_to_baseline=2.0, min_baseline=0.1),
        MetricSpec(
            name="haproxy_connection_errors",
            query=('sum(rate(haproxy_server_connection_errors_total{proxy="$BACKEND",server=~"$SERVERS"}[$WINDOW]))'
                   ' or vector(0)'),
            max=1.0, max_ratio_to_baseline=2.0, min_baseline=0.1),
        MetricSpec(
            name="app_error_ratio",
            query=(f'(sum(rate({app.requests}{{{app.matchers(errors)}}}[$WINDOW])) or vector(0))'
                   f' / sum(rate({app.requests}{{{app.matchers()}}}[$WINDOW]))'),
            max=0.05, max_ratio_to_baseline=2.0, min_baseline=0.01),
        MetricSpec(
            name="app_p99_latency",
            query=(f'histogram_quantile(0.99, sum by (le) '
                   f'(rate({app.duration}_bucket{{{app.matchers()}}}[$WINDOW])))'),
            max=2.5, max_ratio_to_baseline=2.0, min_baseline=0.1),
        MetricSpec(
            name="process_cpu",
            query=f'avg(rate(process_cpu_seconds_total{{{app.matchers()}}}[$WINDOW]))',
            max_ratio_to_baseline=2.0, min_baseline=0.1),
        MetricSpec(
            name="process_memory",
            query=f'avg(process_resident_memory_bytes{{{app.matchers()}}})',
            max_ratio_to_baseline=1.5, min_baseline=32 * 1024 * 1024),
    )


DEFAULT_METRICS: tuple[MetricSpec, ...] = default_metrics()


def uses_lb_names(spec: MetricSpec) -> bool:
    """The query selects an LB's own series ($BACKEND or $SERVERS)."""
    return any(_placeholder_name(m) in _LB_PLACEHOLDERS for m in _PLACEHOLDER.finditer(spec.query))


_SPEC_FIELDS = ("name", "query", "max", "min", "max_ratio_to_baseline", "direction", "min_baseline")


# --- configuration --------------------------------------------------------------------------------

def build_metrics(raw: list[dict] | None, app: AppMetrics | None = None,
                  has_backend: bool = True) -> list[MetricSpec]:
    """The metric specs to use: the defaults when ``raw`` is empty.

    An entry without ``query`` whose ``name`` is a default metric reuses that
    default, with the thresholds it sets replacing the default's. Without an
    HAProxy backend (no HAProxy in the LB set) the HAProxy defaults are left out;
    a metric given explicitly that needs the backend is refused by ``validate``.
    """
    catalogue = default_metrics(app)
    if not raw:
        return [m for m in catalogue if has_backend or not uses_lb_names(m)]
    defaults = {m.name: m for m in catalogue}
    specs = []
    for item in raw:
        given = {k: v for k, v in item.items() if k in _SPEC_FIELDS and v is not None}
        name = given.get("name")
        if not name:
            raise CanaryConfigError("a metric in `metrics` has no `name`: give every metric a name")
        if not given.get("query"):
            if name not in defaults:
                raise CanaryConfigError(f"metric {name!r} has no `query` and is not a default metric "
                                        f"({', '.join(defaults)}): give its PromQL template in `query`")
            specs.append(replace(defaults[name], **given))
        else:
            specs.append(MetricSpec(**given))
    return specs


def validate(canary: list[str], baseline: list[str], metrics: list[MetricSpec], window: str,
             duration: float, interval: float, failure_limit: int, inconclusive_limit: int,
             backend: str | None = "-") -> None:
    """Raise CanaryConfigError for a configuration that could not judge the canary."""
    if not backend:
        needing = [m.name for m in metrics if uses_lb_names(m)]
        if needing:
            raise CanaryConfigError(f"metrics {needing} select HAProxy's series ($BACKEND/$SERVERS) but no "
                                    "haproxy_backend is given (no HAProxy in the LB set?): give haproxy_backend "
                                    "and server_names, or leave those metrics out")
    if not canary or not all(isinstance(h, str) and h for h in canary):
        raise CanaryConfigError("`canary` must list at least one host name")
    overlap = sorted(set(canary) & set(baseline))
    if overlap:
        raise CanaryConfigError(f"hosts {overlap} are in both `canary` and `baseline`: the baseline is the hosts "
                                "still on the old version, so remove the canary hosts from it")
    if not _WINDOW.match(window):
        raise CanaryConfigError(f"`window` {window!r} is not a PromQL duration such as 30s, 1m or 1m30s")
    if duration < 0 or interval <= 0:
        raise CanaryConfigError(f"need duration >= 0 and interval > 0 (got duration={duration}, "
                                f"interval={interval})")
    if failure_limit < 1 or inconclusive_limit < 1:
        raise CanaryConfigError("`failure_limit` and `inconclusive_limit` count intervals and must be >= 1")
    names = [m.name for m in metrics]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise CanaryConfigError(f"metric names {duplicates} are used more than once: names must be unique")
    for spec in metrics:
        _validate_spec(spec, has_baseline=bool(baseline))


def _validate_spec(spec: MetricSpec, has_baseline: bool) -> None:
    where = f"metric {spec.name!r}"
    if spec.direction not in DIRECTIONS:
        raise CanaryConfigError(f"{where}: direction must be one of {', '.join(DIRECTIONS)}")
    if not any(_placeholder_name(m) in _SELECTORS for m in _PLACEHOLDER.finditer(spec.query)):
        raise CanaryConfigError(f"{where}: the query uses none of $HOSTS, $INSTANCES or $SERVERS, so the canary and the "
                                "baseline would read the same series; select the hosts, e.g. "
                                "instance=~\"$INSTANCES\"")
    if not spec.has_absolute_bound and spec.max_ratio_to_baseline is None:
        raise CanaryConfigError(f"{where}: set `max`, `min` or `max_ratio_to_baseline`, else it judges nothing")
    if spec.max_ratio_to_baseline is not None and spec.max_ratio_to_baseline <= 0:
        raise CanaryConfigError(f"{where}: max_ratio_to_baseline must be > 0 (e.g. 1.5 = 50% worse allowed)")
    if spec.min_baseline is not None:
        if spec.min_baseline < 0 or spec.direction != LOWER_IS_BETTER:
            raise CanaryConfigError(f"{where}: min_baseline is a floor >= 0 for the baseline of a "
                                    "lower_is_better ratio; remove it or fix the direction")
    if not has_baseline and not spec.has_absolute_bound:
        raise CanaryConfigError(f"{where}: there are no `baseline` hosts to compare with and the metric has "
                                "only max_ratio_to_baseline; give baseline hosts or a `max`/`min` bound")


# --- query templates ------------------------------------------------------------------------------

def _placeholder_name(match: re.Match) -> str:
    return match.group(1) or match.group(2)


def promql_string_escape(text: str) -> str:
    """Escape ``text`` for a double-quoted PromQL string (Go escaping)."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


def regex_alternation(names: list[str]) -> str:
    """An RE2 alternation matching exactly ``names``, ready for ``label=~"..."``.

    Regex metacharacters are escaped (``web01.example`` does not match
    ``web01xexample``), then the result is escaped for a double-quoted string.
    """
    seen: list[str] = []
    for name in names:
        if name not in seen:
            seen.append(name)
    regex = "|".join("".join("\\" + c if c in _RE2_META else c for c in name) for name in seen)
    return promql_string_escape(regex)


def resolve_query(template: str, hosts: list[str], servers: list[str], backend: str | None, window: str,
                  instances: list[str] | None = None) -> str:
    """Fill ``$HOSTS``, ``$INSTANCES``, ``$SERVERS``, ``$BACKEND``, ``$WINDOW`` (or ``${HOSTS}``...).

    ``$INSTANCES`` is the hosts' ``instance`` label values (the hosts' names when not given).
    Other ``$`` text (``label_replace``'s ``$1``) is left alone.
    """
    values = {"HOSTS": regex_alternation(hosts), "SERVERS": regex_alternation(servers),
              "INSTANCES": regex_alternation(hosts if instances is None else instances),
              "BACKEND": promql_string_escape(backend or ""), "WINDOW": window}
    return _PLACEHOLDER.sub(lambda m: values[_placeholder_name(m)], template)


# --- readings and judging -------------------------------------------------------------------------

@dataclass(frozen=True)
class Reading:
    """What one query said: a value, or the reason there is none."""

    value: float | None = None
    problem: str | None = None

    @property
    def usable(self) -> bool:
        return self.problem is None and self.value is not None and not math.isnan(self.value)


def reading_from_result(result: QueryResult) -> Reading:
    if result.result_type in ("matrix", "string"):
        raise CanaryConfigError(f"the query returns a {result.result_type}, not one number: wrap a range "
                                "selector in rate()/avg_over_time() and aggregate, e.g. sum(rate(x[1m]))")
    if not result.samples:
        return Reading(problem="no data (empty result: no matching series)")
    if len(result.samples) > 1:
        return Reading(problem=f"{len(result.samples)} series returned, expected one: aggregate the query "
                               "(e.g. sum(...), max(...) or sum by () (...))")
    value = result.samples[0].value
    if math.isnan(value):
        return Reading(value=value, problem="NaN (no data in the window, e.g. 0/0 without traffic)")
    return Reading(value=value)


_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^{}]*)\}")
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')


def _selector(name: str, matchers: list[tuple[str, str, str]]) -> str:
    return name + "{" + ",".join(f'{label}{op}"{value}"' for label, op, value in matchers) + "}"


def explain_no_series(promql: str, query_fn: "QueryFn", at: float | None) -> str | None:
    """Why ``promql`` matched nothing: the first series name or matcher that selects no series.

    Each vector selector of the query is tried alone, then with its matchers added one at a time;
    the first that leaves no series is named, with the values its label does have.
    """
    def series(selector: str, by: str | None = None) -> list[dict[str, str]]:
        query = f"count by ({by}) ({selector})" if by else f"count({selector})"
        try:
            return [dict(sample.labels) for sample in query_fn(query, at).samples]
        except PrometheusError:
            return [{}]  # cannot tell: say nothing rather than guess

    for name, body in _SELECTOR.findall(promql):
        if not series(_selector(name, [])):
            return f"no series is named {name}"
        kept: list[tuple[str, str, str]] = []
        for matcher in _MATCHER.findall(body):
            if not series(_selector(name, kept + [matcher])):
                label = matcher[0]
                values = sorted({v for labels in series(_selector(name, kept), by=label)
                                 for k, v in labels.items() if k == label})
                shown = ", ".join(values[:8]) + (", ..." if len(values) > 8 else "")
                have = f"its {label} values are {shown}" if values else f"its series have no {label} label"
                return f"no {name} series matches {label}{matcher[1]}\"{matcher[2]}\" ({have})"
            kept.append(matcher)
    return None


def reading_from_error(error: PrometheusError) -> Reading:
    return Reading(problem=f"query failed: {error.msg}")


@dataclass(frozen=True)
class Judgement:
    outcome: str
    reason: str


def fmt(value: float | None) -> str:
    if value is None:
        return "none"
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return f"{value:.6g}"


def judge(spec: MetricSpec, canary: Reading, baseline: Reading | None) -> Judgement:
    """Judge one metric for one interval. ``baseline`` is None when there are no baseline hosts."""
    if not canary.usable:
        return Judgement(INCONCLUSIVE, f"canary: {canary.problem}")
    value = canary.value
    if spec.max is not None and value > spec.max:
        return Judgement(FAIL, f"canary {fmt(value)} > max {fmt(spec.max)}")
    if spec.min is not None and value < spec.min:
        return Judgement(FAIL, f"canary {fmt(value)} < min {fmt(spec.min)}")
    if spec.max_ratio_to_baseline is None:
        return Judgement(OK, f"canary {fmt(value)} within bounds")
    if baseline is None:
        return Judgement(OK, f"canary {fmt(value)} within bounds (no baseline hosts: ratio not checked)")
    if not baseline.usable:
        return Judgement(INCONCLUSIVE, f"baseline: {baseline.problem}")
    if math.isinf(baseline.value):
        return Judgement(INCONCLUSIVE, f"baseline: {fmt(baseline.value)}, no ratio can be judged against it")
    return _judge_ratio(spec, value, baseline.value)


def _judge_ratio(spec: MetricSpec, value: float, base: float) -> Judgement:
    k = spec.max_ratio_to_baseline
    if spec.direction == LOWER_IS_BETTER:
        reference = max(base, spec.min_baseline or 0.0)
        floor = f" (floor min_baseline {fmt(spec.min_baseline)})" if reference != base else ""
        if value > k * reference:
            return Judgement(FAIL, f"canary {fmt(value)} > {fmt(k)} x baseline {fmt(reference)}{floor}")
        return Judgement(OK, f"canary {fmt(value)} <= {fmt(k)} x baseline {fmt(reference)}{floor}")
    if value < base / k:
        return Judgement(FAIL, f"canary {fmt(value)} < baseline {fmt(base)} / {fmt(k)}")
    return Judgement(OK, f"canary {fmt(value)} >= baseline {fmt(base)} / {fmt(k)}")


def interval_outcome(judgements: list[Judgement]) -> str:
    outcomes = {j.outcome for j in judgements}
    if FAIL in outcomes:
        return FAIL
    if INCONCLUSIVE in outcomes:
        return INCONCLUSIVE
    return OK


# --- the analysis ---------------------------------------------------------------------------------

def json_number(value: float | None) -> float | str | None:
    """A value for the JSON result: NaN and +/-Inf become the strings Prometheus uses."""
    if value is None or math.isfinite(value):
        return value
    return fmt(value)


@dataclass(frozen=True)
class Settings:
    duration: float
    interval: float
    failure_limit: int = 1
    inconclusive_limit: int = 1
    on_inconclusive: str = "fail"


@dataclass
class Tally:
    """Interval outcomes so far and the analysis state they imply."""

    settings: Settings
    ok: int = 0
    failed: int = 0
    inconclusive: int = 0
    measurements: list[dict] = field(default_factory=list)

    def add(self, outcome: str) -> None:
        if outcome == FAIL:
            self.failed += 1
        elif outcome == INCONCLUSIVE:
            self.inconclusive += 1
        else:
            self.ok += 1

    @property
    def decided(self) -> str | None:
        """``fail`` / ``inconclusive`` once a limit is reached (no later interval can change it)."""
        if self.failed >= self.settings.failure_limit:
            return FAIL
        if self.inconclusive >= self.settings.inconclusive_limit:
            return INCONCLUSIVE
        return None

    def finding(self) -> str:
        """What the numbers say: fail, inconclusive or pass (before on_inconclusive)."""
        decided = self.decided
        if decided:
            return decided
        return PASS if self.ok > 0 else INCONCLUSIVE


def apply_policy(finding: str, on_inconclusive: str) -> str:
    if finding != INCONCLUSIVE or on_inconclusive == "pause":
        return finding
    return FAIL if on_inconclusive == "fail" else PASS


def planned_times(settings: Settings) -> list[float]:
    """Offsets from the start at which the intervals are measured (each at its end)."""
    if settings.duration <= 0:
        return [0.0]
    count = math.ceil(settings.duration / settings.interval - 1e-9)
    return [min(i * settings.interval, settings.duration) for i in range(1, count + 1)]


QueryFn = Callable[[str, "float | None"], QueryResult]


@dataclass
class IntervalReader:
    """Reads every query of one interval at one evaluation time.

    The first query runs at Prometheus' own "now" and the time it reports is
    used for the others: canary and baseline see the same instant, and a
    controller clock that is off does not shift the rate windows.
    """

    query_fn: QueryFn
    at: float | None = None
    explained: dict[str, str | None] = field(default_factory=dict)  # promql -> why it matched nothing

    def read(self, promql: str, metric: str) -> Reading:
        try:
            result = self.query_fn(promql, self.at)
        except PrometheusError as exc:
            if exc.invalid_query:
                raise CanaryConfigError(f"metric {metric!r}: {exc.msg} (query: {promql})", query=promql) from exc
            return reading_from_error(exc)
        if self.at is None:
            self.at = result.time
        try:
            reading = reading_from_result(result)
        except CanaryConfigError as exc:
            raise CanaryConfigError(f"metric {metric!r}: {exc.msg} (query: {promql})", query=promql) from exc
        if result.samples or reading.usable:
            return reading
        if promql not in self.explained:
            self.explained[promql] = explain_no_series(promql, self.query_fn, self.at)
        why = self.explained[promql]
        return Reading(problem=f"no data: {why} (query: {promql})" if why else f"{reading.problem} (query: {promql})")


def measure_interval(index: int, metrics: list[MetricSpec], queries: dict[str, dict[str, Any]],
                     query_fn: QueryFn, wallclock: Callable[[], float] = time.time,
                     explained: dict[str, str | None] | None = None) -> list[dict]:
    """Query every metric for both sides; one measurement dict per metric."""
    reader = IntervalReader(query_fn, explained={} if explained is None else explained)
    judged = []
    for spec in metrics:
        canary = reader.read(queries[spec.name]["canary"], spec.name)
        baseline_query = queries[spec.name]["baseline"]
        baseline = reader.read(baseline_query, spec.name) if baseline_query else None
        judged.append((spec, canary, baseline, judge(spec, canary, baseline)))
    at = reader.at if reader.at is not None else wallclock()
    stamp = datetime.fromtimestamp(at, tz=timezone.utc).isoformat(timespec="seconds")
    return [{
        "interval": index, "time": stamp, "metric": spec.name,
        "canary": json_number(canary.value), "baseline": json_number(baseline.value) if baseline else None,
        "ok": verdict.outcome == OK, "outcome": verdict.outcome, "reason": verdict.reason,
    } for spec, canary, baseline, verdict in judged]


def resolve_all(metrics: list[MetricSpec], canary: list[str], baseline: list[str],
                server_names: dict[str, str], backend: str | None, window: str,
                instance_names: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """The resolved PromQL per metric and side (``baseline`` is None without baseline hosts)."""
    instance_names = instance_names or {}

    def side(spec: MetricSpec, hosts: list[str]) -> str:
        servers = [server_names.get(h, h) for h in hosts]
        instances = [instance_names.get(h, h) for h in hosts]
        return resolve_query(spec.query, hosts, servers, backend, window, instances)

    return {spec.name: {"canary": side(spec, canary), "baseline": side(spec, baseline) if baseline else None}
            for spec in metrics}


def run_analysis(metrics: list[MetricSpec], queries: dict[str, dict[str, Any]], settings: Settings,
                 query_fn: QueryFn, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep,
                 wallclock: Callable[[], float] = time.time) -> dict[str, Any]:
    """Soak: measure at the end of every interval until ``duration`` or a decision; return the result."""
    tally = Tally(settings)
    explained: dict[str, str | None] = {}  # a query that matched nothing is explained once per soak
    start = clock()
    plan = planned_times(settings)
    for index, offset in enumerate(plan, start=1):
        wait = start + offset - clock()
        if wait > 0:
            sleep(wait)
        rows = measure_interval(index, metrics, queries, query_fn, wallclock, explained)
        tally.measurements.extend(rows)
        tally.add(interval_outcome([Judgement(r["outcome"], r["reason"]) for r in rows]))
        if tally.decided:
            break
    return result_of(tally, metrics, queries, planned=len(plan), elapsed=clock() - start)


def result_of(tally: Tally, metrics: list[MetricSpec], queries: dict[str, dict[str, Any]],
              planned: int, elapsed: float) -> dict[str, Any]:
    finding = tally.finding()
    verdict = apply_policy(finding, tally.settings.on_inconclusive)
    intervals = tally.ok + tally.failed + tally.inconclusive
    return {
        "verdict": verdict,
        "inconclusive": finding == INCONCLUSIVE,
        "measurements": tally.measurements,
        "queries": queries,
        "criteria": [asdict(m) for m in metrics],
        "intervals": intervals,
        "ok_intervals": tally.ok,
        "failed_intervals": tally.failed,
        "inconclusive_intervals": tally.inconclusive,
        "stopped_early": intervals < planned,
        "elapsed": round(elapsed, 3),
        "summary": summarize(tally, finding, verdict, planned, elapsed),
    }


def summarize(tally: Tally, finding: str, verdict: str, planned: int, elapsed: float) -> str:
    s = tally.settings
    intervals = tally.ok + tally.failed + tally.inconclusive
    text = (f"{verdict}: {intervals} of {planned} intervals measured in {elapsed:.0f}s "
            f"({tally.ok} ok, {tally.failed} failed, {tally.inconclusive} inconclusive; "
            f"failure_limit {s.failure_limit}, inconclusive_limit {s.inconclusive_limit})")
    if finding == INCONCLUSIVE:
        if verdict == FAIL:
            text += "; the data was inconclusive and on_inconclusive=fail"
        elif verdict == PASS:
            text += "; the data was inconclusive and on_inconclusive=pass lets it through"
        else:
            text += "; the data was inconclusive: decide before going on (on_inconclusive=pause)"
    elif verdict == PASS and tally.inconclusive:
        text += f"; {tally.inconclusive} inconclusive interval(s) tolerated"
    reasons = _first_reasons(tally.measurements, (FAIL,) if finding == FAIL else (FAIL, INCONCLUSIVE))
    if reasons:
        text += ". " + "; ".join(reasons)
    return text


def _first_reasons(measurements: list[dict], outcomes: tuple[str, ...]) -> list[str]:
    seen: dict[str, str] = {}
    for row in measurements:
        if row["outcome"] in outcomes and row["metric"] not in seen:
            seen[row["metric"]] = f"{row['metric']}: {row['reason']}"
    return list(seen.values())
