"""Observations of the lab that the release tests assert on."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import labkit


def release_id(tag: str) -> str:
    """A release id unique to this test process (two workers may release at the same second)."""
    return f"t-{tag}-{time.strftime('%H%M%S')}-{os.getpid()}"


def artifact_sha(lab: dict, artifact: str) -> str:
    """The sha256 of an artifact the lab built (``app-1.1.0``), from its bytes."""
    return hashlib.sha256((Path(lab["artifacts"]["dir"]) / f"{artifact}.tar.gz").read_bytes()).hexdigest()


def planned(ansible, lab: dict) -> dict:
    """The plan a release of the lab computes (same hosts, zones and order), to know who goes when."""
    return ansible.module("release_plan", {"hosts": [h["name"] for h in lab["hosts"]],
                                           "zones": {h["name"]: h["zone"] for h in lab["hosts"]},
                                           "order": "sorted"})["localhost"]["plan"]


def reset_lab() -> None:
    subprocess.run([sys.executable, str(labkit.REPO / "tests" / "lab" / "lab.py"), "reset"], check=True,
                   capture_output=True, env=labkit.ansible_env(), timeout=180)


def versions(lab: dict) -> dict[str, str]:
    out = {}
    for h in lab["hosts"]:
        with urllib.request.urlopen(h["url"] + "/version", timeout=5) as r:
            out[h["name"]] = json.loads(r.read())["version"]
    return out


def state(host: dict) -> dict:
    return json.loads((Path(host["root"]) / ".rollout" / "state.json").read_text())


def locks(lab: dict) -> dict[str, dict]:
    out = {}
    for h in lab["hosts"]:
        f = Path(h["root"]) / ".rollout" / "lock.json"
        if f.exists():
            out[h["name"]] = json.loads(f.read_text())
    return out


def staged(host: dict) -> list[str]:
    return sorted(p.name for p in (Path(host["root"]) / "releases").iterdir() if not p.name.startswith("."))


def active_silences(lab: dict) -> list[dict]:
    with labkit.monitoring_open(lab, "alertmanager", "/api/v2/silences", timeout=5) as r:
        return [s for s in json.loads(r.read()) if s["status"]["state"] != "expired"]


def haproxy_states(lab: dict) -> dict[str, str]:
    """Inventory name -> HAProxy status of its server (the production profile names servers otherwise)."""
    inventory_name = {server: name for name, server in (lab["haproxy"].get("servers") or {}).items()}
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(lab["haproxy"]["socket"])
        s.sendall(b"show stat\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    out = {}
    for line in data.decode().splitlines():
        f = line.split(",")
        if len(f) > 17 and f[0] == lab["haproxy"]["backend"] and f[1] not in ("FRONTEND", "BACKEND"):
            out[inventory_name.get(f[1], f[1])] = f[17]
    return out


def nginx_down_members(lab: dict) -> list[str]:
    """Addresses of the members the lab's nginx does not send to (Lua mode: not ready; reload mode: down)."""
    ng = lab["nginx"]
    if ng.get("mode") == "lua":
        with urllib.request.urlopen(f"{ng['admin_url']}/{ng['upstream']}", timeout=5) as r:
            rows = [line.split() for line in r.read().decode().splitlines() if line.strip()]
        return [row[1] for row in rows if row[2] != "ready" or row[3] == "0"]
    text = Path(ng["upstream_file"]).read_text()
    return [line.split()[1] for line in text.splitlines() if line.strip().startswith("server") and " down" in line]


def assert_all_serving(lab: dict) -> None:
    """Every host in every LB, nothing drained, no silence, no lock."""
    assert set(haproxy_states(lab).values()) == {"UP"}, haproxy_states(lab)
    assert nginx_down_members(lab) == []
    assert active_silences(lab) == [], active_silences(lab)
    assert locks(lab) == {}


def activations(host: dict, release_id: str) -> list[dict]:
    return [e for e in state(host)["history"]
            if e.get("release_id") == release_id and e.get("action") in ("activate", "rollback")]


def ledger(release_id: str) -> dict:
    return json.loads((labkit.REPO / ".rollout" / "ledger" / f"{release_id}.json").read_text())
