"""The CMDB client: file backend, NetBox and Nautobot REST backends, mapping, errors."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import yaml
from cmdb.fake_cmdb_server import FakeCmdb, nautobot_vm, netbox_vm

from ansible_collections.sre.rollout.plugins.module_utils._cmdb import (
    CmdbClient,
    CmdbError,
    CmdbHost,
    CmdbQuery,
    FileBackend,
    RestBackend,
    build_backend,
    build_query,
    expand_env,
    resolve_path,
    safe_group_name,
)

LAB_RECORD = {
    "id": 1, "name": "web01", "status": {"value": "active", "label": "Active"},
    "role": {"slug": "web", "name": "web"}, "tags": [{"slug": "app-app", "name": "app-app"}],
    "site": {"slug": "zone-a", "name": "zone-a"}, "tenant": None,
    "primary_ip4": {"address": "127.0.10.1/32"},
    "custom_fields": {"app": "app", "env": "lab", "zone": "zone-a"},
}


def write_json(tmp_path: Path, data, name: str = "cmdb.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


def file_hosts(tmp_path: Path, records, **query):
    path = write_json(tmp_path, {"virtual_machines": records})
    return CmdbClient(FileBackend(path)).hosts(CmdbQuery(**query))


def rest(fake: FakeCmdb, **kwargs) -> CmdbClient:
    kwargs.setdefault("retry_delay", 0)
    kwargs.setdefault("timeout", 5)
    return CmdbClient(RestBackend(fake.url, flavor=fake.flavor, **kwargs))


# --------------------------------------------------------------------------- file backend


def test_lab_record_maps_to_vars_and_groups(tmp_path):
    result = file_hosts(tmp_path, [LAB_RECORD])
    [host] = result.hosts
    assert host.hostvars() == {
        "ansible_host": "127.0.10.1", "cmdb_app": "app", "cmdb_env": "lab", "cmdb_zone": "zone-a",
        "cmdb_status": "active", "cmdb_role": "web", "cmdb_site": "zone-a", "cmdb_location": None,
        "cmdb_tenant": None, "cmdb_cluster": None, "cmdb_tags": ["app-app"],
        "cmdb_custom_fields": {"app": "app", "env": "lab", "zone": "zone-a"}, "cmdb_id": "1",
        "cmdb_kind": "virtual_machines",
    }
    assert host.groups() == ["app_app", "env_lab", "zone_zone_a", "role_web"]
    assert host.groups(["app"]) == ["app_app"]
    assert result.inactive == []


def test_yaml_export_plain_list_and_rest_page_are_read(tmp_path):
    yml = tmp_path / "cmdb.yaml"
    yml.write_text(yaml.safe_dump({"virtual_machines": [LAB_RECORD]}))
    assert [h.name for h in CmdbClient(FileBackend(str(yml))).hosts(CmdbQuery()).hosts] == ["web01"]
    plain = write_json(tmp_path, [LAB_RECORD], "list.json")
    assert [h.name for h in CmdbClient(FileBackend(plain)).hosts(CmdbQuery()).hosts] == ["web01"]
    page = write_json(tmp_path, {"count": 1, "next": None, "results": [LAB_RECORD]}, "page.json")
    assert [h.name for h in CmdbClient(FileBackend(page)).hosts(CmdbQuery()).hosts] == ["web01"]


def test_devices_and_vms_are_read_by_kind(tmp_path):
    device = dict(LAB_RECORD, id=7, name="db01", role=None, device_role={"slug": "db", "name": "db"},
                  location={"slug": "room-1", "name": "Room 1"})
    path = write_json(tmp_path, {"virtual_machines": [LAB_RECORD], "devices": [device]})
    client = CmdbClient(FileBackend(path))
    both = client.hosts(CmdbQuery(kinds=["virtual_machines", "devices"]))
    assert [(h.name, h.kind, h.role) for h in both.hosts] == [
        ("db01", "devices", "db"), ("web01", "virtual_machines", "web")]
    # zone_from default: custom_fields.zone first, then location, then site
    assert both.hosts[0].zone == "zone-a"
    only_devices = client.hosts(CmdbQuery(kinds=["devices"], zone_from=["location", "site"]))
    assert [(h.name, h.zone) for h in only_devices.hosts] == [("db01", "room-1")]


def test_file_filters_are_applied_locally(tmp_path):
    records = [
        netbox_vm(1, "a1", tags=("app-shop", "pci"), tenant="blue"),
        netbox_vm(2, "a2", role="db", tags=("app-shop",), site="dc2"),
        netbox_vm(3, "a3", env="staging", tags=("pci",)),
        netbox_vm(4, "a4", status="offline"),
    ]

    def names(**query):
        return [h.name for h in file_hosts(tmp_path, records, **query).hosts]

    assert names() == ["a1", "a2", "a3"]
    assert names(env="prod") == ["a1", "a2"]
    assert names(roles=["db"]) == ["a2"]
    assert names(roles=["Web"]) == ["a1", "a3"]  # by name as well as slug
    assert names(tags=["app-shop", "pci"]) == ["a1"]  # all tags required
    assert names(sites=["dc2"]) == ["a2"]
    assert names(tenants=["blue"]) == ["a1"]
    assert names(custom_fields={"env": ["prod", "staging"]}) == ["a1", "a2", "a3"]
    assert names(custom_fields={"env": "staging"}) == ["a3"]
    assert names(status=["active", "offline"]) == ["a1", "a2", "a3", "a4"]


def test_inactive_hosts_left_out_or_grouped(tmp_path):
    records = [netbox_vm(1, "up"), netbox_vm(2, "down", status="offline", ip=None)]
    excluded = file_hosts(tmp_path, records)
    assert [h.name for h in excluded.hosts] == ["up"] and excluded.inactive == []
    grouped = file_hosts(tmp_path, records, inactive="group")
    assert [h.name for h in grouped.hosts] == ["up"]
    [down] = grouped.inactive
    assert down.groups() == ["cmdb_inactive"]
    assert not down.active and "ansible_host" not in down.hostvars()  # no IP needed when not released onto


def test_app_env_zone_from_role_tags_and_fallbacks(tmp_path):
    record = netbox_vm(1, "h1", role="shop", tags=("app-cart", "env-qa", "misc"), app=None, env=None,
                       site="dc9", zone=None)
    [host] = file_hosts(tmp_path, [record], app_from=["custom_fields.app", "tag:app-"],
                        env_from=["tag:env-"], zone_from=["custom_fields.zone", "site"]).hosts
    assert (host.app, host.env, host.zone) == ("cart", "qa", "dc9")
    [host] = file_hosts(tmp_path, [record], app_from=["role"], env_from=["tag:env-"]).hosts
    assert host.app == "shop"
    assert [h.name for h in file_hosts(tmp_path, [record], app_from=["tag:app-"], app="cart").hosts] == ["h1"]


def test_nautobot_shaped_records_in_a_file(tmp_path):
    record = nautobot_vm(3, "nb1", location=None)
    record["cluster"]["location"] = {"id": "l1", "name": "Berlin"}
    [host] = file_hosts(tmp_path, [record], roles=["web"], tags=["app-shop"]).hosts
    assert (host.status, host.role, host.location, host.zone, host.address) == (
        "active", "web", "Berlin", "Berlin", "10.1.0.3")
    assert host.id == "00000000-0000-0000-0000-000000000003"


def test_group_names_are_safe():
    assert safe_group_name("zone_zone-a.1 x") == "zone_zone_a_1_x"
    host = CmdbHost(name="h", kind="virtual_machines", id="1", status="active", address="1.2.3.4",
                    app="my-app", env=None, zone="eu/west", role=None)
    assert host.groups() == ["app_my_app", "zone_eu_west"]
    assert CmdbHost.from_dict(host.to_dict()) == host


# --------------------------------------------------------------------------- file errors


@pytest.mark.parametrize("record, expected", [
    ("web01", "record #1 is a str"),
    ({"id": 5, "status": {"value": "active"}}, "record #1 (id 5) has no name"),
    ({"id": 5, "name": "web05"}, "web05 (id 5) has no status"),
    (dict(LAB_RECORD, primary_ip4=None), "virtual machine web01 (id 1) (status active) has no primary IP"),
    (dict(LAB_RECORD, tags=[{"id": 3}]), "has a tag without a name"),
    (dict(LAB_RECORD, custom_fields=["x"]), "custom_fields of type list"),
    (dict(LAB_RECORD, role={"id": 4, "object_type": "extras.role", "url": "/api/extras/roles/4/"}),
     "role reference without a name"),
    (dict(LAB_RECORD, custom_fields={"app": ["a", "b"]}), "custom field 'app' of virtual machine web01"),
    (dict(LAB_RECORD, custom_fields={}, tags=[{"slug": "app-a"}, {"slug": "app-b"}]), "several tags with prefix"),
])
def test_malformed_records_name_the_cmdb_and_the_record(tmp_path, record, expected):
    query = {"app_from": ["custom_fields.app", "tag:app-"]}
    with pytest.raises(CmdbError) as err:
        file_hosts(tmp_path, [record], **query)
    assert expected in err.value.msg
    assert f"CMDB file {tmp_path / 'cmdb.json'}" in err.value.msg


def test_duplicate_names_fail(tmp_path):
    with pytest.raises(CmdbError, match="have the same name"):
        file_hosts(tmp_path, [LAB_RECORD, dict(LAB_RECORD, id=2)])


def test_zero_hosts_fail_unless_allowed(tmp_path):
    with pytest.raises(CmdbError) as err:
        file_hosts(tmp_path, [LAB_RECORD], env="prod")
    assert "returned no active hosts for status=active, env=prod" in err.value.msg
    assert "allow_empty" in err.value.msg
    assert file_hosts(tmp_path, [LAB_RECORD], env="prod", allow_empty=True).hosts == []


def test_unreadable_and_invalid_files(tmp_path):
    with pytest.raises(CmdbError, match=r"cannot read the CMDB file .*missing.json: No such file"):
        CmdbClient(FileBackend(str(tmp_path / "missing.json"))).hosts(CmdbQuery())
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(CmdbError, match="is not valid JSON/YAML"):
        CmdbClient(FileBackend(str(bad))).hosts(CmdbQuery())
    scalar = write_json(tmp_path, 42, "scalar.json")
    with pytest.raises(CmdbError, match="holds a int"):
        CmdbClient(FileBackend(scalar)).hosts(CmdbQuery())
    section = write_json(tmp_path, {"virtual_machines": {"a": 1}}, "section.json")
    with pytest.raises(CmdbError, match="virtual_machines is a dict, not a list"):
        CmdbClient(FileBackend(section)).hosts(CmdbQuery())


@pytest.mark.parametrize("options, expected", [
    ({"kinds": ["vms"]}, "kinds: unknown kind 'vms'"),
    ({"kinds": []}, "kinds: empty"),
    ({"inactive": "hide"}, "inactive: 'hide' is not exclude or group"),
    ({"status": []}, "status: empty"),
    ({"app_from": ["platform"]}, "app_from: unknown source 'platform'"),
    ({"zone_from": []}, "zone_from: empty"),
    ({"custom_fields": ["env=prod"]}, "custom_fields must be a mapping"),
])
def test_bad_options_are_refused(options, expected):
    with pytest.raises(CmdbError) as err:
        build_query(options)
    assert expected in err.value.msg


def test_build_backend_options():
    with pytest.raises(CmdbError, match="backend 'ldap' is not one of"):
        build_backend({"backend": "ldap"})
    with pytest.raises(CmdbError, match="backend file needs path"):
        build_backend({"backend": "file"})
    with pytest.raises(CmdbError, match="backend netbox needs url"):
        build_backend({"backend": "netbox"})
    with pytest.raises(CmdbError, match="is not an http"):
        build_backend({"backend": "nautobot", "url": "netbox.example.com"})
    nb = build_backend({"backend": "netbox", "url": "https://nb.example.com/api/", "retries": 0})
    assert isinstance(nb, RestBackend) and nb.base == "https://nb.example.com" and nb.retries == 0
    assert nb.validate_certs is True  # TLS verified by default
    assert nb.name == "NetBox https://nb.example.com"
    with pytest.raises(CmdbError, match="Nautobot has no sites"):
        CmdbQuery(sites=["dc1"]).filters("nautobot")
    # every backend the options accept is built by a factory of its own
    from ansible_collections.sre.rollout.plugins.module_utils import _cmdb
    assert set(_cmdb._FACTORIES) == set(_cmdb.BACKENDS)
    assert isinstance(build_backend({"backend": "file", "path": "/x.json"}), _cmdb.FileBackend)
    assert build_backend({"backend": "nautobot", "url": "https://nb.example.com"}).flavor == "nautobot"


def test_path_expansion(monkeypatch, tmp_path):
    env = {"LAB_DIR": "/srv/lab", "EMPTY": ""}
    assert expand_env("${LAB_DIR:-../../.lab}/cmdb.json", env) == "/srv/lab/cmdb.json"
    assert expand_env("${NOPE:-../../.lab}/cmdb.json", env) == "../../.lab/cmdb.json"
    assert expand_env("${EMPTY:-d}/x $LAB_DIR ${NOPE}", env) == "d/x /srv/lab ${NOPE}"
    monkeypatch.delenv("LAB_DIR", raising=False)
    assert resolve_path("${LAB_DIR:-../../.lab}/cmdb.json", "/repo/inventories/lab") == "/repo/.lab/cmdb.json"
    monkeypatch.setenv("LAB_DIR", str(tmp_path))
    assert resolve_path("${LAB_DIR:-../../.lab}/cmdb.json", "/repo/inventories/lab") == str(tmp_path / "cmdb.json")


# --------------------------------------------------------------------------- NetBox REST


def test_netbox_pagination_follows_next_over_several_pages():
    records = [netbox_vm(i) for i in range(1, 24)]
    with FakeCmdb(records, token="s3cret") as fake:
        client = rest(fake, token="s3cret", page_size=5)
        result = client.hosts(CmdbQuery())
    assert [h.name for h in result.hosts] == [f"vm{i:05d}" for i in range(1, 24)]
    assert len(fake.requests) == 5
    assert [q.get("offset", ["0"])[0] for _unused, q in fake.requests] == ["0", "5", "10", "15", "20"]
    assert set(fake.auth_headers) == {"Token s3cret"}
    assert all(q["exclude"] == ["config_context"] for _unused, q in fake.requests)


def test_netbox_filters_are_sent_and_checked():
    records = [netbox_vm(1, "a", tags=("app-shop", "pci"), tenant="blue", zone="z1"),
               netbox_vm(2, "b", role="db", tenant="blue", zone="z1"),
               netbox_vm(3, "c", env="dev", tenant="blue", zone="z1"),
               netbox_vm(4, "d", status="planned", tenant="blue", zone="z1"),
               netbox_vm(5, "e", tags=("app-shop", "pci"), tenant="red", zone="z1"),
               netbox_vm(6, "f", tags=("app-shop", "pci"), tenant="blue", zone="z2")]
    with FakeCmdb(records) as fake:
        result = rest(fake).hosts(CmdbQuery(app="shop", env="prod", roles=["web"], tags=["pci"], sites=["dc1"],
                                            tenants=["blue"], custom_fields={"zone": "z1"}))
        [(_unused, query)] = fake.requests
    assert [h.name for h in result.hosts] == ["a"]
    assert query["status"] == ["active"] and query["role"] == ["web"] and query["tag"] == ["pci"]
    assert query["site"] == ["dc1"] and query["cf_app"] == ["shop"] and query["cf_env"] == ["prod"]
    assert query["tenant"] == ["blue"] and query["cf_zone"] == ["z1"]


def test_netbox_app_from_tag_prefix_becomes_a_tag_filter():
    with FakeCmdb([netbox_vm(1, "a", tags=("app-shop",)), netbox_vm(2, "b", tags=("app-cart",))]) as fake:
        result = rest(fake).hosts(CmdbQuery(app="cart", app_from=["tag:app-"]))
        [(_unused, query)] = fake.requests
    assert query["tag"] == ["app-cart"] and [h.name for h in result.hosts] == ["b"]


@pytest.mark.parametrize("ignored, query, other, culprit", [
    ("tag", {"tags": ["pci"]}, {"tags": ()}, "tags=pci"),
    ("status", {}, {"status": "offline"}, "status=active"),
    ("role", {"roles": ["db"]}, {"role": "web"}, "role=db"),
    ("cf_env", {"env": "prod"}, {"env": "dev"}, "env=prod"),
    ("site", {"sites": ["dc2"]}, {"site": "dc1"}, "site=dc2"),
])
def test_netbox_silently_dropped_filter_fails(ignored, query, other, culprit):
    wanted = {"tags": ("pci",), "role": "db", "site": "dc2", "env": "prod"}
    records = [netbox_vm(1, "a", **wanted), netbox_vm(2, "b", **dict(wanted, **other))]
    with FakeCmdb(records) as fake:
        assert [h.name for h in rest(fake).hosts(CmdbQuery(**query)).hosts] == ["a"]  # honoured: fine
    with FakeCmdb(records, ignore=(ignored,)) as fake, pytest.raises(CmdbError) as err:
        rest(fake).hosts(CmdbQuery(**query))
    assert "the server ignored the filter" in err.value.msg
    assert f"returned virtual machine b (id 2), which does not match the filter {culprit}" in err.value.msg
    assert err.value.details["cmdb"] == f"NetBox {fake.url}" and err.value.details["record"] == "b"


def test_netbox_filter_not_sent_is_applied_locally():
    # several app sources: the server cannot express "first non-empty", so no cf_app is sent
    records = [netbox_vm(1, "a", app=None, tags=("app-shop",)), netbox_vm(2, "b", app="cart", tags=())]
    with FakeCmdb(records) as fake:
        result = rest(fake).hosts(CmdbQuery(app="shop", app_from=["custom_fields.app", "tag:app-"]))
        [(_unused, query)] = fake.requests
    assert "cf_app" not in query and "tag" not in query
    assert [h.name for h in result.hosts] == ["a"]


def test_netbox_inactive_group_asks_for_every_status():
    with FakeCmdb([netbox_vm(1, "a"), netbox_vm(2, "b", status="offline")]) as fake:
        result = rest(fake).hosts(CmdbQuery(inactive="group"))
        [(_unused, query)] = fake.requests
    assert "status" not in query
    assert [h.name for h in result.hosts] == ["a"] and [h.name for h in result.inactive] == ["b"]


def test_netbox_v2_token_is_sent_as_bearer():
    with FakeCmdb([netbox_vm(1)], token="nbt_abc.def") as fake:
        rest(fake, token="nbt_abc.def").hosts(CmdbQuery())
    assert fake.auth_headers == ["Bearer nbt_abc.def"]


def test_next_link_is_kept_on_the_configured_origin():
    with FakeCmdb([netbox_vm(i) for i in range(1, 8)], next_origin="http://netbox.internal:8000") as fake:
        result = rest(fake, page_size=3).hosts(CmdbQuery())
    assert len(result.hosts) == 7 and len(fake.requests) == 3


def test_pagination_loop_is_detected():
    with FakeCmdb([netbox_vm(1), netbox_vm(2)]) as fake:
        fake.loop_next = True
        with pytest.raises(CmdbError, match="paginates in a loop"):
            rest(fake, page_size=1).hosts(CmdbQuery())


@pytest.mark.parametrize("status, expected", [
    (401, "rejected the token (HTTP 401)"),
    (403, "refused access (HTTP 403)"),
    (404, "(HTTP 404): {\"detail\": \"nope\"}; check url and backend"),
    (400, "refused the query (HTTP 400)"),
    (500, "failed (HTTP 500)"),
    (503, "failed (HTTP 503)"),
])
def test_http_errors_are_clear_and_never_show_the_token(status, expected):
    with FakeCmdb([netbox_vm(1)]) as fake:
        fake.fail_status, fake.fail_times, fake.fail_body = status, 99, '{"detail": "nope"}'
        with pytest.raises(CmdbError) as err:
            rest(fake, token="s3cret-token", retries=1).hosts(CmdbQuery())
    assert expected in err.value.msg and f"NetBox {fake.url}" in err.value.msg
    assert '{"detail": "nope"}' in err.value.msg
    assert err.value.details["status"] == status
    assert "s3cret-token" not in err.value.msg and "s3cret-token" not in json.dumps(err.value.details)
    retried = status >= 500
    assert len(fake.requests) == (2 if retried else 1)


def test_a_5xx_that_clears_is_retried():
    with FakeCmdb([netbox_vm(1)]) as fake:
        fake.fail_status, fake.fail_times = 502, 2
        result = rest(fake, retries=2).hosts(CmdbQuery())
    assert [h.name for h in result.hosts] == ["vm00001"] and len(fake.requests) == 3


def test_timeout_is_clear():
    with FakeCmdb([netbox_vm(1)]) as fake:
        fake.delay = 1.0
        with pytest.raises(CmdbError) as err:
            rest(fake, timeout=0.2, retries=1).hosts(CmdbQuery())
    assert f"NetBox {fake.url} did not answer" in err.value.msg and "within 0.2s (tried 2 times)" in err.value.msg


def test_connection_refused_is_clear():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    client = CmdbClient(RestBackend(f"http://127.0.0.1:{port}", retries=0, timeout=2))
    with pytest.raises(CmdbError, match=rf"cannot reach NetBox http://127.0.0.1:{port} .*check url"):
        client.hosts(CmdbQuery())


def test_not_json_and_no_results_are_clear():
    with FakeCmdb([netbox_vm(1)]) as fake:
        fake.not_json = True
        with pytest.raises(CmdbError, match="not JSON"):
            rest(fake).hosts(CmdbQuery())


def test_rest_malformed_record_and_missing_ip_name_the_record():
    with FakeCmdb([netbox_vm(1, "noip", ip=None)]) as fake, pytest.raises(CmdbError) as err:
        rest(fake).hosts(CmdbQuery())
    assert f"NetBox {fake.url}: virtual machine noip (id 1) (status active) has no primary IP" in err.value.msg
    assert err.value.details["record"] == "noip"


def test_rest_zero_hosts_fail():
    with FakeCmdb([netbox_vm(1, app="shop")]) as fake, pytest.raises(CmdbError) as err:
        rest(fake).hosts(CmdbQuery(app="billing"))
    assert f"NetBox {fake.url} returned no active hosts for status=active, app=billing" in err.value.msg


def test_devices_endpoint():
    with FakeCmdb({"devices": [netbox_vm(1, "sw1")], "virtual_machines": [netbox_vm(2, "vm")]}) as fake:
        result = rest(fake).hosts(CmdbQuery(kinds=["devices"]))
        [(path, _unused)] = fake.requests
    assert path == "/api/dcim/devices/" and [h.name for h in result.hosts] == ["sw1"]


# --------------------------------------------------------------------------- Nautobot REST


def nautobot_fake(records, **kwargs) -> FakeCmdb:
    locations = {"loc-dc1": {"id": "loc-dc1", "name": "dc1", "display": "DC 1"},
                 "loc-dc2": {"id": "loc-dc2", "name": "dc2"}}
    return FakeCmdb(records, flavor="nautobot", locations=locations, **kwargs)


def test_nautobot_depth_status_names_tags_and_cluster_location():
    records = [nautobot_vm(i, location="dc1" if i % 2 else "dc2") for i in range(1, 12)]
    records.append(nautobot_vm(50, "stopped", status="Offline"))
    with nautobot_fake(records, token="tok") as fake:
        result = rest(fake, token="tok", page_size=4).hosts(
            CmdbQuery(roles=["web"], tags=["app-shop"], locations=["dc1", "dc2"], app="shop",
                      zone_from=["location"]))
    pages = [q for p, q in fake.requests if p.startswith("/api/virtualization/")]
    assert len(pages) == 3
    assert all(q["depth"] == ["1"] and q["status"] == ["Active"] and q["tags"] == ["app-shop"]
               and q["role"] == ["web"] and q["cf_app"] == ["shop"] for q in pages)
    # each distinct location resolved once, not once per VM
    assert sorted(p for p, _unused in fake.requests if p.startswith("/api/dcim/locations/")) == [
        "/api/dcim/locations/loc-dc1/", "/api/dcim/locations/loc-dc2/"]
    assert len(result.hosts) == 11
    first = result.hosts[0]
    assert (first.status, first.location, first.zone, first.id) == (
        "active", "dc1", "dc1", "00000000-0000-0000-0000-000000000001")


def test_nautobot_dropped_tags_filter_fails():
    records = [nautobot_vm(1, "a", tags=("app-shop",)), nautobot_vm(2, "b", tags=())]
    with nautobot_fake(records, ignore=("tags",)) as fake, pytest.raises(CmdbError) as err:
        rest(fake).hosts(CmdbQuery(tags=["app-shop"]))
    assert "Nautobot" in err.value.msg and "b (id 00000000-0000-0000-0000-000000000002)" in err.value.msg


def test_nautobot_spoken_as_netbox_is_caught():
    # netbox flavor against Nautobot: no depth, bare references -> a clear hint, never a silent wrong answer
    with nautobot_fake([nautobot_vm(1)]) as fake, pytest.raises(CmdbError) as err:
        CmdbClient(RestBackend(fake.url, flavor="netbox", retry_delay=0)).hosts(CmdbQuery(inactive="group"))
    assert "use backend: nautobot" in err.value.msg
