"""sre.rollout.cmdb and cmdb_hosts against a real NetBox (make test-cmdb).

NetBox is started by ``tests/cmdb/netbox.sh up`` (PyPI NetBox 4.x on loopback,
Debian PostgreSQL + Redis), which describes itself in ``$NETBOX_DIR/netbox.json``.
The test fills NetBox through its REST API with a small, fully known set of
virtual machines, then checks that ``ansible-inventory`` with the plugin returns
exactly the expected hosts, groups and variables: nothing more, nothing less.
The objects it created are deleted again at the end.

Not collected by ``make test`` (see tests/cmdb/conftest.py); run it as
``tests/cmdb/netbox.sh up && .venv/bin/python -m pytest tests/cmdb/test_netbox_live.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import requests
import yaml
from cmdb.fake_cmdb_server import real_world_records

from ansible_collections.sre.rollout.plugins.inventory import cmdb as plugin_module

REPO = Path(__file__).resolve().parents[2]
NETBOX_DIR = Path(os.environ.get("NETBOX_DIR", str(REPO / ".lab-netbox")))

SITES = ("dc1", "dc2")
ROLES = ("web", "db")
TENANTS = ("blue", "red")
TAGS = ("app-shop", "app-billing", "app-other", "pci", "demo")
FIELDS = ("app", "env", "zone")
# name: status, role, site, tenant, tags, app, env, zone, address (None: no primary IP)
VMS = {
    "shop-web01": ("active", "web", "dc1", "blue", ("app-shop", "pci"), "shop", "prod", "z1", "192.0.2.11/24"),
    "shop-web02": ("active", "web", "dc2", "blue", ("app-shop",), "shop", "prod", "z2", "192.0.2.12/24"),
    "shop-web03": ("active", "web", "dc1", "red", ("app-shop",), "shop", "prod", "z1", "192.0.2.13/24"),
    "shop-web04": ("planned", "web", "dc2", "blue", ("app-shop",), "shop", "prod", "z2", "192.0.2.14/24"),
    "shop-db01": ("active", "db", "dc1", "blue", ("app-shop",), "shop", "prod", "z1", "192.0.2.21/24"),
    "shop-stg01": ("active", "web", "dc1", "blue", ("app-shop",), "shop", "staging", "z1", "192.0.2.31/24"),
    "bill-web01": ("active", "web", "dc2", "red", ("app-billing",), "billing", "prod", "z2", "192.0.2.41/24"),
    "other-web01": ("active", "web", "dc1", None, ("app-other",), "other", "prod", "z1", None),
}


# The real-world shapes of the unit tests' fixtures (tests/cmdb/fake_cmdb_server.py), created on NetBox:
# 180 VMs without a primary IP, names with a space, a colon, a comma, non-ASCII letters, cluster-only VMs,
# a duplicate VM name, an unnamed device and two devices both named PP:MDF. NetBox refuses a VM with
# neither site nor cluster, so that shape (orphan-vm) stays a file-export case.
SHAPES = real_world_records()
DEMO_VMS = [r for r in SHAPES["virtual_machines"] if r["site"] or r["cluster"]]
DEMO_DEVICES = SHAPES["devices"]
DEMO_ROLES = ("tor-switch", "patch-panel")
DEMO_CLUSTERS = ("zrh-1", "c1")
DEVICE_TYPE = "sre-patch-48"
NO_IP_VMS = [r["name"] for r in DEMO_VMS if not r["primary_ip4"]]
assert len(NO_IP_VMS) == 180


def _slug(ref):
    return ref["slug"] if ref else None


# --------------------------------------------------------------------------- NetBox access


class NetBox:
    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.session.headers.update({"Authorization": f"Token {token}", "Accept": "application/json"})

    def call(self, method: str, path: str, body=None, params=None):
        resp = self.session.request(method, f"{self.url}/api/{path}", json=body, params=params, timeout=60)
        if resp.status_code >= 400:
            raise AssertionError(f"NetBox {method} {path}: HTTP {resp.status_code} {resp.text[:500]}")
        return resp.json() if resp.content else None

    def ids(self, path: str, **params) -> list[int]:
        return [r["id"] for r in self.call("GET", path, params=dict(params, limit=1000))["results"]]

    def delete_all(self, path: str, ids: list[int]) -> None:
        if ids:
            self.call("DELETE", path, [{"id": i} for i in ids])


def wipe(nb: NetBox) -> None:
    """Delete whatever this test creates (idempotent: a crashed earlier run leaves nothing behind)."""
    vm_names = list(VMS) + sorted({r["name"] for r in DEMO_VMS})
    nb.delete_all("virtualization/virtual-machines/", nb.ids("virtualization/virtual-machines/", name=vm_names))
    ours = [d["id"] for d in nb.call("GET", "dcim/devices/", params={"limit": 1000})["results"]
            if d["device_type"]["slug"] == DEVICE_TYPE]
    nb.delete_all("dcim/devices/", ours)
    addresses = [v[8] for v in VMS.values() if v[8]] + [
        r["primary_ip4"]["address"] for r in DEMO_VMS + DEMO_DEVICES if r["primary_ip4"]]
    nb.delete_all("ipam/ip-addresses/", nb.ids("ipam/ip-addresses/", address=addresses))
    nb.delete_all("virtualization/clusters/", nb.ids("virtualization/clusters/", name=list(DEMO_CLUSTERS)))
    nb.delete_all("virtualization/cluster-types/", nb.ids("virtualization/cluster-types/", slug=["sre-test"]))
    nb.delete_all("dcim/device-types/", nb.ids("dcim/device-types/", slug=[DEVICE_TYPE]))
    nb.delete_all("dcim/manufacturers/", nb.ids("dcim/manufacturers/", slug=["sre-test"]))
    nb.delete_all("tenancy/tenants/", nb.ids("tenancy/tenants/", slug=list(TENANTS)))
    nb.delete_all("dcim/sites/", nb.ids("dcim/sites/", slug=list(SITES)))
    nb.delete_all("dcim/device-roles/", nb.ids("dcim/device-roles/", slug=list(ROLES + DEMO_ROLES)))
    nb.delete_all("extras/tags/", nb.ids("extras/tags/", slug=list(TAGS)))
    nb.delete_all("extras/custom-fields/", nb.ids("extras/custom-fields/", name=list(FIELDS)))


def fill(nb: NetBox) -> None:
    nb.call("POST", "extras/custom-fields/", [
        {"name": f, "label": f, "type": "text", "object_types": ["virtualization.virtualmachine"]} for f in FIELDS])
    site = {s["slug"]: s["id"] for s in nb.call("POST", "dcim/sites/", [
        {"name": s.upper(), "slug": s, "status": "active"} for s in SITES])}
    role = {r["slug"]: r["id"] for r in nb.call("POST", "dcim/device-roles/", [
        {"name": r.title(), "slug": r, "vm_role": True, "color": "00ff00"} for r in ROLES])}
    tenant = {t["slug"]: t["id"] for t in nb.call("POST", "tenancy/tenants/", [
        {"name": t.title(), "slug": t} for t in TENANTS])}
    tag = {t["slug"]: t["id"] for t in nb.call("POST", "extras/tags/", [
        {"name": t.upper(), "slug": t} for t in TAGS])}
    created = nb.call("POST", "virtualization/virtual-machines/", [
        {"name": name, "status": st, "role": role[r], "site": site[s], "tenant": tenant.get(t),
         "tags": [tag[x] for x in tags], "custom_fields": {"app": app, "env": env, "zone": zone}}
        for name, (st, r, s, t, tags, app, env, zone, _unused) in VMS.items()])
    vm_id = {vm["name"]: vm["id"] for vm in created}
    with_ip = [name for name, v in VMS.items() if v[8]]
    ifaces = nb.call("POST", "virtualization/interfaces/", [
        {"virtual_machine": vm_id[name], "name": "eth0"} for name in with_ip])
    ips = nb.call("POST", "ipam/ip-addresses/", [
        {"address": VMS[name][8], "assigned_object_type": "virtualization.vminterface",
         "assigned_object_id": iface["id"]} for name, iface in zip(with_ip, ifaces)])
    nb.call("PATCH", "virtualization/virtual-machines/", [
        {"id": vm_id[name], "primary_ip4": ip["id"]} for name, ip in zip(with_ip, ips)])
    fill_shapes(nb, site, role, tag)


def fill_shapes(nb: NetBox, site: dict, role: dict, tag: dict) -> None:
    """The real-world shapes, through NetBox's own API (SHAPES)."""
    role.update({r["slug"]: r["id"] for r in nb.call("POST", "dcim/device-roles/", [
        {"name": r.replace("-", " ").title(), "slug": r, "vm_role": False, "color": "0000ff"} for r in DEMO_ROLES])})
    ctype = nb.call("POST", "virtualization/cluster-types/", {"name": "SRE test", "slug": "sre-test"})
    cluster = {c["name"]: c["id"] for c in nb.call("POST", "virtualization/clusters/", [
        {"name": c, "type": ctype["id"], "status": "active"} for c in DEMO_CLUSTERS])}
    maker = nb.call("POST", "dcim/manufacturers/", {"name": "SRE test", "slug": "sre-test"})
    dtype = nb.call("POST", "dcim/device-types/", {
        "manufacturer": maker["id"], "model": "Patch 48", "slug": DEVICE_TYPE})
    vms = nb.call("POST", "virtualization/virtual-machines/", [
        {"name": r["name"], "status": r["status"]["value"], "role": role[r["role"]["slug"]],
         "site": site[r["site"]["slug"]] if r["site"] else None,
         "cluster": cluster[r["cluster"]["name"]] if r["cluster"] else None,
         "tags": [tag[t["slug"]] for t in r["tags"]],
         "custom_fields": {k: v for k, v in r["custom_fields"].items() if v is not None}} for r in DEMO_VMS])
    devices = nb.call("POST", "dcim/devices/", [
        {"name": r["name"], "status": r["status"]["value"], "role": role[r["role"]["slug"]],
         "site": site[r["site"]["slug"]], "device_type": dtype["id"], "tags": [tag[t["slug"]] for t in r["tags"]]}
        for r in DEMO_DEVICES])
    addressed = [(rec, made, "vm") for rec, made in zip(DEMO_VMS, vms) if rec["primary_ip4"]] + [
        (rec, made, "device") for rec, made in zip(DEMO_DEVICES, devices) if rec["primary_ip4"]]
    vm_ifaces = nb.call("POST", "virtualization/interfaces/", [
        {"virtual_machine": made["id"], "name": "eth0"} for _record, made, kind in addressed if kind == "vm"])
    dev_ifaces = nb.call("POST", "dcim/interfaces/", [
        {"device": made["id"], "name": "eth0", "type": "1000base-t"} for _record, made, kind in addressed
        if kind == "device"])
    ifaces = iter(vm_ifaces + dev_ifaces)
    ips = nb.call("POST", "ipam/ip-addresses/", [
        {"address": rec["primary_ip4"]["address"],
         "assigned_object_type": "virtualization.vminterface" if kind == "vm" else "dcim.interface",
         "assigned_object_id": next(ifaces)["id"]} for rec, _made, kind in addressed])
    for kind, path in (("vm", "virtualization/virtual-machines/"), ("device", "dcim/devices/")):
        nb.call("PATCH", path, [{"id": made["id"], "primary_ip4": ip["id"]}
                                for (_record, made, k), ip in zip(addressed, ips) if k == kind])
    SHAPE_IDS.update({(r["name"], r["site"]["slug"] if r["site"] else None): made["id"]
                      for r, made in zip(DEMO_VMS + DEMO_DEVICES, vms + devices)})


