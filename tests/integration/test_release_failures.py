"""The release's failure paths, end to end in the lab: each one stops cleanly and loses nothing.

- preflight cannot stage the artifact on one host: no host is swapped, every lock is dropped;
- a stale lock of a dead release: refused by default (test_release.py), broken on request;
- the webhook: its events arrive; an undeliverable one warns and never stops the release;
- a failed host whose restore fails too: it is left out of traffic, and the release stops.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import labkit
from release_checks import (activations, active_silences, assert_all_serving, haproxy_states, ledger, locks,
                            nginx_down_members, release_id, state, versions)

HOOKS = Path(__file__).resolve().parent / "hooks"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_staging_failure_on_one_host_stops_before_any_swap(fresh, ansible):
    """web04 holds another build under the name app-1.1.0: preflight stops, nothing is swapped or left locked."""
    lab = fresh
    web04 = lab["hosts"][3]
    other_build = Path(lab["artifacts"]["dir"]) / "app-1.3.0-errors.tar.gz"
    staged_other = ansible.module("app_release", {
        "root": web04["root"], "state": "staged", "artifact": "app-1.1.0", "src": str(other_build),
        "checksum": f"sha256:{sha256(other_build)}"}, hosts=web04["name"])
    assert staged_other[web04["name"]]["changed"] is True, staged_other
    rid = release_id("stagefail")
    with labkit.LoadRun(lab["haproxy"]["url"], rate=30) as load:
        run = ansible.playbook("playbooks/release.yml", extravars={
            "rollout_version": "1.1.0", "rollout_approval": "none", "rollout_release_id": rid})
    assert run.rc != 0
    assert load.summary["errors"] == 0, load.summary
    assert "Preflight could not prepare web04" in run.stdout, run.stdout[-3000:]
    assert "is already staged with sha256" in run.stdout
    assert all(activations(h, rid) == [] for h in lab["hosts"]), "a host was swapped"
    assert set(versions(lab).values()) == {"1.0.0"}
    assert locks(lab) == {}, "a lock was left behind"
    assert_all_serving(lab)


def test_stale_lock_is_broken_only_when_asked(fresh, ansible):
    """rollout_break_lock=true takes over the lock of a dead release, and says whose it was."""
    lab = fresh
    web03 = lab["hosts"][2]
    ansible.module("app_release", {"root": web03["root"], "state": "locked", "release_id": "dead-release-1",
                                   "holder": "carol@gone"}, hosts=web03["name"])
    rid = release_id("breaklock")
    run = ansible.playbook("playbooks/preflight.yml", extravars={
        "rollout_version": "1.1.0", "rollout_approval": "none", "rollout_release_id": rid,
        "rollout_break_lock": True, "rollout_backup_paths": []})
    assert run.rc == 0, run.stdout[-3000:]
    assert "broke the lock of release 'dead-release-1' held by 'carol@gone'" in run.stdout
    held = locks(lab)
    assert sorted(held) == sorted(h["name"] for h in lab["hosts"])
    assert {lock["release_id"] for lock in held.values()} == {rid}


class Receiver:
    """A webhook endpoint on loopback that records the JSON it is sent (the test's stand-in for chat/CI)."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.received.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "Receiver":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_webhook_is_notified_and_an_undeliverable_one_only_warns(fresh, ansible):
    lab = fresh
    rid = release_id("webhook")
    extravars = {"rollout_version": "1.1.0", "rollout_approval": "none", "rollout_release_id": rid,
                 "rollout_backup_paths": [], "rollout_operator": "alice"}
    with Receiver() as hook:
        run = ansible.playbook("playbooks/preflight.yml", extravars={**extravars, "rollout_notify_url": hook.url})
    assert run.rc == 0, run.stdout[-3000:]
    assert [(e["event"], e["release_id"], e["app"], e["artifact"], e["operator"]) for e in hook.received] == [
        ("release_started", rid, "app", "app-1.1.0", "alice")]

    # the same release again (its own lock), with nobody listening at the webhook's address
    dead = "http://127.0.0.1:9/hook"
    run = ansible.playbook("playbooks/preflight.yml", extravars={**extravars, "rollout_notify_url": dead})
    assert run.rc == 0, run.stdout[-3000:]
    assert f"WARNING: notification release_started to {dead} failed" in run.stdout
    assert {lock["release_id"] for lock in locks(lab).values()} == {rid}


def test_failed_restore_leaves_the_host_out_of_traffic(fresh, ansible):
    """The canary fails, and so does going back (the host itself is broken): it stays drained, the release stops."""
    lab = fresh
    plan = ansible.module("release_plan", {"hosts": [h["name"] for h in lab["hosts"]],
                                           "zones": {h["name"]: h["zone"] for h in lab["hosts"]},
                                           "order": "sorted"})["localhost"]
    victim = plan["plan"]["canary"][0]
    by_name = {h["name"]: h for h in lab["hosts"]}
    rid = release_id("norestore")
    with labkit.LoadRun(lab["haproxy"]["url"], rate=30) as load:
        run = ansible.playbook("playbooks/release.yml", extravars={
            "rollout_version": "1.1.0", "rollout_approval": "none", "rollout_release_id": rid,
            "rollout_canary_analysis": False, "rollout_canary_soak": 2, "rollout_backup_paths": [],
            "fail_hook_host": victim, "fail_hook_artifact": "app-1.1.0", "break_hook_host": victim,
            "rollout_hooks": {"after_activate": str(HOOKS / "fail_on_host.yml"),
                              "on_rollback": str(HOOKS / "break_host.yml")}})
    assert run.rc != 0
    assert load.summary["errors"] == 0, load.summary  # the broken host never took traffic again
    assert "left out of traffic for an operator" in run.stdout, run.stdout[-3000:]

    states = haproxy_states(lab)
    assert states[victim] == "MAINT", states
    assert {s for name, s in states.items() if name != victim} == {"UP"}
    assert nginx_down_members(lab) == [f"{by_name[victim]['address']}:{by_name[victim]['port']}"]
    assert state(by_name[victim])["current"] == "app-1.0.0"  # switched back, but not healthy
    for name, h in by_name.items():
        if name != victim:
            assert activations(h, rid) == [], f"{name} was touched after the canary failed"
            assert state(h)["current"] == "app-1.0.0"

    entry = ledger(rid)
    outcomes = {h["host"]: h["outcome"] for h in entry["hosts"]}
    assert outcomes[victim] == "failed" and victim in entry["halt_reason"]
    assert {o for name, o in outcomes.items() if name != victim} == {"not touched"}
    assert locks(lab) == {}
    # the silence is lifted at the end: a host left broken must page someone, not stay muted
    assert active_silences(lab) == []
    assert_all_serving_but(lab, victim)


def assert_all_serving_but(lab: dict, victim: str) -> None:
    others = [h for h in lab["hosts"] if h["name"] != victim]
    served = versions({**lab, "hosts": others})
    assert set(served.values()) == {"1.0.0"}, served
