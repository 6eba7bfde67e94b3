# -*- coding: utf-8 -*-
# Copyright: sre.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options shared by the load-balancer modules (lb_member, lb_pool_info)."""

from __future__ import annotations


class ModuleDocFragment:
    # The LB set and the single-LB form; module_utils/_lb.py COMMON_ARGUMENT_SPEC is its argument spec.
    DOCUMENTATION = r"""
options:
  lbs:
    description:
      - The LB set, every load balancer the members are in; the module acts on all of them or on none.
      - One item per LB. The kind-specific settings are the item's O(lbs[].options), given once here and
        nowhere else.
      - Exactly one of O(lbs) and the single-LB options O(endpoints) and O(pool) (with O(backend) and the
        C(nginx_*) options).
    type: list
    elements: dict
    suboptions:
      name:
        description: A name for the LB in results and messages, for example V(haproxy-eu1).
        type: str
      kind:
        description: Kind of load balancer behind every endpoint of this LB.
        type: str
        choices: [haproxy, nginx]
        required: true
        aliases: [backend]
      endpoints:
        description:
          - The instances of this LB.
          - V(haproxy), the runtime API of each instance, a unix socket path (C(/run/haproxy/admin.sock), also
            C(unix:///run/haproxy/admin.sock)) or C(tcp://host:port). Changes need C(level admin).
          - V(nginx), the upstream file of each instance (reload mode) or its admin URL (lua mode), or a
            dictionary with C(upstream_file) or C(admin_url) and any of the O(lbs[].options) keys, which
            override the LB's options for that instance.
        type: list
        elements: raw
        required: true
      pool:
        description: The HAProxy backend or the nginx upstream name.
        type: str
        required: true
      member:
        description:
          - The member's name in this LB (names differ between LBs; each LB names its own). HAProxy, the
            server name in the backend. nginx reload mode, the name in a C(# name) comment after the member's
            C(server) line, or its address as written there (C(host:port)). nginx lua mode, the name in the
            balancer's member file, or its address.
          - Without it (and without O(lbs[].members)), the module's own member options apply.
        type: str
      members:
        description: Several members of this LB, brought to the state together as one batch step.
        type: list
        elements: str
      address:
        description: The member's address as this LB knows it (C(host:port)), used when the name is not found.
        type: str
      weight:
        description:
          - The member's weight in this LB when it serves normally, used when the member is enabled
            (unless the module's own weight says otherwise) and by O(ignore:weight=configured).
          - HAProxy, 0..256 or a percentage of the configured weight; nginx, a whole number from 1 or V(100%).
        type: raw
      health_uri:
        description:
          - An HTTP path probed on each member (C(http://<address><health_uri>)) to report its health; a 2xx
            answer is C(UP). For LBs without health checks of their own (nginx); without it their members
            have health C(UNKNOWN).
        type: str
      options:
        description:
          - The kind's own settings. V(haproxy), none. V(nginx), C(mode), C(admin_url), C(conf), C(prefix),
            C(pidfile) and C(binary), as described for the single-LB options C(nginx_mode), C(nginx_admin_url),
            C(nginx_conf), C(nginx_prefix), C(nginx_pidfile) and C(nginx_binary); and C(batch_window), reload
            mode, seconds (0 to 10, default 0) that a change waits for the changes other tasks make to the same
            upstream file, so that all of them share one reload (one reload per batch step when each host of a
            batch has its own task). An unknown key is refused, with the closest known name.
        type: dict
        default: {}
  backend:
    description: Single-LB form, kind of load balancer behind every endpoint.
    type: str
    choices: [haproxy, nginx]
    default: haproxy
  endpoints:
    description:
      - Single-LB form, the LB instances (as O(lbs[].endpoints)).
    type: list
    elements: raw
  pool:
    description: Single-LB form, the HAProxy backend or the nginx upstream name. Required with O(endpoints).
    type: str
  health_uri:
    description: As O(lbs[].health_uri), for the single-LB form or every LB of O(lbs) without its own.
    type: str
  nginx_mode:
    description:
      - nginx, how its endpoints are driven, unless an endpoint's own C(mode) says otherwise; default V(reload).
      - V(lua), no reload ever. nginx runs the collection's Lua balancer (C(rollout_balancer.lua), with
        C(libnginx-mod-http-lua) and C(lua-resty-core)); members, weights, states and in-flight counts live in a
        C(lua_shared_dict) and change through the balancer's admin location (C(admin_url)). A drain marks
        the member C(drain), so the balancer picks it for no new request, waits until the member's in-flight
        count is 0, then marks it C(maint). Kept-alive client connections are never closed by a change.
      - V(reload), for plain nginx without the Lua module. The member's C(server) line in the upstream file
        gets or loses C(down), then C(nginx -t) and one graceful reload. Several members given together (a
        batch) change in one edit, one C(nginx -t) and one reload per
        instance. B(Residual,) measured in the lab with 8 kept-alive clients, each reload makes the old workers
        close their idle kept-alive client connections, and a client that reuses such a connection without
        probing it loses that request, seen as the connection closed without an answer (at most one request
        per kept-alive client per reload; 64 failed of 1,138 kept-alive requests over a 6-host release with
        12 reloads). Clients that retry idempotent requests on a closed pooled connection hide it; fresh
        connections see nothing. Use V(lua) where the module is available.
    type: str
    choices: [reload, lua]
  nginx_admin_url:
    description:
      - V(lua) mode, the URL of the balancer's admin location, for example C(http://127.0.0.1:8081/sre-rollout);
        C(GET <url>/<pool>) lists the members, C(POST <url>/<pool>/<member>?state=S&weight=N) changes one.
        Keep it on loopback (or a unix socket behind a loopback proxy); it is unauthenticated.
      - An endpoint's own C(admin_url) overrides it.
    type: str
  nginx_conf:
    description: Single-LB form, the nginx main configuration file (C(nginx -c)); default C(/etc/nginx/nginx.conf).
    type: path
  nginx_prefix:
    description: Single-LB form, the nginx prefix path (C(nginx -p)), if nginx runs with one.
    type: path
  nginx_pidfile:
    description:
      - Single-LB form, the nginx master's pidfile (its C(pid) directive), used to find the worker processes;
        default C(/run/nginx.pid).
    type: path
  nginx_binary:
    description: Single-LB form, the nginx executable; default C(/usr/sbin/nginx).
    type: path
  timeout:
    description:
      - HAProxy, seconds to wait for the runtime API to answer one command; nginx lua mode, for the admin API.
      - nginx reload mode, seconds to wait for new workers after a reload.
    type: float
    default: 5
"""
