"""Benchmark: a release of the lab, against its floor and the classic pattern; prints one JSON document.

In one run, on one lab, under load through HAProxy and nginx (tests/lab/load.py, kept-alive and
fresh clients), three ways of taking every host from app-1.0.0 to app-1.1.0, the lab reset between:

- ``floor``: the same steps done directly from Python, host by host in the release's own batches,
  the hosts of a batch in parallel: drain from both LBs until 0 sessions → maint, 1 s quiet, stop,
  switch ``current``, start, 2 healthy answers 0.5 s apart, 50% weight for 0.5 s, ready, wait UP.
  The artifact is unpacked beforehand (the release stages it in preflight, outside the hot window).
- ``ours``: ``playbooks/release.yml`` (canary soak ``--soak`` seconds, reported and left out of the
  ratios).
- ``classic``: the usual playbook: ``serial`` batches of the same sizes, community.general's
  ``haproxy`` module (from the ``ansible`` package on PyPI, in a venv of the benchmark's own,
  ``.venv-bench``, built on first use with the pip the machine has), ``unarchive`` of the artifact,
  a symlink, the start/stop scripts and ``uri`` (nginx admin API, health).

Reported: wall time, the hot window (first drain to last enable) and per-batch times (ours and
classic from the release_report timeline, the floor from its own clock), the ratios ours/floor and
ours/classic (of the hot window without the canary soak), controller CPU seconds per host swap
(RUSAGE_CHILDREN of the ansible-playbook run; the floor: its own process), and failed requests per
LB and client kind.

Run: .venv/bin/python tests/bench/bench_release.py [--hosts 16|64] [--quick]
With LAB_DIR pointing at a running lab, that lab is used as it is (its size, not --hosts);
otherwise the benchmark starts its own lab (.lab-bench-<hosts>, LAB_NET default 14) and stops it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
LAB_PY = REPO / "tests" / "lab" / "lab.py"
BENCH_VENV = REPO / ".venv-bench"
ANSIBLE_REQ = "ansible>=11,<12"  # ansible 11 ships ansible-core 2.18, the release's own core
FROM, TO = "app-1.0.0", "app-1.1.0"
DRAIN_TASK = "Steps | Drain the host from every load balancer"
ENABLE_TASK = "Steps | Warm up and put the host back in every load balancer"
C_DRAIN, C_ENABLE = "Classic | Drain from HAProxy", "Classic | Full weight in HAProxy, wait UP"


def log(msg: str) -> None:
    print(f"bench_release: {msg}", file=sys.stderr, flush=True)


def cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def lab_cmd(command: str, env: dict) -> None:
    r = subprocess.run([sys.executable, str(LAB_PY), command], env=env, capture_output=True, text=True,
                       check=False, timeout=900)
    if r.returncode != 0:
        raise SystemExit(f"lab.py {command} failed: {r.stderr[-2000:]}{r.stdout[-2000:]}")


# --------------------------------------------------------------------------- LB clients

def haproxy(lab: dict, cmd: str) -> str:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(lab["haproxy"]["socket"])
        s.sendall(cmd.encode() + b"\n")
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out.decode()


def haproxy_row(lab: dict, name: str) -> dict:
    lines = haproxy(lab, "show stat").splitlines()
    header = lines[0].lstrip("# ").split(",")
    for line in lines[1:]:
        row = dict(zip(header, line.split(",")))
        if row.get("pxname") == lab["haproxy"]["backend"] and row.get("svname") == name:
            return row
    raise RuntimeError(f"no server {name} in HAProxy")


def nginx(lab: dict, name: str = "", **params: str) -> str:
    url = f"{lab['nginx']['admin_url']}/{lab['nginx']['upstream']}" + (f"/{name}" if name else "")
    if params:
        url += "?" + "&".join(f"{k}={v}" for k, v in params.items())
    req = urllib.request.Request(url, method="POST" if params else "GET", data=b"" if params else None)
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.read().decode()


def nginx_in_flight(lab: dict, name: str) -> int:
    for line in nginx(lab).splitlines():
        f = line.split()
        if f and f[0] == name:
            return int(f[4])
    raise RuntimeError(f"no member {name} in nginx")


def until(check, timeout: float = 60, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        time.sleep(interval)


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


# --------------------------------------------------------------------------- floor

def floor_swap(lab: dict, host: dict, marks: dict) -> None:
    name, root = host["name"], Path(host["root"])
    be = lab["haproxy"]["backend"]
    marks["drain"] = time.time()
    haproxy(lab, f"set server {be}/{name} state drain")
    nginx(lab, name, state="drain")
    until(lambda: int(haproxy_row(lab, name)["scur"] or 0) == 0 and nginx_in_flight(lab, name) == 0)
    haproxy(lab, f"set server {be}/{name} state maint")
    nginx(lab, name, state="maint")
    time.sleep(1.0)
    subprocess.run([str(root / "current" / "bin" / "stop"), "10"], capture_output=True, check=True)
    tmp = root / "current.bench-tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(f"releases/{TO}")
    os.replace(tmp, root / "current")
    subprocess.run([str(root / "current" / "bin" / "start")], capture_output=True, check=True)
    until(lambda: healthy(host["url"] + "/health"), 30)
    time.sleep(0.5)
    until(lambda: healthy(host["url"] + "/health"), 30)
    haproxy(lab, f"set weight {be}/{name} 50")
    haproxy(lab, f"set server {be}/{name} state ready")
    nginx(lab, name, state="ready", weight="50")
    time.sleep(0.5)
    haproxy(lab, f"set weight {be}/{name} 100")
    nginx(lab, name, weight="100")
    until(lambda: haproxy_row(lab, name)["status"] == "UP", 30)
    marks["enabled"] = time.time()


def run_floor(lab: dict, batches: list[list[str]]) -> dict:
    by_name = {h["name"]: h for h in lab["hosts"]}
    with tarfile.open(Path(lab["artifacts"]["dir"]) / f"{TO}.tar.gz") as tar:  # staged, as preflight does
        for h in lab["hosts"]:
            rel = Path(h["root"]) / "releases" / TO
            shutil.rmtree(rel, ignore_errors=True)
            rel.mkdir(parents=True)
            tar.extractall(rel, filter="tar") if hasattr(tarfile, "data_filter") else tar.extractall(rel)
    cpu0, t0 = cpu_self() + cpu_children(), time.time()
    out = []
    for number, names in enumerate(batches, start=1):
        marks = {n: {} for n in names}
        errors: list[BaseException] = []

        def one(n: str) -> None:
            try:
                floor_swap(lab, by_name[n], marks[n])
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
        threads = [threading.Thread(target=one, args=(n,)) for n in names]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise RuntimeError(f"floor batch {number}: {errors[0]!r}")
        start = min(m["drain"] for m in marks.values())
        end = max(m["enabled"] for m in marks.values())
        out.append({"batch": number, "hosts": names, "t_start": start, "t_end": end})
    wall = time.time() - t0
    swaps = sum(len(b) for b in batches)
    return {"wall_s": round(wall, 2), "swaps": swaps, **windows(out),
            "cpu_s_per_swap": round((cpu_self() + cpu_children() - cpu0) / swaps, 3),
            "cpu_what": "the benchmark process itself and its stop/start scripts"}


# --------------------------------------------------------------------------- timelines

def windows(batches: list[dict]) -> dict:
    """Hot window and per-batch times from [{batch, hosts, t_start (first drain), t_end (last enable)}]."""
    if not batches:
        return {"hot_window_s": None, "batches": []}
    return {"hot_window_s": round(max(b["t_end"] for b in batches) - min(b["t_start"] for b in batches), 2),
            "batches": [{"batch": b["batch"], "hosts": len(b["hosts"]), "seconds": round(b["t_end"] - b["t_start"], 2)}
                        for b in batches]}


def timeline_batches(timeline: dict, drain: str, enable: str) -> list[dict]:
    """Swap batches from a release_report timeline: per (play, batch), first drain → last enable."""
    groups: dict[tuple, dict] = {}
    for e in timeline["events"]:
        if e["task"] not in (drain, enable) or e["status"] not in ("ok", "changed"):
            continue
        g = groups.setdefault((e["run"], e["play"], e["batch"]), {"hosts": [], "t_start": None, "t_end": None})
        if e["task"] == drain:
            if e["host"] not in g["hosts"]:
                g["hosts"].append(e["host"])
            g["t_start"] = e["t_start"] if g["t_start"] is None else min(g["t_start"], e["t_start"])
        else:
            g["t_end"] = e["t_end"] if g["t_end"] is None else max(g["t_end"], e["t_end"])
    ordered = sorted((g for g in groups.values() if g["t_start"] and g["t_end"]), key=lambda g: g["t_start"])
    return [dict(g, batch=i) for i, g in enumerate(ordered, start=1)]


def run_playbook(cmd: list[str], env: dict, timeout: int) -> tuple[subprocess.CompletedProcess, float, float]:
    cpu0, t0 = cpu_children(), time.time()
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    return r, time.time() - t0, cpu_children() - cpu0


def run_ours(lab: dict, state: Path, soak: int, timeout: int) -> tuple[dict, list[list[str]]]:
    import labkit

    rid = f"bench-ours-{time.strftime('%H%M%S')}-{os.getpid()}"
    extra = {"rollout_version": "1.1.0", "rollout_approval": "none", "rollout_release_id": rid,
             "rollout_canary_soak": soak, "rollout_state_dir": str(state)}
    cmd = labkit.ansible_playbook_cmd("playbooks/release.yml", "-e", json.dumps(extra))
    r, wall, cpu = run_playbook(cmd, labkit.ansible_env(), timeout)
    if r.returncode != 0:
        raise RuntimeError(f"release.yml failed ({r.returncode}):\n{r.stdout[-3000:]}")
    timeline = json.loads((state / "reports" / rid / "timeline.json").read_text())
    batches = timeline_batches(timeline, DRAIN_TASK, ENABLE_TASK)
    swaps = sum(len(b["hosts"]) for b in batches)
    w = windows(batches)
    out = {"wall_s": round(wall, 2), "swaps": swaps, **w, "canary_soak_s": soak,
           "hot_window_without_soak_s": round(w["hot_window_s"] - soak, 2),
           "cpu_s_per_swap": round(cpu / swaps, 3), "result": timeline["result"]}
    return out, [b["hosts"] for b in batches]


# --------------------------------------------------------------------------- classic

CLASSIC_PLAY = """\
- name: Classic rolling release
  hosts: "{{ classic_hosts }}"
  serial: "{{ classic_serial }}"
  gather_facts: false
  vars:
    root: "{{ lab.lab_dir }}/hosts/{{ inventory_hostname }}"
    admin: "{{ lab.nginx.admin_url }}/{{ lab.nginx.upstream }}/{{ inventory_hostname }}"
  tasks:
    - name: Classic | Drain from nginx
      ansible.builtin.uri: {url: "{{ admin }}?state=drain", method: POST}
      delegate_to: localhost
    - name: Classic | Drain from HAProxy
      community.general.haproxy:
        state: disabled
        drain: true
        host: "{{ inventory_hostname }}"
        backend: "{{ lab.haproxy.backend }}"
        socket: "{{ lab.haproxy.socket }}"
        wait_interval: 1
        wait_retries: 60
      delegate_to: localhost
    - name: Classic | Out of nginx
      ansible.builtin.uri: {url: "{{ admin }}?state=maint", method: POST}
      delegate_to: localhost
    - name: Classic | Quiet
      ansible.builtin.pause: {seconds: 1}
    - name: Classic | Stop
      ansible.builtin.command: "{{ root }}/current/bin/stop 10"
      changed_when: true
    - name: Classic | Release directory
      ansible.builtin.file: {path: "{{ root }}/releases/app-1.1.0", state: directory, mode: "0755"}
    - name: Classic | Unpack the artifact
      ansible.builtin.unarchive:
        src: "{{ lab.artifacts.url }}/app-1.1.0.tar.gz"
        dest: "{{ root }}/releases/app-1.1.0"
        remote_src: true
    - name: Classic | Switch current
      ansible.builtin.file: {src: releases/app-1.1.0, dest: "{{ root }}/current", state: link, force: true}
    - name: Classic | Start
      ansible.builtin.command: "{{ root }}/current/bin/start"
      changed_when: true
    - name: Classic | Healthy
      ansible.builtin.uri: {url: "http://{{ ansible_host }}:8080/health"}
      register: health
      until: health.status == 200
      retries: 60
      delay: 0.5
      delegate_to: localhost
    - name: Classic | Healthy again
      ansible.builtin.uri: {url: "http://{{ ansible_host }}:8080/health"}
      delegate_to: localhost
    - name: Classic | Half weight in HAProxy
      community.general.haproxy:
        state: enabled
        weight: "50"
        host: "{{ inventory_hostname }}"
        backend: "{{ lab.haproxy.backend }}"
        socket: "{{ lab.haproxy.socket }}"
      delegate_to: localhost
    - name: Classic | Half weight in nginx
      ansible.builtin.uri: {url: "{{ admin }}?state=ready&weight=50", method: POST}
      delegate_to: localhost
    - name: Classic | Warm
      ansible.builtin.pause: {seconds: 0.5}
    - name: Classic | Full weight in nginx
      ansible.builtin.uri: {url: "{{ admin }}?weight=100", method: POST}
      delegate_to: localhost
    - name: Classic | Full weight in HAProxy, wait UP
      community.general.haproxy:
        state: enabled
        weight: "100"
        wait: true
        wait_interval: 1
        wait_retries: 30
        host: "{{ inventory_hostname }}"
        backend: "{{ lab.haproxy.backend }}"
        socket: "{{ lab.haproxy.socket }}"
      delegate_to: localhost
