# Copyright: sre.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The release history: every ledger entry as one row, and the figures release practice judges by.

This module is private to the sre.rollout collection: its interface may change
without notice and it must not be used from outside the collection.

Reads the ledger directory (``<rollout_state_dir>/ledger/*.json``, one file per release, a
rollback handed a release beside it as ``<id>.rollback.json``) and, where the release report of
an entry is still there, its swap facts (``<report_dir>/<release id>/facts.json``, else computed
from the ``timeline.json`` beside it): they give the hot window, the time out of traffic and
when a problem was detected and handled. An entry whose report is gone still counts in the success rate and the durations.

Per app and env: success rate, median and p95 duration and hot window, rollbacks and their
reasons, time from start to detection and from detection to every host safe again, and the
same over the last N releases next to all of them (the trend).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from ansible_collections.sre.rollout.plugins.module_utils import _report, _vocab
from ansible_collections.sre.rollout.plugins.module_utils._report import duration, esc, median, num, p95, percent

SCHEMA_VERSION = 1


def read_json(path: Path, problems: list[str]) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        problems.append(f"{path}: {exc}")
        return None
    if not isinstance(data, dict):
        problems.append(f"{path}: not a JSON object")
        return None
    return data


def _env_of(hosts: list[Mapping[str, Any]]) -> str:
    envs = sorted({str(h.get("env")) for h in hosts if isinstance(h, Mapping) and h.get("env")})
    return ", ".join(envs) or "-"


def _reason(entry: Mapping[str, Any], hosts: list[Mapping[str, Any]]) -> str:
    if entry.get("halt_reason"):
        return " ".join(str(entry["halt_reason"]).split())
    for host in hosts:
        failure = host.get("failure")
        if isinstance(failure, Mapping) and (failure.get("msg") or failure.get("task")):
            return f"{host.get('host')}: {failure.get('task') or ''} {failure.get('msg') or ''}".strip()
    return ""


def detection(entry: Mapping[str, Any], facts: Mapping[str, Any] | None) -> tuple[float | None, float | None, bool]:
    """(detected at, every host safe again at, still out of traffic) as epoch seconds.

    Detected: the first failed step of a host (failed or unreachable, not ignored) or the first
    canary interval judged ``fail``, whichever came first. Safe again: when the last host taken
    back after it was in its load balancers again; at detection when no host had to be taken
    back; never (None, still out) while a host is left out of traffic.
    """
    marks: list[float] = []
    canary = entry.get("canary") if isinstance(entry.get("canary"), Mapping) else {}
    for row in canary.get("measurements") or []:
        if isinstance(row, Mapping) and row.get("outcome") == "fail":
            stamp = _report.parse_time(row.get("time"))
            if stamp is not None:
                marks.append(stamp)
    if facts:
        marks += [f["t"] for row in facts["rows"] for f in row["failures"]]
    if not marks:
        return None, None, False
    detected = min(marks)
    if not facts:
        return detected, None, False
    if any(row["still_out"] for row in facts["rows"]) or entry.get("left_out_of_traffic"):
        return detected, None, True
    back = [seg.get("back_in", seg["end"]) for row in facts["rows"] for seg in row["segments"]
            if seg["step"] == "enabled" and seg["restore"] and seg.get("back_in", seg["end"]) >= detected]
    return detected, max(back) if back else detected, False


def release_row(entry: Mapping[str, Any], timeline: Mapping[str, Any] | None, report: str | None,
                facts: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One release: from its ledger entry, and its swap facts (``facts``, else computed from ``timeline``)."""
    hosts = [h for h in entry.get("hosts") or [] if isinstance(h, Mapping)]
    started, finished = _report.parse_time(entry.get("started")), _report.parse_time(entry.get("finished"))
    plan = entry.get("plan") if isinstance(entry.get("plan"), Mapping) else {}
    if facts is None and timeline:
        facts = _report.swap_facts(timeline, plan)
    result = str(entry.get("result") or _vocab.UNKNOWN)
    rolled_back = [str(h) for h in entry.get("rolled_back") or []]
    # detection and recovery are about releases that went wrong: a success has nothing to detect
    troubled = result != _vocab.SUCCESS or (bool(rolled_back) and entry.get("mode") != "rollback")
    detected, safe, still_out = detection(entry, facts) if troubled else (None, None, False)
    out = _report.out_of_traffic_stats(facts) if facts else {"max": None, "median": None}
    counts = dict(entry.get("counts") or {}) if isinstance(entry.get("counts"), Mapping) else {}
    canary = entry.get("canary") if isinstance(entry.get("canary"), Mapping) else {}
    return {
        "release_id": entry.get("release_id"), "app": entry.get("app") or "-", "env": _env_of(hosts),
        "mode": entry.get("mode") or "release", "artifact": entry.get("artifact") or "",
        "operator": entry.get("operator") or "", "result": result,
        "started": entry.get("started"), "finished": entry.get("finished"),
        "duration": round(finished - started, 3) if started is not None and finished is not None else None,
        "hot_window": facts["hot_window"]["seconds"] if facts and facts["hot_window"] else None,
        "out_of_traffic_max": out["max"], "out_of_traffic_median": out["median"],
        "planned": counts.get("planned", len(hosts)), "excluded": counts.get("excluded", 0),
        "counts": {k: v for k, v in counts.items() if k not in ("planned", "excluded")},
        "canary": canary.get("verdict") or "", "rolled_back": rolled_back,
        "reason": _reason(entry, hosts) if result != _vocab.SUCCESS or rolled_back else "",
        "to_detection": round(detected - started, 3) if detected is not None and started is not None else None,
        "to_safe": round(safe - detected, 3) if safe is not None and detected is not None else None,
        "still_out": still_out, "report": report, "timeline": bool(facts),
    }


def load(ledger_dir: str | os.PathLike, report_dir: str | os.PathLike | None = None,
         problems: list[str] | None = None) -> list[dict[str, Any]]:
    """Every ledger entry of the directory as a release row, oldest first."""
    problems = problems if problems is not None else []
    ledger = Path(ledger_dir)
    reports = Path(report_dir) if report_dir else ledger.parent / "reports"
    rows = []
    for path in sorted(ledger.glob("*.json")):
        entry = read_json(path, problems)
        if entry is None:
            continue
        if not entry.get("release_id"):
            problems.append(f"{path}: no release_id (not a ledger entry)")
            continue
        dirname = _vocab.release_id_dirname(entry["release_id"])
        facts, timeline = _facts_of(reports / dirname), None
        if facts is None and (reports / dirname / "timeline.json").is_file():
            timeline = read_json(reports / dirname / "timeline.json", [])
        report = reports / dirname / "report.html"
        rows.append(release_row(entry, timeline, f"{dirname}/report.html" if report.is_file() else None, facts))
    rows.sort(key=lambda r: (_report.parse_time(r["started"]) or 0.0, str(r["release_id"])))
    return rows


FACTS_FILE = "facts.json"  # the swap facts the callback wrote beside the timeline (a few KB, not the timeline's MBs)


def _facts_of(release_dir: Path) -> dict[str, Any] | None:
    """The release's swap facts when the callback wrote them with (or after) its timeline, else None."""
    facts, timeline = release_dir / FACTS_FILE, release_dir / "timeline.json"
    try:
        if not facts.is_file() or (timeline.is_file() and facts.stat().st_mtime < timeline.stat().st_mtime):
            return None
    except OSError:
        return None
    data = read_json(facts, [])
    return data if data and isinstance(data.get("rows"), list) else None


def _figures(rows: list[Mapping[str, Any]]) -> dict[str, Any]:
    releases = [r for r in rows if r["mode"] != "rollback"]
    succeeded = [r for r in releases if r["result"] == _vocab.SUCCESS]

    def values(key: str) -> list[float]:
        return [r[key] for r in releases if r.get(key) is not None]

    results: dict[str, int] = {}
    for row in releases:
        results[row["result"]] = results.get(row["result"], 0) + 1
    return {
        "releases": len(releases), "succeeded": len(succeeded),
        "success_rate": round(len(succeeded) / len(releases), 4) if releases else None,
        "results": results, "rollback_runs": len(rows) - len(releases),
        "duration_median": median(values("duration")), "duration_p95": p95(values("duration")),
        "hot_window_median": median(values("hot_window")), "hot_window_p95": p95(values("hot_window")),
        "to_detection_median": median(values("to_detection")), "to_safe_median": median(values("to_safe")),
        "to_safe_max": max(values("to_safe"), default=None),
        "rolled_back_releases": sum(1 for r in releases if r["rolled_back"]),
        "rolled_back_hosts": sum(len(r["rolled_back"]) for r in releases),
    }


def summarize(rows: list[Mapping[str, Any]], last: int = 10) -> list[dict[str, Any]]:
    """Per app and env: the figures over every release and over the last ``last`` ones."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault((str(row["app"]), str(row["env"])), []).append(row)
    out = []
    for (app, env), members in sorted(groups.items()):
        releases = [r for r in members if r["mode"] != "rollback"]
        out.append({
            "app": app, "env": env, "all": _figures(members), "last_n": last,
            "last": _figures(releases[-last:]),
            "rollbacks": [{"release_id": r["release_id"], "mode": r["mode"], "hosts": r["rolled_back"],
                           "reason": r["reason"]} for r in members if r["rolled_back"] or r["mode"] == "rollback"],
        })
    return out


def history(ledger_dir: str | os.PathLike, report_dir: str | os.PathLike | None = None, last: int = 10,
            now: Callable[[], float] = time.time) -> dict[str, Any]:
    """The history as JSON-ready data (what ``history.json`` holds)."""
    problems: list[str] = []
    rows = load(ledger_dir, report_dir, problems)
    return {"schema_version": SCHEMA_VERSION,
            "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now())),
            "ledger_dir": str(ledger_dir), "last_n": last, "releases": rows, "groups": summarize(rows, last),
            "problems": problems}


# --------------------------------------------------------------------------- HTML


def _badge(result: str) -> str:
    css = {"success": "success", "failed": "failed", "paused": "paused"}.get(result, "other")
    return f'<span class="badge {css}">{esc(result)}</span>'


def _trend_svg(rows: list[Mapping[str, Any]]) -> str:
    """The last releases' durations, oldest to newest, each dot coloured by its result."""
    points = [r for r in rows if r.get("duration") is not None]
    if not points:
        return ""
    width, height, left, top, bottom = 480.0, 120.0, 70.0, 10.0, 22.0
    plot_w, plot_h = width - left - 10, height - top - bottom
    high = max(r["duration"] for r in points) * 1.15 or 1.0
    step = plot_w / max(len(points), 1)
    colours = {"success": "#2e7d32", "failed": "#c62828", "paused": "#ef6c00"}
    coords = [(left + step * (i + 0.5), top + plot_h * (1 - r["duration"] / high)) for i, r in enumerate(points)]
    parts = [f'<svg class="trend" viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="durations of the last '
             f'releases" font-family="system-ui,sans-serif" font-size="11">',
             f'<text x="{left - 4:.0f}" y="{top + 8:.0f}" text-anchor="end" fill="#5b6672">{esc(duration(high))}</text>',
             f'<text x="{left - 4:.0f}" y="{top + plot_h:.0f}" text-anchor="end" fill="#5b6672">0</text>',
             f'<line x1="{left:.0f}" x2="{width - 10:.0f}" y1="{top + plot_h:.1f}" y2="{top + plot_h:.1f}" stroke="#d5dbe2"/>',
             '<polyline points="' + " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
             + '" fill="none" stroke="#90a4ae" stroke-width="1.4"/>']
    for (x, y), row in zip(coords, points):
        parts.append(f'<circle class="release" cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colours.get(row["result"], "#546e7a")}">'
                     f'<title>{esc(row["release_id"])}: {esc(row["result"])}, {esc(duration(row["duration"]))}</title></circle>')
    parts.append(f'<text x="{left:.0f}" y="{height - 6:.0f}" fill="#5b6672">oldest</text>'
                 f'<text x="{width - 10:.0f}" y="{height - 6:.0f}" text-anchor="end" fill="#5b6672">newest</text></svg>')
    return "".join(parts)


def _figures_rows(label: str, fig: Mapping[str, Any]) -> list[str]:
    rate = percent(fig["succeeded"], fig["releases"]) if fig["releases"] else "-"
    return [esc(label), f'<td class="num">{esc(fig["releases"])}</td>',
            f'<td class="num">{esc(rate)} ({esc(fig["succeeded"])} of {esc(fig["releases"])})</td>',
            f'<td class="num">{esc(duration(fig["duration_median"]) or "-")}</td>',
            f'<td class="num">{esc(duration(fig["duration_p95"]) or "-")}</td>',
            f'<td class="num">{esc(duration(fig["hot_window_median"]) or "-")}</td>',
            f'<td class="num">{esc(duration(fig["hot_window_p95"]) or "-")}</td>',
            f'<td class="num">{esc(fig["rolled_back_releases"])} ({esc(fig["rolled_back_hosts"])} hosts)</td>',
            f'<td class="num">{esc(duration(fig["to_detection_median"]) or "-")}</td>',
            f'<td class="num">{esc(duration(fig["to_safe_median"]) or "-")}</td>']


def _group_html(group: Mapping[str, Any], rows: list[Mapping[str, Any]]) -> str:
    heads = ["", "releases", "success rate", "duration median", "duration p95", "hot window median",
             "hot window p95", "rolled back", "start → detection (median)", "detection → safe (median)"]
    table_rows = [_figures_rows("all", group["all"]), _figures_rows(f"last {group['last_n']}", group["last"])]
    body = "".join("<tr><th>" + cells[0] + "</th>" + "".join(cells[1:]) + "</tr>" for cells in table_rows)
    table = ('<div class="scroll"><table><thead><tr>' + "".join(f"<th>{esc(h)}</th>" for h in heads)
             + f"</tr></thead><tbody>{body}</tbody></table></div>")
    mine = [r for r in rows if r["app"] == group["app"] and r["env"] == group["env"] and r["mode"] != "rollback"]
    trend = _trend_svg(mine[-group["last_n"]:])
    reasons = "".join(f"<li><code>{esc(r['release_id'])}</code> ({esc(r['mode'])}"
                      f"{': ' + esc(', '.join(r['hosts'])) if r['hosts'] else ''}): {esc(r['reason'] or 'no reason recorded')}</li>"
                      for r in group["rollbacks"])
    return (f'<section class="group" data-app="{esc(group["app"])}" data-env="{esc(group["env"])}">'
            f'<h3>{esc(group["app"])} in {esc(group["env"])}</h3>{table}'
            + (f"<p>Durations of the last {esc(group['last_n'])} releases</p>{trend}" if trend else "")
            + (f"<details><summary>rollbacks and their reasons ({len(group['rollbacks'])})</summary><ul>{reasons}</ul></details>"
               if reasons else '<p class="muted">No rollback.</p>') + "</section>")


def _release_rows_html(rows: list[Mapping[str, Any]]) -> str:
    heads = ["release", "app / env", "artifact", "result", "started (UTC)", "duration", "hot window",
             "out of traffic max", "hosts", "canary", "start → detection", "detection → safe"]
    body = []
    for row in reversed(rows):
        link = (f'<a href="{esc(row["report"])}">{esc(row["release_id"])}</a>' if row["report"]
                else esc(row["release_id"]))
        hosts = [f"{n} {k.replace('_', ' ')}" for k, n in row["counts"].items() if n]
        if row["excluded"]:
            hosts.append(f"{row['excluded']} excluded")
        safe = "still out of traffic" if row["still_out"] else duration(row["to_safe"])
        what = (row["artifact"] or "") + (" (rollback)" if row["mode"] == "rollback" else "")
        why = row["reason"]
        cells = [link, esc(f"{row['app']} / {row['env']}"), esc(what), _badge(row["result"]),
                 esc(str(row["started"] or "")[:19].replace("T", " ")), esc(duration(row["duration"])),
                 esc(duration(row["hot_window"])), esc(duration(row["out_of_traffic_max"])),
                 "<br>".join(esc(h) for h in hosts) or esc(f"{row['planned']} planned"), esc(row["canary"]),
                 esc(duration(row["to_detection"])), esc(safe)]
        body.append(f'<tr class="release" data-release="{esc(row["release_id"])}" data-result="{esc(row["result"])}">'
                    + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        if why:
            body.append(f'<tr class="why"><td></td><td class="why" colspan="{len(heads) - 1}" title="{esc(why)}">why: '
                        f'{esc(why[:300] + ("..." if len(why) > 300 else ""))}</td></tr>')
    return ('<div class="scroll"><table class="releases"><thead><tr>' + "".join(f"<th>{esc(h)}</th>" for h in heads)
            + f"</tr></thead><tbody>{''.join(body)}</tbody></table></div>")


def render_html(data: Mapping[str, Any]) -> str:
    """A self-contained page: no script, no network, every value escaped."""
    rows, groups = data["releases"], data["groups"]
    releases = [r for r in rows if r["mode"] != "rollback"]
    succeeded = sum(1 for r in releases if r["result"] == _vocab.SUCCESS)
    kpis = _report.kpis_html([
        ("releases in the ledger", num(len(rows))),
        ("success rate", f"{percent(succeeded, len(releases))} ({succeeded} of {len(releases)})" if releases else "-"),
        ("median duration", duration(median(r["duration"] for r in releases if r["duration"] is not None)) or "-"),
        ("p95 duration", duration(p95(r["duration"] for r in releases if r["duration"] is not None)) or "-"),
        ("releases with rollbacks", num(sum(1 for r in releases if r["rolled_back"]))),
        ("rollback runs", num(len(rows) - len(releases))),
    ])
    problems = "".join(f"<li>{esc(p)}</li>" for p in data.get("problems") or [])
    sections = [
        f"<h2>Summary</h2>{kpis}",
        "<h2>Per app and env</h2>" + ("".join(_group_html(g, rows) for g in groups) or '<p class="muted">No release yet.</p>'),
        f"<h2>Releases</h2><p class=\"muted\">Newest first; the release id links to its report.</p>{_release_rows_html(rows)}",
    ]
    if problems:
        sections.append(f"<h2>Ledger files that could not be read</h2><ul>{problems}</ul>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Release history</title>"
            f"<style>{_report.CSS}</style></head><body><h1>Release history</h1>"
            f"<p class=\"muted\">{esc(len(rows))} ledger entries in {esc(data['ledger_dir'])}, generated "
            f"{esc(data['generated_at'])} by sre.rollout; data in history.json next to this page.</p>"
            + "".join(sections) + "</body></html>\n")
