#!/usr/bin/python
# Copyright: sre.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: alertmanager_silence
short_description: Create, extend or expire an Alertmanager silence, idempotently
version_added: 0.1.0
description:
  - Silences the alerts of a host (or any label set) in Alertmanager through its v2 API while a release works
    on it, and expires the silence afterwards.
  - "Idempotent by identity: the same O(matchers) (in any order), the same O(created_by) and the same
    O(release_id) (carried at the start of the comment as C([sre.rollout release=<id>])). A live (active or
    pending) silence with that identity is reused; if it ends more than O(tolerance) before the requested end,
    it is extended. A silence is never shortened: the module warns instead."
  - A silence always has an end time (O(duration), default one hour, or O(ends_at)), bounded by
    O(max_duration), so a controller that dies mid-release cannot mute a host forever.
  - O(state=absent) expires the silence O(silence_id), or every live silence with the identity. Expiring a
    silence that is already expired, or that Alertmanager no longer knows, is not an error.
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
      - Overrides an C(Authorization) entry of O(headers).
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
    description:
      - Extra HTTP headers for every request (for example what a proxy in front of Alertmanager needs).
      - Shown in the task's invocation like any option; put a secret in O(token), which is never shown.
    type: dict
    default: {}
  validate_certs:
    description: Verify the TLS certificate of an V(https) URL.
    type: bool
    default: true
  timeout:
    description: Seconds to wait for each HTTP request.
    type: float
    default: 10
  state:
    description:
      - V(present) creates the silence or reuses (and if needed extends) the live one with the same identity.
      - V(absent) expires O(silence_id), or every live silence with the identity of O(matchers),
        O(created_by) and O(release_id).
    type: str
    choices: [present, absent]
    default: present
  matchers:
    description:
      - What to silence. Each item is a string V(name=value), V(name!=value), V(name=~regex) or V(name!~regex)
        (the value may be double-quoted), or a dict with keys C(name), C(value), C(is_regex) (default false) and
        C(is_equal) (default true).
      - Regexes are anchored by Alertmanager. At least one matcher must need a non-empty label value.
      - Required with O(state=present); with O(state=absent), one of O(matchers) or O(silence_id) is required.
    type: list
    elements: raw
  created_by:
    description: Who silences; part of the identity.
    type: str
    default: sre.rollout
  release_id:
    description:
      - The release the silence belongs to; part of the identity, written at the start of the comment as
        C([sre.rollout release=<id>]). Letters, digits and C(._:@+-), starting with a letter or
        digit, without C(..), at most 128.
      - Without it, the identity only matches silences whose comment carries no release tag.
    type: str
  comment:
    description:
      - Why the alerts are muted; recorded after the release tag. Changing it on a reused silence updates the
        silence (RV(action=updated)).
      - Defaults to C(silenced by sre.rollout during a release).
    type: str
  duration:
    description:
      - How long the silence lasts from O(starts_at) (or now), like V(90s), V(30m), V(2h), V(1h30m), V(1d), or a
        number of seconds. Mutually exclusive with O(ends_at).
      - When neither O(duration) nor O(ends_at) is given, one hour.
    type: raw
  ends_at:
    description: End of the silence, ISO 8601 with a zone (V(2030-01-31T18:00:00Z), V(...+02:00)).
    type: str
  starts_at:
    description:
      - Start of a new silence, ISO 8601 with a zone; default now. A start in the future makes a pending
        silence. On a reused pending silence, an earlier requested start moves its start earlier.
    type: str
  max_duration:
    description: Longest silence the module agrees to make, counted from now or O(starts_at) if later.
    type: raw
    default: 24h
  tolerance:
    description:
      - A reused silence is extended only when it ends more than this before the requested end, so that
        re-running a play does not change anything. A duration like O(duration), or V(0).
    type: raw
    default: 2m
  silence_id:
    description: With O(state=absent), the id of the silence to expire (identity options are then ignored).
    type: str
attributes:
  check_mode:
    support: full
    description: Reads Alertmanager and reports what would change; creates, updates and expires nothing.
  diff_mode:
    support: full
    description: Before and after views of the silence (matchers, times, creator, comment).
  idempotent:
    support: full
    description: Re-running with the same options changes nothing while the silence lives (see O(tolerance)).
notes:
  - Uses the Alertmanager v2 API (Alertmanager 0.16 and later; tested with 0.25). The C(filter=) of the list
    call only narrows the answer; the module checks the identity of every silence itself.
  - When Alertmanager cannot update a silence in place it expires it and creates a new one; RV(silence_id) is
    then the new id and RV(previous_silence_id) the old one.
seealso:
  - name: Alertmanager API (OpenAPI v2)
    description: The API this module calls.
    link: https://github.com/prometheus/alertmanager/blob/main/api/v2/openapi.yaml
  - name: Alertmanager silences
    description: How silences mute alerts.
    link: https://prometheus.io/docs/alerting/latest/alertmanager/#silences
"""

EXAMPLES = r"""
- name: Silence web01's alerts while it is released (record why)
  sre.rollout.alertmanager_silence:
    url: http://alertmanager:9093
    matchers:
      - instance=~web01.*
      - host=web01
    created_by: sre.rollout
    release_id: "{{ release_id }}"
    comment: "release of app-1.1.0 onto web01 by {{ ansible_user_id | default('ansible') }}"
    duration: 30m
  delegate_to: localhost
  register: web01_silence

