#!/usr/bin/python
# Copyright: sre.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: app_release
short_description: Stage, activate, roll back, prune and lock releases of an application on its host
version_added: 0.1.0
description:
  - Manages the release layout under an application root on the target host.
    C(releases/<artifact>/) holds one unpacked artifact each; C(current) is a relative symlink to the
    active one, swapped atomically (a temporary link renamed over it); C(shared/) holds what outlives
    releases; C(.rollout/state.json) records C(current), C(previous), the staged releases and the history
    (artifact, action, release id, time, outcome).
  - "O(state=staged) downloads the artifact (or reads O(src) on the host) into C(releases/.tmp-*), checks
    the free disk space, verifies its sha256, unpacks it into C(releases/.staging-*), writes the marker
    C(.rollout-complete) and only then renames it to C(releases/<artifact>). An interrupted stage never
    leaves a release that can be activated; its leftovers are removed by the next stage or prune. An
    artifact already staged (marker present, same sha256) is not downloaded again."
  - O(state=active) switches C(current) to a completely staged artifact and records the artifact it
    replaced as C(previous). With O(rollback_to) it activates C(previous) (or the named artifact) and marks
    the release it rolls back from as failed. Rollback is keyed on the names in the state file, never on
    directory times. Running the same rollback twice changes nothing the second time.
  - O(state=pruned) keeps O(keep) releases. It never removes C(current) or C(previous); failed (rolled back
    from) and incomplete releases do not count towards O(keep) and are removed.
  - O(state=locked) and O(state=unlocked) take and drop C(.rollout/lock.json) for one O(release_id). While
    a lock is held, the states that change anything refuse to run for another release id.
  - O(state=query) reports everything and changes nothing.
author:
  - sre.rollout maintainers (!UNKNOWN)
options:
  root:
    description: The application root on the host (the directory holding C(releases/) and C(current)).
    type: path
    required: true
  state:
    description:
      - V(staged) puts O(artifact) under C(releases/); V(active) points C(current) at it;
        V(query) reports; V(pruned) removes old releases; V(locked)/V(unlocked) take/drop the release lock.
    type: str
    choices: [staged, active, query, pruned, locked, unlocked]
    default: query
  artifact:
    description:
      - The artifact's name, such as V(app-1.1.0); also the release directory's name.
      - One path component of letters, digits and C(._+-); C(/) and C(..) are refused.
      - Required with O(state=staged), and with O(state=active) unless O(rollback_to) is given.
    type: str
  url:
    description: HTTP(S) URL of the artifact tarball (C(.tar), C(.tar.gz), C(.tgz), C(.tar.xz), C(.tar.bz2)).
    type: str
  src:
    description:
      - Path of the artifact tarball already on the host; copy it there first with M(ansible.builtin.copy)
        to ship it from the controller.
    type: path
  checksum:
    description: Expected checksum of the tarball, V(sha256:<64 hex digits>).
    type: str
  checksum_url:
    description:
      - URL of a C(SHA256SUMS) file (C(sha256sum) output); the line for O(checksum_name) gives the checksum.
    type: str
  checksum_name:
    description:
      - The file name to look up in O(checksum_url).
      - Defaults to the last path component of O(url) or O(src).
    type: str
  verify_checksum:
    description:
      - Staging requires O(checksum) or O(checksum_url) unless this is V(false). A checksum that is given is
        always verified.
    type: bool
    default: true
  url_username:
    description: User name for HTTP basic authentication to O(url) and O(checksum_url).
    type: str
  url_password:
    description: Password for HTTP basic authentication to O(url) and O(checksum_url).
    type: str
  validate_certs:
    description: Verify TLS certificates of O(url) and O(checksum_url).
    type: bool
    default: true
  timeout:
    description: Seconds to wait for the artifact server to connect or send data (each read).
    type: int
    default: 30
  download_timeout:
    description: Seconds the whole download may take.
    type: int
    default: 600
  min_free_mb:
    description:
      - Megabytes that must stay free on the file system of C(releases/) after the download and after
        unpacking. Staging stops with an error before writing when they would not.
    type: int
    default: 64
  shared_paths:
    description:
      - Paths inside each staged release (relative, such as V(logs) or V(config/app.env)) replaced by a
        symlink to the same path under C(<root>/shared/), so they survive releases.
    type: list
    elements: str
    default: []
  rollback_to:
    description:
      - With O(state=active), V(previous) activates the artifact recorded as C(previous) in the state file;
        any other value names the artifact to roll back to. The release rolled back from is marked failed.
    type: str
  keep:
    description: With O(state=pruned), how many good releases to keep (C(current) and C(previous) included).
    type: int
    default: 5
  release_id:
    description:
      - Identifier of the release run, recorded in the history and in the lock. Required with O(state=locked).
      - Letters, digits and C(._:@+-), starting with a letter or digit, without C(..), at most 128.
    type: str
  holder:
    description: Who holds the lock (operator, controller), recorded with O(state=locked).
    type: str
  break_lock:
    description:
      - Take over or drop a lock held by another release id. Only for a release that is known to be dead.
    type: bool
    default: false