SHAPE_IDS: dict = {}  # (CMDB name, site slug) -> NetBox id, filled by fill_shapes


@pytest.fixture(scope="module")
def netbox() -> dict:
    described = NETBOX_DIR / "netbox.json"
    if not described.exists():
        raise AssertionError(f"NetBox is not up ({described} missing): run `tests/cmdb/netbox.sh up` "
                             "(or `make test-cmdb`, which starts and stops it)")
    info = json.loads(described.read_text())
    nb = NetBox(info["url"], info["token_v1"])
    wipe(nb)
    fill(nb)
    yield info
    wipe(nb)


# --------------------------------------------------------------------------- running the plugin


def env_for(token: str | None) -> dict:
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED="1",
               ANSIBLE_NOCOLOR="1", PATH=str(REPO / ".venv" / "bin") + os.pathsep + os.environ.get("PATH", ""))
    env.pop("SRE_ROLLOUT_CMDB_TOKEN", None)
    if token:
        env["SRE_ROLLOUT_CMDB_TOKEN"] = token
    return env


def inventory(tmp_path: Path, netbox: dict, token: str | None = "v1", extra_env: dict | None = None,
              **options) -> subprocess.CompletedProcess:
    config = tmp_path / "netbox.cmdb.yml"
    config.write_text(yaml.safe_dump(dict({"plugin": "sre.rollout.cmdb", "backend": "netbox", "url": netbox["url"],
                                           "page_size": 2, "timeout": 30, "retries": 0}, **options)))
    secret = netbox.get(f"token_{token}", token) if token else None
    return subprocess.run([str(REPO / ".venv" / "bin" / "ansible-inventory"), "-i", str(config), "--list"],
                          cwd=REPO, env=dict(env_for(secret), **(extra_env or {})), capture_output=True, text=True,
                          timeout=300, check=False)


