"""sre.rollout.alertmanager_silence against the lab's real Alertmanager (0.25, v2 API).

Every test uses its own release id and host label, checks Alertmanager directly
over HTTP (not through the module's client), and expires whatever it created and
resolves whatever alert it fired, so the lab is left as it was found.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.parse
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone

import pytest

pytestmark = [pytest.mark.lab, pytest.mark.profile("default")]  # the lab's default names and plain HTTP

MODULE = "alertmanager_silence"


# --------------------------------------------------------------------------- direct Alertmanager access


def am_call(lab: dict, method: str, path: str, body=None, query=None):
    url = lab["alertmanager"]["url"] + "/api/v2" + path
    if query:
        url += "?" + urllib.parse.urlencode(query)
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        raw = resp.read()
    return json.loads(raw) if raw.strip() else None


def am_silence(lab: dict, silence_id: str) -> dict:
    return am_call(lab, "GET", f"/silence/{silence_id}")


def live_silences(lab: dict, release_id: str) -> list[dict]:
    return [s for s in am_call(lab, "GET", "/silences")
            if s["status"]["state"] != "expired" and f"release={release_id}]" in s["comment"]]


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def wait_for(predicate, timeout: float = 15.0, step: float = 0.3):
    """Poll until ``predicate()`` is truthy; returns its last value (falsy on timeout)."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(step)
        value = predicate()
    return value


# --------------------------------------------------------------------------- fixtures


@pytest.fixture()
def release(lab):
    """A fresh release id and host label; expires every silence left with that release id."""
    tag = uuid.uuid4().hex[:8]
    info = {"id": f"itest-{tag}", "host": f"itest-{tag}"}
    yield info
    for silence in live_silences(lab, info["id"]):
        am_call(lab, "DELETE", f"/silence/{silence['id']}")
    assert live_silences(lab, info["id"]) == []


@pytest.fixture()
def fired_alerts(lab):
    """Alerts the test posts; resolved (endsAt = now) when the test ends."""
    fired: list[dict] = []
    yield fired
    if fired:
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        am_call(lab, "POST", "/alerts", body=[dict(a, endsAt=now) for a in fired])


def args(lab: dict, release: dict, **extra) -> dict:
    base = {
        "url": lab["alertmanager"]["url"],
        "matchers": [f"instance=~{release['host']}.*", f"host={release['host']}"],
        "created_by": "sre.rollout",
        "release_id": release["id"],
        "comment": "integration test of alertmanager_silence",
        "duration": "10m",
    }
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}  # None = leave the option out


def task(name: str, module_args: dict, check: bool = False, diff: bool = False, module: str = MODULE) -> dict:
    """One task of a controller play; registered as ``name`` with spaces made underscores."""
    fqcn = module if "." in module else f"sre.rollout.{module}"
    out = {"name": name, fqcn: module_args, "ignore_errors": True, "register": name.replace(" ", "_")}
    if check:
        out["check_mode"] = True
    if diff:
        out["diff"] = True
    return out


def am_get(lab: dict, path: str, name: str) -> dict:
    """A task reading Alertmanager with ansible.builtin.uri, to check its state between steps."""
    return task(name, {"url": lab["alertmanager"]["url"] + "/api/v2" + path, "return_content": True},
                module="ansible.builtin.uri")


def run_tasks(ansible, lab: dict, tasks: list[dict]) -> dict[str, dict]:
    """Run the tasks in one play on the controller; their results by task name.

    One play per test keeps the suite fast (each ansible run costs seconds).
    The lab's group_vars derive ``lab_dir`` from ``inventory_dir``, which the
    implicit localhost lacks, so ``lab_dir`` is given as an extra var.
    Results carry ``failed`` (from the runner event: with ignore_errors the
    result itself has no such key), ``_stdout`` and ``_events``.
    """
    play = [{"name": "alertmanager_silence", "hosts": "localhost", "gather_facts": False, "tasks": tasks}]
    run = ansible.playbook(play, extravars={"lab_dir": lab["lab_dir"]})
    results = {r["_task"]: r for r in run.results(host="localhost")}
    missing = [t["name"] for t in tasks if t["name"] not in results]
    assert not missing, f"no result for {missing}: rc={run.rc}\n{run.stdout[-3000:]}"
    for result in results.values():
        result["failed"] = result["_event"] == "runner_on_failed"
        result["_stdout"] = run.stdout
        result["_events"] = run.events
    return results


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nobody listens there once the socket is closed


