"""lb_member / lb_pool_info against the lab's real HAProxy and nginx, under load.

Every test is run for each kind of LB: HAProxy (runtime API), nginx in reload
mode (the lab's plain ``nginx-reload``, upstream file + reload) and nginx in lua
mode (the lab's ``nginx`` with the Lua balancer, no reload). The member under
test is web02; each test leaves every member enabled at weight 100 in HAProxy
and in the Lua balancer, and the nginx upstream file exactly as the lab wrote it
(fixture ``lb_restored``).
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from ansible_collections.sre.rollout.plugins.filter.lb import lb_lost_members
from ansible_collections.sre.rollout.plugins.module_utils._nginx import NginxInstance, connection_counts

pytestmark = [pytest.mark.lab, pytest.mark.profile("default")]  # the lab's default names and plain HTTP

BACKENDS = ["haproxy", "nginx", "nginx-lua"]
TARGET = "web02"


def lb_of(lab: dict, backend: str) -> dict:
    """The lab's LB behind a test's backend: nginx is the plain reload-mode nginx, nginx-lua the Lua one."""
    if backend == "haproxy":
        return lab["haproxy"]
    if backend == "nginx":
        return lab["nginx_reload"]
    if lab["nginx"].get("mode") != "lua":
        pytest.skip("the lab's nginx runs in reload mode (LAB_NGINX_MODE=reload): no Lua balancer to test")
    return lab["nginx"]


def lua_admin(lab: dict, member: str = "", **params) -> list[list[str]]:
    """The Lua balancer's admin API, read directly (rows: name address state weight in_flight)."""
    ng = lab["nginx"]
    url = f"{ng['admin_url']}/{ng['upstream']}" + (f"/{member}" if member else "")
    if params:
        url += "?" + "&".join(f"{k}={v}" for k, v in params.items())
    req = urllib.request.Request(url, method="POST" if params else "GET", data=b"" if params else None)
    with urllib.request.urlopen(req, timeout=5) as r:
        return [line.split() for line in r.read().decode().splitlines() if line.strip()]


# --------------------------------------------------------------------------- lab access (independent of the module)