notes:
  - Only tarballs are supported. Member paths outside the release, absolute paths, links that leave the
    release and device files are refused. File ownership from the archive is not kept.
  - The lock is advisory and per root; it does not stop two tasks of the same release id.
attributes:
  check_mode:
    support: full
    description:
      - Reports what would change; downloads nothing. O(checksum_url) is still read.
      - Activating an artifact that is not on the host at all is reported as a change with a warning
        (an earlier task of the run would stage it); a partially staged one is refused as in a real run.
  diff_mode:
    support: full
    description: C(before)/C(after) hold C(current), C(previous) and the release names (or the lock).
  idempotent:
    support: full
    description: A staged artifact is not staged again; activating the current one or repeating a rollback
      changes nothing; pruning an already pruned root changes nothing.
seealso:
  - module: sre.rollout.wait_healthy
  - module: ansible.builtin.copy
    description: Ship an artifact from the controller, then stage it with O(src).
"""

EXAMPLES = r"""
- name: Take the release lock
  sre.rollout.app_release:
    root: /srv/app
    state: locked
    release_id: "{{ release_id }}"
    holder: "{{ lookup('ansible.builtin.env', 'USER') }}"

- name: Pre-distribute the artifact (cold phase)
  sre.rollout.app_release:
    root: /srv/app
    artifact: app-1.1.0
    url: https://artifacts.example.com/app/app-1.1.0.tar.gz
    checksum_url: https://artifacts.example.com/app/SHA256SUMS
    shared_paths: [logs]
    release_id: "{{ release_id }}"
    state: staged

- name: Switch current to the new release
  sre.rollout.app_release:
    root: /srv/app
    artifact: app-1.1.0
    release_id: "{{ release_id }}"
    state: active
  register: switched

- name: Roll back by name, to what was current before
  sre.rollout.app_release:
    root: /srv/app
    rollback_to: previous
    release_id: "{{ release_id }}"
    state: active

- name: Keep three good releases
  sre.rollout.app_release:
    root: /srv/app
    keep: 3
    state: pruned

- name: What is on the host
  sre.rollout.app_release:
    root: /srv/app
  register: releases

- name: Drop the release lock
  sre.rollout.app_release:
    root: /srv/app
    state: unlocked
    release_id: "{{ release_id }}"
"""

RETURN = r"""
root:
  description: The application root.
  returned: always
  type: str
  sample: /srv/app
exists:
  description: Whether the root exists (O(state=query) on a host never deployed to reports V(false)).
  returned: always
  type: bool
current:
  description: The artifact C(current) points at after the task (as it would be in check mode).
  returned: always
  type: str
  sample: app-1.1.0
previous:
  description: The artifact recorded as C(previous) after the task.
  returned: always
  type: str
  sample: app-1.0.0
artifact:
  description: The artifact staged or activated by this task.
  returned: when O(state) is V(staged) or V(active)
  type: str
  sample: app-1.1.0
release_dir:
  description: The release directory of O(artifact).
  returned: when O(state) is V(staged) or V(active)
  type: str
  sample: /srv/app/releases/app-1.1.0
sha256:
  description: The sha256 of the artifact's tarball, as staged.
  returned: when O(state=staged)
  type: str
staged:
  description: Whether this task downloaded and unpacked the artifact (V(false) when it was already staged).
  returned: when O(state=staged)
  type: bool
cleaned:
  description: Leftovers of interrupted work removed (C(releases/.tmp-*), C(.staging-*), C(.trash-*)).
  returned: when O(state) is V(staged) or V(pruned)
  type: list
  elements: str