def live_of(release: dict, silences: list[dict]) -> list[dict]:
    return [s for s in silences if s["status"]["state"] != "expired" and f"release={release['id']}]" in s["comment"]]


# --------------------------------------------------------------------------- tests


def test_create_rerun_extend_expire_expire_again(lab, ansible, release):
    base = args(lab, release)
    absent = {"url": base["url"], "state": "absent", "silence_id": "{{ extend.silence_id }}"}
    r = run_tasks(ansible, lab, [
        task("plan", base, check=True),
        am_get(lab, "/silences", "after plan"),
        task("create", base, diff=True),
        am_get(lab, "/silence/{{ create.silence_id }}", "after create"),
        task("rerun", dict(base, matchers=list(reversed(base["matchers"])))),
        task("shorter", dict(base, duration="2m")),
        task("extend check", dict(base, duration="30m"), check=True),
        task("extend", dict(base, duration="30m"), diff=True),
        am_get(lab, "/silence/{{ extend.silence_id }}", "after extend"),
        task("extend again", dict(base, duration="30m")),
        task("expire check", absent, check=True),
        am_get(lab, "/silence/{{ extend.silence_id }}", "after expire check"),
        task("expire", absent),
        am_get(lab, "/silence/{{ extend.silence_id }}", "after expire"),
        task("expire again", absent),
        task("expire by identity", dict(base, state="absent")),
    ])
    failed = [name for name, res in r.items() if res["failed"]]
    assert not failed, {name: r[name].get("msg") for name in failed}

    # check mode: reports the creation, creates nothing
    assert (r["plan"]["changed"], r["plan"]["action"], r["plan"]["silence_id"]) == (True, "created", None)
    assert live_of(release, r["after plan"]["json"]) == []

    # create: what Alertmanager holds is what was asked
    created, real = r["create"], r["after create"]["json"]
    sid = created["silence_id"]
    assert (created["changed"], created["action"], real["id"]) == (True, "created", sid)
    assert real["status"]["state"] == "active" and real["createdBy"] == "sre.rollout"
    assert real["comment"] == f"[sre.rollout release={release['id']}] integration test of alertmanager_silence"
    assert sorted((m["name"], m["value"], m["isRegex"], m["isEqual"]) for m in real["matchers"]) == [
        ("host", release["host"], False, True), ("instance", f"{release['host']}.*", True, True)]
    assert timedelta(minutes=9) < ts(real["endsAt"]) - ts(real["startsAt"]) <= timedelta(minutes=10)
    assert created["silence"]["endsAt"] == real["endsAt"]
    assert created["diff"]["before"] == {} and created["diff"]["after"]["id"] == sid

    # re-run with the matchers in another order: nothing changes
    assert (r["rerun"]["changed"], r["rerun"]["action"], r["rerun"]["silence_id"]) == (False, "unchanged", sid)
    # a shorter request never shortens it, and says so
    assert (r["shorter"]["changed"], r["shorter"]["action"]) == (False, "unchanged")
    assert any("never shortened" in w for w in r["shorter"].get("warnings", []))

    # extend: check mode reports it; the real run starts from the untouched silence and moves its end
    assert (r["extend check"]["changed"], r["extend check"]["action"]) == (True, "extended")
    extended, after = r["extend"], r["after extend"]["json"]
    assert (extended["changed"], extended["action"]) == (True, "extended")
    assert extended["diff"]["before"]["endsAt"] == real["endsAt"]  # neither "shorter" nor check mode moved it
    assert extended["silence_id"] == sid or extended["previous_silence_id"] == sid
    assert after["status"]["state"] == "active" and after["startsAt"] == real["startsAt"]
    assert ts(after["endsAt"]) - ts(real["endsAt"]) > timedelta(minutes=19)
    assert (r["extend again"]["changed"], r["extend again"]["action"]) == (False, "unchanged")

    # expire: check mode changes nothing, then it is expired, then expiring again is fine
    assert (r["expire check"]["changed"], r["expire check"]["action"]) == (True, "expired")
    assert r["after expire check"]["json"]["status"]["state"] == "active"
    assert (r["expire"]["changed"], r["expire"]["action"]) == (True, "expired")
    assert [s["id"] for s in r["expire"]["expired"]] == [extended["silence_id"]]
    assert r["after expire"]["json"]["status"]["state"] == "expired"
    assert (r["expire again"]["changed"], r["expire again"]["action"], r["expire again"]["expired"]) == \
        (False, "absent", [])
    assert (r["expire by identity"]["changed"], r["expire by identity"]["action"]) == (False, "absent")
    assert live_silences(lab, release["id"]) == []


