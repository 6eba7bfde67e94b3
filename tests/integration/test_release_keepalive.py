"""A release and its rollback under constant load through HAProxy and nginx, half kept-alive, half fresh.

The judge of "no request dropped" for clients that keep their connections alive: 0 failed
requests of either client kind on either LB, with the lab's default nginx mode (the Lua
balancer, no reload). HAProxy's own retry and redispatch counters stay at 0 too, so no error
was hidden by a retry, and nginx never reloads (its workers are the same before and after).
"""

from __future__ import annotations

import json
import os
import socket

import pytest

import labkit
from release_checks import assert_all_serving, ledger, release_id, versions

pytestmark = [pytest.mark.lab, pytest.mark.profile("default")]  # the lab's default names and plain HTTP


def haproxy_backend_counters(lab: dict) -> dict[str, int]:
    """econ, eresp, wretr and wredis of the app backend (HAProxy's connect/response errors, retries, redispatches)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(lab["haproxy"]["socket"])
        s.sendall(b"show stat\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    lines = data.decode().splitlines()
    header = lines[0].lstrip("# ").split(",")
    for line in lines[1:]:
        row = dict(zip(header, line.split(",")))
        if row.get("pxname") == lab["haproxy"]["backend"] and row.get("svname") == "BACKEND":
            return {k: int(row[k] or 0) for k in ("econ", "eresp", "wretr", "wredis")}
    raise AssertionError(f"no BACKEND row for {lab['haproxy']['backend']} in show stat")


def nginx_workers(lab: dict) -> set[int]:
    master = int(open(lab["nginx"]["pidfile"]).read().split()[0])
    out = set()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                stat = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == master:
                out.add(int(pid))
    return out


def assert_no_failure(name: str, run: labkit.LoadRun) -> None:
    summary = run.summary
    print(f"{name}:\n{run.describe()}")
    assert set(summary["by_kind"]) == {"keepalive", "fresh"}
    for kind, counts in summary["by_kind"].items():
        assert counts["requests"] > 100, (name, kind, counts)
        assert counts["errors"] == 0 and not any(counts["failures"].values()), f"{name} {kind}:\n{run.describe()}"
    assert summary["by_kind"]["keepalive"]["reused_connections"] > summary["by_kind"]["keepalive"]["requests"] / 2


def test_release_and_rollback_drop_no_request_of_either_kind_on_either_lb(fresh, ansible):
    lab = fresh
    if lab["nginx"].get("mode") != "lua":
        pytest.skip("the lab's nginx runs in reload mode: kept-alive clients see its reloads (documented residual)")
    counters_before = haproxy_backend_counters(lab)
    workers_before = nginx_workers(lab)
    rid = release_id("keepalive")
    with labkit.LoadRun(lab["haproxy"]["url"], rate=30) as via_haproxy, \
            labkit.LoadRun(lab["nginx"]["url"], rate=30) as via_nginx:
        run = ansible.playbook("playbooks/release.yml",
                               extravars={"rollout_version": "1.1.0", "rollout_approval": "none",
                                          "rollout_release_id": rid})
        assert run.rc == 0, run.stdout[-3000:]
        assert set(versions(lab).values()) == {"1.1.0"}
        back = ansible.playbook("playbooks/rollback.yml", extravars={"rollout_approval": "none"})
        assert back.rc == 0, back.stdout[-3000:]
    assert ledger(rid)["result"] == "success"
    assert set(versions(lab).values()) == {"1.0.0"}
    assert_all_serving(lab)
    assert_no_failure("through HAProxy", via_haproxy)
    assert_no_failure("through nginx (lua mode)", via_nginx)
    # every host served through both LBs while the release ran
    for run_ in (via_haproxy, via_nginx):
        assert set(run_.summary["by_backend"]) == {h["name"] for h in lab["hosts"]}, run_.summary["by_backend"]
    counters_after = haproxy_backend_counters(lab)
    assert counters_after == counters_before, json.dumps({"before": counters_before, "after": counters_after})
    assert nginx_workers(lab) == workers_before, "nginx was reloaded during the release"


def test_release_through_nginx_reload_mode_reports_its_residual_per_kind(fresh, ansible):
    """The reload mode under the same judge: HAProxy and fresh connections lose nothing; kept-alive clients
    of the reloaded nginx lose at most one request each per reload, reported per kind.

    The release role drains and enables each host in its own lb_member task (every LB of the set in
    that one call); the nginx LB's ``batch_window`` makes the tasks of one batch step share one
    reload (group commit on the upstream file), so there is at most one reload per batch step.
    """
    lab = fresh
    ng = lab["nginx_reload"]
    lbs = [
        {"name": "haproxy", "kind": "haproxy", "endpoints": [lab["haproxy"]["socket"]],
         "pool": lab["haproxy"]["backend"], "member": "{{ inventory_hostname }}"},
        {"name": "nginx-reload", "kind": "nginx", "endpoints": [ng["endpoint"]], "pool": ng["upstream"],
         "member": "{{ ansible_host | default(inventory_hostname) }}:8080", "health_uri": "/health",
         "options": {"conf": ng["conf"], "prefix": ng["prefix"], "binary": ng["binary"], "pidfile": ng["pidfile"]}},
    ]
    clients = 8
    rid = release_id("reload-mode")
    with labkit.LoadRun(lab["haproxy"]["url"], rate=30) as via_haproxy, \
            labkit.LoadRun(ng["url"], rate=30, keepalive_clients=clients) as via_nginx:
        run = ansible.playbook("playbooks/release.yml",
                               extravars={"rollout_version": "1.1.0", "rollout_approval": "none",
                                          "rollout_release_id": rid, "rollout_lbs": lbs})
    assert run.rc == 0, run.stdout[-3000:]
    assert ledger(rid)["result"] == "success"
    steps = [r for task in ("Steps | Drain the host from every load balancer",
                            "Steps | Warm up and put the host back in every load balancer")
             for r in run.results(task=task)]
    reloads = sum(r["reloads"] for r in steps)
    hosts = len(lab["hosts"])
    plan = ledger(rid)["plan"]
    batch_steps = 2 * (len(plan["batches"]) + (1 if plan["canary"] else 0))  # a drain and an enable each
    keepalive, fresh_ = via_nginx.summary["by_kind"]["keepalive"], via_nginx.summary["by_kind"]["fresh"]
    print(json.dumps({"nginx_reload_mode": {"reloads": reloads, "host_steps": len(steps), "batch_steps": batch_steps,
                                            "keepalive": keepalive["failures"], "fresh": fresh_["failures"],
                                            "keepalive_requests": keepalive["requests"],
                                            "fresh_requests": fresh_["requests"]}}))
    print(f"through nginx (reload mode):\n{via_nginx.describe()}")
    assert len(steps) == 2 * hosts and all(r["reloads"] <= 1 for r in steps)
    assert 0 < reloads <= batch_steps < 2 * hosts  # at most one reload per batch step, fewer than one per host
    assert_no_failure("through HAProxy", via_haproxy)
    assert fresh_["requests"] > 100 and fresh_["errors"] == 0, via_nginx.describe()
    assert {k for k, v in keepalive["failures"].items() if v} <= {"reset", "closed"}, via_nginx.describe()
    assert keepalive["errors"] <= reloads * clients, via_nginx.describe()
