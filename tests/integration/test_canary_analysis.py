"""sre.rollout.canary_analysis against the lab's real Prometheus, HAProxy exporter and apps, under load."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.profile("default")]  # the lab's default names and plain HTTP

ERROR_RATE = 0.3
# Short soak for the lab: Prometheus scrapes every second, so a 10s window has ~10 samples.
SOAK = {"duration": 12, "interval": 4, "window": "10s"}


# --------------------------------------------------------------------------- helpers

def runtime_api(lab: dict, command: str) -> str:
    host, port = lab["haproxy"]["admin_tcp"].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(command.encode() + b"\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.decode()


def haproxy_status(lab: dict, server: str) -> str:
    for line in runtime_api(lab, "show stat").splitlines():
        f = line.split(",")
        if len(f) > 17 and f[0] == lab["haproxy"]["backend"] and f[1] == server:
            return f[17]
    raise AssertionError(f"server {server} not in HAProxy backend {lab['haproxy']['backend']}")


def health(url: str) -> int:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as r:
            return r.status
    except OSError:
        return 0


def wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout}s waiting for {predicate.__doc__ or predicate}")


def restart_app(lab: dict, host: dict) -> None:
    """Restart a host's app (it reads shared/app.env at start) and wait until HAProxy has it UP."""
    bin_dir = Path(host["root"]) / "current" / "bin"
    subprocess.run([str(bin_dir / "stop"), "10"], check=True, capture_output=True)
    subprocess.run([str(bin_dir / "start")], check=True, capture_output=True)

    def serving() -> bool:
        """the app healthy and UP in HAProxy"""
        return health(host["url"]) == 200 and haproxy_status(lab, host["name"]) == "UP"

    wait_for(serving)


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def analyse(ansible, lab: dict, *analyses: dict) -> list[dict]:
    """Run one play on the controller (as canary.yml does) with one module task per dict; their results.

    A dict's ``check_mode`` key becomes the task keyword; the rest are module
    arguments (``url`` defaults to the lab's Prometheus). One play for several
    analyses because each ansible-runner start costs seconds. The lab inventory
    computes ``lab_dir`` from ``inventory_dir``, which the implicit localhost
    lacks, so it is given as an extra var.
    """
    tasks = []
    for index, module_args in enumerate(analyses):
        args = {"url": lab["prometheus"]["url"], **module_args}
        check = args.pop("check_mode", False)
        tasks.append({"name": f"analysis {index}", "sre.rollout.canary_analysis": args, "check_mode": check,
                      "ignore_errors": True})
    play = [{"name": "canary analysis", "hosts": "localhost", "gather_facts": False, "tasks": tasks}]
    run = ansible.playbook(play, extravars={"lab_dir": lab["lab_dir"]})
    out = []
    for index in range(len(analyses)):
        results = run.results(task=f"analysis {index}", host="localhost")
        assert results, f"no result from canary_analysis: rc={run.rc}\n{run.stdout[-3000:]}"
        result = results[0]
        # runner's event data drops the "failed" key; the event name says it
        result["failed"] = result["_event"] == "runner_on_failed"
        out.append(result)
    return out


def sides(lab: dict, canary: str, **module_args) -> dict:
    return {"canary": [canary], "baseline": [h["name"] for h in lab["hosts"] if h["name"] != canary],
            "haproxy_backend": lab["haproxy"]["backend"], "server_names": lab["haproxy"]["servers"],
            **module_args}


# --------------------------------------------------------------------------- fixtures

@pytest.fixture()
def erroring_canary(lab):
    """The last lab host answers ERROR_RATE of its requests with 500 while /health stays 200."""
    host = lab["hosts"][-1]
    env_file = Path(host["root"]) / "shared" / "app.env"
    original = env_file.read_text()
    env_file.write_text(original + f"APP_ERROR_RATE={ERROR_RATE}\n")
    try:
        restart_app(lab, host)
        yield host
    finally:
        env_file.write_text(original)
        restart_app(lab, host)
        assert health(host["url"]) == 200


@pytest.fixture()
def lab_serving(lab):
    """Every host is UP in HAProxy before and after the test (the state every test must leave)."""
    names = [h["name"] for h in lab["hosts"]]
    assert {n: haproxy_status(lab, n) for n in names} == dict.fromkeys(names, "UP")
    yield lab
    assert {n: haproxy_status(lab, n) for n in names} == dict.fromkeys(names, "UP")


# --------------------------------------------------------------------------- tests

def test_good_canary_passes_under_load(lab_serving, ansible, load):
    lab = lab_serving
    canary = lab["hosts"][0]["name"]
    with load(lab["haproxy"]["url"], rate=40) as run:
        time.sleep(4)  # let the rate windows fill with traffic
        result, checked = analyse(ansible, lab, sides(lab, canary, **SOAK),
                                  sides(lab, canary, duration=0, window="10s", check_mode=True))
    assert run.summary["errors"] == 0
    assert run.summary["by_backend"].get(canary, 0) > 0

    assert result["failed"] is False, result.get("msg")
    assert result["changed"] is False
    assert result["verdict"] == "pass", (result["summary"], run.summary)
    assert result["inconclusive"] is False
    assert (result["intervals"], result["ok_intervals"], result["failed_intervals"]) == (3, 3, 0)
    assert result["inconclusive_intervals"] == 0
    metrics = {"haproxy_5xx_ratio", "haproxy_response_time", "haproxy_connection_errors", "app_error_ratio",
               "app_p99_latency", "process_cpu", "process_memory"}
    assert {m["metric"] for m in result["measurements"]} == metrics
    assert len(result["measurements"]) == 3 * len(metrics)
    for m in result["measurements"]:
        # real numbers for both sides, measured on real traffic
        assert isinstance(m["canary"], float) and isinstance(m["baseline"], float), m
        assert m["ok"] is True and m["outcome"] == "ok", m
    assert f'instance=~"{canary}"' in result["queries"]["app_error_ratio"]["canary"]
    assert f'server=~"{canary}"' in result["queries"]["haproxy_5xx_ratio"]["canary"]
    assert canary not in result["queries"]["app_error_ratio"]["baseline"]

    # check mode: read-only, so the analysis really runs
    assert checked["verdict"] == "pass", checked["summary"]
    assert checked["intervals"] == 1
    assert all(m["outcome"] == "ok" for m in checked["measurements"])


