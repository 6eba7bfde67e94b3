"""sre.rollout.alertmanager_info and sre.rollout.prometheus_info against the lab's real Alertmanager and Prometheus.

These are the preflight's checks: they answer through the same clients (and credentials) as the
silences and the canary analysis, and fail with a message that says what to fix.
"""

from __future__ import annotations

import socket

import pytest

import labkit

# Profile-agnostic: on the production lab the modules get its CA and credentials (labkit.monitoring_args).
pytestmark = [pytest.mark.lab]


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.mark.parametrize("check", [False, True], ids=["run", "check mode"])
def test_alertmanager_info_reads_the_status(lab, ansible, check):
    args = {**labkit.monitoring_args(lab, "alertmanager"), "url": lab["alertmanager"]["url"] + "/api/v2"}
    result = ansible.module("alertmanager_info", args, check=check)["localhost"]
    assert not result.get("failed"), result
    assert (result["available"], result["changed"]) == (True, False)
    assert result["version"] and result["cluster_status"] in ("ready", "settling", "disabled")
    assert result["url"] == lab["alertmanager"]["url"]
    assert "versionInfo" in result["status"]


def test_alertmanager_info_takes_its_token_from_the_environment(lab, ansible):
    args = {k: v for k, v in labkit.monitoring_args(lab, "alertmanager").items() if k in ("url", "ca_path")}
    result = ansible.module("alertmanager_info", args, envvars={"ALERTMANAGER_TOKEN": "s3cret"})["localhost"]
    if labkit.is_production(lab):  # basic auth only: the token is sent, and refused
        assert result["failed"] is True and "HTTP 401" in result["msg"], result
        assert lab["alertmanager"]["url"] in result["msg"] and "rollout_alertmanager_username" in result["msg"]
    else:
        assert result["available"] is True, result
    assert "s3cret" not in str(result)


def test_alertmanager_info_fails_when_alertmanager_does_not_answer(ansible):
    url = closed_port_url()
    result = ansible.module("alertmanager_info", {"url": url, "timeout": 3})["localhost"]
    assert result["failed"] is True
    assert "cannot reach Alertmanager at " + url in result["msg"]
    assert "available" not in result


@pytest.mark.parametrize("check", [False, True], ids=["run", "check mode"])
def test_prometheus_info_is_ready(lab, ansible, check):
    args = labkit.monitoring_args(lab, "prometheus")
    secret = args.get("password") or "s3cret"
    envvars = {} if labkit.is_production(lab) else {"PROMETHEUS_TOKEN": "s3cret"}
    result = ansible.module("prometheus_info", args, check=check, envvars=envvars)["localhost"]
    assert not result.get("failed"), result
    assert (result["available"], result["changed"]) == (True, False)
    assert "ready" in result["answer"].lower()
    assert secret not in str(result)


def test_prometheus_info_fails_when_prometheus_does_not_answer(ansible):
    url = closed_port_url()
    result = ansible.module("prometheus_info", {"url": url, "timeout": 3})["localhost"]
    assert result["failed"] is True
    assert "cannot reach Prometheus at " + url in result["msg"]
    assert result["error_type"] == "unreachable"
