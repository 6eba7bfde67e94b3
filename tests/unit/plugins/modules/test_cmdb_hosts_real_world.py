"""cmdb_hosts on real-world data: unknown options, on_unusable, safe names, custom field typos."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ansible.module_utils.common import warnings
from cmdb.fake_cmdb_server import FakeCmdb, netbox_vm, real_world_records

from .test_cmdb_hosts import run_module


@pytest.fixture(autouse=True)
def no_earlier_warnings(monkeypatch) -> None:
    # module warnings are process-wide; a fresh, empty store of the type this ansible-core uses
    # (a list before 2.19, a dict since)
    monkeypatch.setattr(warnings, "_global_warnings", type(warnings._global_warnings)())


@pytest.fixture()
def demo(tmp_path: Path) -> Path:
    path = tmp_path / "demo.json"
    path.write_text(json.dumps(real_world_records()))
    return path


@pytest.mark.parametrize("typo", ["role", "site", "tenant", "tag"])
def test_a_typo_is_refused_by_the_argument_spec_before_any_request(monkeypatch, capsys, typo):
    with FakeCmdb([netbox_vm(1)]) as fake:
        out = run_module({"backend": "netbox", "url": fake.url, typo: "x"}, monkeypatch, capsys)
        assert fake.requests == []
    assert out["failed"] is True
    assert out["msg"].startswith(f"Unsupported parameters for (basic.py) module: {typo}. Supported parameters")
    assert "hosts" not in out


def test_a_custom_field_typo_names_the_closest_field(demo, monkeypatch, capsys):
    out = run_module({"path": str(demo), "custom_fields": {"evn": "demo"}}, monkeypatch, capsys)
    assert out["failed"] is True and "unknown custom field 'evn' — did you mean 'env'?" in out["msg"]


def test_default_fails_with_counts(demo, monkeypatch, capsys):
    out = run_module({"path": str(demo), "tags": ["demo"]}, monkeypatch, capsys)
    assert out["failed"] is True and out["unusable"] == {"no_ip": 180}
    assert "180 records have no primary IP address: virtual machine demo-vm001 (id 101)" in out["msg"]
    assert out["record"] == "demo-vm001" and len(out["unusable_records"]) == 20


def test_exclude_warns_once_and_returns_the_rest(demo, monkeypatch, capsys):
    out = run_module({"path": str(demo), "tags": ["demo"], "on_unusable": "exclude"}, monkeypatch, capsys)
    assert out["count"] == 6 and len(out["unusable"]) == 180
    [warning] = out["warnings"]
    assert "180 selected record(s) cannot be released onto and were left out" in warning
    assert "cmdb_unusable" not in out["groups"] and "demo-vm001" not in out["hostvars"]
    assert out["hostvars"]["Zürich_db_2"]["cmdb_name"] == "Zürich db 2"


def test_group_returns_them_in_cmdb_unusable(demo, monkeypatch, capsys):
    out = run_module({"path": str(demo), "tags": ["demo"], "on_unusable": "group"}, monkeypatch, capsys)
    assert len(out["groups"]["cmdb_unusable"]) == 180 and out["count"] == 6
    vm = next(u for u in out["unusable"] if u["name"] == "demo-vm001")
    assert vm["groups"] == ["cmdb_unusable"] and vm["reasons"] == ["has no primary IP address"]
    assert "ansible_host" not in out["hostvars"]["demo-vm001"]
    assert len(out["warnings"]) == 1
