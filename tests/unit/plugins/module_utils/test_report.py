"""Unit tests for module_utils/_report.py: numbers for people, the swap's steps, the Gantt chart, canary charts.

The recorded releases in tests/unit/plugins/fixtures/releases/ are real: the timelines and ledger
entries of three lab releases (a success, a canary rolled back for serving 500s, a batch host
rolled back after a failed hook), trimmed of fields the report does not read.
"""

from __future__ import annotations

import gzip
import json
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from ansible_collections.sre.rollout.plugins.module_utils import _report

REPO = Path(__file__).resolve().parents[4]
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "releases"
FULL, ERRORS, HALT = "t-full-051058-3859", "t-errors-052414-3859", "t-halt-051726-3859"
SWAP_ORDER = ["silenced", "drained", "quiet", "stopped", "activated", "started", "health", "enabled", "unsilenced"]


def timeline(name: str) -> dict:
    with gzip.open(FIXTURES / f"{name}.timeline.json.gz", "rt", encoding="utf-8") as f:
        return json.load(f)


def facts_of(name: str) -> dict:
    data = timeline(name)
    return _report.swap_facts(data, data["custom"]["rollout_out_plan"])


@pytest.mark.parametrize("value, text", [
    (0.0049499999999999995, "0.00495"), (0.042766578630198976, "0.0428"), (1234.5, "1,234"), (12.0, "12"),
    (0.5, "0.5"), (3, "3"), (12345, "12,345"), (0, "0"), (0.0, "0"), (-0.25, "-0.25"), (99.95, "100"),
    ("NaN", "NaN"), ("+Inf", "+Inf"), (None, ""), (True, "true"), ("web01", "web01")])
def test_numbers_read_as_a_person_reads_them(value, text):
    assert _report.num(value) == text


@pytest.mark.parametrize("value, text", [
    (0.45, "450 ms"), (12.34, "12.3 s"), (59.96, "60.0 s"), (125, "2 min 05 s"), (3720, "1 h 02 min"),
    (None, ""), ("x", ""), (-2, "-2.0 s")])
def test_durations(value, text):
    assert _report.duration(value) == text


def test_median_and_p95_are_observed_values():
    values = list(range(1, 21))
    assert _report.p95(values) == 19 and _report.median(values) == 10.5
    assert _report.p95([]) is None and _report.median([None]) is None
    assert _report.p95([7]) == 7


def test_ledger_times_without_an_offset_are_utc():
    assert _report.parse_time("2026-12-02T05:17:30.478968") == _report.parse_time("2026-12-02T05:17:30.478968Z")
    assert _report.parse_time("2026-12-02T05:25:25+00:00") == datetime(2026, 12, 2, 5, 25, 25, tzinfo=timezone.utc).timestamp()
    assert _report.parse_time("yesterday") is None and _report.parse_time(None) is None


def _task_names(items: list) -> list[str]:
    names = []
    for item in items or []:
        names.append(item.get("name", ""))
        names += _task_names(item.get("block")) + _task_names(item.get("rescue")) + _task_names(item.get("always"))
    return names


def test_every_step_task_exists_in_the_swap():
    """The timeline finds the steps by their task names: renaming one in swap_steps.yml must fail here."""
    names = _task_names(yaml.safe_load((REPO / "roles" / "release" / "tasks" / "swap_steps.yml").read_text()))
    assert set(_report.STEP_TASKS) <= set(names), set(_report.STEP_TASKS) - set(names)
    restore = yaml.safe_load((REPO / "roles" / "release" / "tasks" / "restore.yml").read_text())
    assert all(any(n.startswith(p) for n in _task_names(restore)) for p in ("Restore | ",))
    gate = _task_names(yaml.safe_load((REPO / "roles" / "release" / "tasks" / "canary_gate.yml").read_text()))
    assert set(_report.SOAK_TASKS) <= set(gate)
    assert {step for step, _label, _colour in _report.STEPS} >= set(_report.STEP_TASKS.values()) | {"warm-up"}


def test_a_successful_release_has_every_step_of_every_host_in_order():
    facts = facts_of(FULL)
    assert [r["host"] for r in facts["rows"]] == ["web01", "web02", "web03", "web04", "web05", "web06"]
    for row in facts["rows"]:
        assert [s["step"] for s in row["segments"]] == SWAP_ORDER, row["host"]
        assert all(s["status"] == "ok" and not s["restore"] for s in row["segments"])
        [away] = row["out_of_traffic"]
        drained = next(s for s in row["segments"] if s["step"] == "drained")
        enabled = next(s for s in row["segments"] if s["step"] == "enabled")
        assert away["start"] == drained["start"] and away["end"] == enabled["end"] and not away["open"]
        assert 5 < row["out_seconds"] < 60 and not row["failures"] and row["rollback_at"] is None
    assert [b["label"] for b in facts["batches"]] == ["canary", "batch 1", "batch 2", "batch 3"]
    assert len(facts["soak"]) == 1
    hot = facts["hot_window"]
    assert hot["start"] == facts["rows"][0]["out_of_traffic"][0]["start"]
    assert hot["end"] == max(r["out_of_traffic"][0]["end"] for r in facts["rows"])
    stats = _report.out_of_traffic_stats(facts)
    assert stats["hosts"] == 6 and stats["max"] == max(r["out_seconds"] for r in facts["rows"])