def listing(run: subprocess.CompletedProcess) -> dict:
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def groups_of(inv: dict) -> dict[str, list[str]]:
    return {g: sorted(v.get("hosts", [])) for g, v in inv.items()
            if g not in ("_meta", "all") and v.get("hosts")}


def expected_vars(name: str) -> dict:
    status, role, site, tenant, tags, app, env, zone, address = VMS[name]
    return {"ansible_host": address.split("/")[0] if address else None, "cmdb_app": app, "cmdb_env": env,
            "cmdb_zone": zone, "cmdb_status": status, "cmdb_role": role, "cmdb_site": site,
            "cmdb_tenant": tenant, "cmdb_tags": sorted(tags)}


def picked(hostvars: dict) -> dict:
    out = {k: hostvars.get(k) for k in ("ansible_host", "cmdb_app", "cmdb_env", "cmdb_zone", "cmdb_status",
                                        "cmdb_role", "cmdb_site", "cmdb_tenant")}
    out["cmdb_tags"] = sorted(hostvars["cmdb_tags"])
    return out


def errors(run: subprocess.CompletedProcess) -> str:
    """stderr of a failed run without whitespace (ansible wraps warnings, also at hyphens)."""
    assert run.returncode != 0, run.stdout[-2000:]
    return "".join(run.stderr.split())