"""


def bench_venv() -> tuple[Path | None, str]:
    """.venv-bench with the ansible package (community.general); (its ansible-playbook, '') or (None, why)."""
    playbook = BENCH_VENV / "bin" / "ansible-playbook"
    marker = BENCH_VENV / ".installed"
    if marker.exists() and playbook.exists():
        return playbook, ""
    log(f"building {BENCH_VENV} ({ANSIBLE_REQ}, once)")
    shutil.rmtree(BENCH_VENV, ignore_errors=True)
    steps = [[sys.executable, "-m", "venv", str(BENCH_VENV)],
             [str(BENCH_VENV / "bin" / "python"), "-m", "pip", "install", "-q", ANSIBLE_REQ]]
    for step in steps:
        r = subprocess.run(step, capture_output=True, text=True, check=False, timeout=1200)
        if r.returncode != 0:
            return None, f"{' '.join(step[-2:])} failed: {(r.stderr or r.stdout).strip()[-500:]}"
    marker.write_text(ANSIBLE_REQ + "\n")
    return playbook, ""


def run_classic(lab: dict, playbook_bin: Path, state: Path, batches: list[list[str]], timeout: int) -> dict:
    import labkit

    rid = f"bench-classic-{time.strftime('%H%M%S')}-{os.getpid()}"
    play = state / "classic.yml"
    play.write_text(CLASSIC_PLAY)
    extra = {"classic_hosts": ",".join(h for b in batches for h in b), "classic_serial": [len(b) for b in batches],
             "rollout_release_id": rid, "rollout_state_dir": str(state)}
    cmd = [str(playbook_bin), "-i", str(REPO / "inventories" / "lab"), str(play),
           "-e", f"@{Path(lab['lab_dir']) / 'lab_vars.json'}", "-e", json.dumps(extra)]
    env = labkit.ansible_env({"PATH": f"{playbook_bin.parent}{os.pathsep}{os.environ.get('PATH', '')}"})
    r, wall, cpu = run_playbook(cmd, env, timeout)
    if r.returncode != 0:
        raise RuntimeError(f"classic playbook failed ({r.returncode}):\n{r.stdout[-3000:]}{r.stderr[-2000:]}")
    timeline = json.loads((state / "reports" / rid / "timeline.json").read_text())
    tb = timeline_batches(timeline, C_DRAIN, C_ENABLE)
    swaps = sum(len(b["hosts"]) for b in tb)
    version = subprocess.run([str(playbook_bin.parent / "ansible"), "--version"], capture_output=True, text=True,
                             check=False).stdout.splitlines()[0]
    return {"wall_s": round(wall, 2), "swaps": swaps, **windows(tb), "cpu_s_per_swap": round(cpu / swaps, 3),
            "ansible": version, "requirement": ANSIBLE_REQ}


# --------------------------------------------------------------------------- load

def under_load(lab: dict, rate: float, work):
    import labkit

    with labkit.LoadRun(lab["haproxy"]["url"], rate=rate) as via_haproxy, \
            labkit.LoadRun(lab["nginx"]["url"], rate=rate) as via_nginx:
        result = work()
    failed = {}
    for lb, run in (("haproxy", via_haproxy), ("nginx", via_nginx)):
        failed[lb] = {kind: {"requests": c["requests"], "failed": c["errors"],
                             "failures": {k: v for k, v in c["failures"].items() if v}}
                      for kind, c in run.summary.get("by_kind", {}).items()}
    result["failed_requests"] = failed
    return result


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=16)
    parser.add_argument("--soak", type=int, default=3, help="the release's canary soak in seconds (default 3)")
    parser.add_argument("--rate", type=float, default=30, help="requests per second through each LB")
    parser.add_argument("--quick", action="store_true",
                        help="a small lab (6 hosts, or the running LAB_DIR's): each of floor / ours / classic once")
    args = parser.parse_args()
    if args.quick:
        args.hosts, args.soak, args.rate = 6, 1, 20

    own_lab = True
    given = os.environ.get("LAB_DIR")
    if given and (Path(given) / "lab.json").exists() and (Path(given) / "run" / "haproxy.pid").exists():
        lab_dir, own_lab = Path(given).resolve(), False
    else:
        lab_dir = Path(given).resolve() if given else REPO / f".lab-bench-{args.hosts}"
    env = dict(os.environ, LAB_DIR=str(lab_dir), LAB_HOSTS=str(args.hosts),
               LAB_NET=os.environ.get("LAB_NET", "14"))
    if not own_lab:
        env.pop("LAB_HOSTS")
    os.environ["LAB_DIR"] = str(lab_dir)
    doc: dict = {"benchmark": "release", "quick": args.quick, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                 "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "system": platform.platform()},
                 "load_rate_per_lb": args.rate}
    timeout = 600 + 60 * args.hosts
    state = Path(tempfile.mkdtemp(prefix="bench-release-"))
    try:
        if own_lab:
            log(f"lab up: {args.hosts} hosts in {lab_dir}")
            lab_cmd("up", env)
        else:
            lab_cmd("reset", env)
        lab = json.loads((lab_dir / "lab.json").read_text())
        doc["hosts"] = len(lab["hosts"])
        if lab["nginx"].get("mode") != "lua":
            raise SystemExit("bench_release needs the lab's nginx in lua mode (LAB_NGINX_MODE=lua)")

        log("ours: playbooks/release.yml")
        ours_box: dict = {}

        def ours():
            ours_box["r"], ours_box["batches"] = run_ours(lab, state, args.soak, timeout)
            return ours_box["r"]
        doc["ours"] = under_load(lab, args.rate, ours)
        batches = ours_box["batches"]

        lab_cmd("reset", env)
        log("floor: the same steps directly")
        doc["floor"] = under_load(lab, args.rate, lambda: run_floor(lab, batches))

        playbook_bin, why = bench_venv()
        if playbook_bin is None:
            if not args.quick:
                raise SystemExit(f"the classic pattern needs {BENCH_VENV}: {why}")
            doc["classic"] = {"skipped": True, "why": why}
        else:
            lab_cmd("reset", env)
            log("classic: serial + community.general.haproxy + unarchive + uri")
            doc["classic"] = under_load(lab, args.rate, lambda: run_classic(lab, playbook_bin, state, batches, timeout))
        lab_cmd("reset", env)
    finally:
        if own_lab:
            lab_cmd("down", env)
        shutil.rmtree(state, ignore_errors=True)

    ours_hot = doc["ours"]["hot_window_without_soak_s"]
    doc["ratios"] = {"what": "hot window (first drain to last enable), ours without its canary soak",
                     "ours_over_floor": ratio(ours_hot, doc["floor"]["hot_window_s"]),
                     "ours_over_classic": ratio(ours_hot, doc["classic"].get("hot_window_s")),
                     "cpu_ours_over_classic": ratio(doc["ours"]["cpu_s_per_swap"],
                                                    doc["classic"].get("cpu_s_per_swap"))}
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
