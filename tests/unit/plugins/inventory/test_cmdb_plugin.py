"""The cmdb inventory plugin as ansible loads it: groups, vars, constructed, cache, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleParserError
from ansible.inventory.data import InventoryData
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import inventory_loader
from cmdb.fake_cmdb_server import FakeCmdb, netbox_vm

from ansible_collections.sre.rollout.plugins.inventory import cmdb as plugin_module
from ansible_collections.sre.rollout.plugins.inventory.cmdb import InventoryModule

NAME = "sre.rollout.cmdb"


def make_plugin() -> InventoryModule:
    """The plugin with its option definitions registered, as ansible's loader would."""
    inventory_loader._load_config_defs(NAME, plugin_module, plugin_module.__file__)
    plugin = InventoryModule()
    plugin._load_name = NAME
    plugin._redirected_names = [NAME]
    return plugin


def inventory(config_path: Path, cache: bool = True) -> InventoryData:
    data = InventoryData()
    plugin = make_plugin()
    assert plugin.verify_file(str(config_path))
    plugin.parse(data, DataLoader(), str(config_path), cache=cache)
    try:  # as InventoryManager does after parse
        plugin.update_cache_if_changed()
    except AttributeError:  # ansible-core >= 2.19: no cache object unless `cache: true`
        assert not plugin.get_option("cache")
    return data


def write(tmp_path: Path, name: str, data) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data) if name.endswith(".json") else yaml.safe_dump(data))
    return path


@pytest.fixture()
def export(tmp_path: Path) -> Path:
    records = [netbox_vm(1, "web01", zone="zone-a", tenant="blue"), netbox_vm(2, "web02", zone="zone-b"),
               netbox_vm(3, "web03", zone="zone-a", env="dev"),
               netbox_vm(4, "web04", zone="zone-b", status="offline", tenant="blue")]
    return write(tmp_path, "export.json", {"virtual_machines": records})


def group_members(inv: InventoryData) -> dict[str, list[str]]:
    return {name: sorted(h.name for h in g.get_hosts()) for name, g in inv.groups.items()
            if name not in ("all", "ungrouped")}


def test_verify_file_accepts_only_cmdb_configs(tmp_path):
    plugin = make_plugin()
    for name, ok in (("cmdb.yml", True), ("prod.cmdb.yaml", True), ("netbox.yml", False), ("cmdb.json", False)):
        path = tmp_path / name
        path.write_text("plugin: sre.rollout.cmdb\n")
        assert plugin.verify_file(str(path)) is ok, name


def test_groups_and_hostvars(tmp_path, export, monkeypatch):
    config = write(tmp_path, "cmdb.yml", {"plugin": "sre.rollout.cmdb", "path": "export.json", "env": "prod"})
    inv = inventory(config)
    assert group_members(inv) == {"app_shop": ["web01", "web02"], "env_prod": ["web01", "web02"],
                                  "role_web": ["web01", "web02"], "zone_zone_a": ["web01"],
                                  "zone_zone_b": ["web02"]}
    hv = inv.get_host("web01").get_vars()
    assert (hv["ansible_host"], hv["cmdb_app"], hv["cmdb_env"], hv["cmdb_zone"], hv["cmdb_status"],
            hv["cmdb_role"], hv["cmdb_tenant"]) == ("10.0.0.1", "shop", "prod", "zone-a", "active", "web", "blue")


def test_path_expands_env_relative_to_the_config(tmp_path, export, monkeypatch):
    sub = tmp_path / "inventories" / "lab"
    sub.mkdir(parents=True)
    config = write(sub, "cmdb.yml", {"plugin": "sre.rollout.cmdb", "path": "${CMDB_DIR:-../..}/export.json"})
    monkeypatch.delenv("CMDB_DIR", raising=False)
    assert "web01" in list(inventory(config).hosts)
    other = tmp_path / "other"
    other.mkdir()
    write(other, "export.json", {"virtual_machines": [netbox_vm(9, "only09")]})
    monkeypatch.setenv("CMDB_DIR", str(other))
    assert list(inventory(config).hosts) == ["only09"]


