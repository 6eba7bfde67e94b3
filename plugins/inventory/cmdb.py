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
  - Selected records the release cannot use (no primary IP, no name, a duplicate name, or a name no host
    pattern can target) fail the inventory with one message that counts them per reason and names the
    first ones, or with O(on_unusable) are left out with one warning or listed in C(cmdb_unusable). Records
    that the filters or O(inactive=exclude) leave out are never looked at, so they cannot fail a query.
  - A name that a host pattern cannot select alone (C(ansible 'Zürich db 2') matches C(Zürich), C(db) and
    C(2)) gets a safe inventory name (C(Zürich_db_2)) and the host variable
    C(cmdb_name) with the CMDB name; see O(untargetable_names) for the rule.
  - Every option of the configuration file must be one this plugin documents. A misspelt one
    (C(role) for O(roles)) fails before the CMDB is asked, naming the closest option, because ansible would
    otherwise ignore it and the inventory would grow to every host. Entries of O(keyed_groups) are checked
    the same way.
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
  - With O(cache=true) the cache holds the mapped hosts (not the raw records), under a key made of the
    configuration file's path and every option that changes the answer (backend, url or resolved path,
    filters, mappings; never the token), so a changed filter never serves the hosts of the old one.
  - To ask the CMDB again before O(cache_timeout) runs out, C(ansible-playbook --flush-cache ...) re-reads
    every inventory source (the option exists only on C(ansible-playbook); C(ansible-inventory) has none),
    and so does the task C(ansible.builtin.meta) V(refresh_inventory) in a play. For C(ansible-inventory), delete the
    cache entries; with the C(ansible.builtin.jsonfile) cache plugin they are the files
    C(<cache_prefix>sre.rollout.cmdb_*) in O(cache_connection), for example
    C(rm -f ~/.cache/ansible-cmdb/shop_sre.rollout.cmdb_*) for the second example below
    (whose O(cache_prefix) is C(shop_)).
  - NetBox filter values are slugs (O(roles), O(sites), O(tenants), O(tags)) and its status values are
    lowercase (V(active), V(planned), ...). Nautobot takes names.
"""

EXAMPLES = r"""
# inventories/lab/cmdb.yml: the lab's CMDB export
plugin: sre.rollout.cmdb
backend: file
path: "${LAB_DIR:-../../.lab}/cmdb.json"
env: lab
---
# inventories/prod/netbox.cmdb.yml: the shop's web servers in production, from NetBox (token from
# SRE_ROLLOUT_CMDB_TOKEN or NETBOX_TOKEN). NetBox filters take slugs; status values are lowercase.
# Refresh the cache: ansible-playbook --flush-cache ..., or rm -f ~/.cache/ansible-cmdb/shop_sre.rollout.cmdb_*
plugin: sre.rollout.cmdb
backend: netbox
url: https://netbox.example.com
app: shop
env: prod
roles: [web]
sites: [dc1, dc2]
tenants: [blue]
status: [active]
compose:
  ansible_user: "'deploy'"
groups:
  pci: "'pci' in cmdb_tags"
keyed_groups:
  - key: cmdb_tenant
    prefix: tenant
strict: true
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: ~/.cache/ansible-cmdb
cache_timeout: 3600
cache_prefix: shop_
---
# A NetBox loaded with a demo data set: VMs and devices, many without a primary IP, some with names like
# "Zürich db 2". Leave out what cannot be released onto (one warning), rename what patterns cannot target.
plugin: sre.rollout.cmdb
backend: netbox
url: https://netbox.example.com
token: "{{ lookup('ansible.builtin.env', 'DEMO_NETBOX_TOKEN') }}"
validate_certs: true
ca_path: /etc/ssl/certs/ca-certificates.crt
timeout: 10
retries: 1
page_size: 1000
kinds: [virtual_machines, devices]
tags: [demo]
app_from: [custom_fields.app, "tag:app-"]
env_from: [custom_fields.env]
zone_from: [cluster, site]
group_by: [app, zone]
on_unusable: exclude
untargetable_names: rename
---
# The same data set, but every selected record visible: the unusable ones in cmdb_unusable (without
# ansible_host), the ones not active in cmdb_inactive.
plugin: sre.rollout.cmdb
backend: netbox
url: https://netbox.example.com
tags: [demo]
custom_fields:
  env: [demo, staging]
