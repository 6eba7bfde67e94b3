"""HAProxy runtime API client: parsing captured HAProxy 2.6 answers, error answers, transport errors."""

from __future__ import annotations

import errno
import os
import socket
import threading
from pathlib import Path

import pytest

from ansible_collections.sre.rollout.plugins.module_utils._haproxy import (
    ADMF_FDRAIN, ADMF_FMAINT, HAProxyError, RuntimeAPI, admin_state_from_flags, parse_endpoint, parse_servers_state, parse_stat_csv,
    resolve_weight,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "haproxy"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def api_answering(monkeypatch, answers: dict[str, str], endpoint: str = "/run/haproxy/admin.sock") -> RuntimeAPI:
    """A RuntimeAPI whose transport answers each command from ``answers`` (exact command → text)."""
    api = RuntimeAPI(endpoint)
    sent: list[str] = []

    def raw(command: str) -> str:
        sent.append(command)
        if command not in answers:
            raise AssertionError(f"unexpected command {command!r}")
        return answers[command]

    monkeypatch.setattr(api, "raw", raw)
    api.sent = sent  # type: ignore[attr-defined]
    return api


def captured(monkeypatch, scene: str) -> RuntimeAPI:
    """The API seeing one captured scene (show stat + show servers state of HAProxy 2.6)."""
    return api_answering(monkeypatch, {
        "show stat app 4 -1": fixture(f"show_stat_{scene}.csv"),
        "show servers state app": fixture(f"show_servers_state_{scene}.txt"),
    })


# --------------------------------------------------------------------------- parsing


def test_parse_stat_csv_keys_rows_by_header():
    rows = parse_stat_csv(fixture("show_stat_all_up.csv"))
    servers = [r for r in rows if r["svname"] not in ("FRONTEND", "BACKEND")]
    assert [r["svname"] for r in servers] == ["web01", "web02", "web03", "web04"]
    assert servers[0]["status"] == "UP" and servers[0]["addr"] == "127.0.11.201:18080"
    assert servers[3]["tracked"] == "app/web01"


def test_parse_stat_csv_rejects_an_error_answer():
    with pytest.raises(HAProxyError, match="not its CSV"):
        parse_stat_csv(fixture("answer_no_such_proxy.txt"))


def test_parse_servers_state_version_1():
    rows = parse_servers_state(fixture("show_servers_state_drain.txt"))
    assert [r["srv_name"] for r in rows] == ["web01", "web02", "web03", "web04"]
    assert rows[1]["srv_admin_state"] == "8"  # FDRAIN


def test_parse_servers_state_rejects_unknown_format():
    with pytest.raises(HAProxyError, match="unknown format"):
        parse_servers_state(fixture("answer_cant_find_backend.txt"))


@pytest.mark.parametrize("flags,state", [(0, "ready"), (0x01, "maint"), (0x02, "maint"), (0x04, "maint"),
                                         (0x08, "drain"), (0x10, "drain"), (0x09, "maint"), (0x20, "maint"),
                                         (0x40, "ready")])
def test_admin_state_from_flags(flags, state):
    assert admin_state_from_flags(flags) == state


def test_all_up(monkeypatch):
    servers = captured(monkeypatch, "all_up").servers("app")
    assert list(servers) == ["web01", "web02", "web03", "web04"]
    assert all(s.ready and s.settled_up and s.admin_state == "ready" for s in servers.values())
    assert servers["web01"].as_dict()["address"] == "127.0.11.201:18080"


def test_drain_is_not_ready_but_healthy(monkeypatch):
    web02 = captured(monkeypatch, "drain").servers("app")["web02"]
    assert (web02.status, web02.admin_state, web02.health) == ("DRAIN", "drain", "UP")
    assert web02.admin_flags & ADMF_FDRAIN and not web02.admin_flags & ADMF_FMAINT and not web02.ready


def test_drain_with_sessions_in_flight(monkeypatch):
    servers = captured(monkeypatch, "drain_sessions").servers("app")
    assert servers["web02"].admin_state == "drain"
    assert servers["web02"].sessions == 1 and servers["web02"].in_flight == 1
    assert servers["web03"].sessions == 2 and servers["web03"].ready
    assert servers["web01"].weight == 100 and servers["web01"].initial_weight == 100


def test_maint_and_maint_via(monkeypatch):
    servers = captured(monkeypatch, "maint_via").servers("app")
    assert (servers["web01"].status, servers["web01"].admin_state) == ("MAINT", "maint")
    assert servers["web01"].admin_flags & ADMF_FMAINT
    via = servers["web04"]
    assert via.status == "MAINT (via app/web01)" and via.admin_state == "maint"
    assert not via.admin_flags & ADMF_FMAINT, "inherited maintenance is not ours to lift"
    assert via.tracked == "app/web01" and not via.ready


def test_down_server_in_drain_is_seen_as_drain(monkeypatch):
    """show stat shows only "DOWN": the drain flag comes from show servers state."""
    web03 = captured(monkeypatch, "down_drain").servers("app")["web03"]
    assert web03.status == "DOWN" and web03.check_status == "L4CON"
    assert (web03.admin_state, web03.health, web03.ready) == ("drain", "DOWN", False)


def test_weight_zero_is_not_ready(monkeypatch):
    web01 = captured(monkeypatch, "weight0").servers("app")["web01"]
    assert web01.status == "UP" and web01.weight == 0 and not web01.ready


def test_without_servers_state_the_status_text_is_used(monkeypatch):
    api = api_answering(monkeypatch, {
        "show stat app 4 -1": fixture("show_stat_maint_via.csv"),
        "show servers state app": "1\n# be_id be_name srv_id srv_name\n",
    })
    servers = api.servers("app")
    assert servers["web02"].admin_state == "drain" and servers["web04"].admin_state == "maint"
    assert servers["web03"].health == "UP"


# --------------------------------------------------------------------------- error answers


def test_unknown_server_names_the_member_and_lists_the_pool(monkeypatch):
    with pytest.raises(HAProxyError) as err:
        captured(monkeypatch, "all_up").server("app", "web09")
    assert "web09" in err.value.msg and "web01, web02, web03, web04" in err.value.msg
    assert err.value.details["members"] == ["web01", "web02", "web03", "web04"]


def test_unknown_backend_lists_the_backends(monkeypatch):
    api = api_answering(monkeypatch, {"show stat nope 4 -1": fixture("answer_no_such_proxy.txt"),
                                      "show stat -1 2 -1": fixture("show_stat_backends.csv")})
    with pytest.raises(HAProxyError) as err:
        api.servers("nope")
    assert "no backend 'nope'" in err.value.msg and "app" in err.value.details["backends"]


@pytest.mark.parametrize("answer,expected", [
    ("answer_no_such_server.txt", "No such server."),
    ("answer_no_such_backend.txt", "No such backend."),
    ("answer_permission_denied.txt", "level admin"),
    ("answer_bad_weight.txt", "Absolute weight can only be between 0 and 256"),
    ("answer_set_server_usage.txt", "does not understand"),
    ("answer_unknown_command.txt", "does not understand"),
])
def test_error_answers_raise_with_haproxys_text(monkeypatch, answer, expected):
    api = api_answering(monkeypatch, {"set server app/web01 state drain": fixture(answer)})
    with pytest.raises(HAProxyError) as err:
        api.set_state("app", "web01", "drain")
    assert expected in err.value.msg
    assert err.value.details["answer"] == fixture(answer).strip()


def test_set_commands_accept_the_empty_answer(monkeypatch):
    api = api_answering(monkeypatch, {"set server app/web01 state maint": "\n",
                                      "set server app/web01 weight 50%": "\n",
                                      "shutdown sessions server app/web01": "\n"})
    api.set_state("app", "web01", "maint")
    api.set_weight("app", "web01", "50%")
    api.shutdown_sessions("app", "web01")
    assert api.sent == ["set server app/web01 state maint", "set server app/web01 weight 50%",
                        "shutdown sessions server app/web01"]


def test_set_state_rejects_unknown_states_before_sending(monkeypatch):
    api = api_answering(monkeypatch, {})
    with pytest.raises(HAProxyError, match="ready, drain, maint"):
        api.set_state("app", "web01", "down")


def test_require_admin(monkeypatch):
    api_answering(monkeypatch, {"show cli level": "admin\n\n"}).require_admin()
    with pytest.raises(HAProxyError, match="level 'operator'.*Permission denied"):
        api_answering(monkeypatch, {"show cli level": "operator\n\n"}).require_admin()
    # older HAProxy without "show cli level": no opinion, the set command will tell
    api_answering(monkeypatch, {"show cli level": fixture("answer_unknown_command.txt")}).require_admin()


# --------------------------------------------------------------------------- endpoints and weights


@pytest.mark.parametrize("endpoint,family,address", [
    ("/run/haproxy/admin.sock", socket.AF_UNIX, "/run/haproxy/admin.sock"),
    ("unix:///run/haproxy/admin.sock", socket.AF_UNIX, "/run/haproxy/admin.sock"),
    ("tcp://127.0.0.1:9999", socket.AF_INET, ("127.0.0.1", 9999)),
    ("tcp://[::1]:9999", socket.AF_INET6, ("::1", 9999)),
])
def test_parse_endpoint(endpoint, family, address):
    assert parse_endpoint(endpoint) == (family, address)


@pytest.mark.parametrize("endpoint", ["tcp://127.0.0.1", "tcp://:99", "admin.sock", "http://x:1"])
def test_parse_endpoint_rejects(endpoint):
    with pytest.raises(HAProxyError, match="endpoint"):
        parse_endpoint(endpoint)


@pytest.mark.parametrize("weight,initial,expected", [
    ("50%", 100, 50), ("100%", 100, 100), ("10%", 1, 0), ("0", 100, 0), (256, 1, 256), ("300%", 100, 256),
])
def test_resolve_weight_matches_haproxy(weight, initial, expected):
    assert resolve_weight(weight, initial) == expected


@pytest.mark.parametrize("weight", ["257", "-1", "half", "5.5%"])
def test_resolve_weight_rejects(weight):
    with pytest.raises(HAProxyError, match="weight"):
        resolve_weight(weight, 100)


# --------------------------------------------------------------------------- transport


class OneShotServer:
    """Answers each connection once with ``answer`` and closes it, like HAProxy's non-interactive mode."""

    def __init__(self, family: int, address, answer: bytes | None) -> None:
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind(address)
        self.sock.listen(5)
        self.answer = answer
        self.received: list[bytes] = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                conn, _unused = self.sock.accept()
            except OSError:
                return
            with conn:
                self.received.append(conn.recv(4096))
                if self.answer is None:  # never answer: the client must time out
                    conn.recv(4096)
                    continue
                conn.sendall(self.answer)

    def close(self) -> None:
        self.sock.close()


def test_unix_socket_one_command_per_connection(tmp_path):
    path = str(tmp_path / "admin.sock")
    server = OneShotServer(socket.AF_UNIX, path, fixture("show_servers_state_all_up.txt").encode())
    try:
        api = RuntimeAPI(path, timeout=2)
        assert api.raw("show servers state app").startswith("1\n")
        assert api.raw("show servers state app").startswith("1\n")
        assert server.received == [b"show servers state app\n"] * 2
    finally:
        server.close()


def test_tcp_endpoint():
    server = OneShotServer(socket.AF_INET, ("127.0.0.1", 0), b"admin\n\n")
    try:
        api = RuntimeAPI(f"tcp://127.0.0.1:{server.sock.getsockname()[1]}", timeout=2)
        assert api.cli_level() == "admin"
    finally:
        server.close()


def test_missing_socket_says_so(tmp_path):
    with pytest.raises(HAProxyError) as err:
        RuntimeAPI(str(tmp_path / "nope.sock")).raw("show info")
    assert "does not exist" in err.value.msg and "stats socket" in err.value.msg


def test_permission_denied_on_the_socket(monkeypatch, tmp_path):
    def denied(self, address):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(socket.socket, "connect", denied)
    with pytest.raises(HAProxyError) as err:
        RuntimeAPI(str(tmp_path / "admin.sock")).raw("show info")
    assert "permission denied" in err.value.msg and "become" in err.value.msg


def test_connection_refused_on_tcp():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(HAProxyError, match="refused the connection"):
        RuntimeAPI(f"tcp://127.0.0.1:{port}", timeout=2).raw("show info")


def test_silent_server_times_out(tmp_path):
    path = str(tmp_path / "slow.sock")
    server = OneShotServer(socket.AF_UNIX, path, None)
    try:
        with pytest.raises(HAProxyError, match="did not answer"):
            RuntimeAPI(path, timeout=0.2).raw("show stat")
    finally:
        server.close()