def squash(text: str) -> str:
    return "".join(text.split())


# --------------------------------------------------------------------------- the tests


def test_app_env_role_returns_exactly_the_expected_inventory(netbox, tmp_path):
    inv = listing(inventory(tmp_path, netbox, app="shop", env="prod", roles=["web"]))
    web = ["shop-web01", "shop-web02", "shop-web03"]
    assert sorted(inv["_meta"]["hostvars"]) == web
    assert groups_of(inv) == {"app_shop": web, "env_prod": web, "role_web": web,
                              "zone_z1": ["shop-web01", "shop-web03"], "zone_z2": ["shop-web02"]}
    for name in web:
        assert picked(inv["_meta"]["hostvars"][name]) == expected_vars(name)
        assert inv["_meta"]["hostvars"][name]["cmdb_kind"] == "virtual_machines"


def test_v2_bearer_token_gives_the_same_answer(netbox, tmp_path):
    assert netbox["token_v2"].startswith("nbt_")
    v1 = listing(inventory(tmp_path, netbox, app="shop", env="prod", roles=["web"]))
    v2 = listing(inventory(tmp_path, netbox, token="v2", app="shop", env="prod", roles=["web"]))
    assert v2 == v1


def test_tags_site_and_inactive_group(netbox, tmp_path):
    inv = listing(inventory(tmp_path, netbox, tags=["app-shop"], sites=["dc2"], inactive="group"))
    assert sorted(inv["_meta"]["hostvars"]) == ["shop-web02", "shop-web04"]
    assert groups_of(inv) == {"app_shop": ["shop-web02"], "env_prod": ["shop-web02"], "role_web": ["shop-web02"],
                              "zone_z2": ["shop-web02"], "cmdb_inactive": ["shop-web04"]}
    assert picked(inv["_meta"]["hostvars"]["shop-web04"]) == expected_vars("shop-web04")


