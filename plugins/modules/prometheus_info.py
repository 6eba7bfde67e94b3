#!/usr/bin/python
# Copyright: sre.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: prometheus_info
short_description: Check that Prometheus is ready to answer queries
version_added: 0.1.0
description:
  - Asks Prometheus' C(/-/ready) through the same client, credentials and TLS settings as
    M(sre.rollout.canary_analysis), so a preflight check fails exactly when the canary analysis could not query.
  - Fails with a message that says what to fix when Prometheus cannot be reached, wants credentials, or is
    not ready (still starting, or shutting down).
  - "Usually run on the controller with C(delegate_to: localhost)."
author:
  - sre.rollout maintainers (!UNKNOWN)
options:
  url:
    description:
      - Base URL of Prometheus (or a compatible API such as Thanos), for example V(http://prometheus:9090).
      - Falls back to the environment variable E(PROMETHEUS_URL).
    type: str
    required: true
  token:
    description:
      - "Bearer token, sent as C(Authorization: Bearer <token>). Never printed."
      - Falls back to the environment variable E(PROMETHEUS_TOKEN).
    type: str
  username:
    description:
      - User name for HTTP basic auth (C(basic_auth_users) of the server's C(--web.config.file), or a proxy in front).
      - Falls back to the environment variable E(PROMETHEUS_USERNAME). Not with O(token).
    type: str
  password:
    description:
      - Password for HTTP basic auth, with O(username). Never printed.
      - Falls back to the environment variable E(PROMETHEUS_PASSWORD).
    type: str
  ca_path:
    description:
      - PEM bundle of the CA(s) to verify an V(https) server's certificate with, instead of the system CA store.
      - Falls back to the environment variable E(PROMETHEUS_CA_PATH).
    type: path
  headers:
    description: Extra HTTP headers for the request (e.g. C(X-Scope-OrgID) for a multi-tenant API).
    type: dict
    default: {}
  validate_certs:
    description: Verify the TLS certificate of an V(https) URL.
    type: bool
    default: true
  timeout:
    description: Seconds to wait for the answer.
    type: float
    default: 10
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
seealso:
  - module: sre.rollout.canary_analysis
"""

EXAMPLES = r"""
- name: Check Prometheus is ready before the canary soaks
  sre.rollout.prometheus_info:
    url: http://prometheus:9090
  delegate_to: localhost
  register: prom
  failed_when: false

- name: Warn when the canary analysis will be inconclusive
  ansible.builtin.debug:
    msg: "Prometheus is not ready: {{ prom.msg }}"
  when: not (prom.available | default(false))
"""

RETURN = r"""
available:
  description: Prometheus answered ready (always true when the module succeeds).
  returned: success
  type: bool
  sample: true
answer:
  description: The text Prometheus answered C(/-/ready) with.
  returned: success
  type: str
  sample: Prometheus Server is Ready.
url:
  description: The Prometheus base URL used.
  returned: always
  type: str
  sample: http://prometheus:9090
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule, env_fallback
from ansible_collections.sre.rollout.plugins.module_utils._common import RolloutError
from ansible_collections.sre.rollout.plugins.module_utils._prometheus import PrometheusClient

ARGUMENT_SPEC: dict[str, Any] = {
    "url": {"type": "str", "required": True, "fallback": (env_fallback, ["PROMETHEUS_URL"])},
    "token": {"type": "str", "no_log": True, "fallback": (env_fallback, ["PROMETHEUS_TOKEN"])},
    "username": {"type": "str", "fallback": (env_fallback, ["PROMETHEUS_USERNAME"])},
    "password": {"type": "str", "no_log": True, "fallback": (env_fallback, ["PROMETHEUS_PASSWORD"])},
    "ca_path": {"type": "path", "fallback": (env_fallback, ["PROMETHEUS_CA_PATH"])},
    "headers": {"type": "dict", "default": {}},
    "validate_certs": {"type": "bool", "default": True},
    "timeout": {"type": "float", "default": 10},
}


def run(params: dict[str, Any]) -> dict[str, Any]:
    client = PrometheusClient(params["url"], timeout=params["timeout"], validate_certs=params["validate_certs"],
                              headers=params["headers"], token=params["token"], username=params["username"],
                              password=params["password"], ca_path=params["ca_path"])
    return {"changed": False, "available": True, "answer": client.ready(), "url": client.url}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        result = run(module.params)
    except RolloutError as e:
        module.fail_json(msg=e.msg, **{"url": module.params["url"], **e.details})
    module.exit_json(**result)


if __name__ == "__main__":
    main()
