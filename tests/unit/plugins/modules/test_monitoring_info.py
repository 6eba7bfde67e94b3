"""alertmanager_info and prometheus_info: the preflight's checks, through the collection's own clients."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from module_args import module_result, patch_module_args

from ansible_collections.sre.rollout.plugins.modules import alertmanager_info, prometheus_info

AM_STATUS = {"cluster": {"status": "ready", "peers": []}, "versionInfo": {"version": "0.25.0"},
             "uptime": "2030-01-31T17:00:00.000Z", "config": {"original": "route: {}"}}


class FakeServer:
    """Answers every GET with ``answer`` = (status, body bytes) and records the requests."""

    def __init__(self) -> None:
        self.answer: tuple[int, bytes] = (200, b"")
        self.requests: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802
                fake.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}})
                status, body = fake.answer
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def server():
    fake = FakeServer()
    yield fake
    fake.close()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def run(module, args: dict, capsys, check: bool = False) -> dict:
    if check:
        args = {**args, "_ansible_check_mode": True}
    with patch_module_args(args), pytest.raises(SystemExit):
        module.main()
    return module_result(capsys.readouterr().out)


# --------------------------------------------------------------------------- alertmanager_info


@pytest.mark.parametrize("check", [False, True])
def test_alertmanager_status_is_read(server, capsys, check):
    server.answer = (200, json.dumps(AM_STATUS).encode())
    result = run(alertmanager_info, {"url": server.url + "/api/v2/"}, capsys, check=check)
    assert not result.get("failed"), result
    assert (result["available"], result["changed"]) == (True, False)
    assert (result["version"], result["cluster_status"], result["uptime"]) == \
        ("0.25.0", "ready", "2030-01-31T17:00:00.000Z")
    assert result["url"] == server.url
    assert result["status"] == AM_STATUS
    assert server.requests[0]["path"] == "/api/v2/status"


def test_alertmanager_token_and_headers_are_sent_and_the_token_is_not_shown(server, capsys):
    server.answer = (200, json.dumps(AM_STATUS).encode())
    result = run(alertmanager_info, {"url": server.url, "token": "s3cret", "headers": {"X-Org": "sre"}}, capsys)
    headers = server.requests[0]["headers"]
    assert (headers["authorization"], headers["x-org"]) == ("Bearer s3cret", "sre")
    assert "s3cret" not in json.dumps(result)


def test_alertmanager_url_and_token_come_from_the_environment(server, capsys, monkeypatch):
    server.answer = (200, json.dumps(AM_STATUS).encode())
    monkeypatch.setenv("SRE_ALERTMANAGER_URL", server.url)
    monkeypatch.setenv("ALERTMANAGER_TOKEN", "from-env")
    assert run(alertmanager_info, {}, capsys)["available"] is True
    assert server.requests[0]["headers"]["authorization"] == "Bearer from-env"


def test_alertmanager_that_reports_no_version_still_answers(server, capsys):
    server.answer = (200, b"{}")
    result = run(alertmanager_info, {"url": server.url}, capsys)
    assert (result["available"], result["version"], result["cluster_status"]) == (True, "", "")


def test_alertmanager_down_fails_with_what_to_check(capsys):
    url = closed_port_url()
    result = run(alertmanager_info, {"url": url, "timeout": 2}, capsys)
    assert result["failed"] is True
    assert result["msg"].startswith(f"cannot reach Alertmanager at {url} (GET {url}/api/v2/status)")
    assert "available" not in result
    assert result["url"] == url


@pytest.mark.parametrize("status,body,fragment", [
    (401, b"Unauthorized", "wants credentials and none were given: set username/password or token"),
    (404, b"404 page not found", "check that url is Alertmanager's base URL"),
    (200, b"<html>login</html>", "not JSON"),
    (200, b"[]", "not an object"),
])
def test_alertmanager_wrong_answers_fail_with_a_hint(server, capsys, status, body, fragment):
    server.answer = (status, body)
    result = run(alertmanager_info, {"url": server.url}, capsys)
    assert result["failed"] is True
    assert fragment in result["msg"]


def test_alertmanager_url_must_be_http(capsys):
    result = run(alertmanager_info, {"url": "alertmanager:9093"}, capsys)
    assert result["failed"] is True and "is not an http(s) URL" in result["msg"]


# --------------------------------------------------------------------------- prometheus_info


@pytest.mark.parametrize("check", [False, True])
def test_prometheus_ready(server, capsys, check):
    server.answer = (200, b"Prometheus Server is Ready.\n")
    result = run(prometheus_info, {"url": server.url + "/"}, capsys, check=check)
    assert not result.get("failed"), result
    assert (result["available"], result["changed"], result["answer"]) == (True, False, "Prometheus Server is Ready.")
    assert result["url"] == server.url
    assert server.requests[0]["path"] == "/-/ready"


def test_prometheus_behind_a_path_prefix(server, capsys):
    server.answer = (200, b"Prometheus Server is Ready.")
    run(prometheus_info, {"url": server.url + "/prometheus"}, capsys)
    assert server.requests[0]["path"] == "/prometheus/-/ready"


def test_prometheus_token_and_headers_are_sent_and_the_token_is_not_shown(server, capsys, monkeypatch):
    server.answer = (200, b"Prometheus Server is Ready.")
    monkeypatch.setenv("PROMETHEUS_URL", server.url)
    monkeypatch.setenv("PROMETHEUS_TOKEN", "s3cret")
    result = run(prometheus_info, {"headers": {"X-Scope-OrgID": "team-a"}}, capsys)
    headers = server.requests[0]["headers"]
    assert (headers["authorization"], headers["x-scope-orgid"]) == ("Bearer s3cret", "team-a")
    assert "s3cret" not in json.dumps(result)


@pytest.mark.parametrize("status,body,fragment", [
    (503, b"Service Unavailable", "is not ready: HTTP 503 'Service Unavailable'; it is still starting"),
    (401, b"Unauthorized", "is not ready: HTTP 401 'Unauthorized'; it wants credentials and none were given"),
])
def test_prometheus_not_ready_fails_with_a_hint(server, capsys, status, body, fragment):
    server.answer = (status, body)
    result = run(prometheus_info, {"url": server.url}, capsys)
    assert result["failed"] is True
    assert fragment in result["msg"]
    assert (result["status"], result["error_type"]) == (status, "http")


def test_prometheus_down_fails_with_what_to_check(capsys):
    url = closed_port_url()
    result = run(prometheus_info, {"url": url, "timeout": 2}, capsys)
    assert result["failed"] is True
    assert f"cannot reach Prometheus at {url}" in result["msg"]
    assert result["error_type"] == "unreachable"
