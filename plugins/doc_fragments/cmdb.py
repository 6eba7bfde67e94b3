# -*- coding: utf-8 -*-
# Copyright: sre.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options shared by the CMDB inventory plugin (sre.rollout.cmdb) and the cmdb_hosts module."""

from __future__ import annotations


class ModuleDocFragment:
    # What to ask the CMDB and how to map its records: the same for both. The connection options
    # (backend, path, url, token, validate_certs) stay in each plugin: the inventory also reads them
    # from environment variables, which it documents with env entries.
    DOCUMENTATION = r"""
options:
  timeout:
    description: Seconds to wait for each HTTP answer.
    type: float
    default: 30
  retries:
    description: How many times a timeout, connection error, 429 or 5xx is retried before failing.
    type: int
    default: 2
  page_size:
    description: Records per page (C(limit=)); C(next) links are followed until the last page.
    type: int
    default: 250
  kinds:
    description: Which records to read.
    type: list
    elements: str
    choices: [virtual_machines, devices]
    default: [virtual_machines]
  app:
    description: Only hosts of this application (as mapped by O(app_from)).
    type: str
  env:
    description: Only hosts of this environment (as mapped by O(env_from)).
    type: str
  roles:
    description: Only hosts with one of these roles (slug for NetBox, name for Nautobot).
    type: list
    elements: str
    default: []
  tags:
    description: Only hosts that carry all of these tags (slug for NetBox, name for Nautobot).
    type: list
    elements: str
    default: []
  status:
    description:
      - The statuses that count as active. With O(inactive=exclude) only these are asked for.
    type: list
    elements: str
    default: [active]
  sites:
    description: Only hosts in one of these sites (NetBox; Nautobot has locations only).
    type: list
    elements: str
    default: []
  locations:
    description: Only hosts in one of these locations (a Nautobot VM's location is its cluster's).
    type: list
    elements: str
    default: []
  tenants:
    description: Only hosts of one of these tenants.
    type: list
    elements: str
    default: []
  custom_fields:
    description: Only hosts whose custom field equals the value (or one of a list of values), for example C(env=prod).
    type: dict
    default: {}
  app_from:
    description:
      - Where a host's app comes from, first non-empty wins. Each source is V(role), V(site), V(location),
        V(tenant), V(cluster), V(status), C(custom_fields.<name>) or C(tag:<prefix>) (the tag starting with
        the prefix, prefix removed; C(tag:app-) maps tag C(app-shop) to C(shop)).
    type: list
    elements: str
    default: [custom_fields.app]
  env_from:
    description: Where a host's environment comes from (same sources as O(app_from)).
    type: list
    elements: str
    default: [custom_fields.env]
  zone_from:
    description: Where a host's zone comes from (same sources as O(app_from)).
    type: list
    elements: str
    default: [custom_fields.zone, location, site]
  group_by:
    description: Which of the built-in groups to create.
    type: list
    elements: str
    choices: [app, env, zone, role]
    default: [app, env, zone, role]
  ca_path:
    description: PEM file of the CA that signed the server's certificate.
    type: path
"""