def test_all_tags_required_and_tenant_filter(netbox, tmp_path):
    both = listing(inventory(tmp_path, netbox, tags=["app-shop", "pci"]))
    assert sorted(both["_meta"]["hostvars"]) == ["shop-web01"]
    red = listing(inventory(tmp_path, netbox, tenants=["red"], app_from=["tag:app-"]))
    assert sorted(red["_meta"]["hostvars"]) == ["bill-web01", "shop-web03"]
    assert groups_of(red)["app_billing"] == ["bill-web01"] and groups_of(red)["app_shop"] == ["shop-web03"]


def test_app_from_tag_prefix_is_a_server_side_tag_filter(netbox, tmp_path):
    inv = listing(inventory(tmp_path, netbox, app="billing", app_from=["tag:app-"]))
    assert sorted(inv["_meta"]["hostvars"]) == ["bill-web01"]
    assert picked(inv["_meta"]["hostvars"]["bill-web01"]) == expected_vars("bill-web01")


def test_filter_netbox_ignores_fails_instead_of_releasing_onto_everything(netbox, tmp_path):
    # NetBox does not know `tags=` (its filter is `tag=`) and answers with every VM, no error;
    # the nautobot backend sends `tags=`, so the plugin must catch the dropped filter.
    msg = errors(inventory(tmp_path, netbox, backend="nautobot", tags=["app-billing"], inactive="group"))
    assert squash("the server ignored the filter") in msg and squash("does not match the filter tags=app-billing") in msg
    assert squash(f"Nautobot {netbox['url']} returned virtual machine") in msg


@pytest.mark.parametrize("options, culprit", [
    ({"custom_fields": {"owner": "team-x"}}, "custom_fields.owner=team-x"),  # unknown cf_owner: ignored
    ({"locations": ["dc1"]}, "location=dc1"),  # NetBox 4.x VMs have no location filter: ignored
])
def test_other_filters_netbox_ignores_are_caught(netbox, tmp_path, options, culprit):
    msg = errors(inventory(tmp_path, netbox, **options))
    assert squash(f"does not match the filter {culprit}") in msg and squash("the server ignored the filter") in msg


def test_bad_token_is_a_clear_error(netbox, tmp_path):
    msg = errors(inventory(tmp_path, netbox, token="0" * 40, app="shop"))
    assert squash(f"NetBox {netbox['url']} refused access (HTTP 403)") in msg and squash("Invalid v1 token") in msg
    assert "0" * 40 not in msg


def test_missing_primary_ip_names_the_record(netbox, tmp_path):
    msg = errors(inventory(tmp_path, netbox, app="other"))
    assert squash("virtual machine other-web01 (id") in msg and squash("has no primary IP") in msg


def test_zero_hosts_for_the_app_fail(netbox, tmp_path):
    msg = errors(inventory(tmp_path, netbox, app="nothing-here", env="prod"))
    assert squash(f"NetBox {netbox['url']} returned no active hosts for status=active, app=nothing-here, env=prod") in msg


