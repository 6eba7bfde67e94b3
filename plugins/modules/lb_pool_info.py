#!/usr/bin/python
# Copyright: sre.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: lb_pool_info
short_description: Snapshot of a load-balancer pool in HAProxy or nginx
version_added: 0.1.0
description:
  - Lists the members of a pool on every load-balancer instance of O(endpoints) with their address,
    administrative state (V(ready), V(drain), V(maint)), health, weight and current sessions.
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
options:
  endpoints:
    description:
      - For HAProxy, the runtime API of each instance, a unix socket path or C(tcp://host:port)
        (any C(level) can read).
      - For nginx, the upstream file of each instance (reload mode) or its admin URL (O(nginx_mode=lua)), or
        a dictionary with C(mode), C(admin_url), C(upstream_file) and any of C(conf), C(prefix), C(pidfile),
        C(binary).
    type: list
    elements: raw
    required: true
  health_uri:
    description:
      - nginx only. Path probed with HTTP GET on each member to report its health; without it nginx
        members have health V(UNKNOWN).
    type: str
  timeout:
    description: HAProxy, seconds to wait for the runtime API to answer one command; nginx lua mode, for the admin API.
    type: float
    default: 5
seealso:
  - module: sre.rollout.lb_member
  - plugin: sre.rollout.lb_lost_members
    plugin_type: filter
"""

EXAMPLES = r"""
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
  description: One entry per endpoint, in the order of O(endpoints).
  returned: always
  type: list
  elements: dict
  contains:
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
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sre.rollout.plugins.module_utils._common import RolloutError
from ansible_collections.sre.rollout.plugins.module_utils._lb import (
    COMMON_ARGUMENT_SPEC, make_drivers, pool_snapshot)

ARGUMENT_SPEC = dict(
    **COMMON_ARGUMENT_SPEC,
    endpoints=dict(type="list", elements="raw", required=True),
    health_uri=dict(type="str"),
    timeout=dict(type="float", default=5),
)


def run(module: AnsibleModule) -> dict:
    return {"changed": False, **pool_snapshot(make_drivers(module.params))}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        module.exit_json(**run(module))
    except RolloutError as e:
        module.fail_json(msg=e.msg, **e.details)


if __name__ == "__main__":
    main()
