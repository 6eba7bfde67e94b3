#!/usr/bin/python
# Copyright: sre.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: cmdb_hosts
short_description: The hosts of an application from the CMDB, at play time
version_added: 0.1.0
description:
  - Runs the query of the P(sre.rollout.cmdb#inventory) inventory plugin during a play and returns the hosts with their
    variables and groups, for when the inventory is not the CMDB (for example an AWX inventory source that
    differs), or to compare the inventory with the CMDB before a release.
  - Backends are a NetBox 4.x or Nautobot REST API, or a local YAML/JSON export of CMDB records.
  - Every record a REST server returns is checked against every filter sent; a record that does not match
    (the server silently ignored a filter) fails the task instead of being released onto.
  - Fails when no active host matches, unless O(allow_empty=true).
  - Read-only. Usually run on the controller (delegated to C(localhost), or in a play on C(localhost)); with
    O(backend=file) the file is read on the host the module runs on.
author:
  - sre.rollout maintainers (!UNKNOWN)
attributes:
  check_mode:
    support: full
    description: Read-only; runs the same in check mode.
  diff_mode:
    support: none
    description: Changes nothing, so there is nothing to diff.
  idempotent:
    support: full
    description: Never changes anything.
extends_documentation_fragment:
  - sre.rollout.cmdb
options:
  backend:
    description: Where the records come from. V(file) reads O(path); V(netbox) and V(nautobot) query O(url).
    type: str
    choices: [file, netbox, nautobot]
    default: file
  path:
    description:
      - The YAML or JSON export for O(backend=file) (C(virtual_machines) and/or C(devices) lists of NetBox- or
        Nautobot-shaped records). C($VAR) and C(${VAR:-default}) are expanded.
      - Defaults to the environment variable E(SRE_ROLLOUT_CMDB_FILE).
    type: str
  url:
    description:
      - Base URL of the NetBox or Nautobot server. Defaults to the environment variable E(SRE_ROLLOUT_CMDB_URL).
    type: str
  token:
    description:
      - API token; NetBox v2 tokens (C(nbt_...)) are sent as C(Bearer), others as C(Token).
      - Defaults to the environment variables E(SRE_ROLLOUT_CMDB_TOKEN), E(NETBOX_TOKEN), E(NAUTOBOT_TOKEN).
    type: str
  validate_certs:
    description: Verify the server's TLS certificate.
    type: bool
    default: true
  inactive:
    description: V(exclude) leaves out hosts whose status is not in O(status); V(group) returns them in RV(inactive).
    type: str
    choices: [exclude, group]
    default: exclude
  allow_empty:
    description: Accept an answer with no active host instead of failing.
    type: bool
    default: false
seealso:
  - plugin: sre.rollout.cmdb
    plugin_type: inventory
    description: The same query as an inventory source.
"""

EXAMPLES = r"""
- name: Hosts of shop in prod from NetBox (token from SRE_ROLLOUT_CMDB_TOKEN)
  sre.rollout.cmdb_hosts:
    backend: netbox
    url: https://netbox.example.com
    app: shop
    env: prod
    roles: [web]
  delegate_to: localhost
  run_once: true
  register: cmdb

- name: Put them in the in-memory inventory
  ansible.builtin.add_host:
    name: "{{ item.name }}"
    groups: "{{ item.groups }}"
    ansible_host: "{{ item.vars.ansible_host }}"
    cmdb_zone: "{{ item.vars.cmdb_zone }}"
  loop: "{{ cmdb.hosts }}"
  loop_control:
    label: "{{ item.name }}"

- name: The inventory must be what the CMDB says
  ansible.builtin.assert:
    that: groups['app_shop'] | sort == cmdb.groups['app_shop'] | sort
    fail_msg: "inventory and CMDB disagree: {{ groups['app_shop'] | symmetric_difference(cmdb.groups['app_shop']) }}"

- name: Devices of a data set where some records lack a primary IP; leave those out, with a warning
  sre.rollout.cmdb_hosts:
    backend: netbox
    url: https://netbox.example.com
    kinds: [devices]
    roles: [tor-switch]
    on_unusable: exclude
  delegate_to: localhost
  run_once: true

- name: The lab's CMDB export
  sre.rollout.cmdb_hosts:
    path: "${LAB_DIR}/cmdb.json"
    env: lab
  delegate_to: localhost
"""

RETURN = r"""
source:
  description: The CMDB that answered.
  returned: always
  type: str
  sample: NetBox https://netbox.example.com
filters:
  description: The filters every host was checked against.
  returned: always
  type: list
  elements: str
  sample: [status=active, app=shop, env=prod]
count:
  description: Number of active hosts.
  returned: always
  type: int
  sample: 6
hosts:
  description: The active hosts, sorted by name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: >-
        Inventory host name: the CMDB name, or its safe form (see O(untargetable_names)), in which case
        C(vars.cmdb_name) holds the CMDB name.
      type: str
    groups:
      description: The groups the inventory plugin would put it in (C(app_<app>), C(env_<env>), C(zone_<zone>), C(role_<role>)).
      type: list
      elements: str
    vars:
      description: >-
        C(ansible_host) (the primary IP) and C(cmdb_app), C(cmdb_env), C(cmdb_zone), C(cmdb_status), C(cmdb_role),
        C(cmdb_site), C(cmdb_location), C(cmdb_tenant), C(cmdb_cluster), C(cmdb_tags), C(cmdb_custom_fields),
        C(cmdb_id), C(cmdb_kind); C(cmdb_name) when the inventory name differs from the CMDB name.
      type: dict
  sample:
    - name: web01
      groups: [app_app, env_lab, zone_zone_a, role_web]
      vars: {ansible_host: 127.0.10.1, cmdb_app: app, cmdb_env: lab, cmdb_zone: zone-a, cmdb_status: active}
hostvars:
  description: The same variables keyed by host name (active and, with O(inactive=group), inactive hosts).
  returned: always
  type: dict
  sample: {web01: {ansible_host: 127.0.10.1, cmdb_app: app, cmdb_zone: zone-a}}
groups:
  description: Group name to sorted host names, as the inventory plugin builds them (inactive hosts in C(cmdb_inactive)).
  returned: always
  type: dict
  sample: {app_app: [web01, web02], zone_zone_a: [web01], cmdb_inactive: [web09]}
inactive:
  description: Hosts whose status is not active, with O(inactive=group); empty otherwise.
  returned: always
  type: list
  elements: dict
  sample: [{name: web09, groups: [cmdb_inactive], vars: {cmdb_status: offline}}]
unusable:
  description:
    - The selected records the release cannot use, with O(on_unusable=exclude) (left out of RV(hosts),
      RV(hostvars) and RV(groups)) or O(on_unusable=group) (in RV(groups) as C(cmdb_unusable) and in
      RV(hostvars), without C(ansible_host)); C(reasons) says why.
  returned: always
  type: list
  elements: dict
  sample: [{name: vm17, groups: [cmdb_unusable], reasons: [has no primary IP address], vars: {cmdb_status: active}}]
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule, env_fallback

from ansible_collections.sre.rollout.plugins.module_utils._cmdb import (
    ENV_TOKEN,
    ON_UNUSABLE,
    UNTARGETABLE_NAMES,
    CmdbClient,
    CmdbHost,
    CmdbResult,
    build_backend,
    build_query,
)
from ansible_collections.sre.rollout.plugins.module_utils._common import RolloutError

_STR_LIST = {"type": "list", "elements": "str", "default": []}

ARGUMENT_SPEC: dict[str, Any] = {
    "backend": {"type": "str", "choices": ["file", "netbox", "nautobot"], "default": "file"},
    "path": {"type": "str", "fallback": (env_fallback, ["SRE_ROLLOUT_CMDB_FILE"])},
    "url": {"type": "str", "fallback": (env_fallback, ["SRE_ROLLOUT_CMDB_URL"])},
    "token": {"type": "str", "no_log": True, "fallback": (env_fallback, list(ENV_TOKEN))},
    "validate_certs": {"type": "bool", "default": True},
    "ca_path": {"type": "path"},
    "timeout": {"type": "float", "default": 30},
    "retries": {"type": "int", "default": 2},
    "page_size": {"type": "int", "default": 250},
    "kinds": {"type": "list", "elements": "str", "choices": ["virtual_machines", "devices"],
              "default": ["virtual_machines"]},
    "app": {"type": "str"},
    "env": {"type": "str"},
    "roles": dict(_STR_LIST),
    "tags": dict(_STR_LIST),
    "status": {"type": "list", "elements": "str", "default": ["active"]},
    "sites": dict(_STR_LIST),
    "locations": dict(_STR_LIST),
    "tenants": dict(_STR_LIST),
    "custom_fields": {"type": "dict", "default": {}},
    "app_from": {"type": "list", "elements": "str", "default": ["custom_fields.app"]},
    "env_from": {"type": "list", "elements": "str", "default": ["custom_fields.env"]},
    "zone_from": {"type": "list", "elements": "str", "default": ["custom_fields.zone", "location", "site"]},
    "group_by": {"type": "list", "elements": "str", "choices": ["app", "env", "zone", "role"],
                 "default": ["app", "env", "zone", "role"]},
    "inactive": {"type": "str", "choices": ["exclude", "group"], "default": "exclude"},
    "allow_empty": {"type": "bool", "default": False},
    "on_unusable": {"type": "str", "choices": list(ON_UNUSABLE), "default": "fail"},
    "untargetable_names": {"type": "str", "choices": list(UNTARGETABLE_NAMES), "default": "rename"},
}


def host_entry(host: CmdbHost, group_by: list[str]) -> dict[str, Any]:
    return {"name": host.name, "groups": host.groups(group_by), "vars": host.hostvars()}


def summarize(result: CmdbResult, group_by: list[str]) -> dict[str, Any]:
    """The module result: hosts, inactive hosts, unusable records, hostvars and groups."""
    hosts = [host_entry(h, group_by) for h in result.hosts]
    inactive = [host_entry(h, group_by) for h in result.inactive]
    unusable = [dict(host_entry(h, group_by), reasons=h.hostvars()["cmdb_unusable"]) for h in result.unusable]
    listed = hosts + inactive + (unusable if result.on_unusable == "group" else [])
    groups: dict[str, list[str]] = {}
    for entry in listed:
        for group in entry["groups"]:
            groups.setdefault(group, []).append(entry["name"])
    return {
        "changed": False, "source": result.source, "filters": result.filters, "count": len(hosts),
        "hosts": hosts, "inactive": inactive, "unusable": unusable,
        "hostvars": {e["name"]: e["vars"] for e in listed},
        "groups": {g: sorted(names) for g, names in sorted(groups.items())},
    }


def run(params: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    backend = build_backend(params)
    result = CmdbClient(backend).hosts(build_query(params))
    return summarize(result, params["group_by"]), result.warning()


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        result, warning = run(module.params)
    except RolloutError as exc:
        module.fail_json(msg=exc.msg, **exc.details)
    if warning:
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
