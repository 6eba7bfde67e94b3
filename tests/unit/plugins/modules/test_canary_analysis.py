"""Unit tests of the canary_analysis module's front end: arguments, env fallback, failing on a fail verdict."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from module_args import module_result, patch_module_args

from ansible_collections.sre.rollout.plugins.modules import canary_analysis

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "prometheus"


def run_module(args: dict, monkeypatch, capsys) -> dict:
    with patch_module_args(args), pytest.raises(SystemExit):
        canary_analysis.main()
    return module_result(capsys.readouterr().out)


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture()
def prom_serving():
    """A local HTTP server answering every query with one recorded answer (set ``.name``)."""
    state = {"name": "vector_error_ratio_zero"}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802
            doc = json.loads((FIXTURES / f"{state['name']}.json").read_text())
            body = doc["body"].encode()
            self.send_response(doc["http_status"])
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


def test_prometheus_down_fails_the_module_with_the_numbers(monkeypatch, capsys):
    out = run_module({"url": closed_port_url(), "canary": ["web01"], "baseline": ["web02"], "duration": 0,
                      "timeout": 2}, monkeypatch, capsys)
    assert out["failed"] is True
    assert out["changed"] is False
    assert out["verdict"] == "fail"
    assert out["inconclusive"] is True
    assert out["msg"].startswith("canary analysis failed: fail:")
    assert len(out["measurements"]) == 4  # the four default metrics, one interval
    assert all(m["outcome"] == "inconclusive" for m in out["measurements"])


def test_prometheus_down_with_pause_does_not_fail(monkeypatch, capsys):
    out = run_module({"url": closed_port_url(), "canary": ["web01"], "baseline": ["web02"], "duration": 0,
                      "on_inconclusive": "pause"}, monkeypatch, capsys)
    assert "failed" not in out
    assert out["verdict"] == "inconclusive"


def test_url_comes_from_the_environment(monkeypatch, capsys, prom_serving):
    monkeypatch.setenv("PROMETHEUS_URL", prom_serving["url"])
    out = run_module({"canary": ["web01"], "baseline": ["web02"], "duration": 0,
                      "metrics": [{"name": "app_error_ratio"}]}, monkeypatch, capsys)
    assert out["verdict"] == "pass"
    assert out["measurements"][0]["canary"] == 0.0
    assert 'instance=~"web01"' in out["queries"]["app_error_ratio"]["canary"]


def test_pass_with_tolerated_inconclusive_intervals_warns(monkeypatch, capsys, prom_serving):
    prom_serving["name"] = "vector_nan"
    out = run_module({"url": prom_serving["url"], "canary": ["web01"], "baseline": ["web02"], "duration": 0,
                      "on_inconclusive": "pass", "metrics": [{"name": "app_error_ratio"}]},
                     monkeypatch, capsys)
    assert out["verdict"] == "pass"
    assert out["inconclusive"] is True
    assert out["inconclusive_intervals"] == 1
    assert any("inconclusive" in w for w in out.get("warnings", []))


def test_invalid_query_fails_with_the_query(monkeypatch, capsys, prom_serving):
    prom_serving["name"] = "error_bad_data"
    out = run_module({"url": prom_serving["url"], "canary": ["web01"], "duration": 0,
                      "metrics": [{"name": "broken", "query": 'sum(x{host=~"$HOSTS"}', "max": 1}]},
                     monkeypatch, capsys)
    assert out["failed"] is True
    assert "rejected the query as invalid" in out["msg"]
    assert out["query"] == 'sum(x{host=~"web01"}'


def test_bad_configuration_fails_before_querying(monkeypatch, capsys):
    out = run_module({"url": closed_port_url(), "canary": ["web01"], "baseline": ["web01"]}, monkeypatch, capsys)
    assert out["failed"] is True
    assert "in both `canary` and `baseline`" in out["msg"]
    assert "verdict" not in out
