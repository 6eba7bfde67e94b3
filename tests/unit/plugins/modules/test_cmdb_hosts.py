"""The cmdb_hosts module front end: arguments, env fallbacks, result shape, failures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from module_args import module_result, patch_module_args
from cmdb.fake_cmdb_server import FakeCmdb, netbox_vm

from ansible_collections.sre.rollout.plugins.modules import cmdb_hosts


def run_module(args: dict, monkeypatch, capsys, check: bool = False) -> dict:
    payload = dict(args)
    if check:
        payload["_ansible_check_mode"] = True
    with patch_module_args(payload), pytest.raises(SystemExit):
        cmdb_hosts.main()
    return module_result(capsys.readouterr().out)


@pytest.fixture()
def export(tmp_path: Path) -> Path:
    records = [netbox_vm(1, "web01", zone="z1"), netbox_vm(2, "web02", zone="z2"),
               netbox_vm(3, "web03", zone="z1", env="dev"),
               netbox_vm(4, "web04", zone="z2", status="decommissioning", ip=None)]
    path = tmp_path / "cmdb.json"
    path.write_text(json.dumps({"virtual_machines": records}))
    return path


def test_file_query_returns_hosts_vars_and_groups(export, monkeypatch, capsys):
    out = run_module({"path": str(export), "env": "prod", "inactive": "group"}, monkeypatch, capsys, check=True)
    assert out["changed"] is False and out["count"] == 2
    assert out["source"] == f"CMDB file {export}"
    assert out["filters"] == ["env=prod"]
    assert [h["name"] for h in out["hosts"]] == ["web01", "web02"]
    web01 = out["hosts"][0]
    assert web01["groups"] == ["app_shop", "env_prod", "zone_z1", "role_web"]
    assert web01["vars"]["ansible_host"] == "10.0.0.1"
    assert {k: web01["vars"][k] for k in ("cmdb_app", "cmdb_env", "cmdb_zone", "cmdb_status", "cmdb_role")} == {
        "cmdb_app": "shop", "cmdb_env": "prod", "cmdb_zone": "z1", "cmdb_status": "active", "cmdb_role": "web"}
    assert out["groups"] == {"app_shop": ["web01", "web02"], "cmdb_inactive": ["web04"], "env_prod": ["web01", "web02"],
                             "role_web": ["web01", "web02"], "zone_z1": ["web01"], "zone_z2": ["web02"]}
    assert [h["name"] for h in out["inactive"]] == ["web04"]
    assert set(out["hostvars"]) == {"web01", "web02", "web04"}


def test_path_from_env_and_group_by(export, monkeypatch, capsys):
    monkeypatch.setenv("SRE_ROLLOUT_CMDB_FILE", str(export))
    out = run_module({"group_by": ["zone"]}, monkeypatch, capsys)
    assert out["groups"] == {"zone_z1": ["web01", "web03"], "zone_z2": ["web02"]}


def test_zero_hosts_fail_the_module(export, monkeypatch, capsys):
    out = run_module({"path": str(export), "app": "billing"}, monkeypatch, capsys)
    assert out["failed"] is True
    assert "returned no active hosts for status=active, app=billing" in out["msg"]
    assert out["cmdb"] == f"CMDB file {export}"
    ok = run_module({"path": str(export), "app": "billing", "allow_empty": True}, monkeypatch, capsys)
    assert ok["count"] == 0 and ok["hosts"] == [] and "failed" not in ok


def test_missing_path_is_a_clear_failure(monkeypatch, capsys):
    monkeypatch.delenv("SRE_ROLLOUT_CMDB_FILE", raising=False)
    out = run_module({}, monkeypatch, capsys)
    assert out["failed"] is True and "backend file needs path" in out["msg"]


def test_netbox_with_token_from_env_never_prints_it(monkeypatch, capsys):
    monkeypatch.setenv("SRE_ROLLOUT_CMDB_TOKEN", "tok-123456")
    with FakeCmdb([netbox_vm(1, "web01")], token="tok-123456") as fake:
        monkeypatch.setenv("SRE_ROLLOUT_CMDB_URL", fake.url)
        out = run_module({"backend": "netbox", "app": "shop"}, monkeypatch, capsys)
    assert [h["name"] for h in out["hosts"]] == ["web01"]
    assert fake.auth_headers == ["Token tok-123456"]
    assert "tok-123456" not in json.dumps(out)


def test_netbox_denied_fails_with_status_and_body(monkeypatch, capsys):
    with FakeCmdb([netbox_vm(1)], token="right") as fake:
        out = run_module({"backend": "netbox", "url": fake.url, "token": "wrong", "retries": 0},
                         monkeypatch, capsys)
    assert out["failed"] is True and out["status"] == 403
    assert f"NetBox {fake.url} refused access (HTTP 403)" in out["msg"] and "Invalid token" in out["msg"]
    assert "wrong" not in out["msg"]


def test_dropped_filter_fails_the_module(monkeypatch, capsys):
    with FakeCmdb([netbox_vm(1, "a", role="web"), netbox_vm(2, "b", role="db")], ignore=("role",)) as fake:
        out = run_module({"backend": "netbox", "url": fake.url, "roles": ["web"]}, monkeypatch, capsys)
    assert out["failed"] is True and out["record"] == "b" and out["filter"] == "role=web"
    assert "the server ignored the filter" in out["msg"]
