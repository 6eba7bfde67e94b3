"""The release's failure paths, end to end in the lab: each one stops cleanly and loses nothing.

- preflight cannot stage the artifact on one host: no host is swapped, every lock is dropped;
- a stale lock of a dead release: refused by default (test_release.py), broken on request;
- the webhook: its events arrive (with the approval test); an undeliverable one warns, never stops;
- a rejected approval (typed on a real terminal): no batch host is touched;
- a failed host whose restore fails too: it is left out of traffic, and the release stops.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import subprocess
import termios
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import labkit
from release_checks import (activations, active_silences, artifact_sha, assert_all_serving, haproxy_states, ledger,
                            locks, nginx_down_members, planned, release_id, state, versions)

HOOKS = Path(__file__).resolve().parent / "hooks"


def test_staging_failure_on_one_host_stops_before_any_swap(fresh, ansible):
    """web04 holds another build under the name app-1.1.0: preflight stops, nothing is swapped or left locked."""
    lab = fresh
    web04 = lab["hosts"][3]
    other_build = Path(lab["artifacts"]["dir"]) / "app-1.3.0-errors.tar.gz"
    staged_other = ansible.module("app_release", {
        "root": web04["root"], "state": "staged", "artifact": "app-1.1.0", "src": str(other_build),
        "checksum": f"sha256:{artifact_sha(lab, 'app-1.3.0-errors')}"}, hosts=web04["name"])
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
    """rollout_break_lock=true takes over the lock of a dead release, and says whose it was.

    Nobody listens at the webhook's address either: that is a warning, never a reason to stop.
    """
    lab = fresh
    web03 = lab["hosts"][2]
    ansible.module("app_release", {"root": web03["root"], "state": "locked", "release_id": "dead-release-1",
                                   "holder": "carol@gone"}, hosts=web03["name"])
    rid = release_id("breaklock")
    dead_webhook = "http://127.0.0.1:9/hook"
    run = ansible.playbook("playbooks/preflight.yml", extravars={
        "rollout_version": "1.1.0", "rollout_approval": "none", "rollout_release_id": rid,
        "rollout_break_lock": True, "rollout_backup_paths": [], "rollout_notify_url": dead_webhook})
    assert run.rc == 0, run.stdout[-3000:]
    assert "broke the lock of release 'dead-release-1' held by 'carol@gone'" in run.stdout
    assert f"WARNING: notification release_started to {dead_webhook} failed" in run.stdout
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


def test_failed_restore_leaves_the_host_out_of_traffic(fresh, ansible):
    """The canary fails, and so does going back (the host itself is broken): it stays drained, the release stops."""
    lab = fresh
    victim = planned(ansible, lab)["canary"][0]
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


class Terminal:
    """ansible-playbook on a pseudo-terminal of its own, as an operator runs it: what it prints, what we type."""

    def __init__(self, args: list[str]) -> None:
        self.master, slave = pty.openpty()
        cmd = labkit.ansible_playbook_cmd(*args)
        env = labkit.ansible_env()

        def controlling_tty():  # a session of its own, with the pty as its terminal: pause can prompt
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(cmd, cwd=labkit.REPO, env=env, stdin=slave, stdout=slave, stderr=slave,
                                     preexec_fn=controlling_tty)  # noqa: PLW1509 - the test needs a terminal
        os.close(slave)
        self.output = b""
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: the other side is closed
                return
            if not chunk:
                return
            self.output += chunk

    def expect(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text.encode() not in self.output:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"no {text!r} on the terminal; it shows: {self.text()[-3000:]}")
            time.sleep(0.2)

    def type(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\r")

    def wait(self, timeout: float) -> int:
        rc = self.proc.wait(timeout=timeout)
        self.reader.join(timeout=10)
        os.close(self.master)
        return rc

    def text(self) -> str:
        return self.output.decode(errors="replace")


def test_rejected_approval_halts_before_the_batches(fresh):
    """rollout_approval=prompt: the checker types something else than the release id; no batch host is touched."""
    lab = fresh
    rid = release_id("reject")
    with Receiver() as webhook:
        term = Terminal(["playbooks/release.yml", "-e", "rollout_version=1.1.0",
                         "-e", "rollout_approval=prompt", "-e", f"rollout_release_id={rid}",
                         "-e", "rollout_operator=alice", "-e", "rollout_checker=bob",
                         "-e", "rollout_canary_analysis=false", "-e", "rollout_canary_soak=2",
                         "-e", '{"rollout_backup_paths": []}', "-e", f"rollout_notify_url={webhook.url}"])
        try:
            term.expect("type the release id to roll out", timeout=600)
            term.type("yes")
            rc = term.wait(timeout=300)
        finally:
            if term.proc.poll() is None:
                term.proc.kill()
    assert rc != 0, term.text()[-3000:]
    assert f"not approved: the checker typed 'yes', not {rid}" in term.text(), term.text()[-3000:]
    entry = ledger(rid)
    canary = entry["plan"]["canary"]
    outcomes = {h["host"]: h["outcome"] for h in entry["hosts"]}
    assert {outcomes[name] for name in canary} == {"released"}
    assert {o for name, o in outcomes.items() if name not in canary} == {"not touched"}
    assert entry["result"] == "failed" and "not approved" in entry["halt_reason"]
    for h in lab["hosts"]:
        if h["name"] not in canary:
            assert activations(h, rid) == [], f"{h['name']} was swapped without approval"
    assert locks(lab) == {} and active_silences(lab) == []
    # the webhook heard the start and the end, with why it ended
    assert [(e["event"], e["release_id"], e["artifact"], e["operator"], e["checker"]) for e in webhook.received] == [
        ("release_started", rid, "app-1.1.0", "alice", "bob"), ("release_finished", rid, "app-1.1.0", "alice", "bob")]
    finished = webhook.received[1]["detail"]
    assert finished["halted"] in (True, "True", "true") and "not approved" in finished["reason"]
    # the ledger entry goes with it: where the state directory does not outlive the job (AWX), it is kept
    assert finished["ledger"] == entry
