"""HTTPS with a private CA and HTTP basic auth, for Alertmanager and Prometheus (both clients, four modules).

A local HTTPS server with a certificate of a CA made here by the openssl CLI, asking for basic auth
like Alertmanager's and Prometheus' --web.config.file does.
"""

from __future__ import annotations

import base64
import json
import shutil
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from module_args import module_result, patch_module_args

from ansible_collections.sre.rollout.plugins.module_utils._alertmanager import AlertmanagerClient, AlertmanagerError
from ansible_collections.sre.rollout.plugins.module_utils._common import RolloutError
from ansible_collections.sre.rollout.plugins.module_utils._prometheus import PrometheusClient, PrometheusError
from ansible_collections.sre.rollout.plugins.modules import (alertmanager_info, alertmanager_silence,
                                                             canary_analysis, prometheus_info)

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")

USER, PASSWORD = "rollout", "pw-Zq8-not-in-output"
AM_STATUS = {"cluster": {"status": "ready"}, "versionInfo": {"version": "0.25.0"}, "uptime": "x"}
VECTOR = {"status": "success", "data": {"resultType": "vector", "result": [
    {"metric": {}, "value": [1700000000, "0"]}]}}


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_ca(d: Path, name: str) -> tuple[Path, Path]:
    key, crt = d / f"{name}.key", d / f"{name}.crt"
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(crt),
            "-days", "2", "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return key, crt


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca_key, ca_crt = make_ca(d, "lab-ca")
    _other_key, other_crt = make_ca(d, "other-ca")
    key, csr, crt, ext = d / "server.key", d / "server.csr", d / "server.crt", d / "ext.cnf"
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    ext.write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key), "-CAcreateserial",
            "-out", str(crt), "-days", "2", "-extfile", str(ext))
    return {"ca": str(ca_crt), "other_ca": str(other_crt), "cert": str(crt), "key": str(key)}


class TLSServer:
    """HTTPS, basic auth required; answers by path like Alertmanager (/api/v2) and Prometheus."""

    def __init__(self, pki: dict) -> None:
        self.requests: list[dict] = []
        fake = self
        good = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                if status == 401:
                    self.send_header("WWW-Authenticate", 'Basic realm="lab"')
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def handle_any(self):
                auth = self.headers.get("Authorization", "")
                fake.requests.append({"method": self.command, "path": self.path, "authorization": auth})
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                if auth != good:
                    return self.answer(401, b"Unauthorized\n")
                if self.path.startswith("/api/v2/status"):
                    return self.answer(200, json.dumps(AM_STATUS).encode())
                if self.path.startswith("/api/v2/silences") and self.command == "GET":
                    return self.answer(200, b"[]")
                if self.path.startswith("/api/v2/silences"):
                    return self.answer(200, b'{"silenceID": "0d7e7a8c-1111-2222-3333-444455556666"}')
                if self.path.startswith("/api/v2/silence/"):
                    return self.answer(404, b"not found")
                if self.path == "/-/ready":
                    return self.answer(200, b"Prometheus Server is Ready.\n")
                if self.path.startswith("/api/v1/query"):
                    return self.answer(200, json.dumps(VECTOR).encode())
                return self.answer(404, b"404 page not found")

            do_GET = do_POST = do_DELETE = handle_any  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(pki["cert"], pki["key"])
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def server(pki):
    fake = TLSServer(pki)
    yield fake
    fake.close()


def run(module, args: dict, capsys) -> dict:
    with patch_module_args(args), pytest.raises(SystemExit):
        module.main()
    return module_result(capsys.readouterr().out)


# --------------------------------------------------------------------------- the good path


def test_alertmanager_info_over_https_with_the_lab_ca_and_basic_auth(server, pki, capsys):
    result = run(alertmanager_info, {"url": server.url, "ca_path": pki["ca"], "username": USER,
                                     "password": PASSWORD}, capsys)
    assert not result.get("failed"), result
    assert result["version"] == "0.25.0"
    assert server.requests[-1]["authorization"].startswith("Basic ")
    assert PASSWORD not in json.dumps(result)


def test_alertmanager_silence_over_https_with_basic_auth_from_the_environment(server, pki, capsys, monkeypatch):
    monkeypatch.setenv("ALERTMANAGER_USERNAME", USER)
    monkeypatch.setenv("ALERTMANAGER_PASSWORD", PASSWORD)
    monkeypatch.setenv("ALERTMANAGER_CA_PATH", pki["ca"])
    result = run(alertmanager_silence, {"url": server.url, "matchers": ["host=web01"], "duration": "10m",
                                        "release_id": "r-1"}, capsys)
    assert not result.get("failed"), result
    assert result["changed"] is True
    assert [r["method"] for r in server.requests if r["path"].startswith("/api/v2/silences")][-1] == "POST"
    assert PASSWORD not in json.dumps(result)


def test_prometheus_info_and_queries_over_https_with_basic_auth(server, pki, capsys):
    result = run(prometheus_info, {"url": server.url, "ca_path": pki["ca"], "username": USER,
                                   "password": PASSWORD}, capsys)
    assert not result.get("failed"), result
    assert result["answer"] == "Prometheus Server is Ready."
    client = PrometheusClient(server.url, ca_path=pki["ca"], username=USER, password=PASSWORD)
    assert client.query("up").samples[0].value == 0.0