def test_inactive_group_and_constructed(tmp_path, export, monkeypatch):
    config = write(tmp_path, "cmdb.yml", {
        "plugin": "sre.rollout.cmdb", "path": str(export), "inactive": "group", "group_by": ["app", "zone"],
        "compose": {"ansible_user": "'deploy'", "short_zone": "cmdb_zone | replace('zone-', '')"},
        "keyed_groups": [{"key": "cmdb_tenant | default('none', true)", "prefix": "tenant"}],
        "groups": {"canary_candidates": "cmdb_zone == 'zone-a'"},
    })
    inv = inventory(config)
    groups = group_members(inv)
    assert groups["cmdb_inactive"] == ["web04"]
    assert groups["app_shop"] == ["web01", "web02", "web03"]  # web04 only in cmdb_inactive
    assert "env_prod" not in groups and "role_web" not in groups
    assert groups["tenant_blue"] == ["web01"] and groups["tenant_none"] == ["web02", "web03"]
    assert groups["canary_candidates"] == ["web01", "web03"]
    hv = inv.get_host("web03").get_vars()
    assert hv["ansible_user"] == "deploy" and hv["short_zone"] == "a"
    assert inv.get_host("web04").get_vars()["cmdb_status"] == "offline"


def test_cache_serves_the_second_parse(tmp_path, export, monkeypatch):
    cache_dir = tmp_path / "cache"
    config = write(tmp_path, "cmdb.yml", {
        "plugin": "sre.rollout.cmdb", "path": str(export), "cache": True,
        "cache_plugin": "jsonfile", "cache_connection": str(cache_dir), "cache_timeout": 600})
    first = inventory(config)
    assert sorted(first.hosts) == ["web01", "web02", "web03"]
    assert list(cache_dir.iterdir())  # written
    export.unlink()  # the CMDB is gone: the cache answers
    second = inventory(config)
    assert sorted(second.hosts) == ["web01", "web02", "web03"]
    assert second.get_host("web02").get_vars()["cmdb_zone"] == "zone-b"
    with pytest.raises(AnsibleParserError, match="cannot read the CMDB file"):
        inventory(config, cache=False)  # --flush-cache / refresh_inventory asks the CMDB again


def test_netbox_backend_through_the_plugin(tmp_path, monkeypatch):
    with FakeCmdb([netbox_vm(i, f"nb{i:02d}", zone="z") for i in range(1, 12)], token="t0k") as fake:
        monkeypatch.setenv("SRE_ROLLOUT_CMDB_TOKEN", "t0k")
        config = write(tmp_path, "cmdb.yml", {"plugin": "sre.rollout.cmdb", "backend": "netbox",
                                              "url": fake.url, "page_size": 4, "app": "shop"})
        inv = inventory(config)
    assert len(inv.hosts) == 11 and len(fake.requests) == 3
    assert group_members(inv)["zone_z"] == [f"nb{i:02d}" for i in range(1, 12)]


@pytest.mark.parametrize("config, expected", [
    ({"path": "missing.json"}, "cannot read the CMDB file"),
    ({"path": "export.json", "app": "billing"}, "returned no active hosts for status=active, app=billing"),
    ({"path": "export.json", "app_from": ["nope"]}, "app_from: unknown source 'nope'"),
])
def test_errors_fail_the_inventory_with_the_reason(tmp_path, export, monkeypatch, config, expected):
    path = write(tmp_path, "cmdb.yml", dict({"plugin": "sre.rollout.cmdb"}, **config))
    with pytest.raises(AnsibleParserError) as err:
        inventory(path)
    assert expected in str(err.value)
    assert f"sre.rollout.cmdb ({path})" in str(err.value)