activated:
  description: The artifact this task switched C(current) to; V(null) when C(current) was already right.
  returned: when O(state=active)
  type: str
replaced:
  description: The artifact C(current) pointed at before the switch.
  returned: when O(state=active)
  type: str
rolled_back_from:
  description: With O(rollback_to), the release rolled back from (now marked failed).
  returned: when O(state=active)
  type: str
kept:
  description: Releases kept by O(state=pruned).
  returned: when O(state=pruned)
  type: list
  elements: str
removed:
  description: Releases removed (or that would be, in check mode) by O(state=pruned).
  returned: when O(state=pruned)
  type: list
  elements: str
releases:
  description: Every release on disk or in the state file, oldest staged first.
  returned: always
  type: list
  elements: dict
  contains:
    artifact: {description: Name., type: str}
    path: {description: Release directory., type: str}
    on_disk: {description: Whether the directory exists., type: bool}
    complete: {description: Fully staged (marker present); only these can be activated., type: bool}
    failed: {description: Rolled back from., type: bool}
    sha256: {description: Checksum of the tarball it came from., type: str}
    staged_at: {description: UTC time of staging (ISO 8601)., type: str}
    current: {description: Is C(current)., type: bool}
    previous: {description: Is C(previous)., type: bool}
history:
  description: The recorded history, oldest first (at most 200 entries are kept).
  returned: when O(state=query)
  type: list
  elements: dict
  sample: [{"artifact": "app-1.1.0", "action": "activate", "release_id": "r42", "time": "2024-05-01T10:00:00Z",
            "outcome": "ok", "from": "app-1.0.0"}]
leftovers:
  description: Interrupted work found under the root (removed by the next stage or prune).
  returned: when O(state=query)
  type: list
  elements: str
lock:
  description: The lock after the task (C(release_id), C(holder), C(time), C(host)); V(null) when unlocked.
  returned: always
  type: dict
broken_lock:
  description: The lock of another release that O(break_lock) took over or dropped.
  returned: when O(state) is V(locked) or V(unlocked)
  type: dict
