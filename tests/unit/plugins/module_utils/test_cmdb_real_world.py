"""The CMDB client on real-world data: unusable records, untargetable names, typos, TLS on a plain port.

The records are the shapes of a published NetBox demo data set (``real_world_records``): 180 VMs
without a primary IP, unnamed and duplicate devices, names with spaces, colons, commas and non-ASCII
letters, VMs with no site or only a cluster.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest
from cmdb.fake_cmdb_server import FakeCmdb, netbox_device, netbox_vm, real_world_records

from ansible_collections.sre.rollout.plugins.module_utils._cmdb import (
    UNUSABLE_GROUP,
    CmdbClient,
    CmdbError,
    CmdbQuery,
    CmdbResult,
    FileBackend,
    RestBackend,
    build_query,
    is_targetable,
    safe_host_name,
    unknown_options,
)


def export(tmp_path: Path, data: dict) -> CmdbClient:
    path = tmp_path / "cmdb.json"
    path.write_text(json.dumps(data))
    return CmdbClient(FileBackend(str(path)))


def rest(fake: FakeCmdb) -> CmdbClient:
    return CmdbClient(RestBackend(fake.url, flavor=fake.flavor, retry_delay=0, timeout=5, page_size=1000))


def names(hosts) -> list[str]:
    return [h.name for h in hosts]


@pytest.fixture()
def demo(tmp_path) -> CmdbClient:
    return export(tmp_path, real_world_records())


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize("name, targetable, safe", [
    ("web01", True, "web01"),
    ("db1.zürich.example", True, "db1.zürich.example"),  # dots and non-ASCII letters are fine
    ("Zürich-db-2", True, "Zürich-db-2"),
    ("Zürich db 2", False, "Zürich_db_2"),  # ansible 'Zürich db 2' matches Zürich, db and 2
    ("PP:MDF", False, "PP_MDF"),  # ':' separates patterns
    ("lb,01", False, "lb_01"),  # ',' separates patterns
    ("web[1]", False, "web_1_"),  # [x] is a subscript
    ("tab\tname", False, "tab_name"),
    ("a :, b", False, "a_b"),  # a run becomes one _
    ("!web", False, "_web"),  # leading ! excludes
    ("&web", False, "_web"),  # leading & intersects
    ("~web", False, "_web"),  # leading ~ is a regex
    ("@hosts", False, "_hosts"),  # --limit @file
    ("web!1", True, "web!1"),  # only a leading operator matters
])
def test_targetable_names_and_their_safe_form(name, targetable, safe):
    assert is_targetable(name) is targetable
    assert safe_host_name(name) == safe
    assert is_targetable(safe_host_name(name))


def test_untargetable_names_are_renamed_and_keep_the_cmdb_name(demo):
    result = demo.hosts(CmdbQuery(tags=["demo"], on_unusable="exclude"))
    by_name = {h.name: h for h in result.hosts}
    assert {"Zürich_db_2", "app_blue", "lb_01", "db1.zürich.example"} <= set(by_name)
    assert by_name["Zürich_db_2"].hostvars()["cmdb_name"] == "Zürich db 2"
    assert by_name["app_blue"].hostvars()["cmdb_name"] == "app:blue"
    assert by_name["lb_01"].hostvars()["cmdb_name"] == "lb,01"
    # a name that needs no change gets no cmdb_name (inventory name == CMDB name)
    assert "cmdb_name" not in by_name["db1.zürich.example"].hostvars()
    assert by_name["Zürich_db_2"].hostvars()["ansible_host"] == "10.0.1.45"


def test_untargetable_names_can_be_refused_instead(demo):
    with pytest.raises(CmdbError) as err:
        demo.hosts(CmdbQuery(tags=["demo"], custom_fields={"app": "demo"}, sites=["dc2"],
                             untargetable_names="unusable"))
    assert ("virtual machine lb,01 (id 303) (would be renamed 'lb_01') has a name no host pattern can target"
            in err.value.msg)
    assert "rename it in the CMDB, or set untargetable_names: rename" in err.value.msg
    assert err.value.details["unusable"] == {"untargetable": 1}


def test_a_renamed_name_that_collides_is_a_duplicate(tmp_path):
    client = export(tmp_path, {"virtual_machines": [netbox_vm(1, "PP:MDF"), netbox_vm(2, "PP_MDF")]})
    with pytest.raises(CmdbError) as err:
        client.hosts(CmdbQuery())
    assert ("virtual machine PP:MDF (id 1) and virtual machine PP_MDF (id 2) have the same name"
            in err.value.msg)
    grouped = client.hosts(CmdbQuery(on_unusable="group", allow_empty=True))
    assert names(grouped.unusable) == ["PP_MDF-id1", "PP_MDF-id2"]


# --------------------------------------------------------------------------- 180 VMs without a primary IP


def test_many_unusable_records_fail_once_with_the_count_and_the_first_names(demo):
    with pytest.raises(CmdbError) as err:
        demo.hosts(CmdbQuery(tags=["demo"]))
    msg = err.value.msg
    assert msg.startswith(f"{demo.source}: 180 records have no primary IP address: virtual machine demo-vm001 "
                          "(id 101) (status active), virtual machine demo-vm002 (id 102) (status active), ")
    assert "virtual machine demo-vm005 (id 105) (status active) and 175 more" in msg
    assert "demo-vm006" not in msg  # the first five, not 180 names
    assert "180 selected record(s) cannot be released onto" in msg
    assert "on_unusable: exclude" in msg and "on_unusable: group" in msg
    # dup-vm: the planned copy is left out by the status filter, so the name is not a duplicate
    assert "same name" not in msg and "share a name" not in msg
    assert err.value.details["unusable"] == {"no_ip": 180}
    assert err.value.details["record"] == "demo-vm001"


def test_devices_and_vms_count_every_reason_in_one_message(demo):
    with pytest.raises(CmdbError) as err:
        demo.hosts(CmdbQuery(kinds=["virtual_machines", "devices"], tags=["demo"], inactive="group"))
    msg = err.value.msg
    assert "device record #2 (id 402) has no name" in msg
    assert ("4 records share a name with another record: device PP:MDF (id 403), device PP:MDF (id 404), "
            "virtual machine dup-vm (id 306), virtual machine dup-vm (id 307)") in msg
    # 180 VMs, the unnamed patch panel and the active PP:MDF; the planned PP:MDF needs no address
    assert "182 records have no primary IP address: device PP:MDF (id 403) (status active), " in msg
    assert err.value.details["unusable"] == {"no_name": 1, "duplicate": 4, "no_ip": 182}
    assert msg.count("cannot be released onto") == 1


def test_exclude_leaves_them_out_with_one_warning(demo):
    result = demo.hosts(CmdbQuery(tags=["demo"], on_unusable="exclude"))
    assert names(result.hosts) == ["Zürich_db_2", "app_blue", "db1.zürich.example", "dup-vm", "lb_01",
                                   "orphan-vm"]
    assert len(result.unusable) == 180 and result.all_hosts() == result.hosts
    warning = result.warning()
    assert warning.startswith(f"{demo.source}: 180 selected record(s) cannot be released onto and were left "
                              "out (on_unusable: exclude): 180 records have no primary IP address: ")
    assert "and 175 more" in warning


def test_group_lists_them_in_cmdb_unusable_without_an_address(demo):
    result = demo.hosts(CmdbQuery(tags=["demo"], on_unusable="group"))
    assert len(result.hosts) == 6 and len(result.unusable) == 180
    assert len(result.all_hosts()) == 186
    vm = next(h for h in result.unusable if h.name == "demo-vm042")
    assert vm.groups() == [UNUSABLE_GROUP] and vm.groups(["app"]) == [UNUSABLE_GROUP]
    hv = vm.hostvars()
    assert "ansible_host" not in hv and hv["cmdb_unusable"] == ["has no primary IP address"]
    assert hv["cmdb_app"] == "demo" and hv["cmdb_status"] == "active"
    assert "put in group cmdb_unusable without ansible_host" in result.warning()


def test_only_unusable_records_is_still_an_empty_answer(tmp_path):
    client = export(tmp_path, {"virtual_machines": [netbox_vm(1, ip=None), netbox_vm(2, ip=None)]})
    with pytest.raises(CmdbError) as err:
        client.hosts(CmdbQuery(on_unusable="exclude"))
    assert "returned no active hosts for status=active (2 selected record(s) cannot be released onto: " in \
        err.value.msg
    assert client.hosts(CmdbQuery(on_unusable="exclude", allow_empty=True)).hosts == []


def test_unusable_names_stay_distinct_in_group_mode(demo):
    result = demo.hosts(CmdbQuery(kinds=["devices"], tags=["demo"], inactive="group", on_unusable="group"))
    assert names(result.hosts) == ["tor1.dc1"]
    assert names(result.unusable) == ["PP_MDF-id403", "PP_MDF-id404", "unnamed-device-402"]
    unnamed = next(h for h in result.unusable if h.name == "unnamed-device-402")
    assert unnamed.hostvars()["cmdb_name"] is None
    assert unnamed.hostvars()["cmdb_unusable"] == ["has no name", "has no primary IP address"]
    planned = next(h for h in result.unusable if h.name == "PP_MDF-id404")
    assert planned.hostvars()["cmdb_unusable"] == ["has the same name as another record"]  # inactive: IP not needed


def test_result_round_trips_through_the_cache_format(demo):
    result = demo.hosts(CmdbQuery(kinds=["virtual_machines", "devices"], tags=["demo"], on_unusable="group",
                                  inactive="group"))
    again = CmdbResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again == result and again.warning() == result.warning()


# --------------------------------------------------------------------------- records the query does not select


def test_unnamed_and_duplicate_devices_the_filters_leave_out_do_not_fail(demo):
    result = demo.hosts(CmdbQuery(kinds=["devices"], roles=["tor-switch"]))
    assert names(result.hosts) == ["tor1.dc1"] and result.unusable == []


def test_duplicates_left_out_by_inactive_exclude_do_not_fail(tmp_path):
    client = export(tmp_path, {"devices": [netbox_device(1, "PP:MDF"), netbox_device(2, "PP:MDF", status="planned")]})
    [host] = client.hosts(CmdbQuery(kinds=["devices"])).hosts
    assert (host.name, host.hostvars()["cmdb_name"]) == ("PP_MDF", "PP:MDF")
    with pytest.raises(CmdbError, match=r"device PP:MDF \(id 1\) and device PP:MDF \(id 2\) have the same name"):
        client.hosts(CmdbQuery(kinds=["devices"], inactive="group"))


def test_rest_server_side_filters_skip_the_odd_records():
    with FakeCmdb(real_world_records()) as fake:
        result = rest(fake).hosts(CmdbQuery(kinds=["devices"], roles=["tor-switch"]))
        both = rest(fake).hosts(CmdbQuery(kinds=["virtual_machines", "devices"], tags=["demo"], inactive="group",
                                          on_unusable="exclude"))
    assert names(result.hosts) == ["tor1.dc1"]
    assert len(both.unusable) == 185 and names(both.inactive) == []
    assert names(both.hosts) == ["Zürich_db_2", "app_blue", "db1.zürich.example", "lb_01", "orphan-vm",
                                 "tor1.dc1"]


# --------------------------------------------------------------------------- no site, cluster only


def test_vms_without_site_or_with_only_a_cluster(demo):
    result = demo.hosts(CmdbQuery(tags=["demo"], custom_fields={"app": "demo"}, on_unusable="exclude",
                                  zone_from=["cluster", "site"], app_from=["custom_fields.app"]))
    by_name = {h.name: h for h in result.hosts}
    assert (by_name["Zürich_db_2"].site, by_name["Zürich_db_2"].cluster, by_name["Zürich_db_2"].zone) == (
        None, "zrh-1", "zrh-1")
    assert by_name["Zürich_db_2"].groups() == ["app_demo", "env_demo", "zone_zrh_1", "role_db"]
    orphan = by_name["orphan-vm"]
    assert (orphan.site, orphan.cluster, orphan.zone) == (None, None, None)
    assert orphan.groups() == ["app_demo", "env_demo", "role_web"]
    # a site filter leaves the VMs without a site out, it does not fail on them
    in_dc2 = demo.hosts(CmdbQuery(tags=["demo"], sites=["dc2"], on_unusable="exclude"))
    assert names(in_dc2.hosts) == ["lb_01"]


# --------------------------------------------------------------------------- typos


@pytest.mark.parametrize("typo, meant", [("role", "roles"), ("site", "sites"), ("tenant", "tenants"),
                                         ("tag", "tags"), ("custom_field", "custom_fields"),
                                         ("on_unusabel", "on_unusable"), ("inactiv", "inactive")])
def test_unknown_option_names_the_closest_one(typo, meant):
    valid = ["roles", "sites", "tenants", "tags", "custom_fields", "on_unusable", "inactive", "status"]
    assert unknown_options({typo: 1, "roles": 2}, valid) == f"unknown option {typo!r} — did you mean {meant!r}?"


def test_unknown_option_without_a_close_one_lists_the_valid_ones():
    assert unknown_options(["zzz"], ["roles", "tags"]) == "unknown option 'zzz' (valid: roles, tags)"
    assert unknown_options(["tag", "role"], ["roles", "tags"]) == (
        "unknown option 'role' — did you mean 'roles'?; unknown option 'tag' — did you mean 'tags'?")
    assert unknown_options(["roles"], ["roles"]) is None


def test_custom_field_typo_in_a_file_names_the_closest_field(tmp_path):
    client = export(tmp_path, {"virtual_machines": [netbox_vm(1, "a"), netbox_vm(2, "b")]})
    with pytest.raises(CmdbError) as err:
        client.hosts(CmdbQuery(custom_fields={"evn": "prod"}))
    assert "custom_fields: unknown custom field 'evn' — did you mean 'env'?" in err.value.msg
    assert "the records' custom fields are app, env, zone" in err.value.msg


def test_custom_field_typo_on_netbox_names_the_closest_field():
    with FakeCmdb([netbox_vm(1, "a"), netbox_vm(2, "b")]) as fake, pytest.raises(CmdbError) as err:
        rest(fake).hosts(CmdbQuery(custom_fields={"evn": "prod"}))
    assert "the server ignored the filter" in err.value.msg
    assert ("virtual machine a (id 1) has no custom field 'evn' (its custom fields: app, env, zone) — did you "
            "mean 'env'?") in err.value.msg


@pytest.mark.parametrize("options, expected", [
    ({"on_unusable": "skip"}, "on_unusable: 'skip' is not fail, exclude or group"),
    ({"untargetable_names": "keep"}, "untargetable_names: 'keep' is not rename or unusable"),
    ({"custom_fields": {"env": {"in": "prod"}}}, "custom_fields.env: {'in': 'prod'} is not a value or a list"),
    ({"custom_fields": {"env": []}}, "custom_fields.env: [] is not a value or a list"),
])
def test_bad_policy_options_are_refused(options, expected):
    with pytest.raises(CmdbError) as err:
        build_query(options)
    assert expected in err.value.msg


# --------------------------------------------------------------------------- TLS


def test_https_to_a_plain_http_port_says_it_does_not_speak_tls():
    with FakeCmdb([netbox_vm(1)]) as fake:
        url = fake.url.replace("http://", "https://")
        client = CmdbClient(RestBackend(url, retries=0, timeout=5))
        with pytest.raises(CmdbError) as err:
            client.hosts(CmdbQuery())
    port = url.rsplit(":", 1)[1]
    assert f"NetBox {url}: 127.0.0.1:{port} does not speak TLS (it answers plain HTTP" in err.value.msg
    assert f"url: http://127.0.0.1:{port} if plain HTTP is really meant" in err.value.msg
    assert "ca_path" not in err.value.msg


def test_a_port_that_speaks_neither_is_a_handshake_error():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    port = server.getsockname()[1]

    def answer_garbage() -> None:
        for _attempt in range(2):  # the TLS attempt, then the plain-HTTP probe
            conn, _peer = server.accept()
            conn.recv(1024)
            conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n" + b"x" * 64)
            conn.close()

    threading.Thread(target=answer_garbage, daemon=True).start()
    try:
        with pytest.raises(CmdbError) as err:
            CmdbClient(RestBackend(f"https://127.0.0.1:{port}", retries=0, timeout=5)).hosts(CmdbQuery())
    finally:
        server.close()
    assert f"TLS handshake with NetBox https://127.0.0.1:{port} failed" in err.value.msg
    assert "check that url names the server's https port" in err.value.msg


def test_an_unknown_certificate_asks_for_ca_path(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with FakeCmdb([netbox_vm(1, "tls01")]) as fake:
        fake._server.socket = context.wrap_socket(fake._server.socket, server_side=True)
        url = fake.url.replace("http://", "https://")
        with pytest.raises(CmdbError) as err:
            CmdbClient(RestBackend(url, retries=0, timeout=5)).hosts(CmdbQuery())
        trusted = CmdbClient(RestBackend(url, retries=0, timeout=5, ca_path=str(cert))).hosts(CmdbQuery())
    assert f"TLS verification of NetBox {url} failed" in err.value.msg and "give ca_path" in err.value.msg
    assert names(trusted.hosts) == ["tls01"]


def test_a_400_from_netbox_recalls_slugs_and_lowercase_status():
    with FakeCmdb([netbox_vm(1)]) as fake:
        fake.fail_status, fake.fail_times = 400, 1
        fake.fail_body = '{"status": ["Select a valid choice. Active is not one of the available choices."]}'
        with pytest.raises(CmdbError) as err:
            rest(fake).hosts(CmdbQuery(status=["Active"]))
    assert "refused the query (HTTP 400)" in err.value.msg and "Active is not one of" in err.value.msg
    assert "NetBox filters take slugs, e.g. roles: [database-server], and lowercase status values" in err.value.msg
