"""lb_member's front end: arguments, check mode, diff, failures, over an in-memory HAProxy runtime API."""

from __future__ import annotations


import pytest
from module_args import module_result, patch_module_args

from ansible_collections.sre.rollout.plugins.module_utils import _haproxy
from ansible_collections.sre.rollout.plugins.modules import lb_member

STAT_HEADER = "# pxname,svname,qcur,scur,status,weight,bck,check_status,tracked,addr,uweight,"
STATE_HEADER = ("# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight "
                "srv_iweight")


class FakeHAProxy:
    """Answers the runtime API commands lb_member uses, keeping server state like HAProxy 2.6 does."""

    def __init__(self, names=("web01", "web02", "web03"), level: str = "admin") -> None:
        self.servers = {n: {"flags": 0, "op": 2, "weight": 100, "scur": 0} for n in names}
        self.level = level
        self.log: list[str] = []

    def status(self, s: dict) -> str:
        if s["flags"] & 0x01:
            return "MAINT"
        if s["op"] == 0:
            return "DOWN"
        return "DRAIN" if s["flags"] & 0x08 else "UP"

    def __call__(self, command: str) -> str:
        self.log.append(command)
        words = command.split()
        if command == "show cli level":
            return f"{self.level}\n\n"
        if command == "show stat -1 2 -1":
            return f"{STAT_HEADER}\napp,BACKEND,0,0,UP,300,0,,,,300,\n\n"
        if command.startswith("show stat "):
            if words[2] != "app":
                return "No such proxy.\n\n"
            rows = [f"app,{n},0,{s['scur']},{self.status(s)},{s['weight']},0,L7OK,,10.0.0.{i}:8080,{s['weight']},"
                    for i, (n, s) in enumerate(self.servers.items(), 1)]
            return "\n".join([STAT_HEADER, *rows]) + "\n\n"
        if command.startswith("show servers state"):
            rows = [f"3 app {i} {n} 10.0.0.{i} {s['op'] if not s['flags'] & 1 else 0} {s['flags']} {s['weight']} 100"
                    for i, (n, s) in enumerate(self.servers.items(), 1)]
            return "\n".join(["1", STATE_HEADER, *rows]) + "\n\n"
        if words[:2] == ["set", "server"]:
            if self.level != "admin":
                return "Permission denied\n\n"
            name = words[2].split("/")[1]
            if name not in self.servers:
                return "No such server.\n\n"
            server = self.servers[name]
            if words[3] == "state":
                server["flags"] = {"ready": 0, "drain": 0x08, "maint": 0x01}[words[4]]
            elif words[3] == "weight":
                server["weight"] = _haproxy.resolve_weight(words[4], 100)
            return "\n"
        if words[:3] == ["shutdown", "sessions", "server"]:
            self.servers[words[3].split("/")[1]]["scur"] = 0
            return "\n"
        return "Unknown command\n\n"

    def changes(self) -> list[str]:
        return [c for c in self.log if c.startswith(("set ", "shutdown "))]


@pytest.fixture()
def haproxy(monkeypatch):
    fake = FakeHAProxy()
    monkeypatch.setattr(_haproxy.RuntimeAPI, "raw", lambda self, command: fake(command))
    return fake


def run_module(args: dict, monkeypatch, capsys) -> dict:
    with patch_module_args(args), pytest.raises(SystemExit):
        lb_member.main()
    return module_result(capsys.readouterr().out)


def args(**extra) -> dict:
    return {"endpoints": ["/run/haproxy/admin.sock"], "pool": "app", "member": "web01", **extra}


def test_check_mode_with_diff_changes_nothing(haproxy, monkeypatch, capsys):
    out = run_module(args(state="drained", _ansible_check_mode=True, _ansible_diff=True), monkeypatch, capsys)
    assert out["changed"] is True and haproxy.changes() == []
    assert out["diff"] == {"before": {"/run/haproxy/admin.sock": {"state": "ready", "weight": 100}},
                           "after": {"/run/haproxy/admin.sock": {"state": "maint", "weight": 100}}}
    assert out["ready_members"] == ["web02", "web03"]


