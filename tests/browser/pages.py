"""What a loaded report or history page shows, read from Chromium's DOM, and what its data says it should."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import yaml

import chromium

REPO = Path(__file__).resolve().parents[2]
CONTROLLER = ("localhost", "127.0.0.1")


def step_task_names() -> set[str]:
    """The tasks of swap_steps.yml that do a step (not the block around them, not the hooks)."""
    tasks = yaml.safe_load((REPO / "roles" / "release" / "tasks" / "swap_steps.yml").read_text())
    names: set[str] = set()

    def walk(items):
        for item in items or []:
            if "block" in item:
                walk(item["block"])
            elif "hook" not in item["name"]:
                names.add(item["name"])
    walk(tasks)
    return names


def expected_segments(timeline: dict) -> dict[str, int]:
    """Per host, the steps the timeline recorded: every step task that ran (skipped ones did not), the
    enable counted twice when the LB module warmed the host up (enabled, then warm-up)."""
    names = step_task_names()
    counts: dict[str, int] = {}
    for event in timeline["events"]:
        if event["host"] in CONTROLLER:
            continue
        counts.setdefault(event["host"], 0)
        if event["task"] in names and event["status"] != "skipped":
            detail = event.get("detail") or {}
            split = detail.get("warmup") and detail.get("waited", 0) > 0 and event["status"] == "ok"
            counts[event["host"]] += 2 if split else 1
    return counts


class PageParts(HTMLParser):
    """Rows and segments of the Gantt chart, series of the canary charts, rows of the history table."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, int] = {}
        self.row_order: list[str] = []
        self.out_labels: dict[str, str] = {}
        self.charts: dict[str, set[str]] = {}
        self.releases: list[str] = []
        self._row: str | None = None
        self._chart: str | None = None
        self._text_of: str | None = None
        self._groups: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "g":
            self._groups.append("row" if "row" in classes else "other")
        if tag == "g" and "row" in classes:
            self._row = a["data-host"]
            self.rows[self._row] = 0
            self.row_order.append(self._row)
        elif tag == "rect" and "seg" in classes and self._row:
            self.rows[self._row] += 1
        elif tag == "text" and "out-label" in classes and self._row:
            self._text_of = self._row
        elif tag == "svg" and "canary-chart" in classes:
            self._chart = a["data-metric"]
            self.charts[self._chart] = set()
        elif tag == "polyline" and self._chart is not None:
            self.charts[self._chart].add(a.get("data-series"))
        elif tag == "tr" and "release" in classes:
            self.releases.append(a["data-release"])

    def handle_endtag(self, tag):
        if tag == "g" and self._groups and self._groups.pop() == "row":
            self._row = None
        elif tag == "svg":
            self._chart = None
        elif tag == "text":
            self._text_of = None

    def handle_data(self, data):
        if self._text_of:
            self.out_labels[self._text_of] = self.out_labels.get(self._text_of, "") + data


def parts(dom: str) -> PageParts:
    parser = PageParts()
    parser.feed(dom)
    return parser


def check_report(report: Path, width: int) -> chromium.Loaded:
    """Load a release report: no JavaScript error, a Gantt row per planned host with a segment per recorded
    step, a canary chart per measured metric with both series, nothing wider than the window."""
    timeline = json.loads((report.parent / "timeline.json").read_text())
    page = chromium.load(report, width=width)
    assert page.errors == [] and page.console_errors == []
    seen = parts(page.dom)
    order = timeline["custom"]["rollout_out_plan"]["order"]
    recorded = expected_segments(timeline)  # excluded hosts ran preflight tasks, no step: they have no row
    expected = {host: recorded.get(host, 0) for host in order} | {h: n for h, n in recorded.items() if n}
    assert seen.row_order == order + [h for h in expected if h not in order]  # one row per planned host
    assert seen.rows == expected, "segments per host"
    for host, label in seen.out_labels.items():
        assert label.endswith(" s") if expected[host] else label == "-", (host, label)
    metrics = list(dict.fromkeys(m["metric"] for m in timeline["custom"]["rollout_out_canary"].get("measurements", [])))
    assert list(seen.charts) == metrics
    assert all({"canary", "baseline"} <= series for series in seen.charts.values()), seen.charts
    assert page.scroll_width <= page.client_width, f"the page scrolls sideways at {width} px"
    return page
