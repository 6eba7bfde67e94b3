"""Unit tests for module_utils/_history.py and the release_history module, on recorded lab releases."""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from ansible_collections.sre.rollout.plugins.module_utils import _history, _report
from ansible_collections.sre.rollout.plugins.modules import release_history

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "releases"
FULL, ERRORS, HALT = "t-full-051058-3859", "t-errors-052414-3859", "t-halt-051726-3859"


def state_dir(tmp_path: Path, names=(FULL, ERRORS, HALT), with_reports=True) -> Path:
    """A state directory as a controller leaves it: ledger/<id>.json and reports/<id>/{timeline.json,report.html}."""
    (tmp_path / "ledger").mkdir()
    for name in names:
        shutil.copy(FIXTURES / f"{name}.ledger.json", tmp_path / "ledger" / f"{name}.json")
        if with_reports:
            report = tmp_path / "reports" / name
            report.mkdir(parents=True)
            with gzip.open(FIXTURES / f"{name}.timeline.json.gz", "rt", encoding="utf-8") as f:
                (report / "timeline.json").write_text(f.read())
            (report / "report.html").write_text("<!DOCTYPE html>")
    return tmp_path


def ledger(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.ledger.json").read_text())


def test_one_row_per_ledger_entry_with_durations_from_the_ledger(tmp_path):
    rows = _history.load(state_dir(tmp_path) / "ledger")
    assert [r["release_id"] for r in rows] == [FULL, HALT, ERRORS]  # oldest first
    for row in rows:
        entry = ledger(row["release_id"])
        expected = _report.parse_time(entry["finished"]) - _report.parse_time(entry["started"])
        assert row["duration"] == pytest.approx(expected, abs=0.001)
        assert row["report"] == f"{row['release_id']}/report.html" and row["timeline"]
        assert row["hot_window"] > 0 and row["out_of_traffic_max"] > 0
    full, halt, errors = rows
    assert full["result"] == "success" and full["to_detection"] is None and full["reason"] == ""
    assert full["counts"] == {"released": 6} and full["planned"] == 6
    assert errors["result"] == "failed" and errors["rolled_back"] == ["web01"] and errors["canary"] == "fail"
    assert errors["reason"].startswith("canary web01 fail")
    assert halt["rolled_back"] == ["web02"] and "injected failure" in halt["reason"]


def test_detection_is_the_first_failing_interval_or_step_and_safe_is_when_the_last_host_is_back(tmp_path):
    rows = {r["release_id"]: r for r in _history.load(state_dir(tmp_path) / "ledger")}
    entry = ledger(ERRORS)
    first_fail = min(_report.parse_time(m["time"]) for m in entry["canary"]["measurements"] if m["outcome"] == "fail")
    assert rows[ERRORS]["to_detection"] == pytest.approx(first_fail - _report.parse_time(entry["started"]), abs=0.01)
    assert 0 < rows[ERRORS]["to_safe"] < 120 and not rows[ERRORS]["still_out"]
    assert 0 < rows[HALT]["to_detection"] < rows[HALT]["duration"] and rows[HALT]["to_safe"] > 0


def test_the_figures_per_app_and_env(tmp_path):
    data = _history.history(state_dir(tmp_path) / "ledger", last=2)
    [group] = data["groups"]
    assert (group["app"], group["env"]) == ("app", "-")  # these entries predate the env in host records
    rows = data["releases"]
    fig = group["all"]
    assert fig["releases"] == 3 and fig["succeeded"] == 1 and fig["success_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert fig["duration_median"] == _report.median(r["duration"] for r in rows)
    assert fig["duration_p95"] == max(r["duration"] for r in rows)
    assert fig["rolled_back_releases"] == 2 and fig["rolled_back_hosts"] == 2
    assert fig["to_detection_median"] == _report.median([rows[1]["to_detection"], rows[2]["to_detection"]])
    assert group["last"]["releases"] == 2 and group["last"]["succeeded"] == 0
    assert [r["release_id"] for r in group["rollbacks"]] == [HALT, ERRORS]
    assert data["problems"] == []


def test_an_entry_without_its_report_still_counts(tmp_path):
    rows = _history.load(state_dir(tmp_path, with_reports=False) / "ledger")
    assert len(rows) == 3 and all(r["duration"] for r in rows)
    assert all(r["hot_window"] is None and r["report"] is None for r in rows)
    errors = next(r for r in rows if r["release_id"] == ERRORS)
    assert errors["to_detection"] > 0 and errors["to_safe"] is None  # the canary's interval times are in the ledger


def test_unreadable_files_are_named_and_left_out(tmp_path):
    base = state_dir(tmp_path, names=(FULL,))
    (base / "ledger" / "broken.json").write_text("{")
    (base / "ledger" / "other.json").write_text('{"something": 1}')
    data = _history.history(base / "ledger")
    assert len(data["releases"]) == 1 and len(data["problems"]) == 2
    assert "not a ledger entry" in " ".join(data["problems"])
    assert _history.history(tmp_path / "nowhere")["releases"] == []


def test_the_page_lists_every_release_and_links_its_report(tmp_path):
    data = _history.history(state_dir(tmp_path) / "ledger")
    page = _history.render_html(data)
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page and "http" not in page
    assert re.findall(r'<tr class="release" data-release="([^"]+)"', page) == [ERRORS, HALT, FULL]  # newest first
    assert f'<a href="{FULL}/report.html">' in page
    assert "33% (1 of 3)" in page and page.count('class="release"') >= 3
    assert '<svg class="trend"' in page


def test_the_module_returns_the_history_and_the_page(tmp_path):
    base = state_dir(tmp_path)
    result = release_history.run({"ledger_dir": str(base / "ledger"), "report_dir": None, "last": 10})
    assert result["changed"] is False and result["releases"] == 3
    assert result["summary"] == [f"app in -: 3 releases, 33% succeeded (1 of 3), median duration "
                                 f"{_report.duration(result['history']['groups'][0]['all']['duration_median'])}"]
    assert result["html"] == _history.render_html(result["history"])
    with pytest.raises(ValueError, match="last=0"):
        release_history.run({"ledger_dir": str(base / "ledger"), "report_dir": None, "last": 0})


def test_the_facts_the_callback_wrote_give_the_same_rows_as_the_timelines(tmp_path):
    base = state_dir(tmp_path)
    from_timelines = _history.load(base / "ledger")
    for name in (FULL, ERRORS, HALT):
        timeline = json.loads((base / "reports" / name / "timeline.json").read_text())
        facts = _report.swap_facts(timeline, timeline["custom"]["rollout_out_plan"])
        (base / "reports" / name / _history.FACTS_FILE).write_text(json.dumps(facts))
        (base / "reports" / name / "timeline.json").unlink()  # the facts are enough
    assert _history.load(base / "ledger") == from_timelines
    stale = base / "reports" / FULL
    (stale / "timeline.json").write_text("{}")  # rewritten after the facts: they are stale, the timeline wins
    os.utime(stale / _history.FACTS_FILE, (1, 1))
    assert _history.load(base / "ledger")[0]["hot_window"] is None
