# -*- coding: utf-8 -*-
# Copyright: sre.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options shared by the load-balancer modules (lb_member, lb_pool_info)."""

from __future__ import annotations


class ModuleDocFragment:
    # The connection to the LB instances; module_utils/_lb.py COMMON_ARGUMENT_SPEC is its argument spec.
    DOCUMENTATION = r"""
options:
  backend:
    description: Kind of load balancer behind every endpoint.
    type: str
    choices: [haproxy, nginx]
    default: haproxy
  pool:
    description: The HAProxy backend or the nginx upstream name.
    type: str
    required: true
  nginx_conf:
    description: The nginx main configuration file (C(nginx -c)).
    type: path
    default: /etc/nginx/nginx.conf
  nginx_prefix:
    description: The nginx prefix path (C(nginx -p)), if nginx runs with one.
    type: path
  nginx_pidfile:
    description: The nginx master's pidfile (its C(pid) directive); used to find the worker processes.
    type: path
    default: /run/nginx.pid
  nginx_binary:
    description: The nginx executable.
    type: path
    default: /usr/sbin/nginx
  nginx_mode:
    description:
      - How the nginx endpoints are driven, unless an endpoint's own C(mode) says otherwise.
      - V(lua), no reload ever. nginx runs the collection's Lua balancer (C(rollout_balancer.lua), with
        C(libnginx-mod-http-lua) and C(lua-resty-core)); members, weights, states and in-flight counts live in a
        C(lua_shared_dict) and change through the balancer's admin location (O(nginx_admin_url)). A drain marks
        the member C(drain), so the balancer picks it for no new request, waits until the member's in-flight
        count is 0, then marks it C(maint). Kept-alive client connections are never closed by a change.
      - V(reload), for plain nginx without the Lua module. The member's C(server) line in the upstream file
        gets or loses C(down), then C(nginx -t) and one graceful reload. Several members given together
        (O(ignore:members) of M(sre.rollout.lb_member)) change in one edit, one C(nginx -t) and one reload per
        instance. B(Residual,) measured in the lab with 8 kept-alive clients, each reload makes the old workers
        close their idle kept-alive client connections, and a client that reuses such a connection without
        probing it loses that request, seen as the connection closed without an answer (at most one request
        per kept-alive client per reload; 64 failed of 1,138 kept-alive requests over a 6-host release with
        12 reloads). Clients that retry idempotent requests on a closed pooled connection hide it; fresh
        connections see nothing. Use V(lua) where the module is available.
    type: str
    choices: [reload, lua]
    default: reload
  nginx_admin_url:
    description:
      - V(lua) mode, the URL of the balancer's admin location, for example C(http://127.0.0.1:8081/sre-rollout);
        C(GET <url>/<pool>) lists the members, C(POST <url>/<pool>/<member>?state=S&weight=N) changes one.
        Keep it on loopback (or a unix socket behind a loopback proxy); it is unauthenticated.
      - An endpoint's own C(admin_url) overrides it.
    type: str
"""
