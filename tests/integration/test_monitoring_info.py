"""sre.rollout.alertmanager_info and sre.rollout.prometheus_info against the lab's real Alertmanager and Prometheus.

These are the preflight's checks: they answer through the same clients (and credentials) as the
silences and the canary analysis, and fail with a message that says what to fix.
"""

from __future__ import annotations

import socket

import pytest

pytestmark = pytest.mark.lab


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.mark.parametrize("check", [False, True], ids=["run", "check mode"])
def test_alertmanager_info_reads_the_status(lab, ansible, check):
    result = ansible.module("alertmanager_info", {"url": lab["alertmanager"]["url"] + "/api/v2"}, check=check)["localhost"]
    assert not result.get("failed"), result
    assert (result["available"], result["changed"]) == (True, False)
    assert result["version"] and result["cluster_status"] in ("ready", "settling", "disabled")
    assert result["url"] == lab["alertmanager"]["url"]
    assert "versionInfo" in result["status"]


def test_alertmanager_info_takes_its_token_from_the_environment(lab, ansible):
    result = ansible.module("alertmanager_info", {"url": lab["alertmanager"]["url"]},
                            envvars={"ALERTMANAGER_TOKEN": "s3cret"})["localhost"]
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
    result = ansible.module("prometheus_info", {"url": lab["prometheus"]["url"]}, check=check,
                            envvars={"PROMETHEUS_TOKEN": "s3cret"})["localhost"]
    assert not result.get("failed"), result
    assert (result["available"], result["changed"]) == (True, False)
    assert "ready" in result["answer"].lower()
    assert "s3cret" not in str(result)


def test_prometheus_info_fails_when_prometheus_does_not_answer(ansible):
    url = closed_port_url()
    result = ansible.module("prometheus_info", {"url": url, "timeout": 3})["localhost"]
    assert result["failed"] is True
    assert "cannot reach Prometheus at " + url in result["msg"]
    assert result["error_type"] == "unreachable"
