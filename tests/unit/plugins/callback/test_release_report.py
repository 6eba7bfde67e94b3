"""Unit tests for the release_report callback.

Most tests drive the callback methods with fake plays, tasks and results, the
way Ansible's task queue manager calls them. The last tests run real playbooks
(ansible-playbook and ansible-runner) on localhost with the callback enabled.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible import constants as C

from ansible_collections.sre.rollout.plugins.callback import release_report
from ansible_collections.sre.rollout.plugins.callback.release_report import (
    NO_LOG_MSG,
    CallbackModule,
    build_timeline,
    failure_message,
    normalize_host_outcomes,
    render_html,
    safe_release_id,
)

REPO = Path(__file__).resolve().parents[4]
PLUGIN = "sre.rollout.release_report"


# --------------------------------------------------------------------------- fakes


class FakeDisplay:
    verbosity = 0

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def display(self, msg: str, *args, **kwargs) -> None:
        self.lines.append(("display", msg))

    def warning(self, msg: str, *args, **kwargs) -> None:
        self.lines.append(("warning", msg))

    def v(self, msg: str, *args, **kwargs) -> None:
        self.lines.append(("v", msg))

    vv = vvv = vvvv = v

    def of(self, kind: str) -> list[str]:
        return [msg for k, msg in self.lines if k == kind]


class Named:
    def __init__(self, name: str) -> None:
        self.name = name

    def get_name(self) -> str:
        return self.name


class FakeTask(Named):
    def __init__(self, name: str, uuid: str, action: str = "ansible.builtin.command", role: str | None = None):
        super().__init__(name)
        self._uuid = uuid
        self.action = action
        self._role = Named(role) if role else None
        self.delegate_to = None

    def get_name(self) -> str:  # like Task.get_name(): the role first
        return f"{self._role.get_name()} : {self.name}" if self._role else self.name


class FakeVariableManager:
    def __init__(self, extra_vars: dict) -> None:
        self.extra_vars = extra_vars


class FakePlay(Named):
    def __init__(self, name: str, uuid: str, extra_vars: dict | None = None) -> None:
        super().__init__(name)
        self._uuid = uuid
        self._vm = FakeVariableManager(extra_vars or {})

    def get_variable_manager(self) -> FakeVariableManager:
        return self._vm


class FakeResult:
    def __init__(self, host: str, task: FakeTask, result: dict) -> None:
        self._host = Named(host)
        self._task = task
        self._result = result


class FakeStats:
    def __init__(self, counts: dict[str, dict[str, int]], custom: dict | None = None) -> None:
        self.processed = {host: 1 for host in counts}
        self.counts = counts
        self.custom = custom or {}

    def summarize(self, host: str) -> dict[str, int]:
        base = dict(ok=0, failures=0, unreachable=0, changed=0, skipped=0, rescued=0, ignored=0)
        base.update(self.counts[host])
        return base


class FakePlaybook:
    def __init__(self, path: str) -> None:
        self._file_name = path


@pytest.fixture(scope="module", autouse=True)
def plugin_config_definitions():
    """Register the callback's options the way the plugin loader does when it loads it."""
    options = yaml.safe_load(release_report.DOCUMENTATION)["options"]
    C.config.initialize_plugin_configuration_definitions("callback", PLUGIN, options)


@pytest.fixture(autouse=True)
def elsewhere(tmp_path, monkeypatch):
    """Run where no state directory is: the default one (./.rollout) is the checkout's, which make test fills."""
    monkeypatch.chdir(tmp_path)


def make_callback(report_dir: Path | None, **direct: Any) -> CallbackModule:
    callback = CallbackModule(display=FakeDisplay())
    callback._load_name = PLUGIN
    if report_dir is not None:
        direct["report_dir"] = str(report_dir)
    callback.set_options(direct=direct)
    return callback


def host_task(callback: CallbackModule, host: str, task: FakeTask, status: str, result: dict | None = None,
              ignore_errors: bool = False) -> None:
    callback.v2_runner_on_start(Named(host), task)
    fake = FakeResult(host, task, result or {})
    if status == "ok":
        callback.v2_runner_on_ok(fake)
    elif status == "failed":
        callback.v2_runner_on_failed(fake, ignore_errors=ignore_errors)
    elif status == "skipped":
        callback.v2_runner_on_skipped(fake)
    else:
        callback.v2_runner_on_unreachable(fake)


PLAN = {"canary": ["web01"], "batches": [["web02", "web03"]], "serial": [2],
        "order": ["web01", "web02", "web03"], "excluded": [{"host": "web04", "reason": "unreachable <ssh>"}],
        "pool_size": 4, "batch_size": 1, "min_ready": 1,
        "zones": {"zone-a": ["web01", "web04"], "zone-b": ["web02"], "zone-c": ["web03"]}}


