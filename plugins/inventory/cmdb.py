# Copyright: sre.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: cmdb
short_description: Hosts of an application from the CMDB (NetBox, Nautobot or a file export)
version_added: 0.1.0
description:
  - Reads virtual machines and/or devices from a NetBox 4.x or Nautobot REST API, or from a local YAML/JSON
    export of CMDB records (the embedded default, used by the lab).
  - Every host gets C(ansible_host) from its primary IP and the C(cmdb_*) variables; hosts are grouped as
    C(app_<app>), C(env_<env>), C(zone_<zone>) and C(role_<role>) (characters other than letters, digits and
    underscores become underscores, so zone C(zone-a) gives C(zone_zone_a)).
  - The app, env and zone of a host come from configurable record fields (custom fields, role, tags, site,
    location).
  - A REST server silently ignores filter parameters it does not know. Every returned record is therefore
    checked against every filter sent, and a mismatch fails the inventory instead of letting a dropped filter
    through.
  - The inventory fails when no active host matches, unless O(allow_empty=true); a release must never
    silently target nothing. Set C(any_unparsed_is_failed = True) in the C([inventory]) section of
    C(ansible.cfg) so that a failing inventory source stops the run instead of only warning.
  - Hosts whose status is not listed in O(status) are left out, or with O(inactive=group) put only in the
    C(cmdb_inactive) group (never in the app/env/zone/role groups, nor in O(groups) or O(keyed_groups)).
  - The configuration file name must end in C(cmdb.yml) or C(cmdb.yaml).
extends_documentation_fragment:
  - sre.rollout.cmdb
  - constructed
  - inventory_cache
options:
  plugin:
    description: The name of this plugin; it identifies the configuration file as ours.
    required: true
    choices: [sre.rollout.cmdb]
    type: str
  backend:
    description:
      - Where the records come from. V(file) reads O(path); V(netbox) and V(nautobot) query O(url).
    type: str
    choices: [file, netbox, nautobot]
    default: file
    env:
      - name: SRE_ROLLOUT_CMDB_BACKEND
  path:
    description:
      - The YAML or JSON export for O(backend=file), shaped C({virtual_machines=[...], devices=[...]})
        with NetBox- or Nautobot-shaped records (a plain list or a REST page with C(results) is read as
        virtual machines).
      - C($VAR), C(${VAR}) and C(${VAR:-default}) are expanded from the environment; a relative path is
        relative to the directory of this configuration file.
    type: str
    env:
      - name: SRE_ROLLOUT_CMDB_FILE
  url:
    description: Base URL of the NetBox or Nautobot server (without C(/api)).
    type: str
    env:
      - name: SRE_ROLLOUT_CMDB_URL
  token:
    description:
      - API token. NetBox v2 tokens (C(nbt_...)) are sent as C(Bearer), others as C(Token).
    type: str
    env:
      - name: SRE_ROLLOUT_CMDB_TOKEN
      - name: NETBOX_TOKEN
      - name: NAUTOBOT_TOKEN
  validate_certs:
    description: Verify the server's TLS certificate.
    type: bool
    default: true
    env:
      - name: SRE_ROLLOUT_CMDB_VALIDATE_CERTS
  inactive:
    description:
      - V(exclude) leaves out hosts whose status is not in O(status); V(group) adds them to the
        C(cmdb_inactive) group only.
    type: str
    choices: [exclude, group]
    default: exclude
  allow_empty:
    description: Accept an answer with no active host instead of failing.
    type: bool
    default: false
seealso:
  - module: sre.rollout.cmdb_hosts
    description: The same query at play time.
notes:
  - The inventory cache holds the mapped hosts (not the raw records); change of filters needs a cache flush
    (C(ansible-inventory --flush-cache)).
"""

EXAMPLES = r"""
# inventories/lab/cmdb.yml: the lab's CMDB export
plugin: sre.rollout.cmdb
backend: file
path: "${LAB_DIR:-../../.lab}/cmdb.json"
env: lab
---
# inventories/prod/netbox.cmdb.yml: NetBox, token from SRE_ROLLOUT_CMDB_TOKEN
plugin: sre.rollout.cmdb
backend: netbox
url: https://netbox.example.com
app: shop
env: prod
roles: [web]
compose:
  ansible_user: "'deploy'"
keyed_groups:
  - key: cmdb_tenant
    prefix: tenant
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: ~/.cache/ansible-cmdb
---
# Nautobot: apps from tags app-<name>, inactive hosts visible in cmdb_inactive
plugin: sre.rollout.cmdb
backend: nautobot
url: https://nautobot.example.com
app_from: ["tag:app-"]
app: shop
inactive: group
"""

import os
from typing import Any

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable

from ansible_collections.sre.rollout.plugins.module_utils._cmdb import (
    CmdbClient,
    CmdbHost,
    CmdbResult,
    build_backend,
    build_query,
)
from ansible_collections.sre.rollout.plugins.module_utils._common import RolloutError

_CLIENT_OPTIONS = (
    "backend", "path", "url", "token", "validate_certs", "ca_path", "timeout", "retries", "page_size",
    "kinds", "app", "env", "roles", "tags", "status", "sites", "locations", "tenants", "custom_fields",
    "app_from", "env_from", "zone_from", "inactive", "allow_empty",
)


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    """Hosts, groups and variables from the CMDB client."""

    NAME = "sre.rollout.cmdb"

    def verify_file(self, path: str) -> bool:
        return super().verify_file(path) and path.endswith(("cmdb.yml", "cmdb.yaml"))

    def parse(self, inventory: Any, loader: Any, path: str, cache: bool = True) -> None:
        super().parse(inventory, loader, path)
        self._read_config_data(path)
        try:
            hosts = self._cached_hosts(path, cache)
        except RolloutError as exc:
            raise AnsibleParserError(f"sre.rollout.cmdb ({path}): {exc.msg}") from exc
        self._populate(hosts)

    def _cached_hosts(self, path: str, cache: bool) -> list[CmdbHost]:
        key = self.get_cache_key(path)
        use_cache = bool(self.get_option("cache"))
        if use_cache and cache:
            try:
                return [CmdbHost.from_dict(h) for h in self._cache[key]]
            except KeyError:
                pass
        result = self._query(path)
        hosts = result.all_hosts()
        if use_cache:
            self._cache[key] = [h.to_dict() for h in hosts]
        return hosts

    def _client_options(self) -> dict[str, Any]:
        options = {name: self.get_option(name) for name in _CLIENT_OPTIONS}
        for name in ("url", "token"):
            value = options.get(name)
            if value and self.templar.is_template(value):
                options[name] = self.templar.template(value)
        return options

    def _query(self, path: str) -> CmdbResult:
        options = self._client_options()
        backend = build_backend(options, base_dir=os.path.dirname(os.path.abspath(path)))
        return CmdbClient(backend).hosts(build_query(options))

    def _populate(self, hosts: list[CmdbHost]) -> None:
        group_by = self.get_option("group_by")
        strict = self.get_option("strict")
        for host in hosts:
            name = self.inventory.add_host(host.name)
            hostvars = host.hostvars()
            for key, value in hostvars.items():
                self.inventory.set_variable(name, key, value)
            for group in host.groups(group_by):
                self.inventory.add_group(group)
                self.inventory.add_child(group, name)
            self._set_composite_vars(self.get_option("compose"), hostvars, name, strict=strict)
            if host.active:
                self._add_host_to_composed_groups(self.get_option("groups"), hostvars, name, strict=strict)
                self._add_host_to_keyed_groups(self.get_option("keyed_groups"), hostvars, name, strict=strict)