def test_expire_by_identity_leaves_other_releases_alone(lab, ansible, release):
    ours, theirs = args(lab, release), args(lab, dict(release, id=release["id"] + "-other"))
    try:
        r = run_tasks(ansible, lab, [
            task("ours", ours), task("theirs", theirs),
            task("lift ours", dict(ours, state="absent")),
            task("lift ours again", dict(ours, state="absent")),
            am_get(lab, "/silence/{{ ours.silence_id }}", "ours after"),
            am_get(lab, "/silence/{{ theirs.silence_id }}", "theirs after"),
        ])
        gone = r["lift ours"]
        assert (gone["changed"], gone["action"]) == (True, "expired")
        assert [s["id"] for s in gone["expired"]] == [r["ours"]["silence_id"]]
        assert (r["lift ours again"]["changed"], r["lift ours again"]["action"]) == (False, "absent")
        assert r["ours after"]["json"]["status"]["state"] == "expired"
        assert r["theirs after"]["json"]["status"]["state"] == "active"
    finally:
        for silence in live_silences(lab, release["id"] + "-other"):
            am_call(lab, "DELETE", f"/silence/{silence['id']}")


def test_ends_at_and_a_pending_start(lab, ansible, release):
    start = (datetime.now(timezone.utc) + timedelta(minutes=20)).replace(microsecond=0)
    end = start + timedelta(minutes=15)
    iso = "%Y-%m-%dT%H:%M:%SZ"
    opts = args(lab, release, duration=None, starts_at=start.strftime(iso), ends_at=end.strftime(iso))
    r = run_tasks(ansible, lab, [task("create", opts), task("again", opts)])
    assert (r["create"]["changed"], r["create"]["action"]) == (True, "created"), r["create"].get("msg")
    real = am_silence(lab, r["create"]["silence_id"])
    assert real["status"]["state"] == "pending"
    assert (ts(real["startsAt"]), ts(real["endsAt"])) == (start, end)
    assert (r["again"]["changed"], r["again"]["silence_id"]) == (False, real["id"])


