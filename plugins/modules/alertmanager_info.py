#!/usr/bin/python
# Copyright: sre.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: alertmanager_info
short_description: Check that Alertmanager answers, and read its version and cluster state
version_added: 0.1.0
description:
  - Reads Alertmanager's C(/api/v2/status) through the same client, credentials and TLS settings as
    M(sre.rollout.alertmanager_silence), so a preflight check fails exactly when silencing would.
  - Fails with a message that says what to fix when Alertmanager cannot be reached, wants credentials,
    or does not answer like Alertmanager.
  - "Usually run on the controller with C(delegate_to: localhost)."
author:
  - sre.rollout maintainers (!UNKNOWN)
options:
  url:
    description:
      - Base URL of Alertmanager, for example V(http://alertmanager:9093). A trailing C(/api/v2) is accepted.
      - Falls back to the environment variable E(SRE_ALERTMANAGER_URL), then E(ALERTMANAGER_URL).
    type: str
    required: true
  token:
    description:
      - "Bearer token, sent as C(Authorization: Bearer <token>). Never printed."
      - Falls back to the environment variable E(ALERTMANAGER_TOKEN).
    type: str
  username:
    description:
      - User name for HTTP basic auth (C(basic_auth_users) of the server's C(--web.config.file), or a proxy in front).
      - Falls back to the environment variable E(ALERTMANAGER_USERNAME). Not with O(token).
    type: str
  password:
    description:
      - Password for HTTP basic auth, with O(username). Never printed.
      - Falls back to the environment variable E(ALERTMANAGER_PASSWORD).
    type: str
  ca_path:
    description:
      - PEM bundle of the CA(s) to verify an V(https) server's certificate with, instead of the system CA store.
      - Falls back to the environment variable E(ALERTMANAGER_CA_PATH).
    type: path
  headers:
    description: Extra HTTP headers for the request (for example what a proxy in front of Alertmanager needs).
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
  - module: sre.rollout.alertmanager_silence
"""

EXAMPLES = r"""
- name: Check Alertmanager answers before any host is silenced
  sre.rollout.alertmanager_info:
    url: http://alertmanager:9093
  delegate_to: localhost
  register: am

- name: Show its version
  ansible.builtin.debug:
    msg: "Alertmanager {{ am.version }}, cluster {{ am.cluster_status }}"
"""

RETURN = r"""
available:
  description: Alertmanager answered (always true when the module succeeds).
  returned: success
  type: bool
  sample: true
version:
  description: Alertmanager's version (C(versionInfo.version)); empty when it reports none.
  returned: success
  type: str
  sample: 0.27.0
cluster_status:
  description: State of its cluster, V(ready), V(settling) or V(disabled); empty when it reports none.
  returned: success
  type: str
  sample: ready
uptime:
  description: When Alertmanager started, as it reports it.
  returned: success
  type: str
  sample: "2030-01-31T17:00:00.000Z"
status:
  description: The whole C(/api/v2/status) answer.
  returned: success
  type: dict
url:
  description: The Alertmanager base URL used.
  returned: always
  type: str
  sample: http://alertmanager:9093
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule, env_fallback
from ansible_collections.sre.rollout.plugins.module_utils._alertmanager import AlertmanagerClient
from ansible_collections.sre.rollout.plugins.module_utils._common import RolloutError

ARGUMENT_SPEC: dict[str, Any] = {
    "url": {"type": "str", "required": True,
            "fallback": (env_fallback, ["SRE_ALERTMANAGER_URL", "ALERTMANAGER_URL"])},
    "token": {"type": "str", "no_log": True, "fallback": (env_fallback, ["ALERTMANAGER_TOKEN"])},
    "username": {"type": "str", "fallback": (env_fallback, ["ALERTMANAGER_USERNAME"])},
    "password": {"type": "str", "no_log": True, "fallback": (env_fallback, ["ALERTMANAGER_PASSWORD"])},
    "ca_path": {"type": "path", "fallback": (env_fallback, ["ALERTMANAGER_CA_PATH"])},
    "headers": {"type": "dict", "default": {}},
    "validate_certs": {"type": "bool", "default": True},
    "timeout": {"type": "float", "default": 10},
}


def run(params: dict[str, Any]) -> dict[str, Any]:
    client = AlertmanagerClient(params["url"], token=params["token"], headers=params["headers"],
                                validate_certs=params["validate_certs"], timeout=params["timeout"],
                                username=params["username"], password=params["password"],
                                ca_path=params["ca_path"])
    status = client.status()
    cluster = status.get("cluster") if isinstance(status.get("cluster"), dict) else {}
    version = status.get("versionInfo") if isinstance(status.get("versionInfo"), dict) else {}
    return {"changed": False, "available": True, "version": str(version.get("version") or ""),
            "cluster_status": str(cluster.get("status") or ""), "uptime": str(status.get("uptime") or ""),
            "status": status, "url": client.url}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        result = run(module.params)
    except RolloutError as e:
        module.fail_json(msg=e.msg, **{"url": module.params["url"], **e.details})
    module.exit_json(**result)


if __name__ == "__main__":
    main()
