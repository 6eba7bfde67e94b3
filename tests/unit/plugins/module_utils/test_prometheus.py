"""Unit tests of the Prometheus client on recorded answers and a local HTTP server for its error paths."""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from ansible_collections.sre.rollout.plugins.module_utils._common import RolloutError
from ansible_collections.sre.rollout.plugins.module_utils._prometheus import (
    BAD_RESPONSE,
    HTTP_ERROR,
    TIMEOUT,
    UNREACHABLE,
    PrometheusClient,
    PrometheusError,
    parse_response,
    parse_value,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "prometheus"


def recorded(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def recorded_value(name: str) -> float:
    """The first sample's value, read straight from the recorded body."""
    return float(json.loads(recorded(name)["body"])["data"]["result"][0]["value"][1])


def parse_recorded(name: str):
    doc = recorded(name)
    return parse_response(doc["body"].encode(), status=doc["http_status"], url="http://prom")


# --- parsing recorded answers ---------------------------------------------------------------------

def test_normal_vector_gives_one_sample_with_its_value():
    result = parse_recorded("vector_normal")
    assert result.result_type == "vector"
    assert len(result.samples) == 1
    assert result.samples[0].labels == {}
    assert result.samples[0].value == recorded_value("vector_normal") > 0


def test_evaluation_time_is_kept():
    body = json.loads(recorded("vector_normal")["body"])
    assert parse_recorded("vector_normal").time == body["data"]["result"][0]["value"][0]
    assert parse_recorded("scalar_inf").time == json.loads(recorded("scalar_inf")["body"])["data"]["result"][0]
    assert parse_recorded("vector_empty").time is None


def test_several_series_keep_their_labels():
    result = parse_recorded("vector_several_series")
    hosts = sorted(s.labels["host"] for s in result.samples)
    assert hosts == ["web01", "web02", "web03", "web04", "web05", "web06"]


def test_empty_vector_has_no_samples():
    result = parse_recorded("vector_empty")
    assert result.result_type == "vector"
    assert result.samples == ()


def test_nan_is_a_float_nan():
    result = parse_recorded("vector_nan")
    assert math.isnan(result.samples[0].value)


def test_scalar_results():
    assert parse_recorded("scalar_normal").samples[0].value == 7.0
    inf = parse_recorded("scalar_inf")
    assert inf.result_type == "scalar"
    assert inf.samples[0].value == math.inf


def test_matrix_is_reported_without_samples():
    result = parse_recorded("matrix")
    assert result.result_type == "matrix"
    assert result.samples == ()


def test_bad_data_envelope_is_an_invalid_query():
    with pytest.raises(PrometheusError) as err:
        parse_recorded("error_bad_data")
    assert err.value.error_type == "bad_data"
    assert err.value.invalid_query
    assert "parse error" in err.value.msg
    assert "fix the PromQL" in err.value.msg
    assert err.value.details["status"] == 400


def test_execution_error_is_not_an_invalid_query():
    with pytest.raises(PrometheusError) as err:
        parse_recorded("error_execution")
    assert err.value.error_type == "execution"
    assert not err.value.invalid_query
    assert "HTTP 422" in err.value.msg


def test_error_envelope_with_http_200_is_still_an_error():
    body = b'{"status":"error","errorType":"timeout","error":"query timed out in expression evaluation"}'
    with pytest.raises(PrometheusError) as err:
        parse_response(body, status=200)
    assert err.value.error_type == "timeout"


@pytest.mark.parametrize("raw, expected", [("1.5", 1.5), ("+Inf", math.inf), ("-Inf", -math.inf), ("0", 0.0)])
def test_parse_value(raw, expected):
    assert parse_value(raw) == expected


def test_parse_value_refuses_a_number_that_is_not_a_string():
    with pytest.raises(ValueError):
        parse_value(1.5)


@pytest.mark.parametrize("body", [
    b'{"status":"success"}',
    b'{"status":"success","data":{"resultType":"vector","result":{}}}',
    b'{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1]}]}}',
    b'{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1, 2]}]}}',
    b'{"status":"success","data":{"resultType":"scalar","result":"x"}}',
    b'{"status":"success","data":{"resultType":"histogram","result":[]}}',
    b'{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":["now","1"]}]}}',
    b'{"status":"success","data":{"resultType":"scalar","result":[null,"1"]}}',
])
def test_malformed_success_answers_are_bad_responses(body):
    with pytest.raises(PrometheusError) as err:
        parse_response(body)
    assert err.value.error_type == BAD_RESPONSE


def test_an_html_page_is_not_a_prometheus_answer():
    with pytest.raises(PrometheusError) as err:
        parse_response(b"<html>Grafana</html>", url="http://grafana")
    assert err.value.error_type == BAD_RESPONSE
    assert "check `url`" in err.value.msg


# --- the client over HTTP -------------------------------------------------------------------------

class FakePrometheus:
    """A local HTTP server answering /api/v1/query with canned (status, body) and recording requests."""

    def __init__(self) -> None:
        self.answer: tuple[int, bytes] = (200, recorded("vector_normal")["body"].encode())
        self.delay = 0.0
        self.requests: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802
                url = urlparse(self.path)
                fake.requests.append({"path": url.path, "params": parse_qs(url.query),
                                      "headers": self.headers})
                time.sleep(fake.delay)
                status, body = fake.answer
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def serve_recorded(self, name: str) -> None:
        doc = recorded(name)
        self.answer = (doc["http_status"], doc["body"].encode())

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def prom():
    fake = FakePrometheus()
    yield fake
    fake.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_query_sends_query_time_and_timeout(prom):
    client = PrometheusClient(prom.url + "/", timeout=3)
    result = client.query('sum(rate(x{host=~"a|b"}[1m]))', at=1700000000.25)
    assert result.samples[0].value == recorded_value("vector_normal") > 0
    req = prom.requests[0]
    assert req["path"] == "/api/v1/query"
    assert req["params"]["query"] == ['sum(rate(x{host=~"a|b"}[1m]))']
    assert req["params"]["time"] == ["1700000000.250"]
    assert req["params"]["timeout"] == ["3s"]


def test_token_and_headers_are_sent(prom):
    PrometheusClient(prom.url, token="s3cret", headers={"X-Scope-OrgID": "team-a"}).query("up")
    headers = prom.requests[0]["headers"]
    assert headers["Authorization"] == "Bearer s3cret"
    assert headers["X-Scope-OrgID"] == "team-a"


def test_url_with_a_path_prefix_is_kept(prom):
    PrometheusClient(prom.url + "/prometheus").query("up")
    assert prom.requests[0]["path"] == "/prometheus/api/v1/query"


def test_error_envelope_over_http_400(prom):
    prom.serve_recorded("error_bad_data")
    with pytest.raises(PrometheusError) as err:
        PrometheusClient(prom.url).query("sum(")
    assert err.value.invalid_query
    assert err.value.details["status"] == 400


def test_error_envelope_over_http_422(prom):
    prom.serve_recorded("error_execution")
    with pytest.raises(PrometheusError) as err:
        PrometheusClient(prom.url).query("a + on(job) a")
    assert err.value.error_type == "execution"


def test_proxy_error_page_is_an_http_error(prom):
    prom.answer = (502, b"<html>Bad Gateway</html>")
    with pytest.raises(PrometheusError) as err:
        PrometheusClient(prom.url).query("up")
    assert err.value.error_type == HTTP_ERROR
    assert "HTTP 502" in err.value.msg


def test_unauthorized_says_to_check_the_token(prom):
    prom.answer = (401, b"Unauthorized")
    with pytest.raises(PrometheusError) as err:
        PrometheusClient(prom.url).query("up")
    assert "wants credentials and none were given: set username/password or token" in err.value.msg


def test_slow_server_is_a_timeout(prom):
    prom.delay = 2.0
    with pytest.raises(PrometheusError) as err:
        PrometheusClient(prom.url, timeout=0.3).query("up")
    assert err.value.error_type == TIMEOUT
    assert "raise `timeout`" in err.value.msg


def test_closed_port_is_unreachable():
    url = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(PrometheusError) as err:
        PrometheusClient(url, timeout=2).query("up")
    assert err.value.error_type == UNREACHABLE
    assert url in err.value.msg
    assert "PROMETHEUS_URL" in err.value.msg


@pytest.mark.parametrize("url", ["", "prometheus:9090", "ftp://prom"])
def test_url_must_be_http(url):
    with pytest.raises(RolloutError) as err:
        PrometheusClient(url)
    assert "http(s) URL" in err.value.msg
