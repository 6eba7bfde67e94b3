#!/usr/bin/python
# Copyright: sre.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: release_history
short_description: The release history from the ledger - success rate, durations, rollbacks, time to detect and recover
version_added: 0.2.0
description:
  - Reads every ledger entry of O(ledger_dir) (one JSON file per release, written by the release role's
    finalize; a rollback handed a release beside it as C(<id>.rollback.json)) and returns the history as
    data (RV(history), what C(history.json) holds) and as a self-contained HTML page (RV(html); inline CSS
    and SVG, no script, no network). Read-only; write the files with M(ansible.builtin.copy), as the
    playbook C(sre.rollout.history) does.
  - One row per release - app, env (the CMDB env of its hosts), artifact, result, duration (ledger
    C(started) to C(finished)), hot window and time out of traffic, hosts per outcome, canary verdict,
    why it stopped, time from the start to the detection of the problem and from the detection until
    every host was safe again.
  - Per app and env - success rate (releases whose result is C(success), rollback runs not counted),
    median and p95 duration and hot window, releases with rolled back hosts and their reasons, median
    time to detection and to safe, over every release and over the last O(last).
  - The hot window, the time out of traffic, detection and recovery come from the release's report
    (C(<report_dir>/<release id>/facts.json), else its C(timeline.json), both written by the
    C(sre.rollout.release_report) callback);
    an entry whose report is gone still counts in the success rate and the durations, with those
    columns empty.
  - Detected is the first failed step of a host or the first canary interval judged C(fail); safe
    again is when the last host taken back after it was in its load balancers again; a host left out
    of traffic means never (C(still_out) in RV(history.releases)).
author:
  - sre.rollout maintainers (!UNKNOWN)
options:
  ledger_dir:
    description:
      - The ledger directory, C(rollout_ledger_dir) of the release role (C(<rollout_state_dir>/ledger)).
      - A directory that does not exist is an empty history.
    type: path
    required: true
  report_dir:
    description:
      - Where the release reports are (one sub-directory per release id); the page links each release
        to C(<release id>/report.html), so write it into this directory.
      - Default is C(reports) beside O(ledger_dir), where the callback writes them.
    type: path
  last:
    description:
      - How many of the newest releases of an app and env the trend figures cover.
    type: int
    default: 10
attributes:
  check_mode:
    support: full
    description: Read-only; the same history is computed in check mode.
  diff_mode:
    support: none
    description: Nothing changes, so there is no diff.
  idempotent:
    support: full
    description: C(changed) is always false; the same ledger gives the same history.
notes:
  - The C(sre.rollout.release_report) callback writes C(history.html) and C(history.json) into the report
    directory after every release too, so the page a report links to is never older than the last release.
seealso:
  - plugin: sre.rollout.release_report
    plugin_type: callback
    description: Writes each release's report and timeline, which the history reads.
"""

EXAMPLES = r"""
- name: Read the release history of the state directory
  sre.rollout.release_history:
    ledger_dir: .rollout/ledger
    last: 20
  register: rollout_history

- name: Write the page beside the reports
  ansible.builtin.copy:
    dest: .rollout/reports/history.html
    content: "{{ rollout_history.html }}"
    mode: "0644"

- name: Say the success rate of the first app and env
  ansible.builtin.debug:
    msg: "{{ rollout_history.history.groups[0].all.success_rate }}"
"""

RETURN = r"""
history:
  description: The history as data; C(history.json) holds it as it is.
  returned: always
  type: dict
  contains:
    ledger_dir:
      description: The ledger directory read.
      type: str
    last_n:
      description: O(last).
      type: int
    releases:
      description:
        - One dict per ledger entry, oldest first - C(release_id), C(app), C(env), C(mode) (release or
          rollback), C(artifact), C(result), C(started), C(finished), C(duration), C(hot_window),
          C(out_of_traffic_max), C(out_of_traffic_median) (seconds), C(planned), C(excluded), C(counts)
          (hosts per outcome), C(canary) (its verdict), C(rolled_back) (hosts), C(reason), C(to_detection),
          C(to_safe) (seconds or null), C(still_out), C(report) (the report's path relative to the report
          directory, or null), C(timeline) (whether the report's timeline was found).
      type: list
      elements: dict
    groups:
      description:
        - Per app and env - C(app), C(env), C(all) and C(last) (the figures over every release and the
          last C(last_n) - C(releases), C(succeeded), C(success_rate) (0 to 1), C(results), C(rollback_runs),
          C(duration_median), C(duration_p95), C(hot_window_median), C(hot_window_p95),
          C(to_detection_median), C(to_safe_median), C(to_safe_max), C(rolled_back_releases),
          C(rolled_back_hosts)), and C(rollbacks) (release id, mode, hosts, reason).
      type: list
      elements: dict
    problems:
      description: Ledger files that could not be read, and why; they are left out.
      type: list
      elements: str
  sample:
    ledger_dir: .rollout/ledger
    last_n: 10
    releases:
      - {release_id: app-1.1.0-20261202T051945Z, app: app, env: lab, mode: release, result: success,
         duration: 121.4, hot_window: 63.1, counts: {released: 6}}
    groups:
      - {app: app, env: lab, all: {releases: 6, succeeded: 3, success_rate: 0.5, duration_median: 120.0}}
    problems: []
html:
  description: The history page, self-contained HTML.
  returned: always
  type: str
releases:
  description: How many ledger entries the history holds.
  returned: always
  type: int
  sample: 8
summary:
  description: One line per app and env - releases, success rate, median duration.
  returned: always
  type: list
  elements: str
  sample: ["app in lab: 6 releases, 50% succeeded (3 of 6), median duration 2 min 00 s"]
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sre.rollout.plugins.module_utils import _history, _report

ARGUMENT_SPEC: dict[str, Any] = {
    "ledger_dir": {"type": "path", "required": True},
    "report_dir": {"type": "path"},
    "last": {"type": "int", "default": 10},
}


def run(params: dict[str, Any]) -> dict[str, Any]:
    if params["last"] < 1:
        raise ValueError(f"last={params['last']}: give the number of newest releases the trend covers, 1 or more")
    data = _history.history(params["ledger_dir"], params["report_dir"], last=params["last"])
    summary = []
    for group in data["groups"]:
        fig = group["all"]
        rate = _report.percent(fig["succeeded"], fig["releases"])
        summary.append(f"{group['app']} in {group['env']}: {fig['releases']} releases, {rate} succeeded "
                       f"({fig['succeeded']} of {fig['releases']}), median duration "
                       f"{_report.duration(fig['duration_median']) or '-'}")
    return {"changed": False, "history": data, "html": _history.render_html(data),
            "releases": len(data["releases"]), "summary": summary}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        module.exit_json(**run(module.params))
    except ValueError as exc:
        module.fail_json(msg=str(exc))


if __name__ == "__main__":
    main()