- name: Lift it when web01 serves again
  sre.rollout.alertmanager_silence:
    url: http://alertmanager:9093
    state: absent
    silence_id: "{{ web01_silence.silence_id }}"
  delegate_to: localhost

- name: Or lift every silence of this release for web01, by identity
  sre.rollout.alertmanager_silence:
    url: http://alertmanager:9093
    state: absent
    matchers: [instance=~web01.*, host=web01]
    release_id: "{{ release_id }}"
  delegate_to: localhost

- name: A maintenance window tonight, with dict matchers and a token from the environment
  sre.rollout.alertmanager_silence:
    url: https://alertmanager.example.com
    token: "{{ lookup('ansible.builtin.env', 'ALERTMANAGER_TOKEN') }}"
    matchers:
      - {name: job, value: app}
      - {name: severity, value: "critical|page", is_regex: true, is_equal: false}
    starts_at: "2030-01-31T22:00:00Z"
    ends_at: "2030-01-31T23:30:00Z"
    comment: database maintenance CHG-1234
  delegate_to: localhost
"""

RETURN = r"""
action:
  description: What was done.
  returned: always
  type: str
  choices: [created, extended, updated, unchanged, expired, absent]
  sample: created
silence_id:
  description:
    - With O(state=present), the id of the silence now in force (null in check mode when it would be created).
    - With O(state=absent), O(silence_id) if given, else the id of the first silence expired (null if none).
  returned: always
  type: str
  sample: 83106a45-4816-4682-ae29-e0fc9d66625d
silence:
  description:
    - The silence in force (with O(state=present)); the record of what was silenced, when and why.
    - Null with O(state=absent) (see RV(expired)).
  returned: always
  type: dict
  contains:
    id:
      description: Silence id (null in check mode for a silence to be created).
      type: str
    matchers:
      description: Matchers, as Alertmanager has them (C(name), C(value), C(isRegex), C(isEqual)).
      type: list
      elements: dict
    startsAt:
      description: Start, RFC 3339 UTC.
      type: str
      sample: "2030-01-31T18:00:00.000Z"
    endsAt:
      description: End, RFC 3339 UTC.
      type: str
      sample: "2030-01-31T18:30:00.000Z"
    createdBy:
      description: Creator.
      type: str
      sample: sre.rollout
    comment:
      description: Comment, starting with the release tag.
      type: str
      sample: "[sre.rollout release=r-20300131-1] release of app-1.1.0 onto web01"
    state:
      description: V(active), V(pending) or V(expired).
      type: str
      sample: active
expired:
  description: The silences expired (as they were just before), with the same keys as RV(silence).
  returned: when state is absent
  type: list
  elements: dict
previous_silence_id:
  description: The id of the silence Alertmanager replaced instead of updating it in place.
  returned: when Alertmanager replaced the silence
  type: str
url:
  description: The Alertmanager base URL used.
  returned: always
  type: str
  sample: http://alertmanager:9093
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule, env_fallback
from ansible_collections.sre.rollout.plugins.module_utils._alertmanager import (
    AlertmanagerClient,
    SilenceIdentity,
    build_request,
    check_release_id,
    ensure_silence,
    parse_matchers,
    remove_silences,
)
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
    "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
    "matchers": {"type": "list", "elements": "raw"},
    "created_by": {"type": "str", "default": "sre.rollout"},
    "release_id": {"type": "str"},
    "comment": {"type": "str"},
    "duration": {"type": "raw"},
    "ends_at": {"type": "str"},
    "starts_at": {"type": "str"},
    "max_duration": {"type": "raw", "default": "24h"},
    "tolerance": {"type": "raw", "default": "2m"},
    "silence_id": {"type": "str"},
}


def run(module: AnsibleModule) -> dict[str, Any]:
    p = module.params
    client = AlertmanagerClient(p["url"], token=p["token"], headers=p["headers"],
                                validate_certs=p["validate_certs"], timeout=p["timeout"],
                                username=p["username"], password=p["password"], ca_path=p["ca_path"])
    if p["state"] == "present":
        if p["silence_id"]:
            raise RolloutError("silence_id only selects what state=absent expires: with state=present, "
                               "give matchers (the silence is found by matchers, created_by and release_id)")
        request = build_request(
            p["matchers"], created_by=p["created_by"], release_id=p["release_id"], comment=p["comment"],
            duration=p["duration"], ends_at=p["ends_at"], starts_at=p["starts_at"],
            max_duration=p["max_duration"], tolerance=p["tolerance"],
        )
        result = ensure_silence(client, request, check_mode=module.check_mode)
    elif p["silence_id"]:
        result = remove_silences(client, silence_id=p["silence_id"], check_mode=module.check_mode)
    else:
        matchers = parse_matchers(p["matchers"])
        identity = SilenceIdentity.of(matchers, p["created_by"], check_release_id(p["release_id"]))
        result = remove_silences(client, identity=identity, matchers=matchers, check_mode=module.check_mode)
    result["url"] = client.url
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=True,
        mutually_exclusive=[("duration", "ends_at")],
        required_if=[("state", "present", ("matchers",)),
                     ("state", "absent", ("matchers", "silence_id"), True)],
    )
    try:
        result = run(module)
    except RolloutError as e:
        module.fail_json(msg=e.msg, **e.details)
    for warning in result.pop("warnings", []):
        module.warn(warning)
    diff = result.pop("diff")
    if module._diff:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
