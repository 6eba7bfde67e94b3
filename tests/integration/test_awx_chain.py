"""The phase playbooks as separate ansible-runner jobs, chained the way an AWX workflow chains them.

Each job gets the workflow's extra vars over the artifacts (``set_stats``) of every job before
it, exactly as AWX builds a workflow node's extra vars (the workflow's extra vars win over
ancestor artifacts); a re-launched job gets the same extra vars as the job it re-launches. The
paths are those of extensions/awx/awx_setup.yml: success; canary fail -> finalize; approval
denied -> rollback; rollout fail -> rollback; and a failed job re-launched. Every chain ends
with every host on its intended version, in every LB, and no lock or silence left.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import labkit
from release_checks import (activations, assert_all_serving, ledger, planned, release_id, state, versions)

HOOKS = Path(__file__).resolve().parent / "hooks"
# the workflow's own extra vars: what the operator gives at launch; the job templates set the rest
FAST = {"rollout_approval": "none", "rollout_backup_paths": [], "rollout_operator": "alice",
        "rollout_checker": "bob"}

pytestmark = [pytest.mark.lab, pytest.mark.slow]


class Workflow:
    """One AWX workflow run: jobs in order, artifacts handed on."""

    def __init__(self, ansible: labkit.Ansible, extravars: dict) -> None:
        self.ansible = ansible
        self.extravars = dict(extravars)
        self.artifacts: dict = {}
        self.jobs: list[tuple[str, str]] = []

    def job(self, phase: str, template_vars: dict | None = None, relaunch_of: dict | None = None) -> labkit.RunResult:
        """Run playbooks/<phase>.yml as a workflow node; ``template_vars`` are the job template's own."""
        if relaunch_of is not None:
            extravars = relaunch_of
        else:
            extravars = {**(template_vars or {}), **self.artifacts, **self.extravars}
        run = self.ansible.playbook(f"playbooks/{phase}.yml", extravars=extravars)
        run.extravars = extravars  # what a re-launch of this job is given
        artifacts = run.stats().get("artifact_data") or {}
        # a job's artifacts are JSON, as AWX stores them
        self.artifacts.update(json.loads(json.dumps(artifacts)))
        self.jobs.append((phase, run.status))
        return run


def assert_no_input_shadowed(artifacts: dict) -> None:
    """Outputs have their own names: nothing a job hands on replaces an input of the next one."""
    assert artifacts and all(key.startswith("rollout_out_") for key in artifacts), sorted(artifacts)


def test_success_chain(fresh, ansible):
    """preflight -> canary -> (approved) -> rollout -> finalize: every host on 1.1.0, 0 failed requests."""
    lab = fresh
    rid = release_id("awx-ok")
    flow = Workflow(ansible, {**FAST, "rollout_version": "1.1.0", "rollout_release_id": rid})
    with labkit.LoadRun(lab["haproxy"]["url"], rate=30) as load:
        for phase in ("preflight", "canary", "rollout", "finalize"):
            run = flow.job(phase)
            assert run.rc == 0, f"{phase}: {run.stdout[-3000:]}"
    assert load.summary["errors"] == 0, load.summary
    assert_no_input_shadowed(flow.artifacts)
    assert flow.artifacts["rollout_out_release_id"] == rid
    assert flow.artifacts["rollout_out_canary"]["verdict"] == "pass"
    assert set(versions(lab).values()) == {"1.1.0"}
    assert_all_serving(lab)
    entry = ledger(rid)
    assert entry["result"] == "success"
    assert entry["canary"]["verdict"] == "pass"  # the canary job's verdict reached finalize
    assert (entry["operator"], entry["checker"]) == ("alice", "bob")
    assert {h["outcome"] for h in entry["hosts"]} == {"released"}
    # the ledger entry is kept by the workflow too (a job's state directory does not outlive it)
    assert flow.artifacts["rollout_out_ledger_entry"] == entry
    assert flow.artifacts["rollout_out_result"] == "success"
    report = json.loads((Path(flow.artifacts["rollout_out_state_dir"]) / "reports" / rid / "timeline.json")
                        .read_text())
    assert [run["playbooks"] for run in report["runs"]] == [
        ["preflight.yml"], ["canary.yml"], ["rollout.yml"], ["finalize.yml"]]
    assert report["result"] == "success"


def test_failed_canary_then_finalize(fresh, ansible):
    """canary fails (5xx seen by Prometheus) -> the workflow's failure path runs finalize."""
    lab = fresh
    rid = release_id("awx-canary")
    flow = Workflow(ansible, {**FAST, "rollout_version": "1.3.0-errors", "rollout_release_id": rid})
    with labkit.LoadRun(lab["haproxy"]["url"], rate=40) as load:
        assert flow.job("preflight").rc == 0
        canary = flow.job("canary")
        assert canary.rc != 0, canary.stdout[-3000:]
        run = flow.job("finalize")
    assert run.rc != 0  # finalize judges the release failed, and says so
    assert load.summary["conn_errors"] == 0, load.summary
    assert_no_input_shadowed(flow.artifacts)
    assert flow.artifacts["rollout_out_canary"]["verdict"] == "fail"
    assert set(versions(lab).values()) == {"1.0.0"}
    assert_all_serving(lab)
    entry = ledger(rid)
    canary_hosts = entry["plan"]["canary"]
    assert entry["result"] == "failed" and entry["rolled_back"] == canary_hosts
    assert entry["canary"]["verdict"] == "fail" and "canary" in entry["halt_reason"]
    for h in lab["hosts"]:
        if h["name"] not in canary_hosts:
            assert activations(h, rid) == [], f"{h['name']} was touched after the canary failed"


