"""After the whole suite: the history of every release this checkout's ledger holds, and a real report.

`make test` runs this file once the suite is done (SRE_ROLLOUT_AFTER_SUITE=1; during the suite it is
skipped, since the suite's releases are still writing the ledger). It runs the one command a user runs,
`ansible-playbook playbooks/history.yml` (sre.rollout.history), over the checkout's state directory
(.rollout: the releases of the suite and of earlier runs), then checks history.json against the
ledger files themselves, loads history.html and the newest report of a canary-analysed release in
headless Chromium, and writes their screenshots (.rollout/screenshots/; UPDATE_DOCS=1 also writes
docs/history.png and docs/report.png for the README).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

import chromium
from pages import check_report, parts

REPO = Path(__file__).resolve().parents[2]
STATE = REPO / ".rollout"
SHOTS = STATE / "screenshots"

pytestmark = pytest.mark.skipif(os.environ.get("SRE_ROLLOUT_AFTER_SUITE") != "1",
                                reason="runs after the suite (make test runs it last, SRE_ROLLOUT_AFTER_SUITE=1)")


def _epoch(text: str) -> float:
    stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)).timestamp()


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[math.ceil(0.95 * len(ordered)) - 1]


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> dict:
    inventory = tmp_path_factory.mktemp("inv") / "hosts.yml"
    inventory.write_text("all: {}\n")  # the history runs on the controller only
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), SRE_ROLLOUT_STATE_DIR=str(STATE))
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory),
                           str(REPO / "playbooks" / "history.yml")], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return json.loads((STATE / "reports" / "history.json").read_text())


def test_the_history_lists_every_release_of_the_ledger_with_its_figures(history):
    entries = [json.loads(p.read_text()) for p in sorted((STATE / "ledger").glob("*.json"))]
    assert entries, f"no ledger entry in {STATE / 'ledger'}: run the suite first"
    assert sorted(r["release_id"] for r in history["releases"]) == sorted(e["release_id"] for e in entries)
    assert history["problems"] == []
    for app_env in history["groups"]:
        mine = [e for e in entries if (e.get("app") or "-") == app_env["app"] and e.get("mode") != "rollback"
                and (", ".join(sorted({h["env"] for h in e["hosts"] if h.get("env")})) or "-") == app_env["env"]]
        durations = [_epoch(e["finished"]) - _epoch(e["started"]) for e in mine]
        fig = app_env["all"]
        assert fig["releases"] == len(mine) and fig["succeeded"] == sum(e["result"] == "success" for e in mine)
        if mine:
            assert fig["success_rate"] == pytest.approx(fig["succeeded"] / len(mine), abs=1e-4)
            assert fig["duration_median"] == pytest.approx(statistics.median(durations), abs=0.01)
            assert fig["duration_p95"] == pytest.approx(_p95(durations), abs=0.01)


def test_the_history_page_in_the_browser(history):
    page = chromium.load(STATE / "reports" / "history.html")
    assert page.errors == [] and page.console_errors == []
    assert sorted(parts(page.dom).releases) == sorted(r["release_id"] for r in history["releases"])
    assert page.scroll_width <= page.client_width
    _keep(chromium.screenshot(STATE / "reports" / "history.html", SHOTS / "history.png", height=1500), "history.png")


def test_a_real_report_of_the_suite_in_the_browser(history):
    """The newest report of a release whose canary Prometheus judged, written by this suite's callback."""
    analysed = [r for r in history["releases"] if r["report"] and r["canary"] in ("pass", "fail")
                and json.loads((STATE / "reports" / r["report"]).with_name("timeline.json").read_text())
                ["custom"].get("rollout_out_canary", {}).get("measurements")]
    assert analysed, "no release of the suite has a report with canary measurements"
    report = STATE / "reports" / analysed[-1]["report"]
    check_report(report, 1400)
    _keep(chromium.screenshot(report, SHOTS / "report.png", height=1700), "report.png")


def _keep(shot: Path, name: str) -> None:
    if os.environ.get("UPDATE_DOCS") == "1":
        (REPO / "docs").mkdir(exist_ok=True)
        shutil.copy(shot, REPO / "docs" / name)
