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
"""
