# Copyright: sre.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: release_report
type: aggregate
short_description: Per-host release timeline as a JSON ledger entry and a self-contained HTML report
version_added: 0.1.0
description:
  - Records every task result of the playbook per host - task, play, role, start, end,
    duration, status, changed, and the message of failures - and the time of each C(serial)
    batch.
  - At the end of the playbook writes C(<report_dir>/<release_id>/timeline.json) and
    C(<report_dir>/<release_id>/report.html), and prints where they are.
  - The playbooks hand their outputs over with C(ansible.builtin.set_stats) under names of their
    own, C(rollout_out_<name>) (an AWX workflow passes them to the next job as extra vars, where
    an output named like an input would replace it). The callback reads C(rollout_out_<name>),
    else the older C(rollout_<name>).
  - The release id is C(rollout_out_release_id) from C(ansible.builtin.set_stats), else from the
    extra vars (C(rollout_release_id), C(rollout_out_release_id)), else (only with
    O(require_release_id=false)) C(run-<timestamp>). Characters
    other than those of a release id (letters, digits, dot, underscore, colon, at, plus and dash)
    become C(_) in the directory name.
  - The result is the one the release role judged, C(rollout_out_result) from C(set_stats)
    (C(success), C(paused) or C(failed), as in the ledger), shown as it is. A run that ended before
    the role judged it (no finalize) is judged by the same rule from the host outcomes the role
    recorded (C(rollout_out_hosts)) and whether the latest run of a playbook failed.
  - Rolled back hosts are those whose recorded outcome is C(rolled_back); a host with no recorded
    outcome whose rescue block ran is listed as C(rescued). Outcomes are never guessed from other words.
  - The phases of a release can run as separate playbooks (AWX workflow nodes). Each run is
    kept in C(<report_dir>/<release_id>/runs/) and the timeline and report cover every run of
    the same release id on this controller.
  - C(timeline.json) holds C(release_id), C(result) (success, paused or failed), C(app),
    C(version), C(operator), C(checker), C(events) (one per host and task), C(batches),
    C(rollbacks), C(stats) per host, C(runs), C(custom) (the run-wide C(set_stats) data, such as
    C(rollout_out_plan), C(rollout_out_canary), C(rollout_out_hosts)) and C(custom_per_host).
  - The report (one file, inline CSS and SVG, no script, nothing from the network) shows a summary that
    counts the hosts by their recorded outcome, with the duration, the hot window and the time out of
    traffic per host; a Gantt timeline (one row per planned host, the swap's steps as segments, the time
    out of the load balancers, canary and batch boundaries, the canary soak, failures and rollbacks); a
    chart per canary metric (canary, baseline, threshold, each interval's verdict); the plan, rollbacks,
    failed tasks, hosts and each host's tasks.
  - After each release it rebuilds the release history, C(<report_dir>/history.html) and
    C(history.json), from the ledger directory (where finalize wrote the entry, C(rollout_out_ledger),
    else C(<state directory>/ledger)); the report links to it. See M(sre.rollout.release_history).
  - Trouble writing the files is a warning, never a failed playbook.
  - A dry run (C(--check)) writes nothing.
author:
  - sre.rollout maintainers (!UNKNOWN)
requirements:
  - Enabled in C(ansible.cfg) (C([defaults] callbacks_enabled = sre.rollout.release_report)) or
    with C(ANSIBLE_CALLBACKS_ENABLED).
options:
  state_dir:
    description:
      - The release's state directory, the same place the playbooks keep the ledger (C(rollout_state_dir));
        reports go to its C(reports/) sub-directory.
      - When not set - the state directory the playbooks report (C(set_stats) C(rollout_out_state_dir)),
        else the extra var C(rollout_state_dir), else C(.rollout) in the current working directory.
    type: path
    env:
      - name: SRE_ROLLOUT_STATE_DIR
    ini:
      - section: callback_release_report
        key: state_dir
  report_dir:
    description:
      - Directory holding one sub-directory per release id, instead of C(<state directory>/reports).
    type: path
    env:
      - name: SRE_ROLLOUT_REPORT_DIR
    ini:
      - section: callback_release_report
        key: report_dir
  require_release_id:
    description:
      - Write a report only when the playbook has a C(rollout_release_id) (from C(set_stats)
        or the extra vars), so that ad-hoc playbooks leave nothing behind.
      - When false, a run without one is reported under C(run-<timestamp>).
    type: bool
    default: true
    env:
      - name: SRE_ROLLOUT_REPORT_REQUIRE_RELEASE_ID
    ini:
      - section: callback_release_report
        key: require_release_id
notes:
  - Set scalars with C(ansible.builtin.set_stats) and C(aggregate=false); aggregated strings
    are concatenated by Ansible when set twice.
  - A playbook killed before its end (SIGKILL) writes no run; the next run of the same release
    id still reports the earlier complete runs.
seealso:
  - module: sre.rollout.release_history
  - module: sre.rollout.release_plan
  - name: ansible.builtin.set_stats
    description: How playbooks pass the release id, plan and outcomes to this callback.
    link: https://docs.ansible.com/ansible/latest/collections/ansible/builtin/set_stats_module.html
"""

import fcntl
import html
import json
import os
import re
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

from ansible import context
from ansible.plugins.callback import CallbackBase

from ansible_collections.sre.rollout.plugins.module_utils import _history, _outcome, _report, _vocab
from ansible_collections.sre.rollout.plugins.module_utils._common import atomic_write
from ansible_collections.sre.rollout.plugins.module_utils._plan import plan_rows, plan_summary

SCHEMA_VERSION = 1
MAX_MSG = 4000
NO_LOG_MSG = "the output has been hidden due to no_log: true"
RESCUED = "rescued"  # no outcome recorded for the host, but Ansible ran one of its rescue blocks


# --------------------------------------------------------------------------- small helpers


def _now() -> float:
    return time.time()


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _stamp(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def _natural_key(name: str) -> list[Any]:
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name)]


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _truncate(text: str, limit: int = MAX_MSG) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text) - limit} more characters)"


def safe_release_id(release_id: Any) -> str:
    """A release id usable as one directory name: no separators, no leading dot."""
    return _vocab.release_id_dirname(release_id)


def failure_message(result: Mapping[str, Any]) -> str:
    """What a failed or unreachable result says, without leaking no_log output."""
    if result.get("_ansible_no_log") or "censored" in result:
        return NO_LOG_MSG
    parts = [_text(result.get(key)).strip() for key in ("msg", "reason", "stderr") if result.get(key)]
    for item in result.get("results") or []:
        if isinstance(item, Mapping) and item.get("failed"):
            if item.get("_ansible_no_log"):
                parts.append(f"item: {NO_LOG_MSG}")
            else:
                label = item.get("_ansible_item_label", item.get("item"))
                parts.append(f"item {label!r}: {_text(item.get('msg') or item.get('stderr')).strip()}")
    if not parts and result.get("rc") not in (None, 0):
        parts.append(f"exit code {result.get('rc')}")
    return _truncate("\n".join(dict.fromkeys(p for p in parts if p)) or "failed (no message)")


def step_detail(result: Mapping[str, Any]) -> dict[str, Any]:
    """What the report's timeline needs from an LB step's result: how long the module waited after
    enabling (or draining) the member, and whether it warmed the member up."""
    lbs = result.get("lbs") if isinstance(result, Mapping) else None
    if not isinstance(lbs, list) or not lbs or not all(isinstance(lb, Mapping) for lb in lbs):
        return {}
    waited = [float(lb["waited"]) for lb in lbs if isinstance(lb.get("waited"), (int, float))]
    return {"waited": round(max(waited), 3) if waited else 0.0,
            "warmup": any(lb.get("warmup_weights") for lb in lbs)}


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=False, default=str, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------- one run


class RunRecorder:
    """The timeline of one ansible-playbook run, fed by the callback methods."""

    def __init__(self, started: float | None = None) -> None:
        self.started = started if started is not None else _now()
        self.run_id = f"{_stamp(self.started)}-{os.getpid()}-{int(self.started * 1000) % 1000:03d}"
        self.playbooks: list[str] = []
        self.extra_vars: dict[str, Any] = {}
        self.events: list[dict[str, Any]] = []
        self.batches: list[dict[str, Any]] = []
        self._play = ""
        self._play_uuid: str | None = None
        self._play_count = 0
        self._tasks: dict[str, dict[str, Any]] = {}
        self._open: dict[tuple[str, str], float] = {}

    # playbook structure --------------------------------------------------

    def playbook_start(self, file_name: str) -> None:
        self.playbooks.append(os.path.basename(file_name or "playbook"))

    def play_start(self, uuid: str, name: str, extra_vars: Mapping[str, Any] | None) -> None:
        """Ansible starts a play again for each ``serial`` batch, with the same uuid."""
        if uuid == self._play_uuid and self.batches:
            self.batches.append(self._new_batch(self.batches[-1]["batch"] + 1))
        else:
            self._play_count += 1
            self._play_uuid = uuid
            self._play = name or f"play {self._play_count}"
            self.batches.append(self._new_batch(1))
        if extra_vars:
            self.extra_vars.update({k: v for k, v in extra_vars.items() if isinstance(k, str)})

    def _new_batch(self, number: int) -> dict[str, Any]:
        return {"play": self._play, "batch": number, "hosts": [], "t_start": None, "t_end": None}

    def task_start(self, uuid: str, name: str, action: str, role: str | None, handler: bool) -> None:
        self._tasks[uuid] = {"task": name, "action": action, "role": role, "play": self._play,
                             "handler": handler}

    # host results --------------------------------------------------------

    def host_start(self, host: str, uuid: str, ts: float | None = None) -> None:
        self._open[(host, uuid)] = ts if ts is not None else _now()

    def host_end(self, host: str, uuid: str, status: str, result: Mapping[str, Any],
                 ignored: bool = False, fallback_task: Mapping[str, Any] | None = None,
                 ts: float | None = None) -> dict[str, Any]:
        end = ts if ts is not None else _now()
        start = self._open.pop((host, uuid), end)
        info = self._tasks.get(uuid) or dict(fallback_task or {}, play=self._play, handler=False)
        event = {
            "run": self.run_id, "play": info.get("play"), "task": info.get("task"),
            "role": info.get("role"), "action": info.get("action"), "handler": info.get("handler", False),
            "host": host, "batch": self.batches[-1]["batch"] if self.batches else 1,
            "start": _iso(start), "end": _iso(end), "t_start": round(start, 3), "t_end": round(end, 3),
            "duration": round(max(end - start, 0.0), 3), "status": status,
            "changed": bool(result.get("changed", False)),
        }
        delegated = (result.get("_ansible_delegated_vars") or {}).get("ansible_host")
        if delegated:
            event["delegated_to"] = delegated
        if status in ("failed", "unreachable"):
            event["msg"] = failure_message(result)
            event["ignored"] = bool(ignored)
        detail = step_detail(result)
        if detail:
            event["detail"] = detail
        self.events.append(event)
        self._note_batch(host, start, end)
        return event

    def _note_batch(self, host: str, start: float, end: float) -> None:
        if not self.batches:
            self.batches.append(self._new_batch(1))
        batch = self.batches[-1]
        if host not in batch["hosts"]:
            batch["hosts"].append(host)
        batch["t_start"] = start if batch["t_start"] is None else min(batch["t_start"], start)
        batch["t_end"] = end if batch["t_end"] is None else max(batch["t_end"], end)

    # end -----------------------------------------------------------------

    def finish(self, stats: Mapping[str, Mapping[str, int]], custom: Mapping[str, Any],
               custom_per_host: Mapping[str, Any], ended: float | None = None) -> dict[str, Any]:
        ended = ended if ended is not None else _now()
        batches = [dict(b, start=_iso(b["t_start"]), end=_iso(b["t_end"]),
                        duration=round(b["t_end"] - b["t_start"], 3))
                   for b in self.batches if b["hosts"]]
        return {
            "run_id": self.run_id, "playbooks": list(self.playbooks),
            "started": _iso(self.started), "ended": _iso(ended),
            "t_start": round(self.started, 3), "t_end": round(ended, 3),
            "duration": round(ended - self.started, 3),
            "stats": {host: dict(counts) for host, counts in stats.items()},
            "custom": dict(custom), "custom_per_host": dict(custom_per_host),
            "extra_vars": {k: v for k, v in self.extra_vars.items() if k.startswith("rollout_")},
            "events": list(self.events), "batches": batches,
        }


# --------------------------------------------------------------------------- release (all runs)


def output(data: Mapping[str, Any], name: str) -> Any:
    """A playbook output from set_stats: ``rollout_out_<name>``, else the older ``rollout_<name>``."""
    value = data.get(f"rollout_out_{name}")
    return data.get(f"rollout_{name}") if value in (None, "") else value


def state_dir_of(option: str | None, custom: Mapping[str, Any], extra_vars: Mapping[str, Any]) -> Path:
    """Where the playbooks keep the release's state: the option, their output, the extra var, ./.rollout."""
    for value in (option, custom.get("rollout_out_state_dir"), extra_vars.get("rollout_out_state_dir"),
                  extra_vars.get("rollout_state_dir")):
        if value not in (None, "") and _text(value).strip():
            return Path(os.path.expanduser(_text(value).strip()))
    return Path(".rollout")


def release_id_of(custom: Mapping[str, Any], custom_per_host: Mapping[str, Any],
                  extra_vars: Mapping[str, Any]) -> str | None:
    """``rollout_release_id`` from set_stats (run-wide, then per host), then the extra vars."""
    candidates = [output(custom, "release_id")]
    candidates += [output(data, "release_id") for data in custom_per_host.values() if isinstance(data, Mapping)]
    candidates += [extra_vars.get("rollout_release_id"), extra_vars.get("rollout_out_release_id")]
    for value in candidates:
        if value not in (None, "") and _text(value).strip():
            return _text(value).strip()
    return None


def run_failed(run: Mapping[str, Any]) -> bool:
    return any(c.get("failures", 0) or c.get("unreachable", 0) for c in run.get("stats", {}).values())


def normalize_host_outcomes(value: Any) -> dict[str, dict[str, Any]]:
    """``rollout_hosts`` as ``{host: {outcome, ...}}`` from a dict or a list of dicts with ``host``."""
    result: dict[str, dict[str, Any]] = {}
    if isinstance(value, Mapping):
        items = value.items()
    elif isinstance(value, list):
        items = [(item.get("host") or item.get("name"), item) for item in value if isinstance(item, Mapping)]
    else:
        return result
    for host, data in items:
        if host in (None, ""):
            continue
        entry = dict(data) if isinstance(data, Mapping) else {"outcome": data}
        entry.setdefault("outcome", entry.get("status", entry.get("result")))
        result[str(host)] = entry
    return result


def rollbacks_of(runs: list[Mapping[str, Any]], host_outcomes: Mapping[str, Mapping[str, Any]]
                 ) -> list[dict[str, Any]]:
    """Hosts that were rolled back, and why: those the role recorded as rolled_back (rollout_hosts);
    a host with no recorded outcome whose rescue block ran is listed as rescued."""
    found: dict[str, dict[str, Any]] = {}
    for host, entry in host_outcomes.items():
        if entry.get("outcome") == _vocab.ROLLED_BACK:
            found[host] = {"host": host, "outcome": _vocab.ROLLED_BACK, "reason": _outcome_reason(entry)}
    for run in runs:
        for host, counts in run.get("stats", {}).items():
            if counts.get("rescued", 0) and host not in host_outcomes:
                found[host] = {"host": host, "outcome": RESCUED, "reason": ""}
    for item in found.values():
        if not item["reason"]:
            item["reason"] = _first_failure(runs, item["host"]) or "a rescue block ran"
    return sorted(found.values(), key=lambda item: _natural_key(item["host"]))


def _outcome_reason(entry: Mapping[str, Any]) -> str:
    for key in ("reason", "failure", "msg", "error"):
        value = entry.get(key)
        if isinstance(value, Mapping):
            value = value.get("msg") or value.get("reason") or json.dumps(value, default=str)
        if value not in (None, "", [], {}):
            return _text(value)
    return ""


def _first_failure(runs: Iterable[Mapping[str, Any]], host: str) -> str | None:
    for run in runs:
        for event in run.get("events", []):
            if event["host"] == host and event["status"] in ("failed", "unreachable") and not event.get("ignored"):
                return f"{event['task']}: {event.get('msg', '')}"
    return None


def release_result(runs: list[Mapping[str, Any]], custom: Mapping[str, Any],
                   host_outcomes: Mapping[str, Mapping[str, Any]]) -> str:
    """The result the role judged (``rollout_result``), as it is; for runs that ended before the
    role judged them, the same judge (``_outcome.release_verdict``) on the recorded host outcomes,
    halted when the latest run of a playbook failed."""
    explicit = output(custom, "result")
    if isinstance(explicit, str) and explicit.strip():
        return explicit.strip()
    latest: dict[tuple[str, ...], Mapping[str, Any]] = {}
    for run in runs:
        latest[tuple(run.get("playbooks", []))] = run
    failed = any(run_failed(run) for run in latest.values())
    rollback_playbook = any(p.startswith("rollback") for run in runs for p in run.get("playbooks", []))
    return _outcome.release_verdict(host_outcomes.values(), halted=failed,
                                    mode="rollback" if rollback_playbook else "release")


def host_status(runs: list[Mapping[str, Any]], rollbacks: list[Mapping[str, Any]]) -> dict[str, str]:
    """Each host's status in the latest run it took part in."""
    status: dict[str, str] = {}
    for run in runs:
        for host, counts in run.get("stats", {}).items():
            if counts.get("unreachable", 0):
                status[host] = "unreachable"
            elif counts.get("failures", 0):
                status[host] = "failed"
            else:
                status[host] = "ok"
    for item in rollbacks:
        if status.get(item["host"]) != "ok":
            status[item["host"]] = item["outcome"]
    return status


def _merge(target: dict[str, Any], data: Mapping[str, Any]) -> None:
    for key, value in data.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value if not isinstance(value, Mapping) else dict(value)


def build_timeline(release_id: str, runs: list[Mapping[str, Any]]) -> dict[str, Any]:
    """The ledger entry for a release from all its runs, oldest first."""
    runs = sorted(runs, key=lambda r: r.get("t_start", 0))
    custom: dict[str, Any] = {}
    custom_per_host: dict[str, Any] = {}
    extra_vars: dict[str, Any] = {}
    stats: dict[str, dict[str, int]] = {}
    for run in runs:
        _merge(custom, run.get("custom", {}))
        _merge(custom_per_host, run.get("custom_per_host", {}))
        extra_vars.update(run.get("extra_vars", {}))
        for host, counts in run.get("stats", {}).items():
            total = stats.setdefault(host, {})
            for key, count in counts.items():
                total[key] = total.get(key, 0) + int(count or 0)
    outcomes = normalize_host_outcomes(output(custom, "hosts"))
    rollbacks = rollbacks_of(runs, outcomes)

    def pick(key: str) -> Any:
        name = key.removeprefix("rollout_")
        for value in (output(custom, name), extra_vars.get(key), extra_vars.get(f"rollout_out_{name}")):
            if value not in (None, ""):
                return value
        return None

    t_start = min((r["t_start"] for r in runs), default=None)
    t_end = max((r["t_end"] for r in runs), default=None)
    return {
        "schema_version": SCHEMA_VERSION, "release_id": release_id, "generated_at": _iso(_now()),
        "result": release_result(runs, custom, outcomes),
        "app": pick("rollout_app"), "version": pick("rollout_version"), "artifact": pick("rollout_artifact"),
        "operator": pick("rollout_operator"), "checker": pick("rollout_checker"),
        "started": _iso(t_start), "ended": _iso(t_end),
        "duration": round(t_end - t_start, 3) if runs else 0.0,
        "host_status": host_status(runs, rollbacks), "host_outcomes": outcomes, "rollbacks": rollbacks,
        "runs": [{k: v for k, v in run.items() if k not in ("events", "batches")} for run in runs],
        "batches": [dict(b, run=run["run_id"]) for run in runs for b in run.get("batches", [])],
        "events": sorted((e for run in runs for e in run.get("events", [])), key=lambda e: e["t_start"]),
        "stats": stats, "custom": custom, "custom_per_host": custom_per_host,
    }


# --------------------------------------------------------------------------- HTML

HISTORY_PAGE = "history.html"  # in the report directory, beside the releases' directories


def _e(value: Any) -> str:
    return html.escape(_text(value), quote=True)


def _css_class(status: str) -> str:
    status = _text(status).lower()
    if status in (_vocab.SUCCESS, "ok", _vocab.FAILED, _vocab.UNREACHABLE, RESCUED, _vocab.PAUSED):
        return status
    if status in _vocab.OK_OUTCOMES or status in ("pass", "passed", "healthy"):
        return "ok"
    if status == _vocab.TIMED_OUT or status in ("fail", "error", "unhealthy"):
        return "failed"
    return "rolled-back" if status == _vocab.ROLLED_BACK else "other"


def _badge(status: Any) -> str:
    return f'<span class="badge {_css_class(_text(status))}">{_e(status)}</span>'


def _seconds(value: Any) -> str:
    return _report.duration(value)


def _table(headers: list[str], rows: Iterable[list[str]], row_classes: Iterable[str] | None = None) -> str:
    """Rows are already-escaped HTML cells; the table scrolls inside its box, never the page."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    classes = list(row_classes) if row_classes is not None else None
    body = []
    for index, row in enumerate(rows):
        css = f' class="{classes[index]}"' if classes and classes[index] else ""
        body.append(f"<tr{css}>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _value_html(value: Any, depth: int = 0) -> str:
    """Any set_stats value as escaped HTML: dicts as tables, lists of dicts as tables, numbers for people."""
    if isinstance(value, Mapping) and value and depth < 4:
        return _table(["key", "value"], [[_e(k), _value_html(v, depth + 1)] for k, v in value.items()])
    if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value) and depth < 4:
        keys = list(dict.fromkeys(k for v in value for k in v))
        return _table(keys, [[_value_html(v.get(k), depth + 1) for k in keys] for v in value])
    if isinstance(value, list) and all(not isinstance(v, (Mapping, list)) for v in value):
        return _e(", ".join(_report.num(v) if isinstance(v, float) else _text(v) for v in value))
    if isinstance(value, (Mapping, list)):
        return f"<pre>{_e(json.dumps(value, indent=1, default=str))}</pre>"
    if isinstance(value, float):
        return f'<span class="num">{_e(_report.num(value))}</span>'
    return _e(value)


def _ledger_entry(timeline: Mapping[str, Any]) -> Mapping[str, Any]:
    entry = output(timeline["custom"], "ledger_entry")
    return entry if isinstance(entry, Mapping) else {}


def summary_facts(timeline: Mapping[str, Any], facts: Mapping[str, Any]) -> dict[str, Any]:
    """What the summary says: the result, the hosts per outcome (as the role recorded them), the
    excluded ones, why it stopped, the duration, the hot window and the time out of traffic."""
    outcomes = timeline["host_outcomes"]
    plan = output(timeline["custom"], "plan")
    plan = plan if isinstance(plan, Mapping) else {}
    entry = _ledger_entry(timeline)
    counts: dict[str, int] = {}
    for record in outcomes.values():
        name = _text(record.get("outcome") or _vocab.UNKNOWN)
        counts[name] = counts.get(name, 0) + 1
    planned = len(plan.get("order") or []) or len(outcomes)
    excluded = plan.get("excluded") or []
    reason = entry.get("halt_reason") or output(timeline["custom"], "halt_reason") or ""
    if not reason and timeline["rollbacks"]:
        reason = timeline["rollbacks"][0]["reason"]
    out = _report.out_of_traffic_stats(facts)
    return {"result": timeline["result"], "counts": counts, "planned": planned,
            "excluded": len(excluded) if isinstance(excluded, (list, Mapping)) else 0,
            "recorded": bool(outcomes), "reason": " ".join(_text(reason).split()),
            "mode": entry.get("mode") or ("rollback" if any(p.startswith("rollback") for r in timeline["runs"]
                                                            for p in r.get("playbooks", [])) else "release"),
            "duration": timeline.get("duration"), "hot_window": (facts.get("hot_window") or {}).get("seconds"),
            "out_max": out["max"], "out_median": out["median"], "out_longest": out["longest"],
            "out_hosts": out["hosts"], "still_out": [r["host"] for r in facts["rows"] if r["still_out"]]}


def headline(summary: Mapping[str, Any], timeline: Mapping[str, Any]) -> str:
    """One sentence that says what happened, counting hosts by the outcome the role recorded."""
    counts, planned = summary["counts"], summary["planned"]
    target = timeline.get("artifact") or timeline.get("version") or "the new version"
    if not summary["recorded"]:
        status = timeline["host_status"]
        app_hosts = [h for h in status if h not in _report.CONTROLLER_HOSTS]
        bad = sorted(h for h in app_hosts if status[h] != "ok")
        what = f"no host outcome was recorded (the run ended before finalize); tasks failed on {', '.join(bad)}" if bad \
            else "no host outcome was recorded (the run ended before finalize)"
        return f"{summary['result']}: {what}."
    parts = [f"{counts[name]} {name.replace('_', ' ')}" for name in
             (_vocab.RELEASED, _vocab.SKIPPED, _vocab.ROLLED_BACK, _vocab.FAILED, _vocab.TIMED_OUT, _vocab.UNREACHABLE,
              _vocab.NOT_TOUCHED, _vocab.UNKNOWN) if counts.get(name)]
    parts += [f"{n} {name}" for name, n in counts.items() if name not in _vocab.OUTCOMES and n]
    hosts = ", ".join(parts) + f" of {planned} planned host{'s' if planned != 1 else ''}"
    if summary["excluded"]:
        hosts += f"; {summary['excluded']} excluded before the release"
    verb = "Rolled back" if summary["mode"] == "rollback" else "Released"
    if summary["result"] == _vocab.SUCCESS:
        done = counts.get(_vocab.RELEASED, 0) + counts.get(_vocab.ROLLED_BACK, 0) * (summary["mode"] == "rollback")
        text = f"{verb} {target} to {done} of {planned} hosts: {hosts}."
    elif summary["result"] == _vocab.PAUSED:
        text = f"Paused: {summary['reason'] or 'waiting for a decision'}. {hosts}."
    else:
        text = f"Failed: {summary['reason'] or 'the release stopped'}. {hosts}."
    if summary["still_out"]:
        text += f" Still out of traffic: {', '.join(summary['still_out'])}."
    return text


def _summary_html(timeline: Mapping[str, Any], facts: Mapping[str, Any]) -> str:
    summary = summary_facts(timeline, facts)
    counts = summary["counts"]
    playbooks = ", ".join(p for run in timeline["runs"] for p in run.get("playbooks", []))
    released = counts.get(_vocab.RELEASED, 0)
    kpis = _report.kpis_html([
        ("result", summary["result"]),
        ("hosts released", f"{released} of {summary['planned']}" if summary["recorded"] else "-"),
        ("rolled back", str(counts.get(_vocab.ROLLED_BACK, 0))),
        ("failed / timed out", str(counts.get(_vocab.FAILED, 0) + counts.get(_vocab.TIMED_OUT, 0))),
        ("unreachable", str(counts.get(_vocab.UNREACHABLE, 0))),
        ("not touched", str(counts.get(_vocab.NOT_TOUCHED, 0))),
        ("excluded", str(summary["excluded"])),
        ("duration", _seconds(summary["duration"]) or "-"),
        ("hot window (first drain → last back)", _seconds(summary["hot_window"]) or "-"),
        ("out of traffic, max" + (f" ({summary['out_longest']})" if summary["out_longest"] else ""),
         _seconds(summary["out_max"]) or "-"),
        (f"out of traffic, median of {summary['out_hosts']} hosts", _seconds(summary["out_median"]) or "-"),
    ])
    rows = [
        ["release id", _e(timeline["release_id"])], ["result", _badge(timeline["result"])],
        ["app", _e(timeline.get("app") or "-")],
        ["version", _e(timeline.get("version") or timeline.get("artifact") or "-")],
        ["operator", _e(timeline.get("operator") or "-")], ["checker", _e(timeline.get("checker") or "-")],
        ["started", _e(timeline.get("started"))], ["ended", _e(timeline.get("ended"))],
        ["runs", _e(f"{len(timeline['runs'])}: {playbooks}")],
    ]
    table = ('<div class="scroll"><table>' + "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows)
             + "</table></div>")
    return (f'<p class="headline {_css_class(summary["result"])}">{_e(headline(summary, timeline))}</p>'
            + kpis + table)


def _timeline_html(facts: Mapping[str, Any]) -> str:
    if not facts["rows"]:
        return '<p class="muted">No host ran a step.</p>'
    note = ('<p class="muted">One row per host, time from the first task of the release. Red band: the host is out of '
            "its load balancers (from the start of the drain until it is back in, at warm-up weight if it has one); "
            "its length is on the right. Dashed lines: where the canary and each batch began.</p>")
    return _report.legend_html() + f'<div class="scroll">{_report.gantt_svg(facts)}</div>' + note


def _plan_html(plan: Any) -> str:
    if not isinstance(plan, Mapping) or "canary" not in plan:
        return '<p class="muted">No plan was recorded (set_stats rollout_out_plan).</p>' if plan is None \
            else _value_html(plan)
    rows = [[_e(step), f'<span class="num">{len(names)}</span>', _e(zones), _e(note or ", ".join(names))]
            for step, names, zones, note in plan_rows(plan)]
    return f"<p>{_e(plan_summary(plan))}</p>" + _table(["step", "hosts", "zones", "names"], rows)


def _canary_html(canary: Any) -> str:
    if not canary:
        return '<p class="muted">No canary verdict was recorded (set_stats rollout_out_canary).</p>'
    if not isinstance(canary, Mapping):
        return _value_html(canary)
    verdict = canary.get("verdict", canary.get("result"))
    head = f"<p>verdict: {_badge(verdict if verdict is not None else 'unknown')}"
    if canary.get("hosts"):
        head += f" &middot; canary {_e(', '.join(_text(h) for h in canary['hosts']))}"
    head += "</p>" + (f"<p>{_e(canary['summary'])}</p>" if canary.get("summary") else "")
    if isinstance(canary.get("measurements"), list) and not canary["measurements"]:
        return head + _report.canary_charts_html(canary)
    if isinstance(canary.get("measurements"), list):
        charts = _report.canary_charts_html(canary)
        rest = {k: v for k, v in canary.items() if k not in ("verdict", "result", "hosts", "summary", "measurements")}
        raw = _table(["interval", "time", "metric", "canary", "baseline", "outcome", "reason"],
                     [[_e(m.get("interval")), _e(m.get("time")), _e(m.get("metric")), _e(_report.num(m.get("canary"))),
                       _e(_report.num(m.get("baseline"))), _badge(m.get("outcome")), _e(m.get("reason"))]
                      for m in canary["measurements"] if isinstance(m, Mapping)])
        return (head + charts + f"<details><summary>every measurement ({len(canary['measurements'])})</summary>{raw}"
                "</details>" + (f"<details><summary>queries and criteria</summary>{_value_html(rest)}</details>"
                                if rest else ""))
    rest = {k: v for k, v in canary.items() if k not in ("verdict", "result")}
    return head + (_value_html(rest) if rest else "")


def _rollbacks_html(rollbacks: list[Mapping[str, Any]]) -> str:
    if not rollbacks:
        return '<p class="muted">No host was rolled back.</p>'
    rows = [[_e(r["host"]), _badge(r["outcome"]), f"<pre>{_e(r['reason'])}</pre>"] for r in rollbacks]
    return _table(["host", "outcome", "why"], rows)


_HOST_COLUMNS = ("zone", "last_step", "current", "previous", "silence", "lock")


def _hosts_html(timeline: Mapping[str, Any], facts: Mapping[str, Any]) -> str:
    outcomes = timeline["host_outcomes"]
    hosts = [r["host"] for r in facts["rows"]]
    hosts += sorted((h for h in set(timeline["host_status"]) | set(outcomes)
                     if h not in hosts and h not in _report.CONTROLLER_HOSTS), key=_natural_key)
    if not hosts:
        return '<p class="muted">No host ran a task.</p>'
    out = {r["host"]: r for r in facts["rows"]}
    rows = []
    for host in hosts:
        entry = outcomes.get(host, {})
        row = out.get(host)
        away = (_seconds(row["out_seconds"]) + (" (still out)" if row["still_out"] else "")) if row and row["out_of_traffic"] else "-"
        lbs = entry.get("lbs") if isinstance(entry.get("lbs"), Mapping) else {}
        extra = {k: v for k, v in entry.items() if k not in ("host", "outcome", "lbs", "action", "out_of_traffic")
                 + _HOST_COLUMNS and v not in (None, "", [], {})}
        rows.append([_e(host), _badge(entry.get("outcome") or timeline["host_status"].get(host, "-")),
                     *[_e(entry.get(k, "")) for k in _HOST_COLUMNS], _e(away),
                     _e(", ".join(f"{k}: {v}" for k, v in lbs.items())), _e(entry.get("action") or ""),
                     f"<details><summary>more</summary>{_value_html(extra)}</details>" if extra else ""])
    return _table(["host", "outcome", "zone", "last step", "current", "previous", "silence", "lock",
                   "out of traffic", "load balancers", "what to do", "recorded"], rows)


def _short_list(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown}, ... (+{len(names) - limit} more)"


def _batches_html(batches: list[Mapping[str, Any]]) -> str:
    if not batches:
        return '<p class="muted">No batch ran.</p>'
    rows = [[_e(b["play"]), f'<span class="num">{_e(b["batch"])}</span>', _e(_short_list(b["hosts"])),
             _e(b.get("start")), _e(_seconds(b.get("duration")))] for b in batches]
    return _table(["play", "batch", "hosts", "start", "duration"], rows)


def _failures_html(events: list[Mapping[str, Any]]) -> str:
    failed = [e for e in events if e["status"] in ("failed", "unreachable")]
    stopping = [e for e in failed if not e.get("ignored")]
    ignored = [e for e in failed if e.get("ignored")]
    parts = [_failure_table(stopping) if stopping else '<p class="muted">No task failed.</p>']
    if ignored:
        parts.append(f"<details><summary>{len(ignored)} failed tasks with ignore_errors</summary>"
                     f"{_failure_table(ignored)}</details>")
    return "".join(parts)


def _failure_table(events: list[Mapping[str, Any]]) -> str:
    rows = [[_e(e["host"]), _e(e.get("play")), _e(e.get("role") or ""), _e(e.get("task")),
             _badge(e["status"]), f"<pre>{_e(e.get('msg', ''))}</pre>"] for e in events]
    return _table(["host", "play", "role", "task", "status", "message"], rows)


def _host_timeline_html(host: str, events: list[Mapping[str, Any]], t0: float, span: float,
                        status: str) -> str:
    rows, classes = [], []
    for index, event in enumerate(events, 1):
        left = 100.0 * (event["t_start"] - t0) / span
        width = max(100.0 * event["duration"] / span, 0.3)
        bar_html = f'<div class="bar"><span style="left:{left:.2f}%;width:{min(width, 100 - left):.2f}%"></span></div>'
        rows.append([f'<span class="num">{index}</span>', _e(event.get("play")), _e(event.get("role") or ""),
                     _e(event.get("task")), _e(event["status"] + (" (changed)" if event.get("changed") else "")),
                     _e(f"+{_seconds(event['t_start'] - t0)}"), _e(_seconds(event["duration"])), bar_html])
        classes.append(event["status"])
    total = sum(e["duration"] for e in events)
    is_open = " open" if status not in ("ok",) else ""
    summary = (f"<summary><strong>{_e(host)}</strong> {_badge(status)} "
               f"<span class=\"muted\">{len(events)} tasks, {_e(_seconds(total))} in tasks</span></summary>")
    return (f"<details{is_open}>{summary}"
            + _table(["#", "play", "role", "task", "status", "start", "duration", "timeline"], rows, classes)
            + "</details>")


def _timelines_html(timeline: Mapping[str, Any]) -> str:
    events = timeline["events"]
    if not events:
        return '<p class="muted">No task ran.</p>'
    t0 = min(e["t_start"] for e in events)
    span = max(max(e["t_end"] for e in events) - t0, 0.001)
    by_host: dict[str, list[Mapping[str, Any]]] = {}
    for event in events:
        by_host.setdefault(event["host"], []).append(event)
    return "".join(_host_timeline_html(host, by_host[host], t0, span, timeline["host_status"].get(host, "ok"))
                   for host in sorted(by_host, key=_natural_key))


def render_html(timeline: Mapping[str, Any], history_link: str | None = f"../{HISTORY_PAGE}") -> str:
    """A self-contained page (inline CSS and SVG, no script, no network, every value escaped)."""
    custom = timeline["custom"]
    plan = output(custom, "plan")
    facts = _report.swap_facts(timeline, plan if isinstance(plan, Mapping) else None)
    title = f"Release {timeline['release_id']}: {timeline['result']}"
    sections = [
        ("Summary", _summary_html(timeline, facts)),
        ("Timeline", _timeline_html(facts)),
        ("Canary", _canary_html(output(custom, "canary"))),
        ("Plan", _plan_html(plan)),
        ("Rollbacks", _rollbacks_html(timeline["rollbacks"])),
        ("Failed tasks", _failures_html(timeline["events"])),
        ("Hosts", _hosts_html(timeline, facts)),
        ("Batches", _batches_html(timeline["batches"])),
        ("Per-host timeline", _timelines_html(timeline)),
    ]
    body = "".join(f"<h2>{_e(name)}</h2>{content}" for name, content in sections)
    nav = f'<nav><a href="{_e(history_link)}">release history</a><a href="timeline.json">timeline.json</a></nav>' \
        if history_link else ""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{_e(title)}</title>"
            f"<style>{_report.CSS}</style></head><body>{nav}<h1>Release {_e(timeline['release_id'])} "
            f"{_badge(timeline['result'])}</h1>"
            f"<p class=\"muted\">generated {_e(timeline['generated_at'])} by sre.rollout.release_report"
            f" - data in timeline.json next to this page</p>{body}</body></html>\n")


# --------------------------------------------------------------------------- storage


def load_runs(runs_dir: Path, warn) -> list[dict[str, Any]]:
    runs = []
    for path in sorted(runs_dir.glob("*.json")):
        try:
            runs.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            warn(f"release_report: skipping unreadable run file {path}: {exc}")
    return runs


def write_release(report_dir: Path, release_id: str, run: Mapping[str, Any], warn) -> tuple[Path, Path]:
    """Store the run, then rebuild timeline.json and report.html from every run of the release."""
    release_dir = report_dir / release_id
    atomic_write(str(release_dir / "runs" / f"{run['run_id']}.json"), _json(run))
    timeline = build_timeline(release_id, load_runs(release_dir / "runs", warn))
    timeline_path, html_path = release_dir / "timeline.json", release_dir / "report.html"
    atomic_write(str(timeline_path), _json(timeline))
    plan = output(timeline["custom"], "plan")
    # what the history needs of the timeline, so that it never reads every release's whole timeline
    atomic_write(str(release_dir / _history.FACTS_FILE),
                 _json(_report.swap_facts(timeline, plan if isinstance(plan, Mapping) else None)))
    atomic_write(str(html_path), render_html(timeline))
    return timeline_path, html_path


def ledger_dir_of(custom: Mapping[str, Any], state_dir: Path) -> Path:
    """The directory of the ledger entry finalize wrote (``rollout_out_ledger``), else the state directory's."""
    written = output(custom, "ledger")
    if isinstance(written, str) and written.strip():
        return Path(os.path.expanduser(written.strip())).parent
    return state_dir / "ledger"


def write_history(report_dir: Path, ledger_dir: Path, last: int = 10) -> Path | None:
    """Rebuild ``history.html`` and ``history.json`` beside the releases' reports from every ledger entry."""
    if not ledger_dir.is_dir():
        return None
    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / HISTORY_PAGE
    # two releases ending at once on one controller: the second reads the ledger after the first wrote
    with open(report_dir / ".history.lock", "a", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = _history.history(ledger_dir, report_dir, last=last)
        atomic_write(str(report_dir / "history.json"), _json(data))
        atomic_write(str(path), _history.render_html(data))
    return path


# --------------------------------------------------------------------------- the callback


class CallbackModule(CallbackBase):
    """Release timeline: JSON ledger entry + HTML report per release id."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "sre.rollout.release_report"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, display=None, options=None) -> None:
        super().__init__(display=display, options=options)
        self.recorder = RunRecorder()

    # structure

    def v2_playbook_on_start(self, playbook) -> None:
        self.recorder.playbook_start(getattr(playbook, "_file_name", "") or "")

    def v2_playbook_on_play_start(self, play) -> None:
        extra_vars: Mapping[str, Any] = {}
        try:
            extra_vars = play.get_variable_manager().extra_vars
        except AttributeError:
            pass
        self.recorder.play_start(play._uuid, play.get_name().strip(), extra_vars)

    def v2_playbook_on_task_start(self, task, is_conditional) -> None:
        self._task_start(task, handler=False)

    def v2_playbook_on_handler_task_start(self, task) -> None:
        self._task_start(task, handler=True)

    def _task_start(self, task, handler: bool) -> None:
        self.recorder.task_start(task._uuid, *self._describe(task), handler=handler)

    @staticmethod
    def _describe(task) -> tuple[str, str, str | None]:
        role = task._role.get_name() if getattr(task, "_role", None) else None
        # get_name() prefixes the role; the role has its own field
        name = _text(getattr(task, "name", None)).strip() or task.get_name().strip()
        return name, task.action, role

    # results

    def v2_runner_on_start(self, host, task) -> None:
        self.recorder.host_start(host.get_name(), task._uuid)

    def v2_runner_on_ok(self, result) -> None:
        self._host_end(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors: bool = False) -> None:
        self._host_end(result, "failed", ignored=ignore_errors)

    def v2_runner_on_skipped(self, result) -> None:
        self._host_end(result, "skipped")

    def v2_runner_on_unreachable(self, result) -> None:
        self._host_end(result, "unreachable")

    def _host_end(self, result, status: str, ignored: bool = False) -> None:
        name, action, role = self._describe(result._task)
        self.recorder.host_end(result._host.get_name(), result._task._uuid, status, result._result,
                               ignored=ignored, fallback_task={"task": name, "action": action, "role": role})

    # the end

    def v2_playbook_on_stats(self, stats) -> None:
        try:
            self._report(stats)
        except Exception as exc:  # pylint: disable=broad-except  # a report never fails a release
            self._display.warning(f"release_report: could not write the release report: {exc}")

    def _report(self, stats) -> None:
        if context.CLIARGS.get("check"):
            self._display.display("release report: none for a dry run (--check): nothing was released")
            return
        custom = dict(stats.custom.get("_run", {}))
        per_host = {h: dict(v) for h, v in stats.custom.items() if h != "_run"}
        release_id = release_id_of(custom, per_host, self.recorder.extra_vars)
        if release_id is None:
            if self.get_option("require_release_id"):
                self._display.v("release_report: no rollout_release_id (set_stats or extra vars): no report")
                return
            release_id = f"run-{_stamp(self.recorder.started)}"
        safe_id = safe_release_id(release_id)
        if not safe_id:
            self._display.warning(f"release_report: release id {release_id!r} is not usable as a "
                                  "directory name; no report written. Use letters, digits, '.', '_' or '-'.")
            return
        if safe_id != release_id:
            self._display.warning(f"release_report: release id {release_id!r} is stored as {safe_id!r}")
        run = self.recorder.finish({h: stats.summarize(h) for h in sorted(stats.processed)}, custom, per_host)
        explicit_dir = self.get_option("report_dir")
        state_dir = state_dir_of(self.get_option("state_dir"), custom, self.recorder.extra_vars)
        report_dir = Path(os.path.expanduser(explicit_dir)) if explicit_dir else state_dir / "reports"
        try:
            timeline_path, html_path = write_release(report_dir, safe_id, run, self._display.warning)
        except OSError as exc:
            self._display.warning(f"release_report: cannot write the report under {report_dir}: {exc}. "
                                  "Check rollout_state_dir (SRE_ROLLOUT_STATE_DIR) or report_dir "
                                  "(SRE_ROLLOUT_REPORT_DIR) is a writable directory.")
            return
        self._display.display(f"release report: {html_path}")
        self._display.display(f"release timeline: {timeline_path}")
        try:
            history_path = write_history(report_dir, ledger_dir_of(custom, state_dir))
        except (OSError, ValueError) as exc:
            self._display.warning(f"release_report: cannot write the release history under {report_dir}: {exc}")
            return
        if history_path:
            self._display.display(f"release history: {history_path}")