def test_canary_analysis_takes_the_same_credentials_and_ca(server, pki, capsys):
    result = run(canary_analysis, {
        "url": server.url, "ca_path": pki["ca"], "username": USER, "password": PASSWORD,
        "canary": ["web01"], "baseline": ["web02", "web03"], "duration": 0, "interval": 1,
        "metrics": [{"name": "errors", "query": "sum(x{host=~\"$HOSTS\"})", "max": 1}]}, capsys)
    assert "TLS" not in result.get("msg", "") and "401" not in result.get("msg", ""), result
    assert any(r["path"].startswith("/api/v1/query") and r["authorization"].startswith("Basic ")
               for r in server.requests), (result, server.requests)
    assert PASSWORD not in json.dumps(result)


# --------------------------------------------------------------------------- wrong credentials


@pytest.mark.parametrize("module", [alertmanager_info, prometheus_info])
def test_wrong_password_is_a_401_naming_the_url_and_not_the_secret(server, pki, capsys, module):
    result = run(module, {"url": server.url, "ca_path": pki["ca"], "username": USER,
                          "password": "wrong-Pw-77"}, capsys)
    assert result["failed"] is True
    assert "401" in result["msg"] and server.url in result["msg"]
    assert "the credentials given were refused" in result["msg"]
    assert "wrong-Pw-77" not in json.dumps(result)


@pytest.mark.parametrize("module, option", [(alertmanager_info, "rollout_alertmanager_username"),
                                            (prometheus_info, "rollout_prometheus_username")])
def test_no_credentials_is_a_401_saying_which_to_set(server, pki, capsys, module, option):
    result = run(module, {"url": server.url, "ca_path": pki["ca"]}, capsys)
    assert result["failed"] is True
    assert "401" in result["msg"] and "none were given" in result["msg"] and option in result["msg"]


def test_canary_analysis_with_a_wrong_password_names_the_url_and_not_the_secret(server, pki, capsys):
    result = run(canary_analysis, {
        "url": server.url, "ca_path": pki["ca"], "username": USER, "password": "wrong-Pw-77",
        "canary": ["web01"], "baseline": ["web02"], "duration": 0, "interval": 1,
        "metrics": [{"name": "errors", "query": "sum(x{host=~\"$HOSTS\"})", "max": 1}]}, capsys)
    text = json.dumps(result)
    assert "401" in text and server.url in text and "wrong-Pw-77" not in text


# --------------------------------------------------------------------------- unknown CA


@pytest.mark.parametrize("module, option", [(alertmanager_info, "rollout_alertmanager_ca_path"),
                                            (prometheus_info, "rollout_prometheus_ca_path")])
def test_certificate_of_an_unknown_ca_names_the_url_and_the_ca_option(server, pki, capsys, module, option):
    result = run(module, {"url": server.url, "username": USER, "password": PASSWORD}, capsys)
    assert result["failed"] is True
    assert "TLS verification of" in result["msg"] and server.url in result["msg"]
    assert option in result["msg"] and "system CA store" in result["msg"]


@pytest.mark.parametrize("module", [alertmanager_info, prometheus_info])
def test_wrong_ca_bundle_is_named(server, pki, capsys, module):
    result = run(module, {"url": server.url, "ca_path": pki["other_ca"], "username": USER,
                          "password": PASSWORD}, capsys)
    assert result["failed"] is True
    assert server.url in result["msg"] and f"the CA bundle {pki['other_ca']} does not" in result["msg"]


@pytest.mark.parametrize("module", [alertmanager_info, prometheus_info])
def test_validate_certs_false_still_sends_the_credentials(server, capsys, module):
    result = run(module, {"url": server.url, "validate_certs": False, "username": USER, "password": PASSWORD},
                 capsys)
    assert not result.get("failed"), result


# --------------------------------------------------------------------------- bad settings


@pytest.mark.parametrize("client", [AlertmanagerClient, PrometheusClient])
def test_unreadable_ca_path_is_refused_before_any_request(client, tmp_path):
    with pytest.raises(RolloutError, match="is not a readable file"):
        client("https://127.0.0.1:1", ca_path=str(tmp_path / "missing.pem"))


@pytest.mark.parametrize("client", [AlertmanagerClient, PrometheusClient])
def test_token_and_basic_auth_together_are_refused(client):
    with pytest.raises(RolloutError, match="either token or username/password"):
        client("https://127.0.0.1:1", token="t", username="u", password="p")


@pytest.mark.parametrize("client", [AlertmanagerClient, PrometheusClient])
def test_password_without_username_is_refused(client):
    with pytest.raises(RolloutError, match="without username"):
        client("https://127.0.0.1:1", password="p")


def test_errors_are_the_clients_own(server, pki):
    with pytest.raises(AlertmanagerError):
        AlertmanagerClient(server.url, ca_path=pki["ca"]).status()
    with pytest.raises(PrometheusError):
        PrometheusClient(server.url, ca_path=pki["ca"]).ready()