def drive_release(callback: CallbackModule, custom: dict | None = None, extra_vars: dict | None = None,
                  web03_fails: bool = True, playbook: str = "/x/playbooks/release.yml") -> FakeStats:
    """A canary play then a serial play over two batches; web03 is rolled back when it fails."""
    callback.v2_playbook_on_start(FakePlaybook(playbook))
    swap = FakeTask("activate <artifact> & restart", "t-activate", "sre.rollout.app_release", role="host_swap")
    health = FakeTask("wait healthy", "t-health", "sre.rollout.wait_healthy", role="host_swap")
    restore = FakeTask("restore previous", "t-restore", "sre.rollout.app_release", role="host_swap")
    secret = FakeTask("create silence", "t-secret", "sre.rollout.alertmanager_silence", role="host_swap")

    callback.v2_playbook_on_play_start(FakePlay("canary", "p-canary", extra_vars))
    for task in (swap, health):
        callback.v2_playbook_on_task_start(task, False)
        host_task(callback, "web01", task, "ok", {"changed": task is swap})

    rollout = FakePlay("rollout", "p-rollout", extra_vars)
    for batch in (["web02"], ["web03"]):
        callback.v2_playbook_on_play_start(rollout)  # Ansible starts the play again per batch
        callback.v2_playbook_on_task_start(secret, False)
        for host in batch:
            host_task(callback, host, secret, "ok", {"changed": True, "censored": "hidden", "_ansible_no_log": True})
        callback.v2_playbook_on_task_start(swap, False)
        for host in batch:
            host_task(callback, host, swap, "ok", {"changed": True})
        callback.v2_playbook_on_task_start(health, False)
        for host in batch:
            if host == "web03" and web03_fails:
                host_task(callback, host, health, "failed", {"msg": "/health answered 503 <5 times>"})
                callback.v2_playbook_on_task_start(restore, False)
                host_task(callback, host, restore, "ok", {"changed": True})
            else:
                host_task(callback, host, health, "ok", {})
    counts = {"web01": {"ok": 2, "changed": 1}, "web02": {"ok": 3, "changed": 2},
              "web03": ({"ok": 3, "changed": 2, "failures": 1, "rescued": 1} if web03_fails
                        else {"ok": 3, "changed": 2})}
    stats = FakeStats(counts, custom)
    callback.v2_playbook_on_stats(stats)
    return stats


def read_timeline(report_dir: Path, release_id: str) -> dict:
    return json.loads((report_dir / release_id / "timeline.json").read_text())


# --------------------------------------------------------------------------- options


def test_report_dir_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SRE_ROLLOUT_REPORT_DIR", str(tmp_path / "from-env"))
    callback = make_callback(None)
    assert callback.get_option("report_dir") == str(tmp_path / "from-env")
    assert callback.get_option("require_release_id") is True


def test_documented_option_sources():
    options = yaml.safe_load(release_report.DOCUMENTATION)["options"]
    # no fixed default: reports go where the playbooks keep their state (rollout_state_dir)
    assert "default" not in options["report_dir"]
    assert options["state_dir"]["env"] == [{"name": "SRE_ROLLOUT_STATE_DIR"}]
    assert options["state_dir"]["ini"] == [{"section": "callback_release_report", "key": "state_dir"}]
    assert options["report_dir"]["env"] == [{"name": "SRE_ROLLOUT_REPORT_DIR"}]
    assert options["report_dir"]["ini"] == [{"section": "callback_release_report", "key": "report_dir"}]
    assert options["require_release_id"]["default"] is True


def test_state_dir_is_the_option_then_the_playbooks_output_then_the_extra_var_then_cwd():
    assert release_report.state_dir_of("/opt/s", {"rollout_out_state_dir": "/x"}, {}) == Path("/opt/s")
    assert release_report.state_dir_of(None, {"rollout_out_state_dir": "/x"},
                                       {"rollout_state_dir": "/y"}) == Path("/x")
    assert release_report.state_dir_of(None, {}, {"rollout_out_state_dir": "/z", "rollout_state_dir": "/y"}) \
        == Path("/z")
    assert release_report.state_dir_of(None, {}, {"rollout_state_dir": "~/y"}) == Path("~/y").expanduser()
    assert release_report.state_dir_of(None, {}, {}) == Path(".rollout")


def test_reports_follow_the_state_dir_the_playbooks_report(tmp_path):
    callback = make_callback(None)
    state = tmp_path / "state"
    drive_release(callback, {"_run": {"rollout_out_release_id": "rel-s", "rollout_out_state_dir": str(state),
                                      "rollout_out_result": "success", "rollout_out_plan": PLAN}})
    assert callback._display.of("warning") == [], callback._display.of("display")
    timeline = read_timeline(state / "reports", "rel-s")
    assert (timeline["release_id"], timeline["result"]) == ("rel-s", "success")
    assert (state / "reports" / "rel-s" / "report.html").is_file()


def test_require_release_id_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SRE_ROLLOUT_REPORT_REQUIRE_RELEASE_ID", "false")
    assert make_callback(tmp_path).get_option("require_release_id") is False


def test_callback_metadata():
    assert CallbackModule.CALLBACK_TYPE == "aggregate"
    assert CallbackModule.CALLBACK_NEEDS_ENABLED is True
    assert CallbackModule.CALLBACK_NAME == PLUGIN


# --------------------------------------------------------------------------- recording


