#!/usr/bin/python
# Copyright: sre.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: release_plan
short_description: Plan a release - canary hosts, then zone-balanced batches under 50% of the pool
version_added: 0.1.0
description:
  - Computes the order in which a release swaps hosts, before anything changes. Read-only, it
    never touches a host; run it once on the controller (C(run_once) and C(delegate_to=localhost)).
  - A canary of 1 or 2 hosts goes first (mandatory), then the remaining hosts go in batches.
  - Every step (the canary and each batch) takes strictly B(less than 50%) of the pool out of
    service, and leaves at least O(min_ready) hosts ready, counting excluded hosts as not ready.
    A request that breaks a rule is refused with the numbers and the largest size that would fit.
  - Batches are zone-balanced, each spread over as many zones as possible, taking first from
    the zones with the most hosts left. The canary comes from the largest zone unless given.
  - Excluded hosts (unhealthy, unreachable, ...) are left out of every step but still count in
    the pool, and are listed with their reasons.
  - Returns the plan for the playbooks (RV(plan.serial) is ready for a play's C(serial)) and a
    text table to print before the release starts.
author:
  - sre.rollout maintainers (!UNKNOWN)
options:
  hosts:
    description:
      - The hosts of this release, as names, or as dicts with C(name) and optionally C(zone)
        (other keys are ignored). Duplicates and an empty list are refused.
      - Hosts without a zone are grouped in the zone C(unzoned).
    type: list
    elements: raw
    required: true
  zones:
    description:
      - Zone of each host, name to zone, when O(hosts) are plain names. A zone given in a
        O(hosts) dict wins. Names not in O(hosts) are ignored.
    type: dict
  excluded:
    description:
      - Hosts to leave out of the release, with the reason, as a dict of name to reason or as a
        list of dicts with C(host) and C(reason). Every name must be in O(hosts).
      - Excluded hosts count in the pool but not as ready.
    type: raw
  canary:
    description:
      - The canary, as a number of hosts (1 or 2) picked from the largest zones, or as a list of
        1-2 host names (a comma-separated string works too). V(0) is refused, a canary is
        mandatory; more than 2 is refused.
    type: raw
    default: 1
  batch_size:
    description:
      - Hosts per batch after the canary, as a number or a percentage of the pool such as
        V(25%) (rounded down, at least 1). A batch of 50% of the pool or more is refused.
      - Default is the largest size strictly under 50% of the pool, lowered so that
        O(min_ready) holds.
    type: raw
  pool_size:
    description:
      - Number of members serving the app, released or not (for example when O(hosts) is a
        C(--limit)ed subset of the pool). Defaults to the number of O(hosts), excluded ones
        included. Smaller than the number of O(hosts) is refused.
    type: int
  min_ready:
    description:
      - Hosts that must stay ready during every step, as a number or a percentage of the pool
        (rounded up). A plan where C(pool_size - excluded - step size < min_ready) is refused.
    type: raw
    default: 1
  order:
    description:
      - Order of the hosts before planning, like the play keyword C(order). Within each batch
        hosts keep this order.
    type: str
    choices: [inventory, reverse_inventory, sorted, reverse_sorted]
    default: inventory
  allow_single_host:
    description:
      - Accept a pool of a single host, which no plan can keep serving. The plan is then
        canary-only, O(min_ready) is waived and a warning says the service will be down.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Read-only; the plan is computed the same way in check mode.
  diff_mode:
    support: none
    description: Nothing changes, so there is no diff.
  idempotent:
    support: full
    description: The same input always gives the same plan; C(changed) is always false.
notes:
  - Sorted orders compare numbers inside names as numbers (web2 before web10).
  - Ansible repeats the last RV(plan.serial) size for any host beyond the planned ones, so
    run the batches over exactly the hosts of RV(plan.order) minus the canary, in that order.
seealso:
  - module: sre.rollout.lb_pool_info
    description: Snapshot of an LB pool, to find its size and the members that are not serving.
  - module: sre.rollout.cmdb_hosts
    description: Hosts and zones of an app from the CMDB.
  - name: Ansible playbook keyword serial
    description: Rolling updates in batches.
    link: https://docs.ansible.com/ansible/latest/playbook_guide/playbooks_strategies.html#setting-the-batch-size-with-serial
"""

EXAMPLES = r"""
- name: Plan the release over the play's hosts, zones from the inventory variable zone
  sre.rollout.release_plan:
    hosts: "{{ ansible_play_hosts_all }}"
    zones: "{{ dict(ansible_play_hosts_all | zip(ansible_play_hosts_all | map('extract', hostvars, 'zone'))) }}"
  run_once: true
  delegate_to: localhost
  register: rollout_plan_result

- name: Plan with an unhealthy host excluded, a fixed canary and batches of 25%
  sre.rollout.release_plan:
    hosts:
      - {name: web01, zone: zone-a}
      - {name: web02, zone: zone-b}
      - {name: web03, zone: zone-c}
      - {name: web04, zone: zone-a}
      - {name: web05, zone: zone-b}
      - {name: web06, zone: zone-c}
      - {name: web07, zone: zone-a}
      - {name: web08, zone: zone-b}
    excluded:
      - {host: web06, reason: "/health answered 503"}
    canary: [web04]
    batch_size: 25%
    min_ready: 50%
  run_once: true
  delegate_to: localhost
  register: rollout_plan_result

- name: Print the plan before anything changes
  ansible.builtin.debug:
    var: rollout_plan_result.table
  run_once: true

- name: Pass the plan to the later phases (AWX workflow nodes)
  ansible.builtin.set_stats:
    data:
      rollout_plan: "{{ rollout_plan_result.plan }}"
    aggregate: false
"""

RETURN = r"""
plan:
  description: The release plan.
  returned: success
  type: dict
  contains:
    canary:
      description: Canary host names, released first.
      type: list
      elements: str
      sample: [web01]
    batches:
      description: The remaining hosts in batches, in release order.
      type: list
      elements: list
      sample: [[web02, web03], [web04, web05]]
    serial:
      description: Size of each batch, for a play's C(serial).
      type: list
      elements: int
      sample: [2, 2]
    order:
      description: Every released host in release order, canary first. Excluded hosts are not in it.
      type: list
      elements: str
      sample: [web01, web02, web03, web04, web05]
    excluded:
      description: Hosts left out, with the reason.
      type: list
      elements: dict
      sample: [{host: web06, reason: "/health answered 503"}]
    pool_size:
      description: The pool size the rules were checked against.
      type: int
      sample: 6
    batch_size:
      description: Hosts per batch (the last batch may be smaller).
      type: int
      sample: 2
    min_ready:
      description: Hosts kept ready during every step, as a number.
      type: int
      sample: 1
    zones:
      description: Every host of O(hosts) by zone, excluded ones included.
      type: dict
      sample: {zone-a: [web01, web04], zone-b: [web02, web05], zone-c: [web03, web06]}
table:
  description: The plan as text lines (header, then step, hosts, zones, names), to print with C(ansible.builtin.debug).
  returned: success
  type: list
  elements: str
  sample:
    - "release plan: 5 hosts in 3 steps (canary + 2 batches); pool 6, batch size 2, min ready 1, excluded 1"
    - "step      hosts  zones           names"
    - "--------  -----  --------------  -----"
    - "canary    1      zone-a          web01"
    - "batch 1   2      zone-b, zone-c  web02, web03"
    - "batch 2   2      zone-a, zone-b  web04, web05"
    - "excluded  1      zone-c          web06: /health answered 503"
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sre.rollout.plugins.module_utils._common import RolloutError
from ansible_collections.sre.rollout.plugins.module_utils._plan import ORDERS, build_plan, format_table

ARGUMENT_SPEC: dict[str, Any] = {
    "hosts": {"type": "list", "elements": "raw", "required": True},
    "zones": {"type": "dict"},
    "excluded": {"type": "raw"},
    "canary": {"type": "raw", "default": 1},
    "batch_size": {"type": "raw"},
    "pool_size": {"type": "int"},
    "min_ready": {"type": "raw", "default": 1},
    "order": {"type": "str", "choices": list(ORDERS), "default": "inventory"},
    "allow_single_host": {"type": "bool", "default": False},
}


def run(module: AnsibleModule) -> dict[str, Any]:
    params = module.params
    plan = build_plan(
        hosts=params["hosts"], zones=params["zones"], excluded=params["excluded"],
        canary=params["canary"], batch_size=params["batch_size"], pool_size=params["pool_size"],
        min_ready=params["min_ready"], order=params["order"],
        allow_single_host=params["allow_single_host"],
    )
    for warning in plan.warnings:
        module.warn(warning)
    result = plan.as_dict()
    return {"changed": False, "plan": result, "table": format_table(result)}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        module.exit_json(**run(module))
    except RolloutError as e:
        module.fail_json(msg=e.msg, **e.details)


if __name__ == "__main__":
    main()
