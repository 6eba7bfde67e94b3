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
    description:
      - Only hosts with one of these roles. NetBox takes the role's B(slug) (C(database-server), not
        C(Database Server)); Nautobot takes its name.
    type: list
    elements: str
    default: []
  tags:
    description: Only hosts that carry all of these tags (the B(slug) for NetBox, the name for Nautobot).
    type: list
    elements: str
    default: []
  status:
    description:
      - The statuses that count as active. With O(inactive=exclude) only these are asked for.
      - NetBox status values are B(lowercase) (V(active), V(planned), V(staged), V(failed), V(offline),
        V(decommissioning)); NetBox answers C(Active) with HTTP 400. For Nautobot a lowercase value is sent
        capitalised (C(active) → C(Active)).
    type: list
    elements: str
    default: [active]
  sites:
    description:
      - Only hosts in one of these sites, by B(slug) (C(dm-nyc), not C(DM-NYC)) (NetBox; Nautobot has
        locations only). A VM without a site (one that only has a cluster) never matches.
    type: list
    elements: str
    default: []
  locations:
    description: Only hosts in one of these locations (a Nautobot VM's location is its cluster's).
    type: list
    elements: str
    default: []
  tenants:
    description: Only hosts of one of these tenants (the B(slug) for NetBox, the name for Nautobot).
    type: list
    elements: str
    default: []
  custom_fields:
    description:
      - Only hosts whose custom field equals the value (or one of a list of values), for example C(env=prod).
      - A field name that no returned record has is refused with the closest existing field name.
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
  on_unusable:
    description:
      - What to do with selected records the release cannot use - records with no primary IP (active ones
        only), no name, the same inventory name as another selected record, or (with
        O(untargetable_names=unusable)) a name no host pattern can target. Records the filters, O(status) or
        O(inactive=exclude) leave out are never looked at.
      - V(fail) fails the query with one message giving the count per reason and the first records.
      - V(exclude) leaves them out, with one warning that counts and names them.
      - V(group) puts them in the C(cmdb_unusable) group only, without C(ansible_host) (the inventory
        plugin applies no C(compose), C(groups) or C(keyed_groups) to them); the host variable C(cmdb_unusable) gives the reasons. An
        unnamed record is called C(unnamed-<kind>-<id>); records sharing a name become C(<name>-id<id>).
    type: str
    choices: [fail, exclude, group]
    default: fail
  untargetable_names:
    description:
      - A CMDB name that no host pattern can select alone - it holds whitespace, C(,), C(:), C([), C(]) or a
        control character (what ansible-core splits host patterns on), or starts with C(!), C(&), C(~) or C(@)
        (pattern operators) - is V(rename)d or V(unusable).
      - V(rename) turns each run of those characters into one C(_) (C(Zürich db 2) → C(Zürich_db_2),
        C(PP:MDF) → C(PP_MDF)) and keeps the CMDB name in the host variable C(cmdb_name). Dots, hyphens and
        non-ASCII letters are kept, so C(db1.zürich.example) stays as it is.
      - V(unusable) hands such records to O(on_unusable); listed in C(cmdb_unusable) they get the safe name
        too, so that every inventory host name is one a pattern can select.
    type: str
    choices: [rename, unusable]
    default: rename
"""