def test_canary_serving_500s_passes_health_checks_but_fails_analysis(lab_serving, ansible, load,
                                                                     erroring_canary):
    lab = lab_serving
    canary = erroring_canary["name"]
    with load(lab["haproxy"]["url"], rate=40) as run:
        time.sleep(4)
        result, tolerant = analyse(
            ansible, lab,
            sides(lab, canary, duration=20, interval=4, window="10s"),
            # failure_limit counts failed intervals: the second one ends it
            sides(lab, canary, duration=8, interval=2, window="10s", failure_limit=2,
                  metrics=[{"name": "app_error_ratio"}]))
        still_in_rotation = haproxy_status(lab, canary)
    # the health checks do not catch it: it stays UP in HAProxy and keeps taking traffic
    assert still_in_rotation == "UP"
    assert health(erroring_canary["url"]) == 200
    assert run.summary["non_2xx"].get("500", 0) > 0
    assert run.summary["by_backend"].get(canary, 0) > 0

    assert result["failed"] is True
    assert result["msg"].startswith("canary analysis failed: fail:")
    assert result["verdict"] == "fail"
    assert result["inconclusive"] is False
    assert result["failed_intervals"] == 1  # failure_limit 1: the first failed interval ends the soak
    assert result["stopped_early"] is True
    assert result["intervals"] < 5
    failed = {m["metric"]: m for m in result["measurements"] if m["outcome"] == "fail"}
    # both views of the 5xx see it: the app's own counters and HAProxy's per-server counters
    assert {"app_error_ratio", "haproxy_5xx_ratio"} <= set(failed)
    for name in ("app_error_ratio", "haproxy_5xx_ratio"):
        assert failed[name]["canary"] > 0.05
        assert failed[name]["baseline"] < 0.01
    assert "app_error_ratio: canary" in result["summary"]

    assert tolerant["failed"] is True
    assert tolerant["verdict"] == "fail"
    assert (tolerant["intervals"], tolerant["failed_intervals"]) == (2, 2)
    assert [m["outcome"] for m in tolerant["measurements"]] == ["fail", "fail"]


def test_prometheus_down_is_inconclusive_never_pass(lab_serving, ansible):
    lab = lab_serving
    url = closed_port_url()
    failing, paused = analyse(ansible, lab, sides(lab, "web01", url=url, duration=6, interval=2),
                              sides(lab, "web01", url=url, duration=6, interval=2, on_inconclusive="pause"))
    assert (failing["verdict"], failing["failed"]) == ("fail", True)
    assert "on_inconclusive=fail" in failing["summary"]
    assert (paused["verdict"], paused["failed"]) == ("inconclusive", False)
    for result in (failing, paused):
        assert result["inconclusive"] is True
        assert result["inconclusive_intervals"] == 1
        assert result["ok_intervals"] == 0
        assert result["stopped_early"] is True
        assert len(result["measurements"]) == 7  # the whole default catalogue, each inconclusive
        for m in result["measurements"]:
            assert (m["canary"], m["baseline"], m["ok"], m["outcome"]) == (None, None, False, "inconclusive")
            assert "cannot reach Prometheus" in m["reason"] and url in m["reason"]


def test_no_data_for_the_canary_is_inconclusive(lab_serving, ansible, load):
    lab = lab_serving
    with load(lab["haproxy"]["url"], rate=20):
        time.sleep(2)
        # "web0." is escaped to match only a host literally named so: unescaped it would match web01..web06
        [result] = analyse(ansible, lab, {"canary": ["web0."], "baseline": ["web01"], "duration": 0,
                                          "window": "10s", "on_inconclusive": "pause",
                                          "metrics": [{"name": "app_error_ratio"}]})
    assert result["verdict"] == "inconclusive"
    [m] = result["measurements"]
    assert m["canary"] is None
    assert isinstance(m["baseline"], float)
    assert "no data" in m["reason"]
    assert 'instance=~"web0\\\\."' in result["queries"]["app_error_ratio"]["canary"]


def test_invalid_query_fails_at_once_with_prometheus_message(lab_serving, ansible):
    lab = lab_serving
    started = time.monotonic()
    [result] = analyse(ansible, lab, sides(lab, "web01", duration=60, interval=5, metrics=[
        {"name": "broken", "query": 'sum(rate(http_requests_total{instance=~"$INSTANCES"}[1m])', "max": 1}]))
    assert result["failed"] is True
    assert "rejected the query as invalid (bad_data)" in result["msg"]
    assert "parse error" in result["msg"]
    assert result["query"] == 'sum(rate(http_requests_total{instance=~"web01"}[1m])'
    assert "verdict" not in result
    assert time.monotonic() - started < 60  # it did not soak for the 60 s duration