def test_release_writes_timeline_and_report(tmp_path):
    callback = make_callback(tmp_path)
    custom = {"_run": {"rollout_release_id": "rel-1", "rollout_app": "app", "rollout_version": "1.1.0",
                       "rollout_plan": PLAN, "rollout_operator": "alice", "rollout_checker": "bob",
                       "rollout_canary": {"verdict": "pass", "error_rate": {"canary": 0.0, "baseline": 0.002}},
                       "rollout_hosts": {"web01": {"outcome": "released"}, "web02": {"outcome": "released"},
                                         "web03": {"outcome": "rolled_back",
                                                   "reason": "wait healthy: /health 503"}}}}
    drive_release(callback, custom)

    timeline = read_timeline(tmp_path, "rel-1")
    assert timeline["release_id"] == "rel-1"
    assert timeline["result"] == "failed"  # the judge's word, as in the ledger; the rollback is listed below
    assert (timeline["app"], timeline["version"]) == ("app", "1.1.0")
    assert (timeline["operator"], timeline["checker"]) == ("alice", "bob")
    assert timeline["custom"]["rollout_plan"] == PLAN
    assert timeline["custom"]["rollout_canary"]["verdict"] == "pass"
    assert timeline["stats"]["web03"]["rescued"] == 1
    assert timeline["host_status"] == {"web01": "ok", "web02": "ok", "web03": "rolled_back"}
    assert timeline["rollbacks"] == [{"host": "web03", "outcome": "rolled_back",
                                      "reason": "wait healthy: /health 503"}]
    assert len(timeline["runs"]) == 1 and timeline["runs"][0]["playbooks"] == ["release.yml"]
    assert (tmp_path / "rel-1" / "report.html").is_file()
    assert callback._display.of("display") == [f"release report: {tmp_path / 'rel-1' / 'report.html'}",
                                               f"release timeline: {tmp_path / 'rel-1' / 'timeline.json'}"]
    assert callback._display.of("warning") == []


def test_events_are_per_host_and_task_with_timing_role_play_and_status(tmp_path):
    callback = make_callback(tmp_path)
    drive_release(callback, {"_run": {"rollout_release_id": "rel-2"}})
    events = read_timeline(tmp_path, "rel-2")["events"]

    web03 = [e for e in events if e["host"] == "web03"]
    assert [(e["task"], e["status"]) for e in web03] == [
        ("create silence", "ok"), ("activate <artifact> & restart", "ok"),
        ("wait healthy", "failed"), ("restore previous", "ok")]
    failed = web03[2]
    assert failed["msg"] == "/health answered 503 <5 times>"
    assert failed["ignored"] is False
    assert failed["play"] == "rollout" and failed["role"] == "host_swap"
    assert failed["action"] == "sre.rollout.wait_healthy"
    for event in events:
        assert event["t_end"] >= event["t_start"]
        assert event["duration"] == pytest.approx(event["t_end"] - event["t_start"], abs=0.002)
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", event["start"])
    assert [e["changed"] for e in events if e["host"] == "web01"] == [True, False]
    assert len(events) == 2 + 3 + 4


def test_no_log_results_leave_no_output_in_the_timeline(tmp_path):
    callback = make_callback(tmp_path)
    task = FakeTask("token call", "t-1")
    callback.v2_playbook_on_play_start(FakePlay("p", "p-1"))
    callback.v2_playbook_on_task_start(task, False)
    host_task(callback, "web01", task, "failed", {"censored": "the output has been hidden", "msg": "token=s3cret"})
    host_task(callback, "web02", task, "failed", {"_ansible_no_log": True, "msg": "token=s3cret"})
    callback.v2_playbook_on_stats(FakeStats({"web01": {"failures": 1}, "web02": {"failures": 1}},
                                            {"_run": {"rollout_release_id": "rel-nolog"}}))
    text = (tmp_path / "rel-nolog" / "timeline.json").read_text()
    assert "s3cret" not in text
    assert "s3cret" not in (tmp_path / "rel-nolog" / "report.html").read_text()
    assert [e["msg"] for e in json.loads(text)["events"]] == [NO_LOG_MSG, NO_LOG_MSG]


def test_serial_batches_are_timed_per_play(tmp_path):
    callback = make_callback(tmp_path)
    drive_release(callback, {"_run": {"rollout_release_id": "rel-3"}})
    batches = read_timeline(tmp_path, "rel-3")["batches"]
    assert [(b["play"], b["batch"], b["hosts"]) for b in batches] == [
        ("canary", 1, ["web01"]), ("rollout", 1, ["web02"]), ("rollout", 2, ["web03"])]
    for batch in batches:
        assert batch["duration"] == pytest.approx(batch["t_end"] - batch["t_start"], abs=0.002)
    web03 = [e for e in read_timeline(tmp_path, "rel-3")["events"] if e["host"] == "web03"]
    assert {e["batch"] for e in web03} == {2}