def test_denied_approval_then_rollback(fresh, ansible):
    """canary passes, the approval node is denied -> rollback.yml takes the canary back, nothing else."""
    lab = fresh
    rid = release_id("awx-deny")
    flow = Workflow(ansible, {**FAST, "rollout_version": "1.1.0", "rollout_release_id": rid,
                              "rollout_canary_analysis": False, "rollout_canary_soak": 2})
    assert flow.job("preflight").rc == 0
    assert flow.job("canary").rc == 0
    canary_hosts = flow.artifacts["rollout_out_plan"]["canary"]
    assert {versions(lab)[name] for name in canary_hosts} == {"1.1.0"}
    run = flow.job("rollback")
    assert run.rc == 0, run.stdout[-3000:]
    assert set(versions(lab).values()) == {"1.0.0"}
    assert_all_serving(lab)
    for h in lab["hosts"]:
        actions = [a["action"] for a in activations(h, rid)]
        assert actions == (["activate", "rollback"] if h["name"] in canary_hosts else []), (h["name"], actions)
    entry = json.loads((ledger_dir(flow) / f"{rid}.rollback.json").read_text())
    assert (entry["mode"], entry["result"]) == ("rollback", "success")
    assert sorted(h["host"] for h in entry["hosts"]) == sorted(canary_hosts)


def ledger_dir(flow: Workflow) -> Path:
    return Path(flow.artifacts["rollout_out_state_dir"]) / "ledger"


def test_failed_rollout_then_rollback(fresh, ansible):
    """a host of the second batch fails -> it is restored, the job fails -> rollback.yml takes back
    the canary, the first batch and the rest of the second (swapped beside the failed host); the
    failed host and the later batches are left alone."""
    lab = fresh
    rid = release_id("awx-rofail")
    plan = planned(ansible, lab)
    victim = plan["batches"][1][0]
    changed = plan["canary"] + plan["batches"][0] + plan["batches"][1][1:]
    flow = Workflow(ansible, {**FAST, "rollout_version": "1.1.0", "rollout_release_id": rid,
                              "rollout_canary_analysis": False, "rollout_canary_soak": 2})
    with labkit.LoadRun(lab["haproxy"]["url"], rate=30) as load:
        assert flow.job("preflight").rc == 0
        assert flow.job("canary").rc == 0
        run = flow.job("rollout", template_vars={
            "fail_hook_host": victim, "fail_hook_artifact": "app-1.1.0",
            "rollout_hooks": {"after_activate": str(HOOKS / "fail_on_host.yml")}})
        assert run.rc != 0, run.stdout[-3000:]
        assert victim in flow.artifacts["rollout_out_halt_reason"]
        assert {versions(lab)[name] for name in changed} == {"1.1.0"}
        run = flow.job("rollback")
    assert run.rc == 0, run.stdout[-3000:]
    assert load.summary["errors"] == 0, load.summary
    assert set(versions(lab).values()) == {"1.0.0"}
    assert_all_serving(lab)
    by_name = {h["name"]: h for h in lab["hosts"]}
    for name in changed + [victim]:
        assert [a["action"] for a in activations(by_name[name], rid)] == ["activate", "rollback"], name
    for batch in plan["batches"][2:]:
        for name in batch:
            assert activations(by_name[name], rid) == [], f"{name} in a later batch was touched"
    entry = json.loads((ledger_dir(flow) / f"{rid}.rollback.json").read_text())
    assert entry["result"] == "success"
    assert sorted(h["host"] for h in entry["hosts"]) == sorted(changed)


def test_relaunched_rollout_after_a_failed_job(fresh, ansible, tmp_path):
    """the rollout job fails on a transient fault; re-launched with the same extra vars it goes
    on (hosts already done are skipped, the failed host is released), then finalize: success."""
    lab = fresh
    rid = release_id("awx-relaunch")
    plan = planned(ansible, lab)
    victim = plan["batches"][0][-1]
    flow = Workflow(ansible, {**FAST, "rollout_version": "1.1.0", "rollout_release_id": rid,
                              "rollout_canary_analysis": False, "rollout_canary_soak": 2})
    assert flow.job("preflight").rc == 0
    assert flow.job("canary").rc == 0
    failed = flow.job("rollout", template_vars={
        "fail_hook_host": victim, "fail_hook_artifact": "app-1.1.0", "fail_once_marker": str(tmp_path / "failed"),
        "rollout_hooks": {"after_activate": str(HOOKS / "fail_once_on_host.yml")}})
    assert failed.rc != 0, failed.stdout[-3000:]
    assert state(next(h for h in lab["hosts"] if h["name"] == victim))["current"] == "app-1.0.0"
    relaunched = flow.job("rollout", relaunch_of=failed.extravars)
    assert relaunched.rc == 0, relaunched.stdout[-3000:]
    assert flow.artifacts["rollout_out_halt_reason"] == ""
    run = flow.job("finalize")
    assert run.rc == 0, run.stdout[-3000:]
    assert set(versions(lab).values()) == {"1.1.0"}
    assert_all_serving(lab)
    entry = ledger(rid)
    assert entry["result"] == "success"
    assert {h["outcome"] for h in entry["hosts"]} == {"released"}
    by_name = {h["name"]: h for h in lab["hosts"]}
    assert [a["action"] for a in activations(by_name[victim], rid)] == ["activate", "rollback", "activate"]
    for name in plan["canary"]:
        assert [a["action"] for a in activations(by_name[name], rid)] == ["activate"], name