def test_a_silence_really_mutes_the_matching_alert(lab, ansible, release, fired_alerts):
    sid = run_tasks(ansible, lab, [task("create", args(lab, release))])["create"]["silence_id"]
    ends = (datetime.now(timezone.utc) + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S.000Z")

    def alert(host: str) -> dict:
        return {"labels": {"alertname": "SreRolloutSilenceTest", "host": host, "instance": f"{host}:8080",
                           "severity": "page"},
                "annotations": {"summary": "fired by test_alertmanager_silence"}, "endsAt": ends}

    muted, loud = alert(release["host"]), alert(release["host"] + "-other")
    fired_alerts.extend([muted, loud])
    am_call(lab, "POST", "/alerts", body=[muted, loud])

    def seen(host: str, state: str) -> list[dict]:
        alerts = am_call(lab, "GET", "/alerts", query=[("filter", f'host="{host}"')])
        return [a for a in alerts if a["status"]["state"] == state]

    muted_seen = wait_for(lambda: seen(release["host"], "suppressed"))
    assert muted_seen, am_call(lab, "GET", "/alerts")
    assert muted_seen[0]["status"]["silencedBy"] == [sid]
    loud_seen = wait_for(lambda: seen(release["host"] + "-other", "active"))
    assert loud_seen and loud_seen[0]["status"]["silencedBy"] == []

    # lifting the silence brings the alert back
    r = run_tasks(ansible, lab, [task("lift", {"url": lab["alertmanager"]["url"], "state": "absent",
                                               "silence_id": sid})])
    assert r["lift"]["action"] == "expired"
    back = wait_for(lambda: seen(release["host"], "active"))
    assert back and back[0]["status"]["silencedBy"] == []


def test_from_a_play_delegated_to_localhost_per_host(lab, ansible, release):
    """How the release playbooks call it: one silence per lab host, on the controller."""
    hosts = [h["name"] for h in lab["hosts"][:2]]
    task_args = {
        "url": lab["alertmanager"]["url"],
        "matchers": ["instance=~{{ inventory_hostname }}.*", "host={{ inventory_hostname }}"],
        "release_id": release["id"],
        "comment": "release of app-1.1.0 onto {{ inventory_hostname }}",
        "duration": "5m",
    }
    play = [{"hosts": ",".join(hosts), "gather_facts": False, "tasks": [
        {"name": "silence", "sre.rollout.alertmanager_silence": task_args, "delegate_to": "localhost"},
        {"name": "silence again", "sre.rollout.alertmanager_silence": task_args, "delegate_to": "localhost"},
        {"name": "lift", "delegate_to": "localhost",
         "sre.rollout.alertmanager_silence": {"url": lab["alertmanager"]["url"], "state": "absent",
                                              "matchers": task_args["matchers"], "release_id": release["id"]}},
    ]}]
    run = ansible.playbook(play)
    assert run.rc == 0, run.stdout[-3000:]
    made = {r["_host"]: r for r in run.results(task="silence")}
    assert set(made) == set(hosts)
    for host, result in made.items():
        assert result["action"] == "created"
        assert {"name": "host", "value": host, "isRegex": False, "isEqual": True} in result["silence"]["matchers"]
        assert result["silence"]["comment"].endswith(f"release of app-1.1.0 onto {host}")
    assert all(r["changed"] is False for r in run.results(task="silence again"))
    lifted = {r["_host"]: r for r in run.results(task="lift")}
    assert {h: [s["id"] for s in r["expired"]] for h, r in lifted.items()} == \
        {h: [made[h]["silence_id"]] for h in hosts}
    assert live_silences(lab, release["id"]) == []


BAD_REQUESTS = {
    "too long": ({"duration": "48h"}, "longer than max_duration 24h"),
    "negative": ({"duration": "-5m"}, "must be positive"),
    "in the past": ({"duration": None, "ends_at": "2001-01-01T00:00:00Z"}, "is not in the future"),
    "mutes everything": ({"matchers": ["host=~.*"]}, "all match the empty string"),
    "not a matcher": ({"matchers": ["not a matcher"]}, "is not of the form name=value"),
    "both ends": ({"ends_at": "2030-01-01T00:00:00Z"}, "mutually exclusive"),
    "id with present": ({"silence_id": "00000000-0000-0000-0000-000000000000"}, "only selects what state=absent"),
}


def test_errors_are_clear_and_never_show_the_token(lab, ansible, release):
    down = f"http://127.0.0.1:{closed_port()}"
    token = "itest-s3cr3t-token"
    r = run_tasks(ansible, lab, [
        task("down", {"url": down, "matchers": [f"host={release['host']}"], "token": token}),
        # A lookahead: Python's re accepts it, Alertmanager's RE2 refuses the silence with HTTP 400.
        task("refused", args(lab, release, token=token,
                             matchers=[f"host={release['host']}", "instance=~(?=web)web01"])),
        *[task(name, args(lab, release, **extra)) for name, (extra, _unused) in BAD_REQUESTS.items()],
    ])
    assert r["down"]["failed"] and r["down"]["url"] == down
    assert f"cannot reach Alertmanager at {down}" in r["down"]["msg"] and "refused" in r["down"]["msg"].lower()

    refused = r["refused"]
    assert refused["failed"] and refused["status"] == 400
    assert f"Alertmanager at {lab['alertmanager']['url']} answered HTTP 400" in refused["msg"]
    assert "invalid regular expression" in refused["msg"] and "invalid regular expression" in refused["body"]

    for name, (_unused, fragment) in BAD_REQUESTS.items():
        assert r[name]["failed"] and fragment in r[name]["msg"], (name, r[name].get("msg"))
    assert token not in r["down"]["_stdout"] and token not in json.dumps(r["down"]["_events"])
    assert live_silences(lab, release["id"]) == []