def test_unreachable_and_ignored_failures_are_recorded(tmp_path):
    callback = make_callback(tmp_path)
    task = FakeTask("ping", "t-ping", "ansible.builtin.ping")
    callback.v2_playbook_on_play_start(FakePlay("p", "p-1"))
    callback.v2_playbook_on_task_start(task, False)
    host_task(callback, "web05", task, "unreachable", {"msg": "ssh: connect to host 127.0.16.5 port 2222"})
    host_task(callback, "web06", task, "failed", {"msg": "meh"}, ignore_errors=True)
    callback.v2_playbook_on_stats(FakeStats({"web05": {"unreachable": 1}, "web06": {"ignored": 1}},
                                            {"_run": {"rollout_release_id": "rel-4"}}))
    timeline = read_timeline(tmp_path, "rel-4")
    by_host = {e["host"]: e for e in timeline["events"]}
    assert by_host["web05"]["status"] == "unreachable"
    assert "port 2222" in by_host["web05"]["msg"]
    assert by_host["web06"]["ignored"] is True
    assert timeline["result"] == "failed"
    assert timeline["host_status"] == {"web05": "unreachable", "web06": "ok"}


def test_a_result_without_a_start_event_still_gets_a_zero_duration(tmp_path):
    callback = make_callback(tmp_path)
    task = FakeTask("late", "t-late")
    callback.v2_playbook_on_play_start(FakePlay("p", "p-1"))
    callback.v2_runner_on_ok(FakeResult("web01", task, {"changed": False}))  # task_start never seen
    callback.v2_playbook_on_stats(FakeStats({"web01": {"ok": 1}}, {"_run": {"rollout_release_id": "rel-5"}}))
    [event] = read_timeline(tmp_path, "rel-5")["events"]
    assert event["task"] == "late" and event["duration"] == 0.0 and event["play"] == "p"


# --------------------------------------------------------------------------- release id


def test_release_id_from_extra_vars_when_set_stats_has_none(tmp_path):
    callback = make_callback(tmp_path)
    drive_release(callback, {}, extra_vars={"rollout_release_id": "from-extra", "rollout_version": "1.1.0",
                                            "unrelated": "x"})
    timeline = read_timeline(tmp_path, "from-extra")
    assert timeline["version"] == "1.1.0"
    assert timeline["runs"][0]["extra_vars"] == {"rollout_release_id": "from-extra", "rollout_version": "1.1.0"}