def test_drain_then_idempotent_rerun(haproxy, monkeypatch, capsys):
    out = run_module(args(state="drained"), monkeypatch, capsys)
    assert haproxy.changes() == ["set server app/web01 state drain", "set server app/web01 state maint"]
    lb = out["lbs"][0]
    assert (lb["previous_state"], lb["state"], lb["sessions_at_start"], lb["forced"]) == ("ready", "maint", 0, False)
    assert "diff" not in out
    again = run_module(args(state="drained"), monkeypatch, capsys)
    assert again["changed"] is False and len(haproxy.changes()) == 2


def test_drain_timeout_force_runs_shutdown_sessions(haproxy, monkeypatch, capsys):
    haproxy.servers["web01"]["scur"] = 2
    out = run_module(args(state="drained", drain_timeout=0.1, poll_interval=0.05, on_timeout="force"),
                     monkeypatch, capsys)
    assert haproxy.changes() == ["set server app/web01 state drain", "shutdown sessions server app/web01",
                                 "set server app/web01 state maint"]
    assert out["lbs"][0]["forced"] is True and out["lbs"][0]["sessions_at_start"] == 2


def test_drain_timeout_fail_restores(haproxy, monkeypatch, capsys):
    haproxy.servers["web01"]["scur"] = 2
    out = run_module(args(state="drained", drain_timeout=0.1, poll_interval=0.05), monkeypatch, capsys)
    assert out["failed"] and "drain_timeout=0.1" in out["msg"] and out["remaining"] == {"/run/haproxy/admin.sock": 2}
    assert haproxy.changes() == ["set server app/web01 state drain", "set server app/web01 state ready"]


def test_unknown_member_lists_the_pool(haproxy, monkeypatch, capsys):
    out = run_module(args(member="web09", state="disabled"), monkeypatch, capsys)
    assert out["failed"] and "web09" in out["msg"] and "web01, web02, web03" in out["msg"]
    assert out["members"] == ["web01", "web02", "web03"]


def test_unknown_pool_lists_the_backends(haproxy, monkeypatch, capsys):
    out = run_module(args(pool="api", state="disabled"), monkeypatch, capsys)
    assert out["failed"] and "no backend 'api'" in out["msg"] and out["backends"] == ["app"]


def test_operator_level_socket_is_refused_before_any_change(haproxy, monkeypatch, capsys):
    haproxy.level = "operator"
    out = run_module(args(state="drained"), monkeypatch, capsys)
    assert out["failed"] and "Permission denied" in out["msg"] and haproxy.changes() == []


def test_capacity_guard(haproxy, monkeypatch, capsys):
    haproxy.servers["web02"]["flags"] = 0x01
    out = run_module(args(state="drained", min_ready=2), monkeypatch, capsys)
    assert out["failed"] and out["ready_members"] == ["web03"] and haproxy.changes() == []


def test_enable_with_warmup_and_weight(haproxy, monkeypatch, capsys):
    haproxy.servers["web01"]["flags"] = 0x01
    out = run_module(args(state="enabled", wait_healthy=True, warmup=[{"weight": "10%", "pause": 0}],
                          weight="80%"), monkeypatch, capsys)
    assert haproxy.changes() == ["set server app/web01 weight 10", "set server app/web01 state ready",
                                 "set server app/web01 weight 80"]
    assert out["lbs"][0]["weight"] == 80 and out["lbs"][0]["health"] == "UP"


def test_missing_socket(monkeypatch, capsys, tmp_path):
    out = run_module(args(endpoints=[str(tmp_path / "admin.sock")], state="drained"), monkeypatch, capsys)
    assert out["failed"] and "does not exist" in out["msg"]


@pytest.mark.parametrize("extra,message", [
    ({"state": "drained", "warmup": [{"weight": 10}]}, "warmup applies only to state=enabled"),
    ({"state": "enabled", "backend": "nginx", "wait_healthy": True}, "needs health_uri"),
    ({"state": "drained", "drain_timeout": -1}, "drain_timeout must not be negative"),
    ({"state": "drained", "min_ready": "lots"}, "min_ready 'lots' must be a count"),
    ({"state": "enabled", "weight": "999"}, "must be 0..256"),
])
def test_argument_errors(haproxy, monkeypatch, capsys, extra, message):
    out = run_module(args(**extra), monkeypatch, capsys)
    assert out["failed"] and message in out["msg"]
    assert haproxy.changes() == []
