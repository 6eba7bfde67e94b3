"""lb_pool_info's front end over captured HAProxy 2.6 answers, and its failures."""

from __future__ import annotations

from pathlib import Path

import pytest
from module_args import module_result, patch_module_args

from ansible_collections.sre.rollout.plugins.module_utils import _haproxy
from ansible_collections.sre.rollout.plugins.modules import lb_pool_info

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "haproxy"


def run_module(args: dict, monkeypatch, capsys) -> dict:
    with patch_module_args(args), pytest.raises(SystemExit):
        lb_pool_info.main()
    return module_result(capsys.readouterr().out)


def serve(monkeypatch, scenes: dict[str, str]) -> list[tuple[str, str]]:
    """Each endpoint answers from its captured scene."""
    sent = []

    def raw(self, command):
        sent.append((self.endpoint, command))
        scene = scenes[self.endpoint]
        if command == "show stat app 4 -1":
            return (FIXTURES / f"show_stat_{scene}.csv").read_text()
        if command == "show servers state app":
            return (FIXTURES / f"show_servers_state_{scene}.txt").read_text()
        raise AssertionError(command)

    monkeypatch.setattr(_haproxy.RuntimeAPI, "raw", raw)
    return sent


def test_two_endpoints_and_ready_on_all(monkeypatch, capsys):
    sent = serve(monkeypatch, {"/run/a.sock": "all_up", "tcp://127.0.0.1:9999": "drain"})
    out = run_module({"endpoints": ["/run/a.sock", "tcp://127.0.0.1:9999"], "pool": "app",
                      "_ansible_check_mode": True}, monkeypatch, capsys)
    assert out["changed"] is False
    assert [p["endpoint"] for p in out["pools"]] == ["/run/a.sock", "tcp://127.0.0.1:9999"]
    web02 = out["pools"][1]["members"][1]
    assert (web02["name"], web02["state"], web02["health"], web02["ready"]) == ("web02", "drain", "UP", False)
    assert out["ready_members"] == ["web01", "web03", "web04"]
    assert all(not c.startswith("set") for _unused, c in sent)


def test_maint_via_is_reported(monkeypatch, capsys):
    serve(monkeypatch, {"/run/a.sock": "maint_via"})
    out = run_module({"endpoints": ["/run/a.sock"], "pool": "app"}, monkeypatch, capsys)
    web04 = out["pools"][0]["members"][3]
    assert web04["status"] == "MAINT (via app/web01)" and web04["state"] == "maint"
    assert web04["tracked"] == "app/web01"
    assert out["ready_members"] == ["web03"]


def test_unreachable_endpoint_fails(monkeypatch, capsys, tmp_path):
    out = run_module({"endpoints": [str(tmp_path / "none.sock")], "pool": "app"}, monkeypatch, capsys)
    assert out["failed"] and "does not exist" in out["msg"]


def test_nginx_not_running_fails(monkeypatch, capsys, tmp_path):
    upstream = tmp_path / "up.conf"
    upstream.write_text("upstream app {\n    server 10.0.0.1:80;\n}\n")
    out = run_module({"backend": "nginx", "endpoints": [str(upstream)], "pool": "app",
                      "nginx_pidfile": str(tmp_path / "nginx.pid")}, monkeypatch, capsys)
    assert out["failed"] and "nginx is not running" in out["msg"]
