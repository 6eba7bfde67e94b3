#!/usr/bin/python
# Copyright: sre.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: lb_pool_info
short_description: Snapshot of the pools of every load balancer, HAProxy or nginx
version_added: 0.1.0
description:
  - Lists the members of each LB's pool on every instance of the LB set O(lbs) (or of one LB, O(endpoints))
    with their address, administrative state (V(ready), V(drain), V(maint)), health, weight and current
    sessions. The LBs are read in parallel.
  - With members named in O(lbs) (O(lbs[].member)), says whether each is ready in its LB (RV(serving)), as
    a release's "already done" check needs.
  - Used for the before/after comparison of a release (compare two snapshots with the
    P(sre.rollout.lb_lost_members#filter) filter) and for capacity checks.
  - HAProxy through its runtime API (C(show stat) and C(show servers state)); nginx in lua mode from the
    balancer's admin API (state V(ready), V(drain) or V(maint), weight, and C(sessions), the balancer's own
    count of requests in flight to the member, as HAProxy reports sessions); nginx in reload mode from the
    upstream file the collection owns, the master's worker processes (C(sessions), their established
    connections to the member). With O(health_uri), an HTTP probe of each nginx member.
author:
  - sre.rollout maintainers (!UNKNOWN)
attributes:
  check_mode:
    support: full
    description: Read-only; runs the same in check mode.
  diff_mode:
    support: none
    description: Nothing changes, so there is no diff.
  idempotent:
    support: full
    description: Never changes anything.
extends_documentation_fragment:
  - sre.rollout.lb
notes:
  - Reading needs no C(level admin) on HAProxy's socket.
seealso:
  - module: sre.rollout.lb_member
  - plugin: sre.rollout.lb_lost_members
    plugin_type: filter
"""

EXAMPLES = r"""
- name: Is the host serving in every load balancer it is in?
  sre.rollout.lb_pool_info:
    lbs: "{{ rollout_lbs }}"   # [{name, kind, endpoints, pool, member, options}, ...]
  delegate_to: localhost
  register: pools

- name: Say so
  ansible.builtin.debug:
    msg: "{{ inventory_hostname }} serves everywhere: {{ pools.serving }}"

- name: Snapshot before the release
  sre.rollout.lb_pool_info:
    endpoints: [/run/haproxy/admin.sock]
    pool: app
  delegate_to: localhost
  run_once: true
  register: lb_before

- name: Snapshot after the release
  sre.rollout.lb_pool_info:
    endpoints: [/run/haproxy/admin.sock]
    pool: app
  delegate_to: localhost
  run_once: true
  register: lb_after

- name: Nothing that served before may be out of service now
  ansible.builtin.assert:
    that: lost | length == 0
    fail_msg: "no longer serving: {{ lost | map(attribute='member') | join(', ') }}"
  vars:
    lost: "{{ lb_before | sre.rollout.lb_lost_members(lb_after) }}"
"""

RETURN = r"""
pools:
  description: One entry per LB and endpoint, in the order of O(lbs) and of each LB's endpoints.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The LB's O(lbs[].name) (null in the single-LB form).
      type: str
    kind:
      description: V(haproxy) or V(nginx).
      type: str
    endpoint:
      description: The endpoint.
      type: str
    backend:
      description: V(haproxy) or V(nginx).
      type: str
    pool:
      description: The pool.
      type: str
    members:
      description: The pool's members in configuration order.
      type: list
      elements: dict
      contains:
        name:
          description: Server name (nginx reload mode, the C(# name) comment or else the address; lua mode, the name in the member file).
          type: str
          sample: web01
        address:
          description: Address as the LB has it.
          type: str
          sample: 10.0.0.11:8080
        state:
          description: Administrative state, V(ready), V(drain) or V(maint).
          type: str
        health:
          description: V(UP), V(DOWN), V(NOLB) or V(UNKNOWN) (nginx without O(health_uri)).
          type: str
        status:
          description:
            - HAProxy's own status text (C(UP), C(UP 1/2), C(DRAIN), C(MAINT (via app/web01))); nginx reload mode,
              up or down; nginx lua mode, up, drain or maint.
          type: str
        weight:
          description: Current (user) weight.
          type: int
        initial_weight:
          description: HAProxy, the configured weight; nginx, null.
          type: int
        sessions:
          description:
            - Current sessions (HAProxy C(scur)); nginx lua mode, requests in flight to the member (the balancer's
              count); nginx reload mode, connections from the workers (null if unknown).
          type: int
        queued:
          description: HAProxy, queued requests (C(qcur)); nginx, null.
          type: int
        check_status:
          description: HAProxy, last health check status (C(L7OK), C(L4CON), ...).
          type: str
        tracked:
          description: HAProxy, the tracked server, if any.
          type: str
        backup:
          description: Whether it is a backup server.
          type: bool
        ready:
          description: Takes new traffic (state ready, health UP or UNKNOWN, weight above 0, not backup).
          type: bool
ready_members:
  description: Members ready on every endpoint.
  returned: always
  type: list
  elements: str
  sample: [web01, web02, web03]
members_serving:
  description: For each member named in O(lbs), keyed C(<lb> <endpoint> <member>), whether it is ready there.
  returned: always
  type: dict
  sample: {"haproxy /run/haproxy/admin.sock web01": true}
serving:
  description: Whether every LB names a member and that member is ready there (false when none is named).
  returned: always
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sre.rollout.plugins.module_utils._common import RolloutError
from ansible_collections.sre.rollout.plugins.module_utils._lb import (
    COMMON_ARGUMENT_SPEC, COMMON_MODULE_KWARGS, make_drivers, pool_snapshot)

ARGUMENT_SPEC = dict(COMMON_ARGUMENT_SPEC)


def run(module: AnsibleModule) -> dict:
    return {"changed": False, **pool_snapshot(make_drivers(module.params, need_members=False))}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True, **COMMON_MODULE_KWARGS)
    try:
        module.exit_json(**run(module))
    except RolloutError as e:
        module.fail_json(msg=e.msg, **e.details)


if __name__ == "__main__":
    main()
