#!/usr/bin/python
# Copyright: sre.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: lb_member
short_description: Drain, disable, enable or re-weight members in every load balancer they are in
version_added: 0.1.0
description:
  - Takes a member (server) out of traffic without dropping a request, or puts it back, on every load
    balancer of the set O(lbs) at once, HAProxy and nginx alike, or on the instances of one LB (O(endpoints)).
  - B(Look before touching.) Every LB is read first; if any is unreachable, lacks the pool or the
    member, or the capacity guard (O(min_ready)) refuses, nothing is changed anywhere.
  - B(One drain for the whole set.) The member is taken out of every LB at the same moment (one thread
    per LB instance), then one drain deadline covers all of them; the result reports per LB when it was
    taken out and when its last request finished (RV(lbs[].taken_out_at), RV(lbs[].drained_at)).
  - B(HAProxy), through its runtime API over a unix socket or C(tcp://host:port).
    V(drained) sets the server to C(drain) (no new sessions), waits until its current sessions and queue
    are both 0, then sets C(maint). V(disabled) sets C(maint) at once. V(enabled) sets C(ready) and can
    wait until the health check reports the server C(UP) (O(wait_healthy)); that wait looks at the health
    status only, never at the session count.
  - B(Several members at once.) O(members) takes a batch; one capacity check per LB for the whole batch,
    one drain deadline, and in nginx's reload mode one edit, one C(nginx -t) and one reload per LB for the
    batch (result C(reloads)), so that a caller makes one reload per batch step rather than one per host.
  - B(nginx, lua mode) (O(nginx_mode=lua), the lab's default), without any reload. nginx runs the
    collection's Lua balancer; V(drained) marks the member C(drain) through the balancer's admin API (the
    balancer picks it for no new request), waits until the member's in-flight count (kept by the balancer,
    +1 when it picks the member, -1 when the request is logged) is 0, then marks it C(maint). V(disabled)
    marks it C(maint) at once, V(enabled) C(ready); weights are set the same way. Nothing is reloaded, so no
    kept-alive client connection is closed.
  - B(What your nginx needs for the lua mode.) Debian's C(libnginx-mod-http-lua) and C(lua-resty-core) (or
    OpenResty), and C(rollout_balancer.lua) (in the collection's C(tests/lab/nginx/)) on C(lua_package_path).
    In C(http), C(lua_shared_dict sre_rollout 1m;) and C(init_by_lua_block { require("rollout_balancer").seed("app",
    "/etc/nginx/members_app.txt") }) (the member file has one member a line, C(name host:port [weight=N] [down])).
    An upstream C(upstream app { server 0.0.0.1; balancer_by_lua_block { require("rollout_balancer").balance("app") } }).
    In every location that proxies to it, C(proxy_next_upstream off;) (a retry would hide a failed request, and a
    retry to another member is counted correctly but still hides the error) and C(log_by_lua_block {
    require("rollout_balancer").done() }), which ends the request's in-flight count; do not send those requests
    through C(error_page) or another internal redirect, which would lose the count. An admin server on loopback
    only, C(listen 127.0.0.1:8081; allow 127.0.0.1; deny all; location /sre-rollout/ { content_by_lua_block {
    require("rollout_balancer").admin() } }), given as O(nginx_admin_url). The states and weights live in the
    shared dict, so they survive C(nginx -s reload) (the member file only adds members not yet known) but not a
    restart, which starts again from the member file.
  - B(nginx, reload mode) (O(nginx_mode=reload), plain nginx), through an upstream block in a file this module
    owns (included from the nginx configuration).
    V(drained) and V(disabled) add C(down) to the member's C(server) line, run C(nginx -t) and reload
    nginx gracefully; V(drained) then waits until every worker process that existed before the reload has
    exited, which nginx's graceful shutdown lets happen only once their in-flight requests are done.
    V(enabled) removes C(down). If C(nginx -t) fails, the previous file is put back and the task fails
    with nginx's own message; nginx keeps running the previous configuration.
    B(Residual.) Every reload makes the old workers close their idle kept-alive client connections, and a client
    that reuses a pooled connection without probing it loses its next request on it, seen as the connection
    closed without an answer. Measured in the lab with 8 kept-alive clients, at most one failed request per
    kept-alive client per reload; 32 failed at 4 bare reloads (25 kept-alive requests/s), and 64 failed of
    1,138 kept-alive requests over a release of 6 hosts with 12 reloads (15 kept-alive requests/s); fresh
    connections saw none. Clients that retry idempotent requests on a closed pooled connection hide it.
    With C(batch_window), a release of the same 6 hosts made 8 reloads for its 8 batch steps (a drain and an
    enable each for the canary and three batches) and 64 of 2,462 kept-alive requests failed. Drain a batch's
    members together (O(members)) to make one reload per batch step; or, where each host has a task of its own
    (the release role), give the nginx LB the option C(batch_window) (O(lbs[].options)), and the changes that
    tasks make to the same upstream file within that many seconds share one edit, one C(nginx -t) and one
    reload (a group commit under the file's lock); or use the lua mode.
  - If a drain does not finish within O(drain_timeout), the default (O(on_timeout=fail)) puts the member
    back to its previous state on every LB and fails, so that a failed step leaves nothing half done.
    O(on_timeout=force) cuts the remaining sessions instead (HAProxy C(shutdown sessions server), nginx
    reload mode SIGTERM to the old workers) and completes the drain; nginx's lua mode cannot cut one
    member's requests, so it marks the member C(maint) and lets them finish.
  - Runs where the LB is reachable from, usually the controller (C(delegate_to) the LB host or
    C(localhost)). nginx must run on the host the module runs on.
author:
  - sre.rollout maintainers (!UNKNOWN)
attributes:
  check_mode:
    support: full
    description: Reads every LB, applies the capacity guard and reports what would change; changes nothing.
  diff_mode:
    support: full
    description: Before and after state and weight of the member, per LB endpoint.
  idempotent:
    support: full
    description: A member already in the requested state is reported unchanged after one read per LB.
extends_documentation_fragment:
  - sre.rollout.lb
options:
  member:
    description:
      - The member's name, on every LB that does not name its own (O(lbs[].member)). HAProxy, the server name
        in the backend. nginx reload mode, the name in a C(# name) comment after the member's C(server) line,
        or its address as written there (C(host:port)). nginx lua mode, the name in the balancer's member
        file, or its address.
      - At most one of O(member) and O(members).
    type: str
  members:
    description:
      - Several members (names as for O(member)) brought to O(state) together, as one batch step.
      - At most one of O(member) and O(members).
    type: list
    elements: str
  address:
    description:
      - The member's address as the LB knows it (C(host:port)), used when O(member) is not found by name,
        for example in an nginx upstream file without C(# name) comments. Not with O(members).
    type: str
  state:
    description:
      - V(drained), no new requests, wait for in-flight ones (up to O(drain_timeout)), then maintenance.
      - V(disabled), maintenance at once, without waiting.
      - V(enabled), back in service (HAProxy C(ready), nginx without C(down)).
    type: str
    choices: [drained, disabled, enabled]
    required: true
  drain_timeout:
    description: Seconds to wait for in-flight work to finish when O(state=drained).
    type: float
    default: 60
  on_timeout:
    description:
      - What to do when a drain has not finished after O(drain_timeout).
      - V(fail), put the member back to its previous state on every LB and fail.
      - V(force), cut the remaining sessions and complete the drain (result key C(forced)).
    type: str
    choices: [fail, force]
    default: fail
  min_ready:
    description:
      - Capacity guard for V(drained) and V(disabled). Refuse to take the member out of an LB if fewer than
        this many other members would stay ready there. A count (V(2)) or a percentage of the pool's
        non-backup members, rounded up (V(50%)). V(0) turns the guard off.
      - Ready means administratively ready, health C(UP) (nginx without O(health_uri), health C(UNKNOWN)
        counts as ready), weight above 0 and not a backup server.
      - The guard reads the pool once before acting; two tasks draining members of the same pool at the
        same moment can each pass it. Plan batches so that this cannot matter (sre.rollout.release_plan).
    type: raw
    default: 1
  weight:
    description:
      - Weight to set on every LB, over each LB's own O(lbs[].weight). HAProxy, 0..256 or a percentage of
        the configured weight (V(50%)), as C(set server ... weight) understands it. nginx, a whole number from 1
        written as C(weight=N), or V(100%), which keeps the weight written in the upstream file (nginx has no
        configured weight that other percentages could refer to).
      - V(configured), each LB's own O(lbs[].weight), else V(100%); for example to end a canary's reduced weight.
      - Without it, an LB's own O(lbs[].weight) if it has one; with O(warmup), the weight the warm-up ends at
        (default V(100%), the configured weight).
    type: raw
  warmup:
    description:
      - When O(state=enabled) brings the member back, a list of weight steps. The member is enabled at the
        first step's weight, each step is held for its C(pause) seconds, then the next step is set, and the
        warm-up ends at O(weight). Skipped when the member is already enabled.
      - Steps given as percentages run on the LBs whose weights are percentages (HAProxy); the others (nginx,
        whole weights only) enable the member at its weight at once (RV(lbs[].warmup_weights) is empty there).
    type: list
    elements: dict
    suboptions:
      weight:
        description: Weight of this step (like O(weight)).
        type: raw
        required: true
      pause:
        description: Seconds to hold this step before the next.
        type: float
        default: 5
  wait_healthy:
    description:
      - With O(state=enabled), wait until the member's health is C(UP) and settled, up to
        O(health_timeout), on every LB that can tell. HAProxy, its health check status; nginx, an HTTP probe
        of O(health_uri) (an nginx LB without one is not waited on; if no LB of the set can tell, the task
        fails).
    type: bool
    default: false
  health_timeout:
    description: Seconds O(wait_healthy) waits.
    type: float
    default: 30
  poll_interval:
    description: Seconds between two polls while waiting for a drain or for health.
    type: float
    default: 0.5
  batch_size:
    description:
      - How many tasks change the same LBs at the same moment, one per host of a batch step (the release role
        gives its batch's size). With an nginx LB's C(batch_window), a change waits until that many changes are
        pending, or the window ends, and then all of them share one reload.
      - No effect on the other LBs, or without C(batch_window).
    type: int
    default: 1
notes:
  - HAProxy keeps runtime changes only until it restarts; keep them across reloads with
    C(server-state-file) and C(load-server-state-from-file).
  - A member whose maintenance or drain is inherited from a tracked server (C(MAINT (via ...))) cannot be
    changed here; the result's C(state) shows it and a warning is given.
seealso:
  - module: sre.rollout.lb_pool_info
  - plugin: sre.rollout.lb_lost_members
    plugin_type: filter
  - name: HAProxy management guide, runtime API
    description: C(set server), C(show stat), C(show servers state), C(shutdown sessions server).
    link: https://docs.haproxy.org/2.6/management.html#9.3
  - name: nginx upstream server parameters
    description: C(down), C(weight), C(backup).
    link: https://nginx.org/en/docs/http/ngx_http_upstream_module.html#server
  - name: lua-nginx-module balancer_by_lua_block and lua_shared_dict
    description: The directives the lua mode's balancer is built on.
    link: https://github.com/openresty/lua-nginx-module#balancer_by_lua_block
"""

EXAMPLES = r"""
- name: Take the host out of every load balancer it is in (HAProxy and nginx), one drain for all
  sre.rollout.lb_member:
    lbs:
      - name: haproxy
        kind: haproxy
        endpoints: [/run/haproxy/admin.sock, tcp://10.0.0.2:9999]
        pool: app
        member: "{{ inventory_hostname }}"
      - name: nginx
        kind: nginx
        endpoints: [http://127.0.0.1:8081/sre-rollout]
        pool: app
        member: "{{ ansible_host }}:8080"
        health_uri: /health
        options: {mode: lua}
    state: drained
    drain_timeout: 120
    min_ready: 50%
  delegate_to: localhost

- name: Take web01 out of both HAProxy instances, waiting for in-flight requests
  sre.rollout.lb_member:
    backend: haproxy
    endpoints:
      - /run/haproxy/admin.sock
      - tcp://10.0.0.2:9999
    pool: app
    member: web01
    state: drained
    drain_timeout: 120
    min_ready: 50%
  delegate_to: localhost

- name: Drain from nginx (upstream file without name comments, so by address)
  sre.rollout.lb_member:
    backend: nginx
    endpoints:
      - upstream_file: /etc/nginx/conf.d/upstream_app.conf
        conf: /etc/nginx/nginx.conf
        pidfile: /run/nginx.pid
    pool: app
    member: "{{ inventory_hostname }}"
    address: "{{ ansible_host }}:8080"
    state: drained
  delegate_to: lb01

- name: Drain a batch from nginx without any reload (lua mode)
  sre.rollout.lb_member:
    backend: nginx
    nginx_mode: lua
    endpoints: [http://127.0.0.1:8081/sre-rollout]
    pool: app
    members: [web03, web04]
    state: drained
  delegate_to: lb01

- name: Drain a batch from plain nginx with one edit and one reload (reload mode)
  sre.rollout.lb_member:
    backend: nginx
    endpoints: [/etc/nginx/conf.d/upstream_app.conf]
    pool: app
    members: ["10.0.0.13:8080", "10.0.0.14:8080"]
    state: drained
  delegate_to: lb01

- name: Back in, once HAProxy sees it healthy, warming up from 10% to full weight
  sre.rollout.lb_member:
    endpoints: [/run/haproxy/admin.sock]
    pool: app
    member: web01
    state: enabled
    wait_healthy: true
    health_timeout: 30
    warmup:
      - {weight: 10%, pause: 10}
      - {weight: 50%, pause: 10}
  delegate_to: localhost

- name: Halve the weight of a member
  sre.rollout.lb_member:
    endpoints: [/run/haproxy/admin.sock]
    pool: app
    member: web02
    state: enabled
    weight: 50%
  delegate_to: localhost
"""

RETURN = r"""
member:
  description: The member as requested (null when several were given with O(members)).
  returned: always
  type: str
  sample: web01
members:
  description: The members as requested.
  returned: always
  type: list
  elements: str
  sample: [web01]
reloads:
  description: nginx reloads made by the task (reload mode; 0 for HAProxy and nginx's lua mode).
  returned: always
  type: int
  sample: 1
lbs:
  description:
    - One entry per LB, member and endpoint; LBs in the order of O(lbs), members in the order given, endpoints
      in the order of each LB's endpoints.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The LB's O(lbs[].name) (null in the single-LB form).
      type: str
      sample: haproxy
    kind:
      description: V(haproxy) or V(nginx).
      type: str
    endpoint:
      description: The endpoint (HAProxy socket / URL, nginx upstream file, nginx lua mode admin URL).
      type: str
      sample: /run/haproxy/admin.sock
    backend:
      description: V(haproxy) or V(nginx).
      type: str
    pool:
      description: The pool.
      type: str
    member:
      description: The member's name on this LB.
      type: str
      sample: web01
    address:
      description: The member's address on this LB.
      type: str
      sample: 10.0.0.11:8080
    previous_state:
      description: Administrative state before the task, V(ready), V(drain) or V(maint).
      type: str
      sample: ready
    state:
      description: Administrative state after the task (predicted in check mode).
      type: str
      sample: maint
    previous_weight:
      description: Weight before the task.
      type: int
    weight:
      description: Weight after the task.
      type: int
    health:
      description: Health after the task, V(UP), V(DOWN), V(NOLB) or V(UNKNOWN) (nginx without O(health_uri)).
      type: str
    sessions_at_start:
      description:
        - In-flight work when the task started. HAProxy, current sessions plus queued requests.
          nginx lua mode, the balancer's in-flight requests to the member.
          nginx reload mode, established connections from the nginx workers to the member (null when the
          workers' sockets cannot be read).
      type: int
      sample: 3
    waited:
      description: Seconds spent waiting on this LB (for the drain, or for health and warm-up).
      type: float
      sample: 1.52
    forced:
      description: Whether O(on_timeout=force) cut remaining sessions on this LB.
      type: bool
    taken_out_at:
      description: O(state=drained), seconds from the task's start until the member was taken out of this LB.
      type: float
      sample: 0.012
    drained_at:
      description: O(state=drained), seconds from the task's start until no work was left in flight on this LB.
      type: float
      sample: 1.53
    warmup_weights:
      description: The warm-up weights set on this LB (empty when it had no warm-up).
      type: list
      elements: int
    changed:
      description: Whether this LB was (or, in check mode, would be) changed.
      type: bool
    ready_members:
      description: Members ready on this LB after the task (the capacity guard's view).
      type: list
      elements: str
ready_members:
  description: Members ready on every LB after the task (predicted in check mode).
  returned: always
  type: list
  elements: str
  sample: [web02, web03]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sre.rollout.plugins.module_utils._common import RolloutError
from ansible_collections.sre.rollout.plugins.module_utils._lb import (
    COMMON_ARGUMENT_SPEC, COMMON_MODULE_KWARGS, Operation, Options, make_drivers)

ARGUMENT_SPEC = dict(
    **COMMON_ARGUMENT_SPEC,
    member=dict(type="str"),
    members=dict(type="list", elements="str"),
    address=dict(type="str"),
    state=dict(type="str", choices=["drained", "disabled", "enabled"], required=True),
    drain_timeout=dict(type="float", default=60),
    on_timeout=dict(type="str", choices=["fail", "force"], default="fail"),
    min_ready=dict(type="raw", default=1),
    weight=dict(type="raw"),
    warmup=dict(type="list", elements="dict", options=dict(
        weight=dict(type="raw", required=True),
        pause=dict(type="float", default=5),
    )),
    wait_healthy=dict(type="bool", default=False),
    health_timeout=dict(type="float", default=30),
    poll_interval=dict(type="float", default=0.5),
    batch_size=dict(type="int", default=1),
)


def validate(params: dict, drivers: list) -> None:
    if params["warmup"] and params["state"] != "enabled":
        raise RolloutError("warmup applies only to state=enabled; remove it or set state=enabled")
    if params["wait_healthy"] and params["state"] == "enabled" and not any(d.has_health_check for d in drivers):
        raise RolloutError("wait_healthy needs an LB that can tell the member's health, and none of "
                           f"{', '.join(dict.fromkeys(d.lb.label for d in drivers))} can: an LB without health checks "
                           "of its own (nginx) needs health_uri, for example /health")
    for name in ("drain_timeout", "health_timeout", "poll_interval", "timeout"):
        if params[name] < 0:
            raise RolloutError(f"{name} must not be negative, got {params[name]}")


def run(module: AnsibleModule) -> dict:
    params = module.params
    drivers = make_drivers(params)
    validate(params, drivers)
    options = Options(
        state=params["state"], drain_timeout=params["drain_timeout"], on_timeout=params["on_timeout"],
        min_ready=params["min_ready"], weight=params["weight"], warmup=params["warmup"] or [],
        wait_healthy=params["wait_healthy"], health_timeout=params["health_timeout"],
        poll_interval=max(params["poll_interval"], 0.05),
    )
    result = Operation(drivers, options, check_mode=module.check_mode).run()
    diff = result.pop("diff")
    if module._diff:
        result["diff"] = diff
    expected = "ready" if params["state"] == "enabled" else "maint"
    for lb in result["lbs"]:
        if lb["state"] != expected:
            module.warn(f"{lb['member']} is {lb['state']} on {lb['endpoint']}, not {expected}: its state is "
                        f"inherited (for example from a tracked server) and cannot be changed here")
    return result


def main() -> None:
    kwargs = dict(COMMON_MODULE_KWARGS)
    kwargs["mutually_exclusive"] = kwargs["mutually_exclusive"] + [("member", "members")]
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True, **kwargs)
    try:
        module.exit_json(**run(module))
    except RolloutError as e:
        module.fail_json(msg=e.msg, **e.details)


if __name__ == "__main__":
    main()
