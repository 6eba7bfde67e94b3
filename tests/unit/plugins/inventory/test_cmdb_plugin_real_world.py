"""The cmdb inventory plugin on real-world data: typos, unusable records, safe names, cache, examples.

In-process through ansible's loader, and through the real CLIs (ansible, ansible-inventory,
ansible-playbook) where what is judged is what a user types.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleParserError
from ansible.inventory.data import InventoryData
from ansible.parsing.dataloader import DataLoader
from cmdb.fake_cmdb_server import FakeCmdb, nautobot_vm, netbox_vm, real_world_records

from ansible_collections.sre.rollout.plugins.doc_fragments import cmdb as fragment
from ansible_collections.sre.rollout.plugins.inventory import cmdb as plugin_module

from .test_cmdb_plugin import group_members, inventory, make_plugin, write

REPO = Path(__file__).resolve().parents[4]
BIN = REPO / ".venv" / "bin"


@pytest.fixture()
def warnings(monkeypatch) -> list[str]:
    seen: list[str] = []
    monkeypatch.setattr(plugin_module.display, "warning", lambda msg, *a, **k: seen.append(msg))
    return seen


@pytest.fixture()
def demo(tmp_path) -> Path:
    return write(tmp_path, "demo.json", real_world_records())


def config(tmp_path: Path, **options) -> Path:
    return write(tmp_path, "cmdb.yml", dict({"plugin": "sre.rollout.cmdb"}, **options))


def cli_env(**extra: str) -> dict:
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_CALLBACKS_ENABLED="", PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    env.update(extra)
    return env


def cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / args[0]), *args[1:]], cwd=REPO, env=cli_env(**env), capture_output=True,
                          text=True, timeout=120, check=False)


# --------------------------------------------------------------------------- typos


@pytest.mark.parametrize("typo, meant, value", [
    ("role", "roles", ["database-server"]), ("site", "sites", "dm-nyc"), ("tenant", "tenants", ["blue"]),
    ("tag", "tags", ["pci"]), ("custom_field", "custom_fields", {"env": "prod"}),
])
def test_a_typo_fails_before_any_request_and_lists_no_host(tmp_path, typo, meant, value):
    with FakeCmdb([netbox_vm(i) for i in range(1, 5)]) as fake:
        path = config(tmp_path, backend="netbox", url=fake.url, **{typo: value})
        data = InventoryData()
        with pytest.raises(AnsibleParserError) as err:
            make_plugin().parse(data, DataLoader(), str(path))
        assert fake.requests == []  # nothing was asked of the CMDB
    assert f"sre.rollout.cmdb ({path}): unknown option {typo!r} — did you mean {meant!r}?" in str(err.value)
    assert list(data.hosts) == []


def test_a_typo_in_a_keyed_groups_entry_is_refused(tmp_path, demo):
    path = config(tmp_path, path=str(demo), tags=["demo"], on_unusable="exclude",
                  keyed_groups=[{"key": "cmdb_site", "prefix": "site"}, {"key": "cmdb_role", "prefx": "role"}])
    with pytest.raises(AnsibleParserError, match="keyed_groups entry #2: unknown option 'prefx' — did you mean "
                                                 "'prefix'"):
        inventory(path)


def test_a_typo_through_the_cli_lists_no_host(tmp_path, demo):
    path = config(tmp_path, path=str(demo), site="dc2")
    run = cli("ansible-inventory", "-i", str(path), "--list", ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED="0")
    assert "unknown option 'site' — did you mean 'sites'?" in " ".join(run.stderr.split())
    assert json.loads(run.stdout)["_meta"]["hostvars"] == {}  # not 180 hosts: none
    strict = cli("ansible-inventory", "-i", str(path), "--list", ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED="1")
    assert strict.returncode != 0 and strict.stdout == ""


# --------------------------------------------------------------------------- unusable records


def test_default_fails_naming_the_count_and_the_first(tmp_path, demo):
    with pytest.raises(AnsibleParserError) as err:
        inventory(config(tmp_path, path=str(demo), tags=["demo"]))
    assert "180 records have no primary IP address: virtual machine demo-vm001 (id 101)" in str(err.value)
    assert "and 175 more" in str(err.value)


def test_exclude_lists_the_rest_with_one_warning(tmp_path, demo, warnings):
    inv = inventory(config(tmp_path, path=str(demo), tags=["demo"], on_unusable="exclude"))
    assert sorted(inv.hosts) == ["Zürich_db_2", "app_blue", "db1.zürich.example", "dup-vm", "lb_01", "orphan-vm"]
    [warning] = warnings
    assert "180 selected record(s) cannot be released onto and were left out (on_unusable: exclude)" in warning
    assert "cmdb_unusable" not in inv.groups


def test_group_puts_them_in_cmdb_unusable_only(tmp_path, demo, warnings):
    path = config(tmp_path, path=str(demo), tags=["demo"], on_unusable="group",
                  compose={"ansible_host": "'192.0.2.1'", "ansible_user": "'deploy'"},
                  keyed_groups=[{"key": "cmdb_status", "prefix": "status"}], groups={"everyone": "true"})
    inv = inventory(path)
    groups = group_members(inv)
    assert len(groups["cmdb_unusable"]) == 180 and "demo-vm001" in groups["cmdb_unusable"]
    assert "demo-vm001" not in groups["app_demo"] and "demo-vm001" not in groups["everyone"]
    assert "demo-vm001" not in groups["status_active"]
    hv = inv.get_host("demo-vm001").get_vars()
    assert "ansible_host" not in hv and "ansible_user" not in hv  # no compose for them
    assert hv["cmdb_unusable"] == ["has no primary IP address"]
    assert inv.get_host("app_blue").get_vars()["ansible_host"] == "192.0.2.1"  # compose for the others
    assert len(warnings) == 1 and "put in group cmdb_unusable without ansible_host" in warnings[0]


def test_unnamed_and_duplicate_devices_not_selected_do_not_fail(tmp_path, demo):
    inv = inventory(config(tmp_path, path=str(demo), kinds=["devices"], roles=["tor-switch"]))
    assert list(inv.hosts) == ["tor1.dc1"]


# --------------------------------------------------------------------------- names and host patterns


def test_renamed_hosts_are_what_a_pattern_selects(tmp_path, demo):
    path = config(tmp_path, path=str(demo), tags=["demo"], on_unusable="exclude")

    def selected(pattern: str) -> list[str]:
        run = cli("ansible", "-i", str(path), pattern, "--list-hosts")
        assert run.returncode == 0, run.stderr
        return sorted(line.strip() for line in run.stdout.splitlines()[1:] if line.strip())

    assert selected("Zürich_db_2") == ["Zürich_db_2"]
    assert selected("db1.zürich.example") == ["db1.zürich.example"]  # dots and non-ASCII kept
    assert selected("app_blue:lb_01") == ["app_blue", "lb_01"]
    # what the CMDB calls them: a pattern splits these, so they could never have been targeted
    assert selected("Zürich db 2") == [] and selected("app:blue") == []
    listing = json.loads(cli("ansible-inventory", "-i", str(path), "--list").stdout)
    assert listing["_meta"]["hostvars"]["Zürich_db_2"]["cmdb_name"] == "Zürich db 2"
    assert listing["_meta"]["hostvars"]["lb_01"]["cmdb_name"] == "lb,01"


# --------------------------------------------------------------------------- cache


def cached_config(tmp_path: Path, export: Path, **options) -> Path:
    return config(tmp_path, path=str(export), cache=True, cache_plugin="ansible.builtin.jsonfile",
                  cache_connection=str(tmp_path / "cache"), cache_timeout=3600, **options)


def test_a_filter_change_is_never_served_from_the_old_cache(tmp_path):
    export = write(tmp_path, "export.json", {"virtual_machines": [
        netbox_vm(1, "web01"), netbox_vm(2, "web02"), netbox_vm(3, "web03", env="dev")]})
    assert sorted(inventory(cached_config(tmp_path, export, env="prod")).hosts) == ["web01", "web02"]
    assert sorted(inventory(cached_config(tmp_path, export, env="dev")).hosts) == ["web03"]
    assert len(list((tmp_path / "cache").iterdir())) == 2  # one entry per query


def test_the_documented_ways_to_refresh_the_cache_work(tmp_path):
    export = write(tmp_path, "export.json", {"virtual_machines": [netbox_vm(1, "web01")]})
    path = cached_config(tmp_path, export, cache_prefix="shop_")
    play = tmp_path / "play.yml"
    play.write_text(yaml.safe_dump([{"hosts": "all", "gather_facts": False, "tasks": [
        {"ansible.builtin.debug": {"msg": "HOSTS={{ groups['all'] | sort | join(',') }}"}, "run_once": True}]}]))

    def listed() -> list[str]:
        run = cli("ansible-inventory", "-i", str(path), "--list")
        assert run.returncode == 0, run.stderr
        return sorted(json.loads(run.stdout)["_meta"]["hostvars"])

    def played(*flags: str) -> str:
        run = cli("ansible-playbook", "-i", str(path), *flags, str(play))
        assert run.returncode == 0, run.stdout + run.stderr
        return run.stdout.split("HOSTS=", 1)[1].split()[0].strip('"')

    assert listed() == ["web01"]
    write(tmp_path, "export.json", {"virtual_machines": [netbox_vm(1, "web01"), netbox_vm(2, "web02")]})
    assert listed() == ["web01"]  # served from the cache
    assert played() == "web01"
    assert played("--flush-cache") == "web01,web02"  # ansible-playbook --flush-cache asks the CMDB again
    write(tmp_path, "export.json", {"virtual_machines": [netbox_vm(3, "web03")]})
    assert listed() == ["web01", "web02"]
    cache_files = list((tmp_path / "cache").glob("shop_sre.rollout.cmdb_*"))
    assert len(cache_files) == 1
    # the documented command for ansible-inventory: rm -f <cache_connection>/<cache_prefix>sre.rollout.cmdb_*
    subprocess.run(f"rm -f {tmp_path / 'cache'}/shop_sre.rollout.cmdb_*", shell=True, check=True)
    assert listed() == ["web03"]
    flag = cli("ansible-inventory", "-i", str(path), "--list", "--flush-cache")
    assert flag.returncode != 0 and "unrecognized arguments: --flush-cache" in flag.stderr  # why the docs say so


# --------------------------------------------------------------------------- the documented examples


def documented_options() -> set[str]:
    own = yaml.safe_load(plugin_module.DOCUMENTATION)["options"]
    shared = yaml.safe_load(fragment.ModuleDocFragment.DOCUMENTATION)["options"]
    return set(own) | set(shared)


def examples() -> list[dict]:
    return list(yaml.safe_load_all(plugin_module.EXAMPLES))


def test_every_option_has_an_example():
    used = set().union(*(set(doc) for doc in examples()))
    assert documented_options() - used == set()
    for extra in ("compose", "groups", "keyed_groups", "strict", "cache", "cache_plugin", "cache_connection",
                  "cache_timeout", "cache_prefix"):
        assert extra in used, extra


def example_records(flavor: str) -> dict:
    if flavor == "nautobot":
        return {"virtual_machines": [nautobot_vm(1, "shop01", tags=("app-shop",), location="dc1"),
                                     nautobot_vm(2, "shop02", tags=("app-shop",), location="dc2", status="Planned")]}
    data = real_world_records()
    data["virtual_machines"] += [
        netbox_vm(1, "shop-web01", tenant="blue", tags=("app-shop", "pci")),
        netbox_vm(2, "shop-web02", tenant="blue", site="dc2"),
        netbox_vm(3, "shop-web03", tenant="red"),
        netbox_vm(4, "demo-stg01", tags=("demo",), app="demo", env="staging", status="staged"),
    ]
    return data


@pytest.mark.parametrize("number", range(len(examples())))
def test_every_example_runs(tmp_path, monkeypatch, warnings, number):
    doc = examples()[number]
    lab = tmp_path / "lab"
    lab.mkdir()
    write(lab, "cmdb.json", {"virtual_machines": [netbox_vm(1, "web01", env="lab")]})
    monkeypatch.setenv("LAB_DIR", str(lab))
    monkeypatch.setenv("DEMO_NETBOX_TOKEN", "demo-token")
    flavor = doc.get("backend", "file")
    locations = {"loc-dc1": {"id": "loc-dc1", "name": "dc1"}, "loc-dc2": {"id": "loc-dc2", "name": "dc2"}}
    with FakeCmdb(example_records(flavor), flavor=flavor if flavor != "file" else "netbox",
                  locations=locations) as fake:
        if "url" in doc:
            doc["url"] = fake.url  # the example's https URL, pointed at the local server
        if "cache_connection" in doc:
            doc["cache_connection"] = str(tmp_path / "cache")
        inv = inventory(write(tmp_path, "example.cmdb.yml", doc))
    hosts = sorted(inv.hosts)
    if flavor == "file":
        assert hosts == ["web01"]
    elif flavor == "nautobot":
        assert hosts == ["shop01", "shop02"] and group_members(inv)["cmdb_inactive"] == ["shop02"]
        assert group_members(inv)["app_shop"] == ["shop01"]
    elif doc.get("app") == "shop":
        assert hosts == ["shop-web01", "shop-web02"]
        groups = group_members(inv)
        assert groups["pci"] == ["shop-web01"] and groups["tenant_blue"] == ["shop-web01", "shop-web02"]
        assert inv.get_host("shop-web01").get_vars()["ansible_user"] == "deploy"
        assert list((tmp_path / "cache").iterdir())
    elif doc.get("on_unusable") == "exclude":
        assert hosts == ["Zürich_db_2", "app_blue", "db1.zürich.example", "dup-vm", "lb_01", "orphan-vm",
                         "tor1.dc1"]
        assert fake.auth_headers[0] == "Token demo-token"
        assert len(warnings) == 1 and "were left out" in warnings[0]
        assert group_members(inv)["zone_zrh_1"] == ["Zürich_db_2", "db1.zürich.example"]
    else:
        groups = group_members(inv)
        assert len(groups["cmdb_unusable"]) == 185  # 180 without IP, both dup-vm, 3 untargetable names
        assert groups["app_demo"] == ["db1.zürich.example", "demo-stg01", "orphan-vm"]  # staged counts as active
        assert {"Zürich db 2", "app:blue", "lb,01"} <= {
            inv.get_host(h).get_vars().get("cmdb_name") for h in groups["cmdb_unusable"]}
