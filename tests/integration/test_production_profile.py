"""The production-shaped lab (LAB_PROFILE=production): HTTPS with the lab's CA, basic auth, and LB
names unlike the inventory, the app's metrics told apart by Prometheus' instance label (the scrape
address). Every test here runs on that lab (`make test`'s second), whichever worker runs it.

A release silences and judges through the configured credentials and prints no secret at -vvv;
wrong credentials, an unknown CA, and LB names that do not exist are refused with what to fix.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request

import pytest

import labkit
from release_checks import assert_all_serving, ledger, release_id, staged, state, versions

pytestmark = [pytest.mark.lab, pytest.mark.profile("production")]


@pytest.fixture()
def prod(lab):
    assert labkit.is_production(lab), "the profile marker gives this test the production-shaped lab"
    return lab


@pytest.mark.parametrize("service, path", [("alertmanager", "/api/v2/status"), ("prometheus", "/api/v1/query?query=up")])
def test_requests_without_credentials_get_401(prod, service, path):
    with pytest.raises(urllib.error.HTTPError) as err:
        labkit.monitoring_open(prod, service, path, auth=False)
    assert err.value.code == 401
    with labkit.monitoring_open(prod, service, path) as r:  # the lab's credentials are accepted
        assert r.status == 200


@pytest.mark.parametrize("service", ["alertmanager", "prometheus"])
def test_the_certificate_is_of_the_lab_ca(prod, service):
    with pytest.raises(urllib.error.URLError) as err:
        urllib.request.urlopen(prod[service]["url"], timeout=5, context=ssl.create_default_context())
    assert "CERTIFICATE_VERIFY_FAILED" in str(err.value)


@pytest.mark.parametrize("module, service", [("alertmanager_info", "alertmanager"), ("prometheus_info", "prometheus")])
def test_wrong_password_is_refused_naming_the_url_not_the_secret(prod, ansible, module, service):
    args = {**labkit.monitoring_args(prod, service), "password": "wrong-Lab-pw-31"}
    result = ansible.module(module, args)["localhost"]
    assert result["failed"] is True
    assert "401" in result["msg"] and prod[service]["url"] in result["msg"], result["msg"]
    assert "wrong-Lab-pw-31" not in json.dumps(result)


@pytest.mark.parametrize("module, service", [("alertmanager_info", "alertmanager"), ("prometheus_info", "prometheus")])
def test_unknown_ca_is_a_tls_error_naming_the_url_and_the_ca_option(prod, ansible, module, service):
    args = {k: v for k, v in labkit.monitoring_args(prod, service).items() if k != "ca_path"}
    result = ansible.module(module, args)["localhost"]
    assert result["failed"] is True
    assert f"TLS verification of {'Alertmanager' if service == 'alertmanager' else 'Prometheus'} at " \
           f"{prod[service]['url']} failed" in result["msg"], result["msg"]
    assert f"rollout_{service}_ca_path" in result["msg"]
    assert args["password"] not in json.dumps(result)


def _lbs(prod: dict, pool: str, member: str) -> list[dict]:
    return [{"name": "haproxy", "kind": "haproxy", "endpoints": [prod["haproxy"]["socket"]], "pool": pool,
             "member": member}]


LB_NAME_CASES = {
    # the inventory's names, which production's HAProxy does not use
    "pool that does not exist": ("app", "{{ lab.haproxy.servers[inventory_hostname] | default(inventory_hostname) }}",
                                 "app", "has no backend '{named}'; its backends are: be_shop"),
    "server that does not exist": ("{{ lab.haproxy.backend }}", "{{ inventory_hostname }}", "web01",
                                   "haproxy pool be_shop has no member {named}"),
}


@pytest.mark.parametrize("case", list(LB_NAME_CASES))
def test_lb_names_that_do_not_exist_are_refused_in_preflight_before_any_change(prod, case, tmp_path):
    pool, member, named, message = LB_NAME_CASES[case]
    before = {h["name"]: (state(h), staged(h)) for h in prod["hosts"]}
    varsfile = tmp_path / "vars.json"
    varsfile.write_text(json.dumps({"rollout_version": "1.1.0", "rollout_approval": "none",
                                    "rollout_lbs": _lbs(prod, pool, member)}))
    r = labkit.ansible_playbook_cli("playbooks/release.yml", "-e", f"@{varsfile}", timeout=600)
    assert r.returncode != 0
    assert message.format(named=named) in r.stdout, r.stdout[-3000:]
    assert "Prepare | Take the release lock" not in r.stdout and "Steps | Silence" not in r.stdout
    for h in prod["hosts"]:  # refused before any change: same state, nothing staged, no lock
        assert (state(h), staged(h)) == before[h["name"]], h["name"]
    assert_all_serving(prod)
    assert set(versions(prod).values()) == {"1.0.0"}


def test_release_silences_and_judges_with_the_credentials_and_prints_no_secret(prod, fresh):
    rid = release_id("prod")
    secrets = [labkit.monitoring_password(prod, s) for s in ("alertmanager", "prometheus")]
    assert all(secrets)
    with labkit.LoadRun(prod["haproxy"]["url"], rate=30) as load, \
            labkit.LoadRun(prod["nginx"]["url"], rate=15) as through_nginx:
        r = labkit.ansible_playbook_cli("playbooks/release.yml", "-vvv", "-e", "rollout_version=1.1.0",
                                        "-e", "rollout_approval=none", "-e", f"rollout_release_id={rid}",
                                        timeout=1200)
    assert r.returncode == 0, r.stdout[-3000:]
    assert load.summary["errors"] == 0, load.summary
    assert through_nginx.summary["errors"] == 0, through_nginx.summary
    for secret in secrets:
        assert secret not in r.stdout and secret not in r.stderr
    entry = ledger(rid)
    assert entry["result"] == "success"
    # judged from Prometheus over HTTPS with basic auth, on the real metrics: HAProxy's exporter under
    # HAProxy's own names, the app's client-library metrics and process metrics by scrape address
    assert entry["canary"]["verdict"] == "pass", entry["canary"]
    judged = {m["metric"] for m in entry["canary"]["measurements"] if m["outcome"] == "ok"}
    assert judged >= {"haproxy_5xx_ratio", "haproxy_response_time", "app_error_ratio", "app_p99_latency",
                      "process_cpu", "process_memory"}, entry["canary"]["measurements"]
    canary = entry["plan"]["canary"][0]
    queries = entry["canary"]["queries"]
    assert f'proxy="be_shop",server=~"{prod["haproxy"]["servers"][canary]}"' in queries["haproxy_5xx_ratio"]["canary"]
    address = prod["prometheus"]["instances"][canary].replace(".", "\\\\.")  # an RE2 alternation, escaped
    assert f'http_requests_total{{instance=~"{address}"' in queries["app_error_ratio"]["canary"]
    with labkit.monitoring_open(prod, "alertmanager", "/api/v2/silences") as resp:
        ours = [s for s in json.loads(resp.read()) if s["comment"].startswith(f"[sre.rollout release={rid}]")]
    assert len(ours) == len(prod["hosts"]), ours  # one silence per host, made with the credentials
    assert {s["status"]["state"] for s in ours} == {"expired"}  # and lifted
    assert set(versions(prod).values()) == {"1.1.0"}
    assert_all_serving(prod)

    with labkit.LoadRun(prod["haproxy"]["url"], rate=30) as load:
        r = labkit.ansible_playbook_cli("playbooks/rollback.yml", "-vvv", "-e", "rollout_approval=none",
                                        timeout=1200)
    assert r.returncode == 0, r.stdout[-3000:]
    assert load.summary["errors"] == 0, load.summary
    for secret in secrets:
        assert secret not in r.stdout and secret not in r.stderr
    assert set(versions(prod).values()) == {"1.0.0"}
    assert_all_serving(prod)


@pytest.mark.parametrize("version, metric", [("1.5.0-leak", "process_memory"), ("1.6.0-cpuburn", "process_cpu")])
def test_a_leaking_or_cpu_burning_version_is_caught_by_the_base_metrics(prod, fresh, ansible, version, metric):
    """Healthy, no errors, fast enough: only the process metrics tell. The canary is rolled back."""
    rid = release_id(version.split("-")[1])
    with labkit.LoadRun(prod["haproxy"]["url"], rate=30) as load:
        run = ansible.playbook("playbooks/release.yml", extravars={
            "rollout_version": version, "rollout_approval": "none", "rollout_release_id": rid,
            "rollout_backup_paths": []})
    assert run.rc != 0
    assert load.summary["errors"] == 0, load.summary
    entry = ledger(rid)
    assert entry["canary"]["verdict"] == "fail"
    failed = {m["metric"] for m in entry["canary"]["measurements"] if m["outcome"] == "fail"}
    assert metric in failed, entry["canary"]["measurements"]
    assert not failed & {"haproxy_5xx_ratio", "app_error_ratio"}, failed
    assert entry["rolled_back"] == entry["plan"]["canary"]
    assert set(versions(prod).values()) == {"1.0.0"}
    assert_all_serving(prod)