def test_cmdb_hosts_module_returns_the_same_hosts(netbox, tmp_path):
    args = f"backend=netbox url={netbox['url']} app=shop env=prod roles=web page_size=2"
    env = env_for(netbox["token_v1"])
    env.update(ANSIBLE_STDOUT_CALLBACK="ansible.builtin.minimal", ANSIBLE_CALLBACK_RESULT_FORMAT="json")
    run = subprocess.run([str(REPO / ".venv" / "bin" / "ansible"), "localhost", "-i", "localhost,", "-c", "local",
                          "-e", "ansible_python_interpreter=/usr/bin/python3", "-m", "sre.rollout.cmdb_hosts",
                          "-a", args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert run.stdout.startswith("localhost | SUCCESS => "), run.stdout[:500]
    result = json.loads(run.stdout.split("=>", 1)[1])
    assert [h["name"] for h in result["hosts"]] == ["shop-web01", "shop-web02", "shop-web03"]
    assert result["groups"]["zone_z1"] == ["shop-web01", "shop-web03"]
    assert {n: picked(v) for n, v in result["hostvars"].items()} == {
        n: expected_vars(n) for n in ("shop-web01", "shop-web02", "shop-web03")}
    assert netbox["token_v1"] not in run.stdout


# --------------------------------------------------------------------------- real-world data (SHAPES)


DEMO = {"tags": ["demo"], "page_size": 1000}
USABLE_DEMO_VMS = ["Zürich_db_2", "app_blue", "db1.zürich.example", "dup-vm", "lb_01"]


def warnings_in(run: subprocess.CompletedProcess) -> list[str]:
    return list(run.stderr.split("[WARNING]: ")[1:])


@pytest.mark.parametrize("typo, meant, value", [
    ("role", "roles", ["db"]), ("site", "sites", "dc2"), ("tenant", "tenants", ["red"]), ("tag", "tags", ["pci"]),
])
def test_a_typoed_option_fails_naming_it_and_lists_no_host(netbox, tmp_path, typo, meant, value):
    msg = errors(inventory(tmp_path, netbox, **{typo: value}))
    assert squash(f"unknown option '{typo}' — did you mean '{meant}'?") in msg
    assert squash("nothing was asked of the CMDB") in msg
    lenient = inventory(tmp_path, netbox, extra_env={"ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "0"},
                        **{typo: value})
    assert json.loads(lenient.stdout)["_meta"]["hostvars"] == {}  # no host at all, never every host


def test_180_vms_without_primary_ip_fail_once_with_the_count_and_the_first_names(netbox, tmp_path):
    msg = errors(inventory(tmp_path, netbox, **DEMO))
    first = SHAPE_IDS[("demo-vm001", "dc1")]
    assert squash(f"180 records have no primary IP address: virtual machine demo-vm001 (id {first}) (status "
                  "active), virtual machine demo-vm002") in msg
    assert squash("demo-vm005") in msg and squash("and 175 more") in msg and "demo-vm006" not in msg
    assert msg.count(squash("cannot be released onto")) == 1


def test_180_vms_without_primary_ip_excluded_with_one_warning(netbox, tmp_path):
    run = inventory(tmp_path, netbox, on_unusable="exclude", **DEMO)
    inv = listing(run)
    hostvars = inv["_meta"]["hostvars"]
    assert sorted(hostvars) == USABLE_DEMO_VMS
    [warning] = warnings_in(run)
    assert squash("180 selected record(s) cannot be released onto and were left out (on_unusable: exclude)") in \
        squash(warning)
    # names no pattern can target are renamed, the CMDB name kept; dotted non-ASCII names stay as they are
    assert hostvars["Zürich_db_2"]["cmdb_name"] == "Zürich db 2"
    assert hostvars["Zürich_db_2"]["ansible_host"] == "10.0.1.45"
    assert (hostvars["Zürich_db_2"]["cmdb_site"], hostvars["Zürich_db_2"]["cmdb_cluster"]) == (None, "zrh-1")
    assert hostvars["app_blue"]["cmdb_name"] == "app:blue" and hostvars["lb_01"]["cmdb_name"] == "lb,01"
    assert "cmdb_name" not in hostvars["db1.zürich.example"]


def test_180_vms_without_primary_ip_grouped_in_cmdb_unusable(netbox, tmp_path):
    inv = listing(inventory(tmp_path, netbox, on_unusable="group", zone_from=["cluster", "site"], **DEMO))
    groups = groups_of(inv)
    assert groups["cmdb_unusable"] == sorted(NO_IP_VMS)
    hostvars = inv["_meta"]["hostvars"]
    assert all("ansible_host" not in hostvars[name] for name in NO_IP_VMS)
    assert all(hostvars[name]["ansible_host"] for name in USABLE_DEMO_VMS)
    assert groups["zone_zrh_1"] == ["Zürich_db_2", "db1.zürich.example"]  # cluster-only VMs
    assert not set(NO_IP_VMS) & set(groups["app_demo"])


def test_renamed_host_is_what_a_pattern_selects(netbox, tmp_path):
    config = tmp_path / "netbox.cmdb.yml"
    config.write_text(yaml.safe_dump({"plugin": "sre.rollout.cmdb", "backend": "netbox", "url": netbox["url"],
                                      "on_unusable": "exclude", **DEMO}))
    env = env_for(netbox["token_v1"])

    def selected(pattern: str) -> list[str]:
        run = subprocess.run([str(REPO / ".venv" / "bin" / "ansible"), "-i", str(config), pattern, "--list-hosts"],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
        assert run.returncode == 0, run.stderr
        return sorted(line.strip() for line in run.stdout.splitlines()[1:] if line.strip())

    assert selected("Zürich_db_2") == ["Zürich_db_2"]
    assert selected("Zürich db 2") == []  # what the CMDB calls it: split into Zürich, db and 2


def test_unnamed_and_duplicate_devices_the_filters_leave_out_do_not_break_the_query(netbox, tmp_path):
    inv = listing(inventory(tmp_path, netbox, kinds=["devices"], roles=["tor-switch"]))
    assert sorted(inv["_meta"]["hostvars"]) == ["tor1.dc1"]
    assert inv["_meta"]["hostvars"]["tor1.dc1"]["ansible_host"] == "10.0.1.145"


def test_patch_panels_unnamed_and_duplicate(netbox, tmp_path):
    unnamed = SHAPE_IDS[(None, "dc1")]
    pp1, pp2 = SHAPE_IDS[("PP:MDF", "dc1")], SHAPE_IDS[("PP:MDF", "dc2")]
    # inactive: exclude leaves the planned PP:MDF out, so the active one is no duplicate
    msg = errors(inventory(tmp_path, netbox, kinds=["devices"], roles=["patch-panel"]))
    assert squash(f"(id {unnamed}) has no name") in msg
    assert squash(f"2 records have no primary IP address: device PP:MDF (id {pp1}) (status active)") in msg
    assert "samename" not in msg and "shareaname" not in msg
    # with inactive: group both are selected: the name is shared
    msg = errors(inventory(tmp_path, netbox, kinds=["devices"], roles=["patch-panel"], inactive="group"))
    assert squash(f"2 records share a name with another record: device PP:MDF (id {pp1}), device PP:MDF "
                  f"(id {pp2})") in msg
    inv = listing(inventory(tmp_path, netbox, kinds=["devices"], roles=["patch-panel"], inactive="group",
                            on_unusable="group", allow_empty=True))
    assert groups_of(inv) == {"cmdb_unusable": sorted([f"PP_MDF-id{pp1}", f"PP_MDF-id{pp2}",
                                                       f"unnamed-device-{unnamed}"])}
    assert inv["_meta"]["hostvars"][f"unnamed-device-{unnamed}"]["cmdb_unusable"] == [
        "has no name", "has no primary IP address"]


def test_custom_field_typo_names_the_field(netbox, tmp_path):
    msg = errors(inventory(tmp_path, netbox, custom_fields={"evn": "prod"}))
    assert squash("has no custom field 'evn' (its custom fields: app, env, zone) — did you mean 'env'?") in msg


def test_https_to_the_plain_http_port_says_it_does_not_speak_tls(netbox, tmp_path):
    url = netbox["url"].replace("http://", "https://")
    msg = errors(inventory(tmp_path, netbox, url=url, app="shop"))
    assert squash(f"{url.split('//')[1]} does not speak TLS (it answers plain HTTP") in msg
    assert "ca_path" not in msg


def test_cmdb_hosts_module_excludes_with_one_warning(netbox, tmp_path):
    args = f"backend=netbox url={netbox['url']} tags=demo page_size=1000 on_unusable=exclude"
    env = env_for(netbox["token_v1"])
    env.update(ANSIBLE_STDOUT_CALLBACK="ansible.builtin.minimal", ANSIBLE_CALLBACK_RESULT_FORMAT="json")
    run = subprocess.run([str(REPO / ".venv" / "bin" / "ansible"), "localhost", "-i", "localhost,", "-c", "local",
                          "-e", "ansible_python_interpreter=/usr/bin/python3", "-m", "sre.rollout.cmdb_hosts",
                          "-a", args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(run.stdout.split("=>", 1)[1])
    assert [h["name"] for h in result["hosts"]] == USABLE_DEMO_VMS
    assert len(result["unusable"]) == 180
    [warning] = warnings_in(run)  # the CLI prints the module's warnings and drops them from the result
    assert squash("180 selected record(s) cannot be released onto and were left out") in squash(warning)


def netbox_examples() -> list[dict]:
    return [doc for doc in yaml.safe_load_all(plugin_module.EXAMPLES) if doc.get("backend") == "netbox"]


@pytest.mark.parametrize("number", range(len(netbox_examples())))
def test_the_documented_netbox_examples_run(netbox, tmp_path, number):
    doc = dict(netbox_examples()[number], url=netbox["url"])
    if "cache_connection" in doc:
        doc["cache_connection"] = str(tmp_path / "cache")
    config = tmp_path / "example.netbox.cmdb.yml"
    config.write_text(yaml.safe_dump(doc, allow_unicode=True))
    env = dict(env_for(netbox["token_v1"]), DEMO_NETBOX_TOKEN=netbox["token_v1"])
    run = subprocess.run([str(REPO / ".venv" / "bin" / "ansible-inventory"), "-i", str(config), "--list"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    inv = listing(run)
    hosts = sorted(inv["_meta"]["hostvars"])
    if doc.get("app") == "shop":
        assert hosts == ["shop-web01", "shop-web02"]
        assert groups_of(inv)["pci"] == ["shop-web01"] and groups_of(inv)["tenant_blue"] == hosts
        assert list((tmp_path / "cache").iterdir())
    elif doc.get("on_unusable") == "exclude":
        assert hosts == sorted(USABLE_DEMO_VMS + ["tor1.dc1"]) and len(warnings_in(run)) == 1
    else:
        groups = groups_of(inv)
        assert len(groups["cmdb_unusable"]) == 185  # 180 without IP, both dup-vm, 3 untargetable names
        assert groups["app_demo"] == ["db1.zürich.example"]


@pytest.mark.parametrize("options", [{"status": ["Active"]}, {"roles": ["Web"]}])
def test_names_instead_of_slugs_or_lowercase_status_are_a_clear_400(netbox, tmp_path, options):
    msg = errors(inventory(tmp_path, netbox, **options))
    assert squash("refused the query (HTTP 400)") in msg
    assert squash("NetBox filters take slugs, e.g. roles: [database-server], and lowercase status values") in msg
