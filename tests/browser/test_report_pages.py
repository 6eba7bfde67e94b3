"""The release report and the history page in a real browser (headless Chromium).

Rendered from recorded lab releases (tests/unit/plugins/fixtures/releases: a canary rolled back for
serving 500s, a success, a batch host rolled back) by the same functions the release_report callback
writes them with. The pages written by this suite's own releases are checked after it, in
test_history_after_suite.py.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

import chromium
from pages import check_report, parts

from ansible_collections.sre.rollout.plugins.callback import release_report

FIXTURES = Path(__file__).resolve().parents[1] / "unit" / "plugins" / "fixtures" / "releases"
RELEASES = ("t-full-051058-3859", "t-errors-052414-3859", "t-halt-051726-3859")
SHOTS = Path(__file__).resolve().parents[2] / ".rollout" / "screenshots"


@pytest.fixture(scope="module")
def state(tmp_path_factory) -> Path:
    """A state directory as the callback leaves it: the ledger, each release's report, the history."""
    base = tmp_path_factory.mktemp("state")
    (base / "ledger").mkdir()
    for name in RELEASES:
        shutil.copy(FIXTURES / f"{name}.ledger.json", base / "ledger" / f"{name}.json")
        with gzip.open(FIXTURES / f"{name}.timeline.json.gz", "rt", encoding="utf-8") as f:
            timeline = json.load(f)
        (base / "reports" / name).mkdir(parents=True)
        (base / "reports" / name / "timeline.json").write_text(json.dumps(timeline))
        (base / "reports" / name / "report.html").write_text(release_report.render_html(timeline))
    release_report.write_history(base / "reports", base / "ledger")
    return base


def test_a_rolled_back_canary_in_the_browser(state):
    """At 1400 and 800 px, with a screenshot."""
    report = state / "reports" / "t-errors-052414-3859" / "report.html"
    page = check_report(report, 1400)
    assert "Failed: canary web01 fail" in page.dom and "hosts ok" not in page.dom
    check_report(report, 800)
    chromium.screenshot(report, SHOTS / "report-recorded.png", height=1700)


@pytest.mark.parametrize("name", ["t-full-051058-3859", "t-halt-051726-3859"])
def test_the_report_shows_every_host_and_step(state, name):
    check_report(state / "reports" / name / "report.html", 800)


def test_the_history_page_lists_every_release(state):
    history = state / "reports" / "history.html"
    page = chromium.load(history, width=800)
    assert page.errors == [] and page.console_errors == []
    assert sorted(parts(page.dom).releases) == sorted(RELEASES)
    assert "33% (1 of 3)" in page.dom
    assert page.scroll_width <= page.client_width


def test_a_javascript_error_would_be_seen(tmp_path):
    """The hook is not decoration: a page whose script throws is caught."""
    broken = tmp_path / "broken.html"
    broken.write_text("<!DOCTYPE html><html><head><title>x</title></head><body><p>x</p>"
                      "<script>undefinedFunction()</script></body></html>")
    page = chromium.load(broken)
    assert page.errors and "undefinedFunction" in page.errors[0]