def test_set_stats_release_id_wins_over_extra_vars(tmp_path):
    callback = make_callback(tmp_path)
    drive_release(callback, {"_run": {"rollout_release_id": "from-stats"}},
                  extra_vars={"rollout_release_id": "from-extra"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["from-stats"]


def test_per_host_set_stats_release_id_is_used(tmp_path):
    callback = make_callback(tmp_path)
    drive_release(callback, {"web01": {"rollout_release_id": "per-host"}})
    assert read_timeline(tmp_path, "per-host")["custom_per_host"] == {"web01": {"rollout_release_id": "per-host"}}


def test_no_release_id_writes_nothing_by_default(tmp_path):
    callback = make_callback(tmp_path)
    drive_release(callback, {})
    assert list(tmp_path.iterdir()) == []
    assert any("no rollout_release_id" in msg for msg in callback._display.of("v"))
    assert callback._display.of("display") == []


def test_no_release_id_gets_a_run_id_when_not_required(tmp_path):
    callback = make_callback(tmp_path, require_release_id=False)
    drive_release(callback, {})
    [release_dir] = list(tmp_path.iterdir())
    assert re.match(r"run-\d{8}T\d{6}Z$", release_dir.name)
    assert (release_dir / "report.html").is_file()


def test_unsafe_release_id_is_stored_under_a_safe_name_with_a_warning(tmp_path):
    callback = make_callback(tmp_path)
    drive_release(callback, {"_run": {"rollout_release_id": "../../etc/rel 7"}})
    assert [p.name for p in tmp_path.iterdir()] == ["_.._etc_rel_7"]
    assert any("stored as '_.._etc_rel_7'" in w for w in callback._display.of("warning"))


def test_release_id_with_nothing_usable_is_a_warning_and_no_report(tmp_path):
    callback = make_callback(tmp_path)
    drive_release(callback, {"_run": {"rollout_release_id": "..."}})
    assert list(tmp_path.iterdir()) == []
    assert any("not usable as a directory name" in w for w in callback._display.of("warning"))


@pytest.mark.parametrize("raw, safe", [("rel-2024.1_a", "rel-2024.1_a"), ("a/b", "a_b"), (".hidden", "hidden"),
                                       ("app-1.1.0:20240101+1", "app-1.1.0:20240101+1"),
                                       ("  r 1 ", "r_1"), ("x" * 300, "x" * 128)])
def test_safe_release_id(raw, safe):
    assert safe_release_id(raw) == safe


# --------------------------------------------------------------------------- I/O trouble


def test_unwritable_report_dir_is_a_warning_not_an_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    callback = make_callback(blocker)
    drive_release(callback, {"_run": {"rollout_release_id": "rel-io"}})
    [warning] = callback._display.of("warning")
    assert "cannot write the report under" in warning and "SRE_ROLLOUT_REPORT_DIR" in warning
    assert callback._display.of("display") == []


def test_unreadable_earlier_run_is_skipped_with_a_warning(tmp_path):
    (tmp_path / "rel-c" / "runs").mkdir(parents=True)
    (tmp_path / "rel-c" / "runs" / "00000000T000000Z-1-000.json").write_text("{not json")
    callback = make_callback(tmp_path)
    drive_release(callback, {"_run": {"rollout_release_id": "rel-c"}})
    assert len(read_timeline(tmp_path, "rel-c")["runs"]) == 1
    assert any("skipping unreadable run file" in w for w in callback._display.of("warning"))


def test_any_error_while_reporting_is_a_warning(tmp_path):
    class BrokenStats(FakeStats):
        def summarize(self, host):
            raise RuntimeError("boom")

    callback = make_callback(tmp_path)
    callback.v2_playbook_on_stats(BrokenStats({"web01": {}}, {"_run": {"rollout_release_id": "rel-x"}}))
    [warning] = callback._display.of("warning")
    assert "could not write the release report: boom" in warning


# --------------------------------------------------------------------------- several runs, result


def test_runs_of_the_same_release_are_merged(tmp_path):
    first = make_callback(tmp_path)
    drive_release(first, {"_run": {"rollout_release_id": "rel-m", "rollout_plan": PLAN, "rollout_app": "app"}},
                  playbook="/p/canary.yml", web03_fails=False)
    second = make_callback(tmp_path)
    drive_release(second, {"_run": {"rollout_release_id": "rel-m", "rollout_operator": "carol"}},
                  playbook="/p/rollout.yml", web03_fails=False)

    timeline = read_timeline(tmp_path, "rel-m")
    assert [r["playbooks"] for r in timeline["runs"]] == [["canary.yml"], ["rollout.yml"]]
    assert timeline["custom"]["rollout_plan"] == PLAN
    assert (timeline["app"], timeline["operator"]) == ("app", "carol")
    assert len(timeline["events"]) == 2 * 8
    assert timeline["stats"]["web01"]["ok"] == 4
    assert timeline["result"] == "success"
    assert len(list((tmp_path / "rel-m" / "runs").glob("*.json"))) == 2


def test_a_failed_run_resumed_by_a_successful_rerun_is_a_success(tmp_path):
    make_and_drive = [(True, "failed"), (False, "success")]
    for web03_fails, expected in make_and_drive:
        drive_release(make_callback(tmp_path), {"_run": {"rollout_release_id": "rel-r"}}, web03_fails=web03_fails)
        assert read_timeline(tmp_path, "rel-r")["result"] == expected
    # The rollback of the first run stays in the record.
    assert [r["host"] for r in read_timeline(tmp_path, "rel-r")["rollbacks"]] == ["web03"]


def test_result_rules():
    def run(playbook: str, stats: dict, start: float) -> dict:
        return {"run_id": str(start), "playbooks": [playbook], "t_start": start, "t_end": start + 1,
                "stats": stats, "events": [], "custom": {}}

    ok = {"web01": {"ok": 1}}
    failed = {"web01": {"failures": 1}}
    rescued = {"web01": {"failures": 1, "rescued": 1}}
    assert build_timeline("r", [run("release.yml", ok, 1)])["result"] == "success"
    assert build_timeline("r", [run("release.yml", failed, 1)])["result"] == "failed"
    assert build_timeline("r", [run("release.yml", rescued, 1)])["result"] == "failed"
    assert build_timeline("r", [run("rollback.yml", ok, 1)])["result"] == "success"
    assert build_timeline("r", [run("canary.yml", failed, 1), run("finalize.yml", ok, 2)])["result"] == "failed"
    explicit = run("release.yml", ok, 1)
    explicit["custom"] = {"rollout_result": "paused"}
    assert build_timeline("r", [explicit])["result"] == "paused"
    explicit["custom"] = {"rollout_result": "failed"}
    assert build_timeline("r", [explicit])["result"] == "failed"
    explicit["custom"] = {"rollout_result": "failed", "rollout_hosts": [{"host": "web01", "outcome": "rolled_back"}]}
    assert build_timeline("r", [explicit])["result"] == "failed"  # what the role judged, as it is


def test_rollback_reason_from_the_playbooks_host_outcomes():
    hosts = [{"host": "web01", "outcome": "released", "failure": None},
             {"host": "web02", "outcome": "rolled_back", "failure": {"msg": "/health never 200", "step": "wait"}},
             {"host": "web03", "outcome": "rolled_back", "failure": "drain timed out"},
             {"host": "web04", "outcome": "rolled_back", "failure": None}]
    run = {"run_id": "1", "playbooks": ["release.yml"], "t_start": 1.0, "t_end": 2.0, "stats": {},
           "custom": {"rollout_hosts": hosts},
           "events": [{"host": "web04", "status": "failed", "task": "Swap | start", "msg": "rc 1", "t_start": 1.5}]}
    assert build_timeline("r", [run])["rollbacks"] == [
        {"host": "web02", "outcome": "rolled_back", "reason": "/health never 200"},
        {"host": "web03", "outcome": "rolled_back", "reason": "drain timed out"},
        {"host": "web04", "outcome": "rolled_back", "reason": "Swap | start: rc 1"}]


def test_rollbacks_are_the_outcomes_the_role_recorded_never_guessed_from_words():
    hosts = [{"host": "web01", "outcome": "released", "failure": {"msg": "restored the config first"}},
             {"host": "web02", "outcome": "not touched"},
             {"host": "web03", "outcome": "rollback pending"},  # not an outcome name: not a rollback
             {"host": "web04", "outcome": "rolled_back", "failure": {"msg": "/health 503"}}]
    run = {"run_id": "1", "playbooks": ["release.yml"], "t_start": 1.0, "t_end": 2.0,
           "stats": {"web01": {"ok": 1, "rescued": 1}, "web04": {"ok": 1}, "web05": {"ok": 1, "rescued": 1}},
           "custom": {"rollout_out_hosts": hosts, "rollout_out_result": "failed"}, "events": []}
    timeline = build_timeline("r", [run])
    # web01 recorded released: its rescue was not a rollback; web05 recorded nothing: its rescue is listed as such
    assert timeline["rollbacks"] == [{"host": "web04", "outcome": "rolled_back", "reason": "/health 503"},
                                     {"host": "web05", "outcome": "rescued", "reason": "a rescue block ran"}]
    assert timeline["result"] == "failed"


@pytest.mark.parametrize("custom, stats, playbook, expected", [
    ({"rollout_out_result": "paused"}, {"web01": {"failures": 1}}, "release.yml", "paused"),  # as the role judged
    ({"rollout_out_result": "success"}, {"web01": {"rescued": 1}}, "release.yml", "success"),
    ({"rollout_out_hosts": [{"host": "web01", "outcome": "timed_out"}]}, {"web01": {"ok": 1}}, "canary.yml", "failed"),
    ({"rollout_out_hosts": [{"host": "web01", "outcome": "rolled_back"}]}, {"web01": {"ok": 1}}, "rollback.yml",
     "success"),
    ({"rollout_out_hosts": [{"host": "web01", "outcome": "released", "lock": "held"}]}, {"web01": {"ok": 1}},
     "release.yml", "failed"),
])
def test_a_run_the_role_did_not_judge_is_judged_by_the_same_verdict(custom, stats, playbook, expected):
    run = {"run_id": "1", "playbooks": [playbook], "t_start": 1.0, "t_end": 2.0, "stats": stats, "custom": custom,
           "events": []}
    assert build_timeline("r", [run])["result"] == expected


@pytest.mark.parametrize("status, css", [("released", "ok"), ("skipped", "ok"), ("rolled_back", "rolled-back"),
                                         ("rescued", "rescued"), ("timed_out", "failed"), ("unreachable", "unreachable"),
                                         ("failed", "failed"), ("success", "success"), ("paused", "paused"),
                                         ("rollback pending", "other"), ("restored", "other")])
def test_badges_follow_the_outcome_names(status, css):
    assert release_report._css_class(status) == css


@pytest.mark.parametrize("value, expected", [
    ({"web01": "released", "web02": {"status": "rolled back", "reason": "x"}},
     {"web01": {"outcome": "released"}, "web02": {"status": "rolled back", "reason": "x", "outcome": "rolled back"}}),
    ([{"host": "web01", "outcome": "ok"}, {"name": "web02", "result": "failed"}, {"outcome": "no host"}, "junk"],
     {"web01": {"host": "web01", "outcome": "ok"},
      "web02": {"name": "web02", "result": "failed", "outcome": "failed"}}),
    ("not hosts", {}), (None, {}),
])
def test_normalize_host_outcomes(value, expected):
    assert normalize_host_outcomes(value) == expected


# --------------------------------------------------------------------------- failure messages


def test_failure_message_keeps_msg_stderr_and_failed_items():
    result = {"msg": "One or more items failed", "results": [
        {"item": "web01", "failed": False, "msg": "fine"},
        {"item": "web02", "failed": True, "msg": "HTTP 503"},
        {"item": "token", "failed": True, "_ansible_no_log": True, "msg": "secret"}]}
    message = failure_message(result)
    assert message.splitlines() == ["One or more items failed", "item 'web02': HTTP 503", f"item: {NO_LOG_MSG}"]
    assert failure_message({"rc": 3}) == "exit code 3"
    assert failure_message({}) == "failed (no message)"
    assert failure_message({"msg": "m", "stderr": "e"}) == "m\ne"
    long = failure_message({"msg": "x" * 5000})
    assert len(long) < 4100 and long.endswith("(1000 more characters)")


# --------------------------------------------------------------------------- HTML


def test_report_page_shows_every_section_and_escapes_everything(tmp_path):
    callback = make_callback(tmp_path)
    custom = {"_run": {"rollout_release_id": "rel-h", "rollout_app": "<b>app</b>", "rollout_version": "1.1.0",
                       "rollout_plan": PLAN, "rollout_operator": "alice & co", "rollout_checker": "bob",
                       "rollout_canary": {"verdict": "pass", "measurements": {"error_rate": 0.0013,
                                                                              "p99_ms": 41.5}},
                       "rollout_hosts": {"web03": {"outcome": "rolled_back",
                                                   "reason": "<script>alert('x')</script>"}}}}
    drive_release(callback, custom)
    page = (tmp_path / "rel-h" / "report.html").read_text()

    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page and "<b>app</b>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "&lt;b&gt;app&lt;/b&gt;" in page and "alice &amp; co" in page
    assert "activate &lt;artifact&gt; &amp; restart" in page
    for heading in ("Summary", "Plan", "Canary", "Rollbacks", "Failed tasks", "Hosts", "Batches",
                    "Per-host timeline"):
        assert f"<h2>{heading}</h2>" in page
    assert "<title>Release rel-h: failed</title>" in page
    assert "unreachable &lt;ssh&gt;" in page                       # excluded host and its reason
    assert "<td>batch 1</td>" in page and "zone-b, zone-c" in page  # plan table
    assert "0.0013" in page and "41.5" in page                     # canary numbers
    assert "/health answered 503 &lt;5 times&gt;" in page           # failed task message
    assert page.count("<details") >= 3                             # one per host
    assert 'class="bar"' in page
    assert "http://" not in page and "https://" not in page        # self-contained
    headline = re.search(r"<p class=\"headline failed\">(.*?)</p>", page).group(1)
    assert "100%" not in headline and "hosts ok" not in page, headline
    assert "1 rolled back of 3 planned hosts; 1 excluded" in headline, headline


def test_render_handles_a_release_without_custom_data():
    timeline = build_timeline("bare", [{"run_id": "1", "playbooks": ["x.yml"], "t_start": 1.0, "t_end": 2.0,
                                        "stats": {}, "events": [], "custom": {}}])
    page = render_html(timeline)
    assert "No plan was recorded" in page and "No canary verdict was recorded" in page
    assert "No host was rolled back" in page and "No task failed" in page


# --------------------------------------------------------------------------- real runs


PLAYBOOK = textwrap.dedent("""\
    - name: phase one
      hosts: localhost
      gather_facts: false
      tasks:
        - name: plan the release
          sre.rollout.release_plan:
            hosts: [web01, web02, web03, web04, web05, web06]
            excluded: {web06: "unhealthy"}
          register: planned
        - name: a step of a role
          ansible.builtin.include_role:
            name: demo
        - name: something that fails but is ignored
          ansible.builtin.command: /bin/false
          changed_when: false
          ignore_errors: true
        - name: record the release
          ansible.builtin.set_stats:
            aggregate: false
            data:
              rollout_release_id: "{{ release_id | default('rel-real') }}"
              rollout_plan: "{{ planned.plan }}"
              rollout_version: "1.1.0"
    """)


def ansible_env(tmp_path: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "SRE_ROLLOUT_"))}
    env.update({"PATH": f"{REPO / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}", "ANSIBLE_NOCOLOR": "1",
                "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"), "ANSIBLE_HOME": str(tmp_path / "home")})
    env.update(extra)
    return env


