"""The lab inventory comes from the lab's CMDB file through sre.rollout.cmdb.

``ansible-inventory --list`` on ``inventories/lab`` must give exactly the lab's
hosts, addresses, zones and groups; Ansible must reach each host at the address
the CMDB gave (checked over real SSH against the app's own ``/version``); the
module ``cmdb_hosts`` must agree with the inventory. Failure paths run on copies
of the lab's CMDB file in a temporary directory: the lab itself is only read.
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path

import labkit
import pytest
import yaml

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
LAB_INVENTORY = REPO / "inventories" / "lab"


def inventory_list(source: Path, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    env = labkit.ansible_env(extra_env)
    cmd = [str(REPO / ".venv" / "bin" / "ansible-inventory"), "-i", str(source), "--list"]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)


def members(listing: dict, group: str) -> list[str]:
    return sorted(listing.get(group, {}).get("hosts", []))


@pytest.fixture()
def cmdb_copy(lab, tmp_path):
    """A writable copy of the lab's CMDB export plus a plugin config reading it."""
    records = json.loads(Path(lab["cmdb"]["file"]).read_text())

    def make(mutate=None, **options) -> Path:
        data = json.loads(json.dumps(records))
        if mutate:
            mutate(data["virtual_machines"])
        (tmp_path / "export.json").write_text(json.dumps(data))
        config = tmp_path / "cmdb.yml"
        config.write_text(yaml.safe_dump(dict({"plugin": "sre.rollout.cmdb", "path": "export.json"}, **options)))
        return config

    return make


def test_lab_inventory_lists_exactly_the_lab_hosts(lab):
    run = inventory_list(LAB_INVENTORY)
    assert run.returncode == 0, run.stderr
    assert "Failed to parse" not in run.stderr and "Unable to parse" not in run.stderr, run.stderr
    listing = json.loads(run.stdout)
    names = sorted(h["name"] for h in lab["hosts"])
    hostvars = listing["_meta"]["hostvars"]
    assert sorted(hostvars) == names
    for host in lab["hosts"]:
        hv = hostvars[host["name"]]
        assert hv["ansible_host"] == host["address"]
        assert (hv["cmdb_app"], hv["cmdb_env"], hv["cmdb_zone"], hv["cmdb_status"], hv["cmdb_role"]) == (
            lab["app"]["name"], lab["app"]["env"], host["zone"], "active", "web")
    assert members(listing, f"app_{lab['app']['name']}") == names
    assert members(listing, f"env_{lab['app']['env']}") == names
    assert members(listing, "role_web") == names
    zones = Counter(h["zone"] for h in lab["hosts"])
    for zone, count in zones.items():
        group = "zone_" + zone.replace("-", "_")
        assert members(listing, group) == sorted(h["name"] for h in lab["hosts"] if h["zone"] == zone)
        assert len(members(listing, group)) == count
    assert "cmdb_inactive" not in listing


def test_ansible_reaches_each_host_at_the_cmdb_address(lab, ansible):
    play = [{
        "name": "ask each app who it is, at the address the CMDB gave",
        "hosts": f"app_{lab['app']['name']}:&env_{lab['app']['env']}",
        "gather_facts": False,
        "tasks": [{"name": "version", "ansible.builtin.uri": {
            "url": "http://{{ ansible_host }}:8080/version", "return_content": True}}],
    }]
    run = ansible.playbook(play)
    assert run.rc == 0, run.stdout[-3000:]
    results = {r["_host"]: r for r in run.results(task="version")}
    assert sorted(results) == sorted(h["name"] for h in lab["hosts"])
    for name, res in results.items():
        assert res["_event"] == "runner_on_ok"
        assert res["json"]["host"] == name  # the app on that address says it is that host


def test_cmdb_hosts_module_agrees_with_the_inventory(lab, ansible):
    out = ansible.module("cmdb_hosts", {"path": lab["cmdb"]["file"], "env": lab["app"]["env"]},
                         hosts="localhost", check=True)["localhost"]
    assert not out.get("failed"), out
    listing = json.loads(inventory_list(LAB_INVENTORY).stdout)
    assert out["changed"] is False and out["count"] == len(lab["hosts"])
    for group, hosts in out["groups"].items():
        assert members(listing, group) == hosts
    for host in lab["hosts"]:
        assert out["hostvars"][host["name"]]["ansible_host"] == host["address"]


def test_inactive_host_is_left_out_or_grouped(cmdb_copy):
    def retire_web02(vms):
        next(v for v in vms if v["name"] == "web02")["status"] = {"value": "decommissioning",
                                                                  "label": "Decommissioning"}

    excluded = json.loads(inventory_list(cmdb_copy(retire_web02)).stdout)
    assert "web02" not in excluded["_meta"]["hostvars"]
    grouped = json.loads(inventory_list(cmdb_copy(retire_web02, inactive="group")).stdout)
    assert members(grouped, "cmdb_inactive") == ["web02"]
    assert "web02" not in members(grouped, "app_app") and "web01" in members(grouped, "app_app")
    assert grouped["_meta"]["hostvars"]["web02"]["cmdb_status"] == "decommissioning"


@pytest.mark.parametrize("mutate, options, expected", [
    (lambda vms: vms[0].update(primary_ip4=None), {}, "virtual machine web01 (id 1) (status active) has no primary IP"),
    (lambda vms: vms[1].pop("name"), {}, "record #2 (id 2) has no name"),
    (None, {"env": "prod"}, "returned no active hosts for status=active, env=prod"),
])
def test_a_bad_cmdb_fails_the_inventory_naming_the_record(cmdb_copy, mutate, options, expected):
    config = cmdb_copy(mutate, **options)
    strict = inventory_list(config, {"ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "1"})
    assert strict.returncode != 0
    stderr = "".join(strict.stderr.split())  # ansible wraps warnings, also at hyphens
    assert "".join(expected.split()) in stderr
    assert "".join(f"CMDB file {config.parent / 'export.json'}".split()) in stderr
