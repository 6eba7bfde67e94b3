#!/usr/bin/python
# Copyright: sre.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: wait_healthy
short_description: Wait until a service passes N health checks in a row, optionally on the expected version
version_added: 0.1.0
description:
  - Checks a service over HTTP(S) (O(url)) or TCP (O(tcp)) every O(interval) seconds and passes once
    O(successes) checks in a row succeed, or fails when O(timeout) runs out, reporting the last error seen.
  - An HTTP check succeeds when the status is in O(status_code) and, when given, the body matches
    O(body_regex) and the JSON field O(json_path) equals O(json_value).
  - With O(expect_version), every check also reads the version the service reports (JSON field
    O(version_field) of O(version_url)) and succeeds only when it equals O(expect_version), so the host is
    proven to run what was deployed, not an old process still answering.
  - Runs wherever it is executed; release playbooks run it on the controller with C(delegate_to=localhost)
    against each host's application URL.
author:
  - sre.rollout maintainers (!UNKNOWN)
options:
  url:
    description: The HTTP(S) URL to check, such as V(http://10.0.0.5:8080/health).
    type: str
  tcp:
    description: V(host:port) (V([ipv6]:port)) to check with a TCP connect instead of HTTP.
    type: str
  status_code:
    description: HTTP statuses that count as healthy.
    type: list
    elements: int
    default: [200]
  body_regex:
    description: A regular expression (Python C(re.search)) the response body must match.
    type: str
  json_path:
    description:
      - A dotted path into the JSON response body (V(status), V(checks.db.ok), V(items.0.state)).
      - Without O(json_value) the field must exist; with it, it must equal O(json_value).
    type: str
  json_value:
    description:
      - The value the O(json_path) field must have. Compared as JSON values; a string also matches the
        JSON text of a number or boolean (V("3") matches C(3), V("true") matches C(true)).
    type: raw
  expect_version:
    description: The version the service must report, such as V(1.1.0).
    type: str
  version_url:
    description:
      - Where to read the version. Defaults to V(version) next to O(url) (C(http://host:8080/health) gives
        C(http://host:8080/version)). Required with O(tcp).
    type: str
  version_field:
    description: Dotted path of the version in the O(version_url) JSON.
    type: str
    default: version
  successes:
    description: How many checks in a row must succeed.
    type: int
    default: 3
  interval:
    description: Seconds between checks.
    type: float
    default: 1.0
  timeout:
    description: Seconds to wait in total before failing.
    type: float
    default: 60
  request_timeout:
    description:
      - Seconds one check may take (connect and read); never more than what is left of O(timeout)
        (but at least half a second).
    type: float
    default: 5
  headers:
    description:
      - Extra HTTP request headers (a C(Host) header, for instance). Not logged, as they may carry credentials.
    type: dict
    default: {}
  validate_certs:
    description: Verify TLS certificates for https URLs.
    type: bool
    default: true
notes:
  - Redirects are not followed; list 301/302 in O(status_code) if a redirect means healthy.
attributes:
  check_mode:
    support: full
    description: The module only reads, so it runs its checks in check mode too.
  diff_mode:
    support: none
    description: Nothing changes, so there is no diff.
  idempotent:
    support: full
    description: Never changes anything; always returns C(changed=false).
seealso:
  - module: ansible.builtin.uri
  - module: ansible.builtin.wait_for
  - module: sre.rollout.app_release
"""

EXAMPLES = r"""
- name: Wait for the new release to answer, on the right version
  sre.rollout.wait_healthy:
    url: "{{ rollout_app_url }}/health"
    expect_version: "1.1.0"
    successes: 3
    interval: 1
    timeout: 60
  delegate_to: localhost

- name: Health reported in a JSON field
  sre.rollout.wait_healthy:
    url: https://app.example.com/status
    json_path: checks.database.status
    json_value: up

- name: Port open is enough
  sre.rollout.wait_healthy:
    tcp: "{{ ansible_host }}:5432"
    successes: 2
"""

RETURN = r"""
attempts:
  description: Checks made.
  returned: always
  type: int
  sample: 5
elapsed:
  description: Seconds from the first check to the result.
  returned: always
  type: float
  sample: 4.02
successes:
  description: Successful checks in a row at the end.
  returned: always
  type: int
  sample: 3
last_status:
  description: HTTP status of the last check; V(null) for TCP checks or when no answer came.
  returned: always
  type: int
  sample: 200
last_body:
  description: The last response body, cut to 1024 characters.
  returned: always
  type: str
  sample: "ok\n"
last_error:
  description: Why the last failed check failed; V(null) if none failed.
  returned: always
  type: str
  sample: "HTTP 503 (expected one of [200])"
version:
  description: The version the service reported last (with O(expect_version) or O(version_url)).
  returned: always
  type: str
  sample: "1.1.0"
url:
  description: What was checked (the URL, or C(tcp://host:port)).
  returned: always
  type: str
"""

import json
import re
import socket
import time
import urllib.error
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Optional

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import Request, make_context

from ansible_collections.sre.rollout.plugins.module_utils._common import RolloutError

BODY_LIMIT = 1024
_MISSING = object()

ARGUMENT_SPEC: dict[str, Any] = dict(
    url=dict(type="str"),
    tcp=dict(type="str"),
    status_code=dict(type="list", elements="int", default=[200]),
    body_regex=dict(type="str"),
    json_path=dict(type="str"),
    json_value=dict(type="raw"),
    expect_version=dict(type="str"),
    version_url=dict(type="str"),
    version_field=dict(type="str", default="version"),
    successes=dict(type="int", default=3),
    interval=dict(type="float", default=1.0),
    timeout=dict(type="float", default=60),
    request_timeout=dict(type="float", default=5),
    headers=dict(type="dict", default={}, no_log=True),
    validate_certs=dict(type="bool", default=True),
)


@dataclass
class Check:
    """One check's outcome."""

    ok: bool
    status: Optional[int] = None
    body: Optional[str] = None
    error: Optional[str] = None
    version: Optional[str] = None


@dataclass
class Progress:
    attempts: int = 0
    in_a_row: int = 0
    last: Check = field(default_factory=lambda: Check(ok=False))
    last_error: Optional[str] = None
    version: Optional[str] = None


# ------------------------------------------------------------------- parsing


def parse_tcp(target: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` → (host, port)."""
    host, sep, port = (target or "").rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise RolloutError(f"invalid tcp target {target!r}: give host:port, e.g. 10.0.0.5:8080 or [::1]:8080")
    return host, int(port)


def default_version_url(url: str) -> str:
    """``version`` next to the checked URL: ``http://h:8080/health`` → ``http://h:8080/version``."""
    return urllib.parse.urljoin(url, "version")


def validate_http_url(url: str, option: str) -> str:
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise RolloutError(f"invalid {option} {url!r}: give an http:// or https:// URL with a host")
    return url


def dig(data: Any, path: str) -> Any:
    """The value at a dotted path (list indices as numbers); ``_MISSING`` when absent."""
    for part in path.split("."):
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and part.lstrip("-").isdigit() and -len(data) <= int(part) < len(data):
            data = data[int(part)]
        else:
            return _MISSING
    return data


def json_equal(found: Any, wanted: Any) -> bool:
    if found == wanted and type(found) is type(wanted):
        return True
    if isinstance(wanted, str) and not isinstance(found, str):
        return json.dumps(found) == wanted
    return isinstance(found, (int, float)) and isinstance(wanted, (int, float)) and \
        not isinstance(found, bool) and not isinstance(wanted, bool) and found == wanted


# -------------------------------------------------------------------- checks


def make_client(params: dict) -> Request:
    """One HTTP client for all the checks: building a TLS context per request costs ~0.1 s."""
    return Request(headers=params["headers"], validate_certs=params["validate_certs"], follow_redirects="none",
                   context=make_context(validate_certs=params["validate_certs"]))


def http_get(client: Request, url: str, timeout: float) -> tuple[Optional[int], str, Optional[str]]:
    """(status, body, error): HTTP errors still give their status and body; connection errors only an error."""
    try:
        response = client.open("GET", url, timeout=timeout)
        return response.status, response.read(64 * 1024).decode("utf-8", "replace"), None
    except urllib.error.HTTPError as exc:
        try:
            body = exc.read(64 * 1024).decode("utf-8", "replace")
        except Exception:  # the error body is a nicety; the status is what counts
            body = ""
        return exc.code, body, None
    except urllib.error.URLError as exc:
        return None, "", f"cannot connect to {url}: {exc.reason}"
    except (socket.timeout, TimeoutError):
        return None, "", f"no answer from {url} within {timeout:.1f}s"
    except Exception as exc:  # http.client errors, resets: all mean "not healthy yet"
        return None, "", f"request to {url} failed: {exc!r}"


def check_tcp(target: str, timeout: float) -> Check:
    host, port = parse_tcp(target)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return Check(ok=True)
    except OSError as exc:
        return Check(ok=False, error=f"cannot connect to {host}:{port}: {exc.strerror or exc}")


def check_http(params: dict, timeout: float, client: Request) -> Check:
    status, body, error = http_get(client, params["url"], timeout)
    if error:
        return Check(ok=False, error=error)
    result = Check(ok=False, status=status, body=body[:BODY_LIMIT])
    if status not in params["status_code"]:
        result.error = f"HTTP {status} from {params['url']} (expected one of {params['status_code']})"
    elif params["body_regex"] and not re.search(params["body_regex"], body):
        result.error = f"body of {params['url']} does not match {params['body_regex']!r}"
    elif params["json_path"]:
        result.error = check_json_field(body, params["json_path"], params["json_value"])
    result.ok = result.error is None
    return result


def check_json_field(body: str, path: str, wanted: Any) -> Optional[str]:
    try:
        data = json.loads(body)
    except ValueError:
        return f"body is not JSON, cannot read {path!r}"
    found = dig(data, path)
    if found is _MISSING:
        return f"JSON field {path!r} is missing"
    if wanted is not None and not json_equal(found, wanted):
        return f"JSON field {path!r} is {found!r}, expected {wanted!r}"
    return None


def read_version(params: dict, timeout: float, client: Request) -> tuple[Optional[str], Optional[str]]:
    """(version, error) from the version endpoint."""
    url = params["version_url"]
    status, body, error = http_get(client, url, timeout)
    if error:
        return None, error
    if status != 200:
        return None, f"HTTP {status} from {url}"
    try:
        found = dig(json.loads(body), params["version_field"])
    except ValueError:
        return None, f"{url} did not answer JSON"
    if found is _MISSING or found is None:
        return None, f"{url} has no field {params['version_field']!r}"
    return str(found), None


def check_once(params: dict, timeout: float, client: Request) -> Check:
    result = check_tcp(params["tcp"], timeout) if params["tcp"] else check_http(params, timeout, client)
    if result.ok and params["version_url"]:
        result.version, error = read_version(params, timeout, client)
        expected = params["expect_version"]
        if error and expected:
            result.ok, result.error = False, error
        elif expected and result.version != expected:
            result.ok = False
            result.error = f"version is {result.version!r}, expected {expected!r} (an old process still answering?)"
    return result


# ---------------------------------------------------------------------- loop


def normalize(params: dict) -> dict:
    params = dict(params)
    if params["url"]:
        validate_http_url(params["url"], "url")
    else:
        parse_tcp(params["tcp"])
    if params["expect_version"] and not params["version_url"]:
        if params["tcp"]:
            raise RolloutError("expect_version with a tcp check needs version_url (where the version is read)")
        params["version_url"] = default_version_url(params["url"])
    if params["version_url"]:
        validate_http_url(params["version_url"], "version_url")
    if params["body_regex"]:
        try:
            re.compile(params["body_regex"])
        except re.error as exc:
            raise RolloutError(f"invalid body_regex {params['body_regex']!r}: {exc}")
    for name, minimum in (("successes", 1), ("interval", 0), ("timeout", 0), ("request_timeout", 0.001)):
        if params[name] < minimum:
            raise RolloutError(f"{name} must be at least {minimum}, not {params[name]}")
    return params


def wait(params: dict, clock=time.monotonic, sleep=time.sleep) -> tuple[bool, Progress, float]:
    """Check until ``successes`` in a row or the timeout -> (passed, progress, elapsed).

    A check never waits longer than what is left of the timeout (at least half a second, so the
    last check at the deadline can still be answered).
    """
    start = clock()
    deadline = start + params["timeout"]
    progress = Progress()
    client = make_client(params)
    while True:
        left = deadline - clock()
        progress.attempts += 1
        progress.last = check_once(params, min(params["request_timeout"], max(left, 0.5)), client)
        progress.version = progress.last.version or progress.version
        if progress.last.ok:
            progress.in_a_row += 1
            if progress.in_a_row >= params["successes"]:
                return True, progress, clock() - start
        else:
            progress.in_a_row = 0
            progress.last_error = progress.last.error
        left = deadline - clock()
        if left <= 0:
            return False, progress, clock() - start
        sleep(min(params["interval"], left))


def run(module: AnsibleModule) -> dict:
    params = normalize(module.params)
    passed, progress, elapsed = wait(params)
    target = params["url"] or f"tcp://{params['tcp']}"
    result = {"changed": False, "attempts": progress.attempts, "elapsed": round(elapsed, 3),
              "successes": progress.in_a_row, "last_status": progress.last.status,
              "last_body": progress.last.body, "last_error": progress.last_error, "version": progress.version,
              "url": target}
    if not passed:
        raise RolloutError(
            f"{target} not healthy after {elapsed:.1f}s ({progress.attempts} checks, {progress.in_a_row} of "
            f"{params['successes']} in a row at the end); last error: {progress.last_error or 'none'}. Check the "
            "service on the host (logs, process) or raise timeout if it is just slow to start", **result)
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=True,
        required_one_of=[("url", "tcp")],
        mutually_exclusive=[("url", "tcp"), ("tcp", "body_regex"), ("tcp", "json_path")],
        required_by={"json_value": "json_path"},
    )
    try:
        result = run(module)
    except RolloutError as exc:
        module.fail_json(msg=exc.msg, **exc.details)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
