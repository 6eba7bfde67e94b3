"""Unit tests of sre.rollout.wait_healthy against a scripted local HTTP server.

The scripted server covers the parsing, matching and error paths; the real proof (the lab's
app, healthy / never healthy / wrong version) is in tests/integration/test_app_release.py.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from module_args import module_result, patch_module_args

from ansible_collections.sre.rollout.plugins.module_utils._common import RolloutError
from ansible_collections.sre.rollout.plugins.modules import wait_healthy as wh


class Script:
    """Answers per path: a list of (status, body) consumed in order, the last one repeated."""

    def __init__(self, routes: dict[str, list[tuple[int, str]]], delay: float = 0.0) -> None:
        self.routes = {path: list(answers) for path, answers in routes.items()}
        self.delay = delay
        self.hits: dict[str, int] = {}

    def answer(self, path: str) -> tuple[int, str]:
        self.hits[path] = self.hits.get(path, 0) + 1
        answers = self.routes.get(path, [(404, "not found")])
        return answers.pop(0) if len(answers) > 1 else answers[0]


@pytest.fixture()
def server():
    """Start a scripted server on loopback: ``base, script = server({...})``."""
    started = []

    def start(routes, delay=0.0):
        script = Script(routes, delay)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                time.sleep(script.delay)
                status, body = script.answer(self.path)
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        started.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}", script

    yield start
    for httpd in started:
        httpd.shutdown()
        httpd.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def params(**overrides) -> dict:
    base = {name: spec.get("default") for name, spec in wh.ARGUMENT_SPEC.items()}
    base.update(interval=0.0, timeout=5.0, request_timeout=2.0)
    base.update(overrides)
    return wh.normalize(base)


def run_module(capsys, args: dict, check_mode: bool = False) -> dict:
    payload = dict(args)
    if check_mode:
        payload["_ansible_check_mode"] = True
    with patch_module_args(payload), pytest.raises(SystemExit):
        wh.main()
    return module_result(capsys.readouterr().out)


# ------------------------------------------------------------------- parsing


@pytest.mark.parametrize("target,expected", [("10.0.0.5:8080", ("10.0.0.5", 8080)), ("[::1]:80", ("::1", 80)),
                                             ("web01:22", ("web01", 22))])
def test_parse_tcp(target, expected):
    assert wh.parse_tcp(target) == expected


@pytest.mark.parametrize("target", ["web01", ":80", "web01:http", "web01:0", "web01:70000", ""])
def test_parse_tcp_refuses_bad_targets(target):
    with pytest.raises(RolloutError, match="invalid tcp target.*host:port"):
        wh.parse_tcp(target)


@pytest.mark.parametrize("url,expected", [
    ("http://h:8080/health", "http://h:8080/version"),
    ("http://h:8080/", "http://h:8080/version"),
    ("http://h:8080", "http://h:8080/version"),
    ("https://h/app/health?full=1", "https://h/app/version"),
])
def test_default_version_url(url, expected):
    assert wh.default_version_url(url) == expected


def test_dig_dotted_paths():
    data = {"a": {"b": [{"c": 1}, {"c": 2}]}, "x": None}
    assert wh.dig(data, "a.b.1.c") == 2
    assert wh.dig(data, "a.b.-1.c") == 2
    assert wh.dig(data, "x") is None
    assert wh.dig(data, "a.b.5.c") is wh._MISSING
    assert wh.dig(data, "a.z") is wh._MISSING


@pytest.mark.parametrize("found,wanted,equal", [
    ("up", "up", True), (3, "3", True), (True, "true", True), (3, 3.0, True), (None, "null", True),
    ("3", 3, False), (True, 1, False), ("up", "down", False), (1, True, False),
])
def test_json_equal(found, wanted, equal):
    assert wh.json_equal(found, wanted) is equal


@pytest.mark.parametrize("overrides,message", [
    ({"url": "ftp://h/x"}, "invalid url"),
    ({"url": "/health"}, "invalid url"),
    ({"url": None, "tcp": "h:1", "expect_version": "1.0"}, "needs version_url"),
    ({"url": "http://h/", "version_url": "h/version"}, "invalid version_url"),
    ({"url": "http://h/", "body_regex": "("}, "invalid body_regex"),
    ({"url": "http://h/", "successes": 0}, "successes must be at least 1"),
    ({"url": "http://h/", "timeout": -1}, "timeout must be at least 0"),
])
def test_normalize_refuses_bad_options(overrides, message):
    with pytest.raises(RolloutError, match=message):
        params(**overrides)


# -------------------------------------------------------------------- checks


def test_passes_after_n_in_a_row_resetting_on_failure(server):
    base, script = server({"/health": [(503, "starting"), (200, "ok"), (503, "flap"), (200, "ok")]})
    passed, progress, _unused = wh.wait(params(url=base + "/health", successes=3))
    assert passed
    assert progress.attempts == 6  # 503, 200, 503 (resets), then 200 x3
    assert progress.in_a_row == 3
    assert progress.last.status == 200 and progress.last.body == "ok"
    assert progress.last_error == "HTTP 503 from " + base + "/health (expected one of [200])"


def test_timeout_reports_the_last_error(server):
    base, script = server({"/health": [(503, "not ready")]})
    passed, progress, elapsed = wh.wait(params(url=base + "/health", timeout=0.3, interval=0.1))
    assert not passed
    assert progress.attempts >= 2
    assert progress.last.status == 503 and progress.last.body == "not ready"
    assert "HTTP 503" in progress.last_error


def test_status_code_list(server):
    base, _unused = server({"/": [(204, "")]})
    assert wh.wait(params(url=base + "/", status_code=[200, 204], successes=1))[0]


def test_body_regex(server):
    base, _unused = server({"/health": [(200, "status: degraded"), (200, "status: ok")]})
    passed, progress, _unused = wh.wait(params(url=base + "/health", body_regex=r"status: ok\b", successes=1))
    assert passed and progress.attempts == 2
    assert "does not match" in progress.last_error


def test_json_path_and_value(server, monkeypatch):
    base, _unused = server({"/status": [(200, "not json"), (200, json.dumps({"checks": {"db": "down"}})),
                                        (200, json.dumps({"checks": {}})),
                                        (200, json.dumps({"checks": {"db": "up"}}))]})
    seen = []
    original = wh.check_json_field

    def spy(body, path, wanted):
        seen.append(original(body, path, wanted))
        return seen[-1]

    monkeypatch.setattr(wh, "check_json_field", spy)
    passed, progress, _unused = wh.wait(params(url=base + "/status", json_path="checks.db", json_value="up", successes=1))
    assert passed and progress.attempts == 4
    assert seen[:3] == ["body is not JSON, cannot read 'checks.db'", "JSON field 'checks.db' is 'down', expected 'up'",
                        "JSON field 'checks.db' is missing"]


def test_expect_version_waits_for_the_new_process(server):
    base, script = server({"/health": [(200, "ok")],
                           "/version": [(200, json.dumps({"version": "1.0.0"})),
                                        (200, json.dumps({"version": "1.1.0"}))]})
    passed, progress, _unused = wh.wait(params(url=base + "/health", expect_version="1.1.0", successes=2))
    assert passed and progress.version == "1.1.0" and progress.attempts == 3
    assert "version is '1.0.0', expected '1.1.0'" in progress.last_error


def test_version_field_and_endpoint_errors(server):
    base, _unused = server({"/health": [(200, "ok")], "/v": [(500, "boom"), (200, "nope"), (200, "{}"),
                                                             (200, json.dumps({"build": {"v": "2"}}))]})
    passed, progress, _unused = wh.wait(params(url=base + "/health", version_url=base + "/v", version_field="build.v",
                                               expect_version="2", successes=1))
    assert passed and progress.version == "2" and progress.attempts == 4


def test_version_mismatch_times_out(server):
    base, _unused = server({"/health": [(200, "ok")], "/version": [(200, json.dumps({"version": "1.0.0"}))]})
    passed, progress, _unused = wh.wait(params(url=base + "/health", expect_version="9.9.9", timeout=0.2,
                                               interval=0.05))
    assert not passed and progress.version == "1.0.0"
    assert "expected '9.9.9'" in progress.last_error


def test_connection_refused_is_an_error_not_an_exception():
    port = free_port()
    passed, progress, _unused = wh.wait(params(url=f"http://127.0.0.1:{port}/health", timeout=0.1))
    assert not passed and progress.last.status is None
    assert progress.last_error.startswith(f"cannot connect to http://127.0.0.1:{port}/health")


def test_slow_answer_hits_request_timeout(server):
    base, _unused = server({"/health": [(200, "ok")]}, delay=1.5)
    passed, progress, _unused = wh.wait(params(url=base + "/health", request_timeout=0.5, timeout=0.1, successes=1))
    assert not passed
    assert "within 0.5s" in progress.last_error or "timed out" in progress.last_error


def test_tcp_checks(server):
    base, _unused = server({})
    port = int(base.rsplit(":", 1)[1])
    assert wh.wait(params(url=None, tcp=f"127.0.0.1:{port}", successes=2))[0]
    passed, progress, _unused = wh.wait(params(url=None, tcp=f"127.0.0.1:{free_port()}", timeout=0.1))
    assert not passed and progress.last_error.startswith("cannot connect to 127.0.0.1:")


def test_last_body_is_truncated(server):
    base, _unused = server({"/": [(200, "x" * 5000)]})
    _unused, progress, _unused = wh.wait(params(url=base + "/", successes=1))
    assert len(progress.last.body) == wh.BODY_LIMIT


def test_wait_never_sleeps_past_the_deadline(monkeypatch):
    now = [0.0]
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    p = params(tcp="127.0.0.1:1", url=None, interval=4.0, timeout=10.0)
    monkeypatch.setattr(wh, "check_once",
                        lambda prm, timeout, client: wh.Check(ok=False, error=f"down (timeout {timeout})"))
    passed, progress, elapsed = wh.wait(p, clock=lambda: now[0], sleep=sleep)
    assert not passed
    assert slept == [4.0, 4.0, 2.0]
    assert progress.attempts == 4 and elapsed == 10.0
    assert progress.last_error == "down (timeout 0.5)"  # the last check at the deadline still gets 0.5 s


# ---------------------------------------------------------------------- main


def test_main_success_result(server, capsys):
    base, _unused = server({"/health": [(200, "ok")], "/version": [(200, json.dumps({"version": "1.0.0"}))]})
    result = run_module(capsys, {"url": base + "/health", "expect_version": "1.0.0", "interval": 0})
    assert result["changed"] is False and "failed" not in result
    assert result["attempts"] == 3 and result["successes"] == 3
    assert result["last_status"] == 200 and result["last_body"] == "ok"
    assert result["version"] == "1.0.0" and result["last_error"] is None
    assert result["url"] == base + "/health" and result["elapsed"] >= 0


def test_main_runs_in_check_mode(server, capsys):
    base, script = server({"/health": [(200, "ok")]})
    result = run_module(capsys, {"url": base + "/health", "interval": 0, "successes": 2}, check_mode=True)
    assert "failed" not in result and result["attempts"] == 2
    assert script.hits["/health"] == 2


def test_main_failure_says_what_and_returns_details(server, capsys):
    base, _unused = server({"/health": [(503, "warming up")]})
    result = run_module(capsys, {"url": base + "/health", "interval": 0.05, "timeout": 1.5})
    assert result["failed"] is True
    assert result["msg"].startswith(f"{base}/health not healthy after")
    assert "last error: HTTP 503" in result["msg"] and "raise timeout" in result["msg"]
    assert result["last_status"] == 503 and result["last_body"] == "warming up"
    assert result["attempts"] >= 2


def test_main_bad_options_fail_cleanly(capsys):
    result = run_module(capsys, {"tcp": "nohost"})
    assert result["failed"] is True and "invalid tcp target" in result["msg"]
    result = run_module(capsys, {"url": "http://h/", "tcp": "h:1"})
    assert result["failed"] is True and "mutually exclusive" in result["msg"]
    result = run_module(capsys, {"url": "http://h/", "json_value": "x"})
    assert result["failed"] is True and "json_path" in result["msg"]
