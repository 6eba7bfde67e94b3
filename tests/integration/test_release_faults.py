"""A real fleet's failures mid-release, end to end in the lab, under load through HAProxy and nginx.

- a host cut off (ssh refused) right after its drain: the release halts, no later batch is touched,
  the ledger names it ``unreachable`` at step ``drained``, it is left out of traffic, silenced and
  locked; re-run once it answers, the same release finishes with nothing lost;
- a ``bin/stop`` that never returns: ``timed_out`` within the configured timeout, the host restored;
- a host that accepts ssh and never answers: ``timed_out``, left out of traffic (the fault matrix's quick row);
- the controller killed during the canary soak: the re-run judges the canary again;
- Alertmanager gone when a silence is to be lifted: no host is rolled back for it;
- a dry run (--check --diff) of release.yml and rollback.yml shows the plan and changes nothing.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import faults
import labkit
from release_checks import (activations, active_silences, assert_all_serving, haproxy_states, ledger, locks,
                            nginx_down_members, planned, release_id, staged, versions)

FAST = {"rollout_approval": "none", "rollout_canary_analysis": False, "rollout_canary_soak": 2,
        "rollout_backup_paths": []}


def _loads(lab):
    return labkit.LoadRun(lab["haproxy"]["url"], rate=30), labkit.LoadRun(lab["nginx"]["url"], rate=15)


def _no_errors(*runs) -> None:
    for run in runs:
        assert run.summary["errors"] == 0, run.summary


def _record(entry: dict, name: str) -> dict:
    return next(h for h in entry["hosts"] if h["host"] == name)


def test_unreachable_host_halts_is_recorded_and_the_rerun_finishes(fresh, ansible, tmp_path):
    lab = fresh
    plan = planned(ansible, lab)
    victim = plan["batches"][0][0]
    later = [h for b in plan["batches"][1:] for h in b]
    rid = release_id("unreach")
    env = faults.fault_env(lab, victim, "drained", "unreachable", tmp_path / "fired")
    ha, ng = _loads(lab)
    try:
        with ha, ng:
            run = ansible.playbook("playbooks/release.yml", envvars=env,
                                   extravars={**FAST, "rollout_version": "1.1.0", "rollout_release_id": rid})
        assert run.rc != 0, "a release with an unreachable host must fail"
        _no_errors(ha, ng)
        entry = ledger(rid)  # finalize ran to its end
        assert entry["result"] == "failed"
        rec = _record(entry, victim)
        assert (rec["outcome"], rec["last_step"]) == ("unreachable", "drained"), rec
        assert rec["lock"] == "held" and rec["silence"] == "kept"
        assert sorted(rec["out_of_traffic"]) == ["haproxy", "nginx"], rec
        assert any(a.startswith(f"{victim} UNREACHABLE after step 'drained'") for a in entry["actions"]), entry["actions"]
        assert victim in entry["halt_reason"]
        assert f"{victim} UNREACHABLE after step 'drained'" in run.stdout
        for name in later:  # nothing outside the failing batch was touched
            assert activations(faults.host(lab, name), rid) == [], f"{name} was touched after the fault"
            assert _record(entry, name)["outcome"] == "not touched"
        # the host nobody can reach stays out of traffic, silenced and locked; every other lock is gone
        assert haproxy_states(lab)[victim] == "MAINT"
        assert faults.host(lab, victim)["address"] + ":8080" in nginx_down_members(lab)
        assert list(locks(lab)) == [victim] and locks(lab)[victim]["release_id"] == rid
        silenced = [m["value"] for s in active_silences(lab) for m in s["matchers"] if m["name"] == "host"]
        assert silenced == [victim]
    finally:
        faults.clear(lab)
    # the host answers again: the same release, re-run, finishes it
    ha, ng = _loads(lab)
    with ha, ng:
        rerun = ansible.playbook("playbooks/release.yml",
                                 extravars={**FAST, "rollout_version": "1.1.0", "rollout_release_id": rid})
    assert rerun.rc == 0, rerun.stdout[-4000:]
    _no_errors(ha, ng)
    assert set(versions(lab).values()) == {"1.1.0"}
    assert_all_serving(lab)
    assert {h["outcome"] for h in ledger(rid)["hosts"]} <= {"released", "skipped"}


def test_release_while_a_host_is_still_unreachable_skips_it_in_preflight(fresh, ansible, tmp_path):
    lab = fresh
    victim = lab["hosts"][-1]["name"]
    faults.flag_file(lab, victim).parent.mkdir(parents=True, exist_ok=True)
    faults.flag_file(lab, victim).write_text("unreachable\n")
    rid = release_id("stillgone")
    try:
        refused = ansible.playbook("playbooks/preflight.yml", extravars={
            **FAST, "rollout_version": "1.1.0", "rollout_release_id": rid, "rollout_on_unhealthy": "fail"})
        assert refused.rc != 0
        assert f"{victim}: unreachable" in refused.stdout, refused.stdout[-3000:]
        assert locks(lab) == {}
        skipped = ansible.playbook("playbooks/preflight.yml", extravars={
            **FAST, "rollout_version": "1.1.0", "rollout_release_id": rid + "-b", "rollout_on_unhealthy": "skip"})
        assert skipped.rc == 0, skipped.stdout[-3000:]
        assert victim not in locks(lab)
    finally:
        faults.clear(lab)


def test_hung_stop_times_out_and_the_host_is_restored(fresh, ansible, tmp_path):
    lab = fresh
    plan = planned(ansible, lab)
    victim = plan["batches"][0][0]
    later = [h for b in plan["batches"][1:] for h in b]
    rid = release_id("hungstop")
    faults.stop_hangs(faults.host(lab, victim), True)
    stop_timeout = 2
    ha, ng = _loads(lab)
    try:
        with ha, ng:
            started = time.monotonic()
            run = ansible.playbook("playbooks/release.yml", extravars={
                **FAST, "rollout_version": "1.1.0", "rollout_release_id": rid, "rollout_stop_timeout": stop_timeout})
            took = time.monotonic() - started
    finally:
        faults.stop_hangs(faults.host(lab, victim), False)
    assert run.rc != 0
    _no_errors(ha, ng)
    rec = _record(ledger(rid), victim)
    assert (rec["outcome"], rec["last_step"], rec["restored"]) == ("timed_out", "drained", True), rec
    assert "expected time frame" in rec["failure"]["msg"]
    assert took < 300, f"the hung stop was not cut short ({took:.0f}s)"
    seen = versions(lab)
    for name in later:
        assert activations(faults.host(lab, name), rid) == [] and seen[name] == "1.0.0"
    assert seen[victim] == "1.0.0" and haproxy_states(lab)[victim] == "UP"  # restored and serving


def test_controller_killed_during_the_soak_then_rerun_judges_the_canary_again(fresh, ansible, tmp_path):
    lab = fresh
    rid = release_id("killsoak")
    extra = {**FAST, "rollout_version": "1.1.0", "rollout_release_id": rid, "rollout_canary_analysis": True,
             "rollout_canary_soak": 8}
    env = faults.fault_env(lab, "localhost", "soak", "kill", tmp_path / "fired")
    killed = ansible.playbook("playbooks/release.yml", envvars=env, extravars=extra)
    assert killed.rc != 0 and (tmp_path / "fired").exists()
    assert locks(lab), "the killed release still holds its locks"
    ha, ng = _loads(lab)
    with ha, ng:
        rerun = ansible.playbook("playbooks/release.yml", extravars=extra)
    assert rerun.rc == 0, rerun.stdout[-4000:]
    _no_errors(ha, ng)
    soaks = list(rerun.results(task="Canary | Soak and judge against the baseline (Prometheus)"))
    assert soaks and all(not e.get("skipped") for e in soaks), "the re-run skipped the canary's verdict"
    assert ledger(rid)["canary"]["verdict"] == "pass"
    assert set(versions(lab).values()) == {"1.1.0"}
    assert_all_serving(lab)


def test_alertmanager_down_when_lifting_a_silence_rolls_nothing_back(fresh, ansible, tmp_path):
    """Alertmanager dies after the canary is healthy: the canary is not rolled back, the silence is
    reported as left to expire on its own, and the release halts at the next silence."""
    lab = fresh
    rid = release_id("amdown")
    canary = planned(ansible, lab)["canary"][0]
    env = faults.fault_env(lab, canary, "health", "alertmanager-down", tmp_path / "fired")
    try:
        run = ansible.playbook("playbooks/release.yml", envvars=env, extravars={
            **FAST, "rollout_version": "1.1.0", "rollout_release_id": rid})
        entry = ledger(rid)
        rec = _record(entry, canary)
        assert rec["outcome"] == "released", rec
        assert rec["silence"] != "lifted" and canary in entry["silences_left"]
        assert versions(lab)[canary] == "1.1.0"
        assert haproxy_states(lab)[canary] == "UP"
        assert run.rc != 0  # the next host could not be silenced: the release halted cleanly
        assert locks(lab) == {}
        assert entry["silences_left"][canary], "the ledger gives the end time of the silence left to expire"
    finally:
        subprocess.run([str(labkit.REPO / ".venv" / "bin" / "python"), str(labkit.REPO / "tests" / "lab" / "lab.py"),
                        "up"], env=labkit.ansible_env(), capture_output=True, timeout=300, check=True)


def _snapshot(lab: dict) -> dict:
    def root(h: dict) -> Path:
        return Path(h["root"])
    return {"hosts": {h["name"]: ((root(h) / ".rollout" / "state.json").read_bytes(), staged(h),
                                  (root(h) / ".rollout" / "lock.json").exists()) for h in lab["hosts"]},
            "haproxy": haproxy_states(lab), "nginx": Path(lab["nginx"]["upstream_file"]).read_text(),
            "silences": active_silences(lab), "versions": versions(lab)}


def test_dry_run_shows_the_plan_and_changes_nothing(fresh):
    """--check --diff runs every phase of release.yml and then rollback.yml and changes nothing anywhere."""
    lab = fresh
    rid = release_id("dryrun")
    before = _snapshot(lab)
    run = labkit.ansible_playbook_cli("playbooks/release.yml", "--check", "--diff", "-e", "rollout_version=1.1.0",
                                      "-e", f"rollout_release_id={rid}", "-e", "rollout_approval=none",
                                      "-e", "rollout_canary_soak=2", timeout=900)
    assert run.returncode == 0, run.stdout[-4000:]
    assert "canary" in run.stdout and "batch 1" in run.stdout  # the plan is printed
    assert "would soak 2s and judge" in run.stdout
    assert "release report: none for a dry run" in run.stdout
    assert _snapshot(lab) == before
    assert not (labkit.REPO / ".rollout" / "ledger" / f"{rid}.json").exists()
    assert not (labkit.REPO / ".rollout" / "reports" / rid).exists()
    back = labkit.ansible_playbook_cli("playbooks/rollback.yml", "--check", "--diff", "-e", "rollout_approval=none",
                                       "-e", f"rollout_release_id={rid}-rb", timeout=900)
    assert back.returncode == 0, back.stdout[-4000:]
    assert _snapshot(lab) == before