status: [active, staged]
inactive: group
on_unusable: group
untargetable_names: unusable
allow_empty: true
---
# Nautobot: apps from tags app-<name>, hosts in the locations dc1 and dc2 (names, not slugs)
plugin: sre.rollout.cmdb
backend: nautobot
url: https://nautobot.example.com
app_from: ["tag:app-"]
app: shop
locations: [dc1, dc2]
inactive: group
"""

import hashlib
import json
import os
from typing import Any

from ansible import constants as C
from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable
from ansible.utils.display import Display

from ansible_collections.sre.rollout.plugins.module_utils._cmdb import (
    CmdbClient,
    CmdbError,
    CmdbResult,
    build_backend,
    build_query,
    unknown_options,
)
from ansible_collections.sre.rollout.plugins.module_utils._common import RolloutError

display = Display()

_CLIENT_OPTIONS = (
    "backend", "path", "url", "token", "validate_certs", "ca_path", "timeout", "retries", "page_size",
    "kinds", "app", "env", "roles", "tags", "status", "sites", "locations", "tenants", "custom_fields",
    "app_from", "env_from", "zone_from", "inactive", "allow_empty", "on_unusable", "untargetable_names",
)
# What ansible-core's Constructable reads from a keyed_groups entry (its documented suboptions, when this
# ansible-core documents them); anything else would be ignored silently.
_KEYED_GROUP_KEYS = ("key", "prefix", "separator", "parent_group", "default_value", "trailing_separator")


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    """Hosts, groups and variables from the CMDB client."""

    NAME = "sre.rollout.cmdb"

    def verify_file(self, path: str) -> bool:
        return super().verify_file(path) and path.endswith(("cmdb.yml", "cmdb.yaml"))

    def parse(self, inventory: Any, loader: Any, path: str, cache: bool = True) -> None:
        super().parse(inventory, loader, path)
        config = self._read_config_data(path)
        try:
            self._check_config(config)
            result = self._cached_result(path, cache)
        except RolloutError as exc:
            raise AnsibleParserError(f"sre.rollout.cmdb ({path}): {exc.msg}") from exc
        warning = result.warning()
        if warning:
            display.warning(f"sre.rollout.cmdb ({path}): {warning}")
        self._populate(result)

    def _check_config(self, config: dict) -> None:
        """A misspelt option is ignored by ansible and would widen the inventory: refuse it, before any request."""
        message = unknown_options(config, self._options)
        if message:
            raise CmdbError(f"{message}; nothing was asked of the CMDB (the options are documented in "
                            "ansible-doc -t inventory sre.rollout.cmdb)", option=message)
        definitions = C.config.get_configuration_definitions("inventory", self._load_name) or {}
        keyed_keys = (definitions.get("keyed_groups") or {}).get("suboptions") or _KEYED_GROUP_KEYS
        for n, entry in enumerate(config.get("keyed_groups") or [], start=1):
            if isinstance(entry, dict):
                message = unknown_options(entry, keyed_keys)
                if message:
                    raise CmdbError(f"keyed_groups entry #{n}: {message}", option="keyed_groups")

    def _cache_key(self, path: str, options: dict[str, Any], source: str) -> str:
        """The cache key covers the path and every option that changes the answer (never the token)."""
        asked = {k: v for k, v in options.items() if k != "token"}
        digest = hashlib.sha256(json.dumps([source, asked], sort_keys=True, default=str).encode()).hexdigest()
        return f"{self.get_cache_key(path)}_{digest[:16]}"

    def _cached_result(self, path: str, cache: bool) -> CmdbResult:
        options = self._client_options()
        backend = build_backend(options, base_dir=os.path.dirname(os.path.abspath(path)))
        query = build_query(options)
        key = self._cache_key(path, options, backend.name)
        use_cache = bool(self.get_option("cache"))
        if use_cache and cache:
            try:
                return CmdbResult.from_dict(self._cache[key])
            except (KeyError, TypeError, ValueError):
                pass
        result = CmdbClient(backend).hosts(query)
        if use_cache:
            self._cache[key] = result.to_dict()
        return result

    def _client_options(self) -> dict[str, Any]:
        options = {name: self.get_option(name) for name in _CLIENT_OPTIONS}
        for name in ("url", "token"):
            value = options.get(name)
            if value and self.templar.is_template(value):
                options[name] = self.templar.template(value)
        return options

    def _populate(self, result: CmdbResult) -> None:
        group_by = self.get_option("group_by")
        strict = self.get_option("strict")
        for host in result.all_hosts():
            name = self.inventory.add_host(host.name)
            hostvars = host.hostvars()
            for key, value in hostvars.items():
                self.inventory.set_variable(name, key, value)
            for group in host.groups(group_by):
                self.inventory.add_group(group)
                self.inventory.add_child(group, name)
            if host.unusable:
                continue  # in cmdb_unusable only: no compose (it could give an address), no other group
            self._set_composite_vars(self.get_option("compose"), hostvars, name, strict=strict)
            if host.active:
                self._add_host_to_composed_groups(self.get_option("groups"), hostvars, name, strict=strict)
                self._add_host_to_keyed_groups(self.get_option("keyed_groups"), hostvars, name, strict=strict)