def runtime_api(lab: dict, command: str) -> str:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(lab["haproxy"]["socket"])
        s.sendall(command.encode() + b"\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.decode()


def haproxy_servers(lab: dict) -> dict[str, dict[str, str]]:
    lines = runtime_api(lab, f"show stat {lab['haproxy']['backend']} 4 -1").splitlines()
    header = lines[0].lstrip("# ").split(",")
    return {row[1]: dict(zip(header, row)) for row in (line.split(",") for line in lines[1:] if line)}


def nginx_cmd(lab: dict, *args: str) -> subprocess.CompletedProcess:
    ng = lab["nginx_reload"]
    return subprocess.run([ng["binary"], "-p", ng["prefix"], "-c", ng["conf"], *args],
                          capture_output=True, text=True, timeout=30, check=False)


def host(lab: dict, name: str) -> dict:
    return next(h for h in lab["hosts"] if h["name"] == name)


def address(lab: dict, name: str) -> str:
    h = host(lab, name)
    return f"{h['address']}:{h['port']}"


def wait_until(what: str, predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture()
def lb_restored(lab):
    """Leave the LBs as the lab made them: all members ready at weight 100, the upstream file untouched."""
    upstream = Path(lab["nginx_reload"]["upstream_file"])
    original = upstream.read_text()
    yield
    backend = lab["haproxy"]["backend"]
    for h in lab["hosts"]:
        runtime_api(lab, f"set server {backend}/{h['name']} state ready")
        runtime_api(lab, f"set server {backend}/{h['name']} weight 100")
        if lab["nginx"].get("mode") == "lua":
            lua_admin(lab, h["name"], state="ready", weight=100)
    if upstream.read_text() != original:
        upstream.write_text(original)
        assert nginx_cmd(lab, "-s", "reload").returncode == 0
    wait_until("every HAProxy server UP", lambda: all(s["status"] == "UP" for s in haproxy_servers(lab).values()))


# --------------------------------------------------------------------------- running the modules


def lb_args(lab: dict, backend: str, member: str = TARGET) -> dict:
    if backend == "haproxy":
        return {"backend": "haproxy", "pool": lab["haproxy"]["backend"], "member": member,
                "endpoints": [lab["haproxy"]["socket"], f"tcp://{lab['haproxy']['admin_tcp']}"]}
    if backend == "nginx-lua":
        ng = lb_of(lab, backend)
        return {"backend": "nginx", "pool": ng["upstream"], "member": member, "health_uri": "/health",
                "nginx_mode": "lua", "endpoints": [ng["admin_url"]]}
    ng = lab["nginx_reload"]
    # the lab's upstream file has no "# name" comments: the member is found by its address
    return {"backend": "nginx", "pool": ng["upstream"], "member": member, "address": address(lab, member),
            "health_uri": "/health",
            "endpoints": [{"upstream_file": ng["upstream_file"], "conf": ng["conf"], "prefix": ng["prefix"],
                           "pidfile": ng["pidfile"], "binary": ng["binary"]}]}


def info_args(lab: dict, backend: str) -> dict:
    args = lb_args(lab, backend)
    return {k: v for k, v in args.items() if k not in ("member", "address")}


def play(ansible, lab: dict, tasks: list[dict], **kwargs):
    """Run tasks on the controller. The lab's group_vars need ``lab_dir``, which implicit localhost lacks."""
    run = ansible.playbook([{"name": "lb", "hosts": "localhost", "gather_facts": False, "tasks": tasks}],
                           extravars={"lab_dir": lab["lab_dir"]}, **kwargs)
    return run


def one(run, task: str) -> dict:
    results = run.results(task=task, host="localhost")
    assert len(results) == 1, f"task {task!r}: rc={run.rc}\n{run.stdout[-4000:]}"
    return results[0]


def is_failed(result: dict) -> bool:
    return bool(result.get("failed")) or result.get("_event") == "runner_on_failed"


def member_entry(pool: dict, lab: dict, name: str) -> dict:
    return next(m for m in pool["members"] if m["name"] in (name, address(lab, name)))


# --------------------------------------------------------------------------- slow requests


class SlowStream:
    """Slow requests (GET /?delay=<delay>) through the LB, one started every ``every`` seconds until stopped.

    With 6 members in round robin, every member always has one or two of them in flight, however long
    Ansible takes to reach the task under test. Each request records start, end, status and backend.
    """

    def __init__(self, url: str, delay: float = 3.0, every: float = 0.25) -> None:
        self.host, port = url.split("//")[1].split(":")
        self.port = int(port)
        self.delay = delay
        self.every = every
        self.results: list[dict] = []
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.threads: list[threading.Thread] = []
        self.starter = threading.Thread(target=self.start_requests, daemon=True)

    def __enter__(self) -> "SlowStream":
        self.starter.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.starter.join()
        for t in self.threads:
            t.join(timeout=60)

    def start_requests(self) -> None:
        while not self.stopped.wait(self.every):
            t = threading.Thread(target=self.one, daemon=True)
            t.start()
            self.threads.append(t)

    def one(self) -> None:
        record = {"t_start": time.time(), "status": None, "backend": None, "error": None}
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request("GET", f"/?delay={self.delay}", headers={"Connection": "close"})
            resp = conn.getresponse()
            resp.read()
            record.update(status=resp.status, backend=resp.getheader("X-Served-By"))
        except Exception as exc:  # noqa: BLE001 - a cut request is the data point
            record["error"] = type(exc).__name__
        finally:
            conn.close()
        record["t_end"] = time.time()
        with self.lock:
            self.results.append(record)


def fact_time(run, task: str) -> float:
    return float(one(run, task)["ansible_facts"]["t"])


def wait_target_in_flight(lab: dict, backend: str) -> None:
    """Precondition of the slow-request tests: the target really holds sessions before the drain starts.

    A member that a previous test left DOWN for a health check or two takes no traffic, and a drain of
    an idle member can neither time out nor show what it waited for.
    """
    if backend == "haproxy":
        wait_until(f"{TARGET} to hold a slow request",
                   lambda: int(haproxy_servers(lab)[TARGET]["scur"] or 0) >= 1)
    if backend == "nginx-lua":
        wait_until(f"{TARGET} to hold a slow request", lambda: int(lua_admin(lab, TARGET)[0][4]) >= 1)
    if backend == "nginx":  # the reload-mode nginx's workers hold a connection to the target
        ng, target = lab["nginx_reload"], address(lab, TARGET)
        instance = NginxInstance(upstream_file=ng["upstream_file"], pidfile=ng["pidfile"])
        wait_until(f"{TARGET} to hold a slow request",
                   lambda: (connection_counts(list(instance.workers()), [target])[target] or 0) >= 1)


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("backend", BACKENDS)
def test_drain_under_load_then_enable(lab, ansible, load, lb_restored, backend):
    args = lb_args(lab, backend)
    now = "{{ now().timestamp() }}"
    tasks = [
        {"name": "before", "sre.rollout.lb_pool_info": info_args(lab, backend), "register": "before"},
        {"name": "planned", "sre.rollout.lb_member": {**args, "state": "drained"}, "check_mode": True},
        {"name": "after check mode", "sre.rollout.lb_pool_info": info_args(lab, backend)},
        {"name": "drained", "sre.rollout.lb_member": {**args, "state": "drained", "drain_timeout": 30}},
        {"name": "t_drained", "ansible.builtin.set_fact": {"t": now}},
        {"name": "drained again", "sre.rollout.lb_member": {**args, "state": "drained"}},
        {"name": "during", "sre.rollout.lb_pool_info": info_args(lab, backend)},
        {"name": "out of traffic", "ansible.builtin.pause": {"seconds": 2}},
        {"name": "t_enable", "ansible.builtin.set_fact": {"t": now}},
        {"name": "enabled", "sre.rollout.lb_member": {**args, "state": "enabled", "wait_healthy": True,
                                                      "health_timeout": 20}},
        {"name": "t_enabled", "ansible.builtin.set_fact": {"t": now}},
        {"name": "back in traffic", "ansible.builtin.pause": {"seconds": 2}},
        {"name": "after", "sre.rollout.lb_pool_info": info_args(lab, backend)},
    ]
    # nginx's reload mode closes kept-alive client connections at each reload (its measured residual, see
    # test_reload_mode_batch_makes_one_reload_and_reports_its_residual): fresh connections only there
    share = 0.0 if backend == "nginx" else 0.5
    with load(lb_of(lab, backend)["url"], rate=40, events=True, keepalive_share=share) as run:
        result = play(ansible, lab, tasks)
    assert result.rc == 0, result.stdout[-4000:]
    summary = run.summary
    assert summary["requests"] > 100 and summary["errors"] == 0, summary
    if backend != "nginx":
        assert all(kind["requests"] > 40 and kind["errors"] == 0 for kind in summary["by_kind"].values()), \
            run.describe()

    planned = one(result, "planned")
    assert planned["changed"] and all(lb["state"] == "maint" for lb in planned["lbs"])
    assert all(member_entry(p, lab, TARGET)["ready"] for p in one(result, "after check mode")["pools"])

    drained = one(result, "drained")
    assert drained["changed"]
    transitions = [(lb["previous_state"], lb["state"]) for lb in drained["lbs"]]
    assert transitions == [("ready", "maint")] * len(args["endpoints"])
    assert one(result, "drained again")["changed"] is False

    before, during, after = (one(result, name) for name in ("before", "during", "after"))
    lost = lb_lost_members(before, during)
    assert {x["member"] for x in lost} in ({TARGET}, {address(lab, TARGET)})
    assert len(lost) == len(args["endpoints"])
    assert lb_lost_members(before, after) == []

    enabled = one(result, "enabled")
    assert enabled["changed"] and all((lb["state"], lb["health"]) == ("ready", "UP") for lb in enabled["lbs"])

    t_drained = float(one(result, "t_drained")["ansible_facts"]["t"])
    t_enable = float(one(result, "t_enable")["ansible_facts"]["t"])
    t_enabled = float(one(result, "t_enabled")["ansible_facts"]["t"])
    events = run.events()
    to_target = [e for e in events if e["backend"] == TARGET]
    assert [e for e in to_target if t_drained <= e["t_start"] <= t_enable] == [], "new requests while drained"
    assert len([e for e in events if t_drained <= e["t_start"] <= t_enable]) > 40, "the others served meanwhile"
    assert [e for e in to_target if e["t_start"] > t_enabled], "serves again once enabled"
    assert [e for e in to_target if e["t_end"] < t_drained], "served before the drain"


# The precondition matters in the whole suite: a member that an earlier test left out for a failed
# passive check (max_fails=1) takes no request for a moment, and a drain of an idle member proves nothing.
@pytest.mark.parametrize("backend", BACKENDS)
def test_in_flight_slow_requests_finish_before_maint(lab, ansible, lb_restored, backend):
    now = {"t": "{{ now().timestamp() }}"}
    with SlowStream(lb_of(lab, backend)["url"]) as slow:
        wait_target_in_flight(lab, backend)
        run = play(ansible, lab, [
            {"name": "drained", "sre.rollout.lb_member": {**lb_args(lab, backend), "state": "drained",
                                                          "drain_timeout": 30}},
            {"name": "returned", "ansible.builtin.set_fact": now},
        ])
    result = one(run, "drained")
    assert not is_failed(result), result
    assert all(lb["sessions_at_start"] >= 1 and lb["waited"] > 0 for lb in result["lbs"]), json.dumps(result["lbs"])
    assert [r for r in slow.results if r["status"] != 200] == [], "a slow request was dropped"
    served_by_target = [r for r in slow.results if r["backend"] == TARGET]
    assert served_by_target
    returned = fact_time(run, "returned")
    assert all(r["t_end"] <= returned for r in served_by_target), "the drain ended before a request did"


@pytest.mark.parametrize("backend", BACKENDS)
def test_drain_timeout_fails_and_restores_then_force_cuts(lab, ansible, lb_restored, backend):
    args = {**lb_args(lab, backend), "state": "drained", "drain_timeout": 0.5}
    now = {"t": "{{ now().timestamp() }}"}
    # 6 s requests: the target always holds several, so none of its drains can end by itself in 0.5 s
    # (with 3 s ones, a target just back from a failed check held one that ended in time: not forced)
    with SlowStream(lb_of(lab, backend)["url"], delay=6.0) as slow:
        wait_target_in_flight(lab, backend)
        run = play(ansible, lab, [
            {"name": "times out", "sre.rollout.lb_member": args, "ignore_errors": True},
            {"name": "after the failure", "sre.rollout.lb_pool_info": info_args(lab, backend)},
            {"name": "t_force", "ansible.builtin.set_fact": now},
            {"name": "forced", "sre.rollout.lb_member": {**args, "on_timeout": "force"}},
            {"name": "t_forced", "ansible.builtin.set_fact": now},
        ])
    t_force, t_forced = fact_time(run, "t_force"), fact_time(run, "t_forced")

    timed_out = one(run, "times out")
    assert is_failed(timed_out) and "drain_timeout=0.5" in timed_out["msg"] and "on_timeout=force" in timed_out["msg"]
    assert len(timed_out["restored"]) == len(args["endpoints"]) and "put back" in timed_out["msg"]
    assert all(member_entry(p, lab, TARGET)["state"] == "ready" for p in one(run, "after the failure")["pools"])
    assert [r for r in slow.results if r["t_end"] < t_force and r["status"] != 200] == [], \
        "the failed drain cut nothing"

    forced = one(run, "forced")
    assert not is_failed(forced), forced
    assert all(lb["forced"] and lb["state"] == "maint" for lb in forced["lbs"]), forced["lbs"]
    cut = [r for r in slow.results if r["status"] != 200]
    if backend == "nginx-lua":
        # nginx cannot cut one upstream's requests without a reload: the member is in maint, its requests run on
        assert cut == [], cut
        assert lua_admin(lab, TARGET)[0][2] == "maint"
        return
    assert cut and all(t_force <= r["t_end"] <= t_forced for r in cut), "force cut the requests in flight"
    if backend == "haproxy":
        # HAProxy cuts only the target's sessions (about 10 slow requests are in flight at any time)
        assert len(cut) <= max(lb["sessions_at_start"] for lb in forced["lbs"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_capacity_guard_refuses_and_names_the_ready_members(lab, ansible, lb_restored, backend):
    tasks = [
        {"name": "take web06 out", "sre.rollout.lb_member": {**lb_args(lab, backend, "web06"), "state": "disabled"}},
        {"name": "guarded", "sre.rollout.lb_member": {**lb_args(lab, backend), "state": "drained", "min_ready": 5},
         "ignore_errors": True},
        {"name": "guarded by percentage", "sre.rollout.lb_member": {**lb_args(lab, backend), "state": "disabled",
                                                                    "min_ready": "80%"}, "ignore_errors": True},
        {"name": "allowed", "sre.rollout.lb_member": {**lb_args(lab, backend), "state": "disabled", "min_ready": 4},
         "check_mode": True},
        {"name": "after", "sre.rollout.lb_pool_info": info_args(lab, backend)},
    ]
    run = play(ansible, lab, tasks)
    others = ["web01", "web03", "web04", "web05"]
    names = others if backend != "nginx" else [address(lab, n) for n in others]
    for task in ("guarded", "guarded by percentage"):
        refused = one(run, task)
        assert is_failed(refused) and "refusing" in refused["msg"], refused
        assert refused["ready_members"] == names and ", ".join(names) in refused["msg"]
    assert one(run, "allowed")["changed"] is True
    after = one(run, "after")
    assert all(member_entry(p, lab, TARGET)["ready"] for p in after["pools"])
    assert all(not member_entry(p, lab, "web06")["ready"] for p in after["pools"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_weight_and_warmup(lab, ansible, lb_restored, backend):
    heavy, light = ("50%", "10%") if backend == "haproxy" else (3, 2)
    expected = (50, 100) if backend == "haproxy" else (3, 3)
    tasks = [
        {"name": "weight", "sre.rollout.lb_member": {**lb_args(lab, backend), "state": "enabled", "weight": heavy}},
        {"name": "weight again", "sre.rollout.lb_member": {**lb_args(lab, backend), "state": "enabled",
                                                           "weight": heavy}},
        {"name": "disable", "sre.rollout.lb_member": {**lb_args(lab, backend), "state": "disabled"}},
        {"name": "warm", "sre.rollout.lb_member": {
            **lb_args(lab, backend), "state": "enabled", "wait_healthy": True,
            "warmup": [{"weight": light, "pause": 0.5}],
            **({} if backend == "haproxy" else {"weight": 3})}},
    ]
    run = play(ansible, lab, tasks)
    assert run.rc == 0, run.stdout[-4000:]
    assert [lb["weight"] for lb in one(run, "weight")["lbs"]][0] == expected[0]
    assert one(run, "weight again")["changed"] is False
    warm = one(run, "warm")
    assert warm["changed"] and warm["lbs"][0]["weight"] == expected[1] and warm["lbs"][0]["state"] == "ready"
    if backend == "haproxy":
        assert haproxy_servers(lab)[TARGET]["weight"] == "100"
    elif backend == "nginx-lua":
        assert lua_admin(lab, TARGET)[0][2:4] == ["ready", "3"]
    else:
        line = [x for x in Path(lab["nginx_reload"]["upstream_file"]).read_text().splitlines()
                if address(lab, TARGET) in x]
        assert line == [f"    server {address(lab, TARGET)} max_fails=1 fail_timeout=2s weight=3;"]


def test_haproxy_errors_touch_nothing(lab, ansible, lb_restored, tmp_path):
    base = lb_args(lab, "haproxy")
    tasks = [
        {"name": "one endpoint missing", "sre.rollout.lb_member": {
            **base, "endpoints": [lab["haproxy"]["socket"], str(tmp_path / "gone.sock")], "state": "disabled"},
         "ignore_errors": True},
        {"name": "unknown member", "sre.rollout.lb_member": {**base, "member": "web99", "state": "disabled"},
         "ignore_errors": True},
        {"name": "unknown pool", "sre.rollout.lb_member": {**base, "pool": "nope", "state": "disabled"},
         "ignore_errors": True},
    ]
    run = play(ansible, lab, tasks)
    missing = one(run, "one endpoint missing")
    assert is_failed(missing) and "gone.sock does not exist" in missing["msg"]
    unknown = one(run, "unknown member")
    assert is_failed(unknown) and "web99" in unknown["msg"]
    assert unknown["members"] == [h["name"] for h in lab["hosts"]]
    pool = one(run, "unknown pool")
    assert is_failed(pool) and "app" in pool["backends"]
    assert all(s["status"] == "UP" for s in haproxy_servers(lab).values())


def test_nginx_errors_touch_nothing_and_broken_config_is_restored(lab, ansible, lb_restored):
    base = lb_args(lab, "nginx")
    upstream = Path(lab["nginx_reload"]["upstream_file"])
    pristine = upstream.read_text()
    # someone left an invalid parameter on another line: nginx -t fails, the file is put back as it was
    broken = pristine.replace(f"{address(lab, 'web06')} max_fails=1",
                              f"{address(lab, 'web06')} bogus_param max_fails=1")
    tasks = [
        {"name": "one endpoint not running", "sre.rollout.lb_member": {
            **base, "endpoints": [base["endpoints"][0], {**base["endpoints"][0], "pidfile": "/nonexistent.pid"}],
            "state": "disabled"}, "ignore_errors": True},
        {"name": "unknown member", "sre.rollout.lb_member": {**base, "member": "web99", "address": None,
                                                             "state": "disabled"}, "ignore_errors": True},
        {"name": "untouched", "ansible.builtin.slurp": {"src": str(upstream)}},
        {"name": "break it", "ansible.builtin.copy": {"dest": str(upstream), "content": broken}},
        {"name": "nginx -t fails", "sre.rollout.lb_member": {**base, "state": "disabled"}, "ignore_errors": True},
    ]
    run = play(ansible, lab, tasks)
    not_running = one(run, "one endpoint not running")
    assert is_failed(not_running) and "nginx pidfile /nonexistent.pid does not exist" in not_running["msg"]
    unknown = one(run, "unknown member")
    assert is_failed(unknown) and "web99" in unknown["msg"] and address(lab, "web06") in unknown["msg"]
    assert base64.b64decode(one(run, "untouched")["content"]).decode() == pristine

    result = one(run, "nginx -t fails")
    assert is_failed(result) and "nginx -t rejected the configuration" in result["msg"]
    assert "[emerg]" in result["msg"] and "bogus_param" in result["msg"] and result["restored"] is True
    assert upstream.read_text() == broken
    assert nginx_cmd(lab, "-t").returncode != 0  # still broken on disk, as the user left it...
    conn = http.client.HTTPConnection("127.0.0.1", int(lab["nginx_reload"]["url"].rsplit(":", 1)[1]), timeout=5)
    try:
        conn.request("GET", "/")
        assert conn.getresponse().status == 200  # ...and nginx still serves with the previous configuration
    finally:
        conn.close()


def test_nginx_lua_errors_touch_nothing(lab, ansible, lb_restored):
    base = lb_args(lab, "nginx-lua")
    tasks = [
        {"name": "admin API unreachable", "sre.rollout.lb_member": {
            **base, "endpoints": [base["endpoints"][0], "http://127.0.0.1:9/sre-rollout"], "state": "disabled"},
         "ignore_errors": True},
        {"name": "unknown member", "sre.rollout.lb_member": {**base, "member": "web99", "state": "disabled"},
         "ignore_errors": True},
        {"name": "unknown pool", "sre.rollout.lb_member": {**base, "pool": "nope", "state": "disabled"},
         "ignore_errors": True},
        {"name": "no admin_url", "sre.rollout.lb_member": {**base, "endpoints": [{"mode": "lua"}],
                                                           "state": "disabled"}, "ignore_errors": True},
    ]
    run = play(ansible, lab, tasks)
    unreachable = one(run, "admin API unreachable")
    assert is_failed(unreachable) and "cannot reach the nginx admin API at http://127.0.0.1:9" in unreachable["msg"]
    unknown = one(run, "unknown member")
    assert is_failed(unknown) and "web99" in unknown["msg"] and "web06 (" in unknown["msg"]
    pool = one(run, "unknown pool")
    assert is_failed(pool) and "answered 404" in pool["msg"] and "no pool nope" in pool["msg"]
    assert is_failed(one(run, "no admin_url")) and "needs admin_url" in one(run, "no admin_url")["msg"]
    assert {row[2] for row in lua_admin(lab)} == {"ready"}  # nothing was touched


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_of_members_drained_and_enabled_together(lab, ansible, lb_restored, backend):
    """Two members in one task: one capacity check for both, one drain; nginx's reload mode reloads once."""
    args = lb_args(lab, backend)
    args.pop("member"), args.pop("address", None)
    names = ["web01", TARGET] if backend != "nginx" else [address(lab, "web01"), address(lab, TARGET)]
    tasks = [
        {"name": "refused", "sre.rollout.lb_member": {**args, "members": names, "state": "drained", "min_ready": 5},
         "ignore_errors": True},
        {"name": "drained", "sre.rollout.lb_member": {**args, "members": names, "state": "drained", "min_ready": 4}},
        {"name": "during", "sre.rollout.lb_pool_info": info_args(lab, backend)},
        {"name": "enabled", "sre.rollout.lb_member": {**args, "members": names, "state": "enabled",
                                                      "wait_healthy": True, "health_timeout": 20}},
        {"name": "after", "sre.rollout.lb_pool_info": info_args(lab, backend)},
    ]
    run = play(ansible, lab, tasks)
    refused = one(run, "refused")
    assert is_failed(refused) and "refusing to take" in refused["msg"] and ", ".join(names) in refused["msg"]
    drained = one(run, "drained")
    assert not is_failed(drained), drained
    assert drained["members"] == names and drained["member"] is None
    assert sorted(lb["member"] for lb in drained["lbs"]) == sorted(
        [n for n in names for _endpoint in args["endpoints"]])
    assert all(lb["state"] == "maint" for lb in drained["lbs"])
    assert drained["reloads"] == (1 if backend == "nginx" else 0)
    during = one(run, "during")
    assert all(not member_entry(p, lab, n)["ready"] for p in during["pools"] for n in ("web01", TARGET))
    enabled = one(run, "enabled")
    assert enabled["changed"] and enabled["reloads"] == (1 if backend == "nginx" else 0)
    assert lb_lost_members(one(run, "during"), one(run, "after")) == []
    assert all(m["ready"] for p in one(run, "after")["pools"] for m in p["members"])


# --------------------------------------------------------------------------- the LB set, every LB in one call


def lab_set(lab: dict, member: str = TARGET) -> list[dict]:
    """The lab's LBs as one set, each naming the member its own way (HAProxy by name, nginx by address)."""
    ng = lb_of(lab, "nginx-lua")
    return [
        {"name": "haproxy", "kind": "haproxy", "endpoints": [lab["haproxy"]["socket"]],
         "pool": lab["haproxy"]["backend"], "member": member},
        {"name": "nginx", "kind": "nginx", "endpoints": [ng["admin_url"]], "pool": ng["upstream"],
         "member": address(lab, member), "health_uri": "/health", "options": {"mode": "lua"}},
    ]


def test_one_call_drains_every_lb_of_the_set_in_parallel_under_load(lab, ansible, lb_restored):
    """Slow requests through HAProxy and nginx at once: one lb_member call takes the member out of both at the
    same moment and waits for both; their drains overlap in time, and not one request is dropped."""
    lbs = lab_set(lab)
    with SlowStream(lab["haproxy"]["url"]) as via_haproxy, SlowStream(lb_of(lab, "nginx-lua")["url"]) as via_nginx:
        wait_target_in_flight(lab, "haproxy")
        wait_target_in_flight(lab, "nginx-lua")
        run = play(ansible, lab, [
            {"name": "drained", "sre.rollout.lb_member": {"lbs": lbs, "state": "drained", "drain_timeout": 30}},
            {"name": "out", "sre.rollout.lb_pool_info": {"lbs": lbs}},
            {"name": "enabled", "sre.rollout.lb_member": {"lbs": lbs, "state": "enabled", "wait_healthy": True,
                                                          "health_timeout": 30}},
            {"name": "back", "sre.rollout.lb_pool_info": {"lbs": lbs}},
        ])
    drained = one(run, "drained")
    assert not is_failed(drained), drained
    by = {lb["name"]: lb for lb in drained["lbs"]}
    assert set(by) == {"haproxy", "nginx"} and all(lb["state"] == "maint" for lb in by.values())
    print(json.dumps({"timeline": {name: [lb["taken_out_at"], lb["drained_at"]] for name, lb in by.items()}}))
    assert all(lb["sessions_at_start"] >= 1 for lb in by.values()), by  # both had work in flight
    h, n = by["haproxy"], by["nginx"]
    assert h["taken_out_at"] < n["drained_at"] and n["taken_out_at"] < h["drained_at"], \
        f"the drains did not overlap: {h['taken_out_at']}-{h['drained_at']} and {n['taken_out_at']}-{n['drained_at']}"
    assert abs(h["taken_out_at"] - n["taken_out_at"]) < 1.0  # taken out of both at once, not one after the other
    assert one(run, "out")["serving"] is False and one(run, "back")["serving"] is True
    enabled = one(run, "enabled")
    assert [lb["state"] for lb in enabled["lbs"]] == ["ready", "ready"], enabled
    for stream in (via_haproxy, via_nginx):
        assert [r for r in stream.results if r["status"] != 200] == [], "a slow request was dropped"