"""

import getpass
import http.client
import os
import urllib.error
from typing import Any, Callable, Optional

from ansible.module_utils.basic import AnsibleModule, env_fallback
from ansible.module_utils.urls import open_url

from ansible_collections.sre.rollout.plugins.module_utils._common import RolloutError
from ansible_collections.sre.rollout.plugins.module_utils._release_state import (
    ReleaseRoot,
    ReleaseStateError,
    StageRequest,
    find_in_sha256sums,
    parse_checksum,
    validate_artifact,
    validate_release_id,
)

ARGUMENT_SPEC: dict[str, Any] = dict(
    root=dict(type="path", required=True),
    state=dict(type="str", default="query", choices=["staged", "active", "query", "pruned", "locked", "unlocked"]),
    artifact=dict(type="str"),
    url=dict(type="str"),
    src=dict(type="path"),
    checksum=dict(type="str"),
    checksum_url=dict(type="str"),
    checksum_name=dict(type="str"),
    verify_checksum=dict(type="bool", default=True),
    url_username=dict(type="str", fallback=(env_fallback, ["SRE_ARTIFACT_USERNAME"])),
    url_password=dict(type="str", no_log=True, fallback=(env_fallback, ["SRE_ARTIFACT_PASSWORD"])),
    validate_certs=dict(type="bool", default=True),
    timeout=dict(type="int", default=30),
    download_timeout=dict(type="int", default=600),
    min_free_mb=dict(type="int", default=64),
    shared_paths=dict(type="list", elements="str", default=[]),
    rollback_to=dict(type="str"),
    keep=dict(type="int", default=5),
    release_id=dict(type="str"),
    holder=dict(type="str"),
    break_lock=dict(type="bool", default=False),
)


def _http_get(module: AnsibleModule, url: str) -> Any:
    params = module.params
    try:
        return open_url(url, timeout=params["timeout"], validate_certs=params["validate_certs"],
                        url_username=params["url_username"], url_password=params["url_password"],
                        force_basic_auth=bool(params["url_username"]))
    except urllib.error.HTTPError as exc:
        raise ReleaseStateError(f"HTTP {exc.code} {exc.reason} from {url}: check that the URL is right and "
                                "the artifact is published", url=url, status=exc.code)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise ReleaseStateError(f"cannot fetch {url}: {exc}. Check the URL and that the server is reachable "
                                "from this host", url=url)


def _source_name(params: dict) -> str:
    if params["checksum_name"]:
        return params["checksum_name"]
    location = params["url"] or params["src"] or ""
    return os.path.basename(location.split("?", 1)[0].rstrip("/")) or f"{params['artifact']}.tar.gz"


def expected_sha256(module: AnsibleModule) -> Optional[str]:
    """The checksum the artifact must have, from ``checksum`` or ``checksum_url``; None if not verified."""
    params = module.params
    if params["checksum"]:
        return parse_checksum(params["checksum"])
    if params["checksum_url"]:
        response = _http_get(module, params["checksum_url"])
        try:
            text = response.read(4 * 1024 * 1024).decode("utf-8", "replace")
        except (OSError, http.client.HTTPException) as exc:
            raise ReleaseStateError(f"cannot read {params['checksum_url']}: {exc}; retry")
        return find_in_sha256sums(text, _source_name(params), params["checksum_url"])
    if params["verify_checksum"]:
        raise ReleaseStateError("staging needs the artifact's checksum: pass checksum='sha256:<hex>' or "
                                "checksum_url=<.../SHA256SUMS> (or verify_checksum=false to skip the check)")
    module.warn(f"staging {params['artifact']} without verifying its checksum (verify_checksum=false)")
    return None


def make_opener(module: AnsibleModule) -> tuple[Callable, str]:
    params = module.params
    if params["url"]:
        url = params["url"]

        def open_download():
            response = _http_get(module, url)
            length = response.headers.get("Content-Length")
            return response, int(length) if length and length.isdigit() else None
        return open_download, url
    src = params["src"]

    def open_src():
        try:
            return open(src, "rb"), os.path.getsize(src)
        except OSError as exc:
            raise ReleaseStateError(f"cannot read src {src} on the host ({exc.strerror}): copy the artifact "
                                    "there first (ansible.builtin.copy) or give url", src=src)
    return open_src, src


def _result(module: AnsibleModule, root: ReleaseRoot, changed: bool, before: dict) -> dict:
    result = {"changed": changed, "root": root.root, "exists": root.exists,
              "current": root.state.get("current"), "previous": root.state.get("previous"),
              "releases": root.list_releases() if root.exists else [], "lock": root.read_lock()}
    if module._diff:
        result["diff"] = {"before": before, "after": root.summary()}
    return result


def run_staged(module: AnsibleModule, root: ReleaseRoot, before: dict) -> dict:
    params = module.params
    artifact = params["artifact"]
    expected = expected_sha256(module)
    record = root.stage_plan(artifact, expected)
    info: dict[str, Any] = {"cleaned": [], "sha256": record.get("sha256") if record else expected}
    if record is None and not module.check_mode:
        opener, source = make_opener(module)
        info = root.stage(StageRequest(
            artifact=artifact, opener=opener, expected_sha256=expected, source=source,
            release_id=params["release_id"], shared_paths=tuple(params["shared_paths"]),
            reserve_bytes=params["min_free_mb"] * 1024 * 1024, download_timeout=params["download_timeout"]))
        root.save()
        for warning in info.get("warnings", []):
            module.warn(warning)
    elif record is None:
        if params["src"] and not os.path.isfile(params["src"]):
            raise ReleaseStateError(f"src {params['src']} is not a file on the host: copy the artifact there "
                                    "first (ansible.builtin.copy) or give url", src=params["src"])
        root.state["releases"][artifact] = {"sha256": expected, "complete": True}
    result = _result(module, root, record is None, before)
    result.update(artifact=artifact, release_dir=root.release_dir(artifact), sha256=info["sha256"],
                  staged=record is None, cleaned=info["cleaned"])
    return result


def run_active(module: AnsibleModule, root: ReleaseRoot, before: dict) -> dict:
    params = module.params
    if params["rollback_to"] == "previous" and root.already_rolled_back():
        target, rollback, replaced = root.state["current"], True, None
        rolled_back_from = root.state.get("previous")
    else:
        target, rollback = root.resolve_target(params["artifact"], params["rollback_to"])
        replaced = None
        if target != root.state.get("current"):
            if module.check_mode and not os.path.lexists(root.release_dir(target)):
                module.warn(f"{target} is not staged on this host; check mode assumes an earlier task stages it "
                            "(a real run refuses to activate an artifact that is not fully staged)")
            replaced = root.activate(target, rollback, params["release_id"], module.check_mode)
            if not module.check_mode:
                root.save()
        rolled_back_from = replaced if rollback else None
    changed = before != root.summary()
    result = _result(module, root, changed, before)
    result.update(artifact=target, release_dir=root.release_dir(target), activated=target if changed else None,
                  replaced=replaced, rolled_back_from=rolled_back_from)
    return result


def run_pruned(module: AnsibleModule, root: ReleaseRoot, before: dict) -> dict:
    params = module.params
    kept, removed = root.prune_plan(params["keep"])
    leftovers = root.work_leftovers()
    if not module.check_mode:
        root.clean_leftovers()
        root.prune(removed, params["release_id"])
        if removed:
            root.save()
    else:
        for name in removed:
            root.state["releases"].pop(name, None)
    result = _result(module, root, bool(removed or leftovers), before)
    result.update(kept=kept, removed=removed, cleaned=leftovers)
    return result


def run_query(module: AnsibleModule, root: ReleaseRoot, before: dict) -> dict:
    result = _result(module, root, False, before)
    result.update(history=root.state["history"], leftovers=root.work_leftovers())
    return result


def run_lock(module: AnsibleModule, root: ReleaseRoot, before: dict) -> dict:
    params = module.params
    before = {"lock": root.read_lock()}
    if params["state"] == "locked":
        if not params["release_id"]:
            raise ReleaseStateError("state=locked needs release_id: the id of the release taking the lock")
        holder = params["holder"] or getpass.getuser()
        changed, broken, after = root.acquire_lock(params["release_id"], holder, params["break_lock"],
                                                   module.check_mode)
    else:
        changed, dropped = root.release_lock(params["release_id"], params["break_lock"], module.check_mode)
        broken = dropped if dropped and dropped.get("release_id") != params["release_id"] else None
        after = None
    result = _result(module, root, changed, before)
    result.update(lock=after, broken_lock=broken)
    if module._diff:
        result["diff"] = {"before": before, "after": {"lock": after}}
    if broken:
        module.warn(f"broke the lock of release {broken.get('release_id')!r} held by {broken.get('holder')!r}")
    return result


# state -> (handler, needs an existing root, refused while another release holds the lock)
HANDLERS = {"staged": (run_staged, False, True), "active": (run_active, True, True),
            "pruned": (run_pruned, True, True), "query": (run_query, False, False),
            "locked": (run_lock, False, False), "unlocked": (run_lock, False, False)}
LOCK_STATES = ("locked", "unlocked")


def run(module: AnsibleModule) -> dict:
    """The one prologue: check the arguments, the root and the lock, load the state, then the handler."""
    params = module.params
    if params["release_id"] is not None:
        validate_release_id(params["release_id"])
    if params["state"] == "staged":
        validate_artifact(params["artifact"])
    if params["state"] == "active" and params["rollback_to"] and params["artifact"]:
        raise ReleaseStateError("give either artifact (a forward release) or rollback_to, not both")
    handler, needs_root, locked_out = HANDLERS[params["state"]]
    root = ReleaseRoot(os.path.abspath(params["root"]))
    if needs_root:
        root.require_exists()
    if locked_out:
        root.check_lock(params["release_id"])
    # The lock states read the state only to report it: a broken `current` must not stop an unlock.
    for warning in root.load(reconcile=params["state"] not in LOCK_STATES):
        module.warn(warning)
    return handler(module, root, root.summary())


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=True,
        mutually_exclusive=[("url", "src"), ("checksum", "checksum_url")],
        required_if=[("state", "staged", ("artifact",)), ("state", "staged", ("url", "src"), True),
                     ("state", "active", ("artifact", "rollback_to"), True)],
    )
    try:
        result = run(module)
    except RolloutError as exc:
        module.fail_json(msg=exc.msg, **exc.details)
    except OSError as exc:
        module.fail_json(msg=f"{exc.strerror or exc} on {exc.filename or module.params['root']}: check the "
                             "permissions and free space under root", errno=exc.errno)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