def test_a_canary_rolled_back_for_its_500s_is_out_twice_and_marked():
    facts = facts_of(ERRORS)
    canary = facts["rows"][0]
    assert canary["host"] == "web01"
    steps = [(s["step"], s["restore"]) for s in canary["segments"]]
    assert steps[:9] == [(s, False) for s in SWAP_ORDER]
    assert [s for s, restore in steps if restore][:2] == ["silenced", "drained"] and steps[-1] == ("unsilenced", True)
    assert canary["rollback_at"] is not None and len(canary["out_of_traffic"]) == 2
    assert not any(i["open"] for i in canary["out_of_traffic"])
    assert all(r["segments"] == [] and r["out_of_traffic"] == [] for r in facts["rows"][1:])
    assert [b["label"] for b in facts["batches"]] == ["canary", "canary rollback"]


def test_a_failed_batch_host_shows_its_failure_and_its_way_back():
    facts = facts_of(HALT)
    web02 = next(r for r in facts["rows"] if r["host"] == "web02")
    assert web02["failures"] and "injected failure" in web02["failures"][0]["msg"]
    assert any(s["restore"] for s in web02["segments"]) and web02["rollback_at"] >= web02["failures"][0]["t"] - 0.01
    assert not web02["still_out"]


def _event(task: str, start: float, end: float, **more) -> dict:
    return {"host": "web01", "task": task, "t_start": start, "t_end": end, "status": "ok", "role": "sre.rollout.release",
            **more}


def test_an_enable_with_warm_up_is_two_segments_and_the_host_is_back_at_warm_up_weight():
    events = [_event("Steps | Drain the host from every load balancer", 10, 12),
              _event("Steps | Warm up and put the host back in every load balancer", 20, 25,
                     detail={"waited": 3.0, "warmup": True})]
    segments = _report.host_segments(events)
    assert [(s["step"], s["start"], s["end"]) for s in segments] == [
        ("drained", 10, 12), ("enabled", 20, 22.0), ("warm-up", 22.0, 25)]
    assert _report.out_of_traffic(segments, 30) == [{"start": 10, "end": 22.0, "open": False}]


def test_a_host_never_put_back_is_still_out_until_the_end():
    events = [_event("Steps | Drain the host from every load balancer", 10, 12),
              _event("Steps | Stop the application", 12, 13),
              _event("App service | Stop with script", 13, 14, role="sre.rollout.app_service"),
              _event("Steps | Activate the artifact", 15, 16, status="unreachable", msg="ssh: connection refused")]
    segments = _report.host_segments(events)
    assert [s["step"] for s in segments] == ["drained", "stopped", "activated"]
    assert segments[1]["tasks"] == 2 and segments[2]["status"] == "unreachable"
    assert _report.out_of_traffic(segments, 40) == [{"start": 10, "end": 40, "open": True}]


def test_skipped_steps_and_bookkeeping_are_no_segments():
    events = [_event("Steps | Silence the host's alerts", 1, 2, status="skipped"),
              _event("Swap | Read the host's release state", 2, 3),
              _event("Steps | Quiet period", 3, 4)]
    assert [s["step"] for s in _report.host_segments(events)] == ["quiet"]


def test_the_gantt_has_one_row_per_host_and_one_segment_per_step():
    facts = facts_of(ERRORS)
    svg = _report.gantt_svg(facts)
    assert svg.count('<g class="row"') == 6
    assert len(re.findall(r'<rect class="seg[ "]', svg)) == sum(len(r["segments"]) for r in facts["rows"])
    assert svg.count('class="out"') == 2 and svg.count('class="rollback"') == 1
    assert 'data-host="web01"' in svg and ">canary<" in svg and ">soak<" in svg
    assert "http" not in svg and "<script" not in svg


def test_the_timeline_shows_the_swaps_not_the_preflight():
    facts = facts_of(FULL)
    low, high = _report.view_range(facts)
    first = min(s["start"] for r in facts["rows"] for s in r["segments"])
    assert facts["t0"] < low <= first and high <= facts["t1"] + 1


def test_canary_series_per_metric_with_the_threshold_of_the_rule():
    data = timeline(FULL)["custom"]["rollout_out_canary"]
    series = _report.canary_series(data)
    assert [m["metric"] for m in series] == ["haproxy_5xx_ratio", "haproxy_response_time", "app_error_ratio",
                                             "app_p99_latency"]
    assert all(len(m["points"]) == 4 and all(p["outcome"] == "ok" for p in m["points"]) for m in series)
    criteria = {"max": 0.05, "max_ratio_to_baseline": 2.0, "min_baseline": 0.01}
    assert _report._threshold(criteria, 0.0) == 0.02 and _report._threshold(criteria, 0.04) == 0.05
    assert _report._threshold(dict(criteria, direction="higher_is_better", min=10), 40) == 20
    assert _report._threshold({}, 1.0) is None


def test_canary_charts_draw_a_series_per_metric_and_each_intervals_verdict():
    data = timeline(ERRORS)["custom"]["rollout_out_canary"]
    data = dict(data, criteria=[{"name": "haproxy_5xx_ratio", "max": 0.05, "max_ratio_to_baseline": 2.0,
                                 "min_baseline": 0.01}])
    page = _report.canary_charts_html(data)
    charts = re.findall(r'<svg class="canary-chart" data-metric="([^"]+)"', page)
    assert charts == ["haproxy_5xx_ratio", "haproxy_response_time", "app_error_ratio", "app_p99_latency"]
    assert page.count('data-series="canary"') == 4 and page.count('data-series="threshold"') == 1
    assert page.count('data-outcome="fail"') == 2
    assert "0.0428" in page and "0.042766578630198976" not in page
    assert _report.canary_charts_html({"verdict": "pass"}).startswith('<p class="muted">No canary measurements')
