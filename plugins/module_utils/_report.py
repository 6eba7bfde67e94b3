# Copyright: sre.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a release report and the release history show, computed and drawn from recorded data.

This module is private to the sre.rollout collection: its interface may change
without notice and it must not be used from outside the collection.

Controller side only, standard library only. The pictures are inline SVG written here (no
library, no script, no network): a page works when opened from a file.

- ``num`` / ``duration`` format numbers the way a person reads them.
- ``swap_facts`` turns a release timeline (the callback's ``timeline.json``) into, per host, the
  swap's steps as segments, the time out of traffic, failures and rollbacks; plus the batches,
  the canary soak and the hot window.
- ``gantt_svg`` and ``canary_charts_html`` draw them.
"""

from __future__ import annotations

import html
import math
import re
import statistics
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

# --------------------------------------------------------------------------- numbers


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def num(value: Any) -> str:
    """A number as a person reads it: 3 significant digits, thousands separated, no float noise.

    ``0.0049499999999999995`` -> ``0.00495``, ``1234.5`` -> ``1,234``, ``12.0`` -> ``12``;
    NaN / Inf (Prometheus' strings too) and non-numbers come back as text.
    """
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    number = _float(value)
    if number is None:
        return "" if value is None else str(value)
    if number == 0:
        return "0"
    magnitude = abs(number)
    if magnitude >= 1000:
        return f"{number:,.0f}"
    digits = max(0, 2 - int(math.floor(math.log10(magnitude))))
    text = f"{number:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def duration(value: Any) -> str:
    """Seconds as ``450 ms``, ``12.3 s``, ``2 min 05 s``, ``1 h 02 min``; empty for no number."""
    seconds = _float(value)
    if seconds is None:
        return ""
    if seconds < 0:
        return "-" + duration(-seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        whole = int(round(seconds))
        return f"{whole // 60} min {whole % 60:02d} s"
    whole = int(round(seconds / 60))
    return f"{whole // 60} h {whole % 60:02d} min"


def percent(part: float, whole: float) -> str:
    if not whole:
        return "-"
    value = 100.0 * part / whole
    return f"{value:.0f}%" if value in (0.0, 100.0) or value >= 10 else f"{value:.1f}%"


def median(values: Iterable[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def p95(values: Iterable[float]) -> float | None:
    """The 95th percentile, nearest rank (of 20 values the 19th): an observed value, never interpolated."""
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    return values[max(0, math.ceil(0.95 * len(values)) - 1)]


def parse_time(value: Any) -> float | None:
    """An ISO 8601 time as epoch seconds; None when it is not one. A time without an offset is UTC
    (the ledger's ``started`` / ``finished`` come from ``now(utc=true).isoformat()``)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def natural_key(name: str) -> list[Any]:
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", str(name))]


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


# --------------------------------------------------------------------------- the swap's steps

# (step, label, colour). The order is the swap's (DESIGN.md section 4); restore runs them again.
STEPS: tuple[tuple[str, str, str], ...] = (
    ("silenced", "silenced", "#8e5bb5"),
    ("drained", "drained", "#ef8c00"),
    ("quiet", "quiet", "#f2c12e"),
    ("stopped", "stopped", "#7b5a4b"),
    ("activated", "activated", "#1565c0"),
    ("started", "started", "#0097a7"),
    ("health", "health", "#26a69a"),
    ("enabled", "enabled", "#2e7d32"),
    ("warm-up", "warm-up", "#9ccc65"),
    ("unsilenced", "silence lifted", "#c5b3dc"),
)
STEP_COLOURS = {step: colour for step, _label, colour in STEPS}
STEP_LABELS = {step: label for step, label, _colour in STEPS}

# The task of roles/release/tasks/swap_steps.yml that does each step (tests/unit checks the names).
STEP_TASKS: dict[str, str] = {
    "Steps | Silence the host's alerts": "silenced",
    "Steps | Drain the host from every load balancer": "drained",
    "Steps | Quiet period": "quiet",
    "Steps | Stop the application": "stopped",
    "Steps | Activate the artifact": "activated",
    "Steps | Start the application": "started",
    "Steps | Wait until the application is healthy on the right version": "health",
    "Steps | Warm up and put the host back in every load balancer": "enabled",
    "Steps | Lift the host's silence": "unsilenced",
}
# The stop and start are the app_service role's tasks (include_role records none of its own).
SERVICE_ROLES = ("app_service", "sre.rollout.app_service")
# Where a host's way back begins: a failed swap's rescue, a failed canary's rollback.
RESTORE_PREFIXES = ("Swap | Go back to the previous artifact", "Swap | Restore the host", "Restore | ",
                    "Canary rollback | ")
SOAK_TASKS = ("Canary | Soak and judge against the baseline (Prometheus)",
              "Canary | Soak with health checks only (no Prometheus analysis)")
CONTROLLER_HOSTS = ("localhost", "127.0.0.1")


def step_of(event: Mapping[str, Any], after_activate: bool) -> str | None:
    """The swap step an event belongs to, or None (bookkeeping, hooks, skipped steps)."""
    if event.get("status") == "skipped":
        return None
    step = STEP_TASKS.get(str(event.get("task") or ""))
    if step:
        return step
    if event.get("role") in SERVICE_ROLES:
        return "started" if after_activate else "stopped"
    return None


def _segment(step: str, start: float, end: float, events: list[Mapping[str, Any]], restore: bool) -> dict[str, Any]:
    failed = [e for e in events if e.get("status") in ("failed", "unreachable") and not e.get("ignored")]
    return {"step": step, "start": start, "end": max(end, start), "tasks": len(events), "restore": restore,
            "status": failed[0]["status"] if failed else "ok"}


def host_segments(events: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The swap's steps of one host, in time order: consecutive events of the same step are one segment.

    An enable that warmed the host up (``detail.warmup``) is two segments: ``enabled`` until the
    host is back in its load balancers at the reduced weight, then ``warm-up`` until full weight
    (``detail.waited``, the time the LB module waited after enabling).
    """
    segments: list[dict[str, Any]] = []
    run: list[Mapping[str, Any]] = []
    current: str | None = None
    after_activate = restore = False

    def close() -> None:
        if run and current:
            segments.extend(_split_enable(_segment(current, run[0]["t_start"], run[-1]["t_end"], run, restore), run))
        run.clear()

    for event in sorted(events, key=lambda e: e["t_start"]):
        task = str(event.get("task") or "")
        if not restore and task.startswith(RESTORE_PREFIXES):
            close()
            current, restore, after_activate = None, True, False
        if event.get("status") == "skipped":  # a step that did not run, or a check inside one: no mark
            continue
        step = step_of(event, after_activate)
        if step != current or step in ("silenced", "drained", "unsilenced"):
            close()
            current = step
        if step:
            run.append(event)
        if step == "activated":
            after_activate = True
        if step == "silenced":  # a new pass over the steps (the restore's)
            after_activate = False
    close()
    return segments


def _split_enable(segment: dict[str, Any], events: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    if segment["step"] != "enabled":
        return [segment]
    detail = events[-1].get("detail") or {}
    waited = _float(detail.get("waited")) or 0.0
    back_in = max(segment["start"], segment["end"] - waited)
    segment["back_in"] = back_in
    if not detail.get("warmup") or waited <= 0 or segment["status"] != "ok":
        return [segment]
    warm = dict(segment, step="warm-up", start=back_in, tasks=0)
    return [dict(segment, end=back_in), warm]


def out_of_traffic(segments: list[Mapping[str, Any]], end_of_run: float) -> list[dict[str, Any]]:
    """Intervals a host was out of its load balancers: from the start of a drain to the moment an
    enable put it back (at warm-up weight if it had one); ``open`` when it never came back."""
    intervals: list[dict[str, Any]] = []
    start: float | None = None
    for seg in segments:
        if seg["step"] == "drained" and start is None:
            start = seg["start"]
        elif seg["step"] == "enabled" and start is not None and seg["status"] == "ok":
            intervals.append({"start": start, "end": seg.get("back_in", seg["end"]), "open": False})
            start = None
    if start is not None:
        intervals.append({"start": start, "end": max(end_of_run, start), "open": True})
    return intervals


def _batch_label(batch: Mapping[str, Any], plan: Mapping[str, Any]) -> str:
    hosts = set(batch.get("hosts") or [])
    if hosts and hosts <= set(plan.get("canary") or []):
        return "canary"
    for index, names in enumerate(plan.get("batches") or [], 1):
        if hosts and hosts <= set(names):
            return f"batch {index}"
    return f"{batch.get('play') or 'play'} #{batch.get('batch')}"


def swap_facts(timeline: Mapping[str, Any], plan: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Everything the Gantt chart and the summary need, from a timeline's events and batches."""
    plan = plan if isinstance(plan, Mapping) else {}
    events = [e for e in timeline.get("events") or [] if isinstance(e.get("t_start"), (int, float))]
    t0 = min((e["t_start"] for e in events), default=0.0)
    t1 = max((e["t_end"] for e in events), default=t0)
    by_host: dict[str, list[Mapping[str, Any]]] = {}
    for event in events:
        if event.get("host") not in CONTROLLER_HOSTS:
            by_host.setdefault(event["host"], []).append(event)
    # the planned hosts, and any other host that ran a step (a plan-less run); not the excluded ones
    order = [h for h in plan.get("order") or [] if isinstance(h, str)]
    hosts = order + sorted((h for h in by_host if h not in order), key=natural_key)
    rows = []
    for host in hosts:
        mine = by_host.get(host, [])
        segments = host_segments(mine)
        if host not in order and not segments:
            continue
        out = out_of_traffic(segments, t1)
        failures = [{"t": e["t_end"], "task": e.get("task"), "status": e["status"], "msg": e.get("msg", "")}
                    for e in mine if e.get("status") in ("failed", "unreachable") and not e.get("ignored")]
        restore = next((s["start"] for s in segments if s["restore"]), None)
        rows.append({"host": host, "segments": segments, "out_of_traffic": out,
                     "out_seconds": round(sum(i["end"] - i["start"] for i in out), 3),
                     "still_out": any(i["open"] for i in out), "failures": failures, "rollback_at": restore})
    swap_plays = {b.get("play") for b in timeline.get("batches") or []
                  if set(b.get("hosts") or []) - set(CONTROLLER_HOSTS)}
    batches = []
    for batch in timeline.get("batches") or []:
        if batch.get("play") not in swap_plays or not isinstance(batch.get("t_start"), (int, float)):
            continue
        inside = [s for r in rows if r["host"] in (batch.get("hosts") or []) for s in r["segments"]
                  if batch["t_start"] - 0.001 <= s["start"] <= batch["t_end"] + 0.001]
        if not inside:  # a play of the release that swapped nothing (checks, full weight, finalize)
            continue
        label = _batch_label(batch, plan) + ("" if any(not s["restore"] for s in inside) else " rollback")
        batches.append({"label": label, "start": batch["t_start"], "end": batch["t_end"],
                        "hosts": batch.get("hosts") or []})
    soak = [{"start": e["t_start"], "end": e["t_end"]} for e in events
            if e.get("task") in SOAK_TASKS and e.get("status") != "skipped"]
    starts = [i["start"] for r in rows for i in r["out_of_traffic"]]
    ends = [i["end"] for r in rows for i in r["out_of_traffic"]]
    return {"t0": t0, "t1": t1, "rows": rows, "batches": batches, "soak": soak,
            "hot_window": {"start": min(starts), "end": max(ends), "seconds": round(max(ends) - min(starts), 3)}
            if starts else None}


def out_of_traffic_stats(facts: Mapping[str, Any]) -> dict[str, Any]:
    """Max and median time out of traffic over the hosts that were taken out, and who was longest."""
    taken = [r for r in facts["rows"] if r["out_of_traffic"]]
    if not taken:
        return {"hosts": 0, "max": None, "median": None, "longest": None}
    longest = max(taken, key=lambda r: r["out_seconds"])
    return {"hosts": len(taken), "max": longest["out_seconds"], "median": median(r["out_seconds"] for r in taken),
            "longest": longest["host"]}


# --------------------------------------------------------------------------- SVG

FAIL_COLOUR = "#c62828"
OUT_FILL = "#fde3e1"


def _ticks(low: float, high: float, width: float, min_gap: float = 70.0) -> list[float]:
    """Round tick positions (seconds from the release's start) in [low, high], ``min_gap`` px apart at least."""
    span = high - low
    if span <= 0:
        return [low]
    for step in (0.5, 1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200):
        if step * width / span >= min_gap:
            break
    first = math.ceil(low / step)
    return [i * step for i in range(first, int(math.floor(high / step)) + 1)]


def view_range(facts: Mapping[str, Any]) -> tuple[float, float]:
    """The part of the release the timeline shows: from the first step (or soak) to the last, with a margin;
    the whole release when no host ran a step."""
    marks = [s[key] for r in facts["rows"] for s in r["segments"] for key in ("start", "end")]
    marks += [i[key] for r in facts["rows"] for i in r["out_of_traffic"] for key in ("start", "end")]
    marks += [s[key] for s in facts["soak"] for key in ("start", "end")]
    marks += [f["t"] for r in facts["rows"] for f in r["failures"]]
    if not marks:
        return facts["t0"], max(facts["t1"], facts["t0"] + 0.001)
    low, high = min(marks), max(marks)
    margin = max((high - low) * 0.02, 0.5)
    return max(facts["t0"], low - margin), min(facts["t1"], high + margin) if facts["t1"] > high else high + margin


def _tick_label(seconds: float) -> str:
    if seconds >= 60:
        return f"{int(seconds // 60)}:{int(seconds % 60):02d}"
    return f"{num(seconds)} s"


def gantt_svg(facts: Mapping[str, Any], title: str = "Swap timeline") -> str:
    """One row per host, time on x; steps as coloured segments, time out of traffic as a red band
    with its length, batches and the canary soak as vertical marks, failures and rollbacks marked."""
    rows = facts["rows"]
    if not rows:
        return '<p class="muted">No host ran a step.</p>'
    label_w, right_w, top, row_h, width = 72.0, 96.0, 38.0, 24.0, 1000.0
    plot_w = width - label_w - right_w
    t0, (v0, v1) = facts["t0"], view_range(facts)
    span = max(v1 - v0, 0.001)
    height = top + row_h * len(rows) + 26

    def x(t: float) -> float:
        return label_w + plot_w * (min(max(t, v0), v1) - v0) / span

    parts = [f'<svg class="gantt" viewBox="0 0 {width:.0f} {height:.0f}" '
             f'role="img" aria-label="{esc(title)}" font-family="system-ui,sans-serif" font-size="13">',
             f"<title>{esc(title)}</title>"]
    for index in range(1, len(rows), 2):
        parts.append(f'<rect x="0" y="{top + index * row_h:.1f}" width="{width:.0f}" height="{row_h:.1f}" fill="#f7f9fb"/>')
    for soak in facts["soak"]:
        parts.append(f'<rect class="soak" x="{x(soak["start"]):.1f}" y="{top - 14:.1f}" '
                     f'width="{max(x(soak["end"]) - x(soak["start"]), 1):.1f}" height="{row_h * len(rows) + 14:.1f}" '
                     f'fill="#e3f2fd"><title>canary soak: {esc(duration(soak["end"] - soak["start"]))}</title></rect>')
        parts.append(f'<text x="{x(soak["start"]) + 3:.1f}" y="{top - 4:.1f}" fill="#1565c0">soak</text>')
    for tick in _ticks(v0 - t0, v1 - t0, plot_w):
        tx = x(t0 + tick)
        parts.append(f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="{top:.1f}" y2="{top + row_h * len(rows):.1f}" '
                     f'stroke="#e5e9ee"/><text x="{tx:.1f}" y="{height - 8:.1f}" text-anchor="middle" '
                     f'fill="#5b6672">{esc(_tick_label(tick))}</text>')
    for index, row in enumerate(rows):
        y = top + index * row_h
        parts.append(f'<g class="row" data-host="{esc(row["host"])}" data-out-seconds="{row["out_seconds"]}">')
        parts.append(f'<text x="4" y="{y + 18:.1f}" fill="#1d2733">{esc(row["host"])}</text>')
        for out in row["out_of_traffic"]:
            state = "still out of traffic" if out["open"] else "out of traffic"
            parts.append(f'<rect class="out" x="{x(out["start"]):.1f}" y="{y + 2:.1f}" '
                         f'width="{max(x(out["end"]) - x(out["start"]), 1):.1f}" height="{row_h - 4:.1f}" '
                         f'fill="{OUT_FILL}" stroke="{FAIL_COLOUR}" stroke-width="1.2"'
                         f'{" stroke-dasharray=&quot;4 2&quot;" if out["open"] else ""}>'
                         f'<title>{esc(row["host"])} {state}: {esc(duration(out["end"] - out["start"]))}</title></rect>')
        for seg in row["segments"]:
            sx, sw = x(seg["start"]), max(x(seg["end"]) - x(seg["start"]), 1.5)
            colour = FAIL_COLOUR if seg["status"] != "ok" else STEP_COLOURS.get(seg["step"], "#78909c")
            way = " (rollback)" if seg["restore"] else ""
            parts.append(f'<rect class="seg{" restore" if seg["restore"] else ""}" data-step="{esc(seg["step"])}" '
                         f'x="{sx:.1f}" y="{y + 6:.1f}" width="{sw:.1f}" height="{row_h - 12:.1f}" fill="{colour}"'
                         f'{" stroke=&quot;#37474f&quot; stroke-dasharray=&quot;2 1&quot;" if seg["restore"] else ""}>'
                         f'<title>{esc(row["host"])}: {esc(STEP_LABELS.get(seg["step"], seg["step"]))}{way}, '
                         f'{esc(duration(seg["end"] - seg["start"]))} at +{esc(duration(seg["start"] - t0))}'
                         f'{"" if seg["status"] == "ok" else ", " + esc(seg["status"])}</title></rect>')
        if row["rollback_at"] is not None:
            rx = x(row["rollback_at"])
            parts.append(f'<path class="rollback" d="M{rx:.1f} {y + 1:.1f} l-5 -0 l5 6 l5 -6 z" fill="#ef6c00">'
                         f'<title>{esc(row["host"])}: rollback begins at +{esc(duration(row["rollback_at"] - t0))}'
                         f'</title></path>')
        for failure in row["failures"]:
            fx = x(failure["t"])
            parts.append(f'<g class="failure"><line x1="{fx - 4:.1f}" y1="{y + 4:.1f}" x2="{fx + 4:.1f}" '
                         f'y2="{y + row_h - 4:.1f}" stroke="{FAIL_COLOUR}" stroke-width="2.5"/>'
                         f'<line x1="{fx + 4:.1f}" y1="{y + 4:.1f}" x2="{fx - 4:.1f}" y2="{y + row_h - 4:.1f}" '
                         f'stroke="{FAIL_COLOUR}" stroke-width="2.5"/><title>{esc(row["host"])} {esc(failure["status"])} '
                         f'at {esc(failure["task"])}: {esc(str(failure["msg"])[:300])}</title></g>')
        out_text = (duration(row["out_seconds"]) + (" +" if row["still_out"] else "")) if row["out_of_traffic"] else "-"
        parts.append(f'<text class="out-label" x="{width - 4:.1f}" y="{y + 18:.1f}" text-anchor="end" '
                     f'fill="{FAIL_COLOUR if row["out_of_traffic"] else "#8a96a3"}">{esc(out_text)}</text></g>')
    for batch in facts["batches"]:
        bx = x(batch["start"])
        parts.append(f'<g class="batch"><line x1="{bx:.1f}" x2="{bx:.1f}" y1="{top - 14:.1f}" '
                     f'y2="{top + row_h * len(rows):.1f}" stroke="#37474f" stroke-dasharray="3 3"/>'
                     f'<text x="{bx + 3:.1f}" y="{top - 18:.1f}" fill="#37474f">{esc(batch["label"])}</text>'
                     f'<title>{esc(batch["label"])}: {esc(", ".join(batch["hosts"]))}, '
                     f'{esc(duration(batch["end"] - batch["start"]))}</title></g>')
    parts.append(f'<text x="{width - 4:.1f}" y="{top - 4:.1f}" text-anchor="end" fill="{FAIL_COLOUR}">out of traffic</text>')
    parts.append("</svg>")
    return "".join(parts)


def legend_html() -> str:
    items = [f'<span><i style="background:{colour}"></i>{esc(label)}</span>' for _step, label, colour in STEPS]
    items.append(f'<span><i style="background:{OUT_FILL};border:1px solid {FAIL_COLOUR}"></i>out of traffic</span>')
    items.append(f'<span><i style="background:{FAIL_COLOUR}"></i>failed step / &#x2715; failure</span>')
    items.append('<span><i style="background:#fff;border:1px dashed #37474f"></i>rollback steps (&#x25BC; begins)</span>')
    items.append('<span><i style="background:#e3f2fd"></i>canary soak</span>')
    return '<p class="legend">' + "".join(items) + "</p>"


# --------------------------------------------------------------------------- canary charts

VERDICT_COLOURS = {"ok": "#2e7d32", "fail": FAIL_COLOUR, "inconclusive": "#90a4ae"}


def _threshold(criteria: Mapping[str, Any], baseline: float | None) -> float | None:
    """The value the canary may not cross in an interval: the tighter of the absolute bound and the
    ratio to the baseline (``_canary.judge``'s rule), for the metric's direction."""
    lower_is_better = criteria.get("direction", "lower_is_better") == "lower_is_better"
    bounds = []
    absolute = _float(criteria.get("max") if lower_is_better else criteria.get("min"))
    if absolute is not None:
        bounds.append(absolute)
    ratio = _float(criteria.get("max_ratio_to_baseline"))
    if ratio and baseline is not None:
        if lower_is_better:
            bounds.append(ratio * max(baseline, _float(criteria.get("min_baseline")) or 0.0))
        else:
            bounds.append(baseline / ratio)
    if not bounds:
        return None
    return min(bounds) if lower_is_better else max(bounds)


def canary_series(canary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per metric: the intervals with canary, baseline, threshold and verdict, from the analysis result."""
    criteria = {c.get("name"): c for c in canary.get("criteria") or [] if isinstance(c, Mapping)}
    metrics: dict[str, dict[str, Any]] = {}
    for row in canary.get("measurements") or []:
        if not isinstance(row, Mapping) or not row.get("metric"):
            continue
        name = str(row["metric"])
        metric = metrics.setdefault(name, {"metric": name, "criteria": criteria.get(name, {}), "points": []})
        baseline = _float(row.get("baseline"))
        metric["points"].append({
            "interval": row.get("interval"), "time": row.get("time"), "canary": _float(row.get("canary")),
            "canary_text": row.get("canary"), "baseline": baseline, "baseline_text": row.get("baseline"),
            "threshold": _threshold(metric["criteria"], baseline), "outcome": row.get("outcome") or "",
            "reason": row.get("reason") or ""})
    return list(metrics.values())


def _chart_svg(metric: Mapping[str, Any]) -> str:
    points = metric["points"]
    width, height, left, right, top, bottom = 420.0, 190.0, 56.0, 12.0, 16.0, 46.0
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for p in points for v in (p["canary"], p["baseline"], p["threshold"]) if v is not None]
    high = max(values + [0.0]) * 1.1 or 1.0
    count = max(len(points), 1)

    def x(index: int) -> float:
        return left + plot_w * ((index + 0.5) / count)

    def y(value: float) -> float:
        return top + plot_h * (1 - value / high)

    name = metric["metric"]
    parts = [f'<svg class="canary-chart" data-metric="{esc(name)}" '
             f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="{esc(name)}: canary vs baseline" '
             f'font-family="system-ui,sans-serif" font-size="11"><title>{esc(name)}</title>']
    for fraction in (0, 0.5, 1):
        gy = top + plot_h * (1 - fraction)
        parts.append(f'<line x1="{left:.0f}" x2="{width - right:.0f}" y1="{gy:.1f}" y2="{gy:.1f}" stroke="#e5e9ee"/>'
                     f'<text x="{left - 4:.0f}" y="{gy + 4:.1f}" text-anchor="end" fill="#5b6672">'
                     f'{esc(num(high * fraction))}</text>')
    styles = {"baseline": ("#1565c0", ""), "canary": ("#ef6c00", ""), "threshold": (FAIL_COLOUR, ' stroke-dasharray="5 3"')}
    for series in ("threshold", "baseline", "canary"):
        colour, dash = styles[series]
        coords = [(x(i), y(p[series])) for i, p in enumerate(points) if p[series] is not None]
        if not coords:
            continue
        path = " ".join(f"{cx:.1f},{cy:.1f}" for cx, cy in coords)
        parts.append(f'<polyline class="series" data-series="{series}" points="{path}" fill="none" stroke="{colour}" '
                     f'stroke-width="{2.2 if series == "canary" else 1.6}"{dash}/>')
        if series != "threshold":
            parts.extend(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="2.6" fill="{colour}"/>' for cx, cy in coords)
    for index, point in enumerate(points):
        colour = VERDICT_COLOURS.get(point["outcome"], "#90a4ae")
        parts.append(f'<g class="verdict" data-outcome="{esc(point["outcome"])}"><rect x="{x(index) - 5:.1f}" '
                     f'y="{height - bottom + 8:.1f}" width="10" height="10" rx="2" fill="{colour}"/>'
                     f'<text x="{x(index):.1f}" y="{height - bottom + 30:.1f}" text-anchor="middle" fill="#5b6672">'
                     f'{esc(point["interval"])}</text><title>interval {esc(point["interval"])} '
                     f'({esc(point["time"])}): {esc(point["outcome"])} - canary {esc(num(point["canary_text"]))}, '
                     f'baseline {esc(num(point["baseline_text"]))}, threshold {esc(num(point["threshold"]))}. '
                     f'{esc(point["reason"])}</title></g>')
    parts.append(f'<text x="{left:.0f}" y="{height - 4:.1f}" fill="#5b6672">interval (verdict)</text></svg>')
    return "".join(parts)


def canary_charts_html(canary: Any) -> str:
    """A chart per metric (canary, baseline, threshold, each interval's verdict), or why there is none."""
    if not isinstance(canary, Mapping):
        return ""
    series = canary_series(canary)
    if not series:
        return '<p class="muted">No canary measurements were recorded (no Prometheus analysis ran).</p>'
    legend = ('<p class="legend"><span><i style="background:#ef6c00"></i>canary</span>'
              '<span><i style="background:#1565c0"></i>baseline</span>'
              f'<span><i style="background:{FAIL_COLOUR}"></i>threshold (dashed)</span>'
              + "".join(f'<span><i style="background:{c}"></i>interval {esc(o)}</span>' for o, c in VERDICT_COLOURS.items())
              + "</p>")
    cards = []
    for metric in series:
        crit = metric["criteria"]
        bounds = ", ".join(f"{key} {num(crit[key])}" for key in ("max", "min", "max_ratio_to_baseline", "min_baseline")
                           if crit.get(key) is not None)
        outcomes = [p["outcome"] for p in metric["points"]]
        worst = "fail" if "fail" in outcomes else ("inconclusive" if "inconclusive" in outcomes else "ok")
        cards.append(f'<figure class="chart"><figcaption><strong>{esc(metric["metric"])}</strong> '
                     f'<span class="badge {"ok" if worst == "ok" else ("failed" if worst == "fail" else "other")}">'
                     f'{esc(worst)}</span><br><span class="muted">{esc(bounds)}</span></figcaption>'
                     f'{_chart_svg(metric)}</figure>')
    return legend + '<div class="charts">' + "".join(cards) + "</div>"


# --------------------------------------------------------------------------- page

CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5rem auto;max-width:80rem;
color:#1d2733;padding:0 1rem;line-height:1.4}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #d5dbe2}
nav a{margin-right:1rem}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
th,td{border:1px solid #d5dbe2;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f1f4f7}.num,td.num{font-variant-numeric:tabular-nums;text-align:right}
pre{white-space:pre-wrap;word-break:break-word;margin:0;font-size:.85rem}
.badge{display:inline-block;padding:.1rem .55rem;border-radius:.8rem;font-weight:600;color:#fff;font-size:.85rem}
.success,.ok{background:#2e7d32}.failed,.unreachable{background:#c62828}
.rolled-back,.rescued,.paused{background:#ef6c00}.other{background:#546e7a}
.headline{font-size:1.05rem;padding:.6rem .8rem;border-left:.35rem solid #546e7a;background:#f5f7f9;margin:.6rem 0}
.headline.success{border-color:#2e7d32;background:#eef7ef;color:#1d2733}
.headline.failed{border-color:#c62828;background:#fdecea;color:#1d2733}
.headline.paused{border-color:#ef6c00;background:#fff3e0;color:#1d2733}
.kpis{display:grid;grid-template-columns:repeat(auto-fill,minmax(10.5rem,1fr));gap:.5rem;margin:.6rem 0}
.kpi{border:1px solid #d5dbe2;border-radius:.4rem;padding:.4rem .6rem}
.kpi b{display:block;font-size:1.2rem;font-variant-numeric:tabular-nums}.kpi span{color:#5b6672;font-size:.85rem}
svg.gantt{width:100%;min-width:46rem;height:auto;display:block}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(22rem,1fr));gap:.8rem}
figure.chart{margin:0;border:1px solid #d5dbe2;border-radius:.4rem;padding:.4rem}
svg.canary-chart{width:100%;height:auto;display:block}
.legend span{display:inline-block;margin:0 .9rem .2rem 0;font-size:.85rem;white-space:nowrap}
.legend i{display:inline-block;width:.9rem;height:.7rem;margin-right:.3rem;vertical-align:middle;border-radius:2px}
tr.skipped td{color:#8a96a3}tr.failed td{background:#fdecea}tr.unreachable td{background:#fdecea}
.bar{position:relative;height:.8rem;min-width:8rem;background:#f1f4f7}
.bar span{position:absolute;top:0;bottom:0;background:#1565c0}
tr.failed .bar span,tr.unreachable .bar span{background:#c62828}tr.skipped .bar span{background:#b0bec5}
details{margin:.4rem 0}summary{cursor:pointer}.muted{color:#6b7785}
svg.trend{width:100%;max-width:36rem;height:auto;display:block}
table.releases td.why{color:#5b6672;font-size:.85rem}
table.releases tr.why td{border-top:0}
td pre,td.why{overflow-wrap:anywhere}
"""


def kpis_html(items: Iterable[tuple[str, str]]) -> str:
    return '<div class="kpis">' + "".join(f'<div class="kpi"><b>{esc(value)}</b><span>{esc(label)}</span></div>'
                                          for label, value in items) + "</div>"