def write_role(tmp_path: Path) -> None:
    tasks = tmp_path / "roles" / "demo" / "tasks"
    tasks.mkdir(parents=True, exist_ok=True)
    (tasks / "main.yml").write_text("- name: demo step\n  ansible.builtin.debug:\n    msg: in a role\n")


def write_inventory(tmp_path: Path) -> Path:
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    return inventory


@pytest.mark.slow
def test_real_playbook_with_the_callback_enabled_in_ansible_cfg(tmp_path):
    """ansible-playbook, callback enabled and report_dir set in an ansible.cfg (relative to it)."""
    (tmp_path / "ansible.cfg").write_text(textwrap.dedent(f"""\
        [defaults]
        collections_path = {REPO / '.collections'}
        roles_path = {tmp_path / 'roles'}
        callbacks_enabled = {PLUGIN}

        [callback_release_report]
        report_dir = reports
        """))
    playbook = tmp_path / "phase.yml"
    playbook.write_text(PLAYBOOK)
    write_role(tmp_path)
    proc = subprocess.run([str(REPO / ".venv" / "bin" / "ansible-playbook"), "-i", str(write_inventory(tmp_path)),
                           str(playbook)], cwd=tmp_path, capture_output=True, text=True, timeout=180,
                          env=ansible_env(tmp_path, ANSIBLE_CONFIG=str(tmp_path / "ansible.cfg")), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    release_dir = tmp_path / "reports" / "rel-real"
    assert f"release report: {release_dir / 'report.html'}" in proc.stdout
    timeline = json.loads((release_dir / "timeline.json").read_text())
    assert timeline["result"] == "success"
    assert timeline["custom"]["rollout_plan"]["canary"] == ["web01"]
    assert timeline["custom"]["rollout_plan"]["excluded"] == [{"host": "web06", "reason": "unhealthy"}]
    assert [(e["task"], e["role"], e["status"]) for e in timeline["events"]] == [
        ("plan the release", None, "ok"), ("a step of a role", None, "ok"), ("demo step", "demo", "ok"),
        ("something that fails but is ignored", None, "failed"), ("record the release", None, "ok")]
    assert timeline["events"][3]["ignored"] is True
    assert timeline["stats"]["localhost"]["ignored"] == 1
    page = (release_dir / "report.html").read_text()
    assert "<td>batch 2</td>" in page and "web06: unhealthy" not in page and "unhealthy" in page


@pytest.mark.slow
def test_real_run_through_ansible_runner_adds_to_the_same_release(tmp_path):
    """The way AWX runs a phase: ansible-runner, callback and report_dir from the environment."""
    ansible_runner = pytest.importorskip("ansible_runner")
    reports = tmp_path / "reports"
    playbook = tmp_path / "phase.yml"
    playbook.write_text(PLAYBOOK)
    write_role(tmp_path)
    env = {"ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_CALLBACKS_ENABLED": PLUGIN,
           "ANSIBLE_ROLES_PATH": str(tmp_path / "roles"),
           "SRE_ROLLOUT_REPORT_DIR": str(reports), "ANSIBLE_COLLECTIONS_PATH": str(REPO / ".collections"),
           "PATH": f"{REPO / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    for release_id in ("rel-awx", "rel-awx"):
        (tmp_path / "pdd").mkdir(exist_ok=True)
        run = ansible_runner.run(private_data_dir=str(tmp_path / "pdd"), playbook=str(playbook),
                                 inventory=str(write_inventory(tmp_path)), extravars={"release_id": release_id},
                                 envvars=env, quiet=True, timeout=180)
        assert run.rc == 0, run.stdout.read()
    timeline = json.loads((reports / "rel-awx" / "timeline.json").read_text())
    assert len(timeline["runs"]) == 2
    assert len(timeline["events"]) == 2 * 5
    assert timeline["result"] == "success"
    assert (reports / "rel-awx" / "report.html").is_file()


# --------------------------------------------------------------------------- recorded lab releases

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "releases"


def recorded(name: str) -> dict:
    import gzip

    with gzip.open(FIXTURES / f"{name}.timeline.json.gz", "rt", encoding="utf-8") as f:
        return json.load(f)


def _headline(page: str) -> str:
    return re.search(r'<p class="headline [a-z-]+">(.*?)</p>', page).group(1)


def test_a_canary_rolled_back_for_its_500s_says_so_not_100_percent_ok():
    page = render_html(recorded("t-errors-052414-3859"))
    headline = _headline(page)
    assert headline.startswith("Failed: canary web01 fail: fail: 1 of 4 intervals"), headline
    assert headline.endswith("1 rolled back, 5 not touched of 6 planned hosts."), headline
    assert "100%" not in headline and "hosts ok" not in page
    assert '<b>0 of 6</b><span>hosts released</span>' in page and "<b>1</b><span>rolled back</span>" in page
    assert page.count('<svg class="canary-chart"') == 4 and '<svg class="gantt"' in page
    assert "0.042766578630198976" not in page and "0.0428" in page


def test_a_successful_release_says_how_many_hosts_and_how_long_they_were_out():
    data = recorded("t-full-051058-3859")
    page = render_html(data)
    assert _headline(page) == "Released app-1.1.0 to 6 of 6 hosts: 6 released of 6 planned hosts."
    assert re.search(r"<b>[0-9.]+ s</b><span>out of traffic, max \(web0\d\)</span>", page)
    assert "<span>out of traffic, median of 6 hosts</span>" in page
    assert page.count('<g class="row"') == 6 and '<a href="../history.html">release history</a>' in page
    assert not re.search(r'(src|href)="(https?:)?//', page) and "<script" not in page  # nothing from the network


def test_a_run_that_ended_before_finalize_does_not_claim_outcomes():
    data = recorded("t-halt-051726-3859")
    data["host_outcomes"] = {}
    data["custom"].pop("rollout_out_ledger_entry")
    headline = _headline(render_html(data))
    assert headline.startswith("failed: no host outcome was recorded"), headline


def test_the_history_is_rebuilt_beside_the_reports(tmp_path):
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    (ledger / "t-full-051058-3859.json").write_text((FIXTURES / "t-full-051058-3859.ledger.json").read_text())
    path = release_report.write_history(tmp_path / "reports", ledger)
    assert path == tmp_path / "reports" / "history.html" and path.read_text().count('<tr class="release"') == 1
    assert json.loads((tmp_path / "reports" / "history.json").read_text())["releases"][0]["result"] == "success"
    assert release_report.write_history(tmp_path / "reports", tmp_path / "none") is None
    assert release_report.ledger_dir_of({"rollout_out_ledger": "/s/ledger/x.json"}, tmp_path) == Path("/s/ledger")
    assert release_report.ledger_dir_of({}, tmp_path) == tmp_path / "ledger"


def test_lb_step_results_keep_what_the_timeline_needs():
    result = {"lbs": [{"waited": 1.5, "warmup_weights": [50]}, {"waited": 2.25, "warmup_weights": []}], "changed": True}
    assert release_report.step_detail(result) == {"waited": 2.25, "warmup": True}
    assert release_report.step_detail({"changed": True}) == {}
