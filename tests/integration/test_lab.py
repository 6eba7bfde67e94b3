"""The lab itself: it comes up, every part answers, it goes down cleanly, and the judge (load.py) judges."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import labkit

LAB_PY = labkit.REPO / "tests" / "lab" / "lab.py"


def get(url: str, timeout: float = 5.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read(), r.headers  # case-insensitive: HAProxy lowercases names


def runtime_api(address: str, command: str) -> str:
    if address.startswith("/"):
        s = socket.socket(socket.AF_UNIX)
        target: object = address
    else:
        host, port = address.rsplit(":", 1)
        s = socket.socket()
        target = (host, int(port))
    with s:
        s.settimeout(5)
        s.connect(target)
        s.sendall(command.encode() + b"\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.decode()


def server_states(lab: dict) -> dict[str, str]:
    out = {}
    for line in runtime_api(lab["haproxy"]["socket"], "show stat").splitlines():
        f = line.split(",")
        if len(f) > 17 and f[0] == lab["haproxy"]["backend"] and f[1] not in ("FRONTEND", "BACKEND"):
            out[f[1]] = f[17]
    return out


def wait(pred, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred():
                return True
        except OSError:
            pass
        time.sleep(0.3)
    return False


def test_every_host_runs_the_initial_version_and_is_healthy(lab):
    for h in lab["hosts"]:
        status, body, _unused = get(h["url"] + "/health")
        assert status == 200
        status, body, _unused = get(h["url"] + "/version")
        assert json.loads(body) == {"version": "1.0.0", "host": h["name"]}
        assert os.readlink(Path(h["root"]) / "current") == "releases/app-1.0.0"


def test_every_host_serves_through_haproxy_and_nginx(lab):
    names = {h["name"] for h in lab["hosts"]}
    assert set(server_states(lab).values()) == {"UP"}
    for lb in ("haproxy", "nginx"):
        seen = set()
        for _unused in range(len(names) * 4):
            status, _unused, headers = get(lab[lb]["url"] + "/")
            assert status == 200
            seen.add(headers["X-Served-By"])
        assert seen == names, f"{lb} did not spread requests over every host"


def test_runtime_api_answers_on_unix_socket_and_tcp(lab):
    for address in (lab["haproxy"]["socket"], lab["haproxy"]["admin_tcp"]):
        info = runtime_api(address, "show info")
        assert "Name: HAProxy" in info
        # admin level: a write command is accepted (setting the weight it already has)
        server = lab["haproxy"]["servers"]["web01"]  # HAProxy's own name (shop-a1 on the production profile)
        assert runtime_api(address, f"set server {lab['haproxy']['backend']}/{server} weight 100").strip() == ""


def test_haproxy_reload_keeps_runtime_state(lab):
    backend = lab["haproxy"]["backend"]
    server = lab["haproxy"]["servers"]["web02"]
    runtime_api(lab["haproxy"]["socket"], f"set server {backend}/{server} state maint")
    try:
        subprocess.run([sys.executable, str(LAB_PY), "haproxy-reload"], check=True, capture_output=True,
                       env=labkit.ansible_env())
        assert server_states(lab)[server] == "MAINT"
    finally:
        runtime_api(lab["haproxy"]["socket"], f"set server {backend}/{server} state ready")
        assert wait(lambda: server_states(lab)[server] == "UP")


def test_haproxy_exporter_and_prometheus_targets(lab):
    status, body, _unused = get(lab["haproxy"]["exporter"])
    assert status == 200 and b"haproxy_server_status" in body
    with labkit.monitoring_open(lab, "prometheus", "/api/v1/targets") as response:
        targets = json.loads(response.read())["data"]["activeTargets"]
    assert {t["labels"]["job"] for t in targets} == {"haproxy", "app"}
    assert len(targets) == len(lab["hosts"]) + 1
    assert all(t["health"] == "up" for t in targets), [(t["scrapeUrl"], t["lastError"]) for t in targets]
    # the app's series carry no host label of their own: Prometheus' instance label tells them apart,
    # named as lab.json's prometheus.instances says (the canary analysis selects on it)
    for metric in ("app_build_info", "process_resident_memory_bytes", "http_requests_total"):
        with labkit.monitoring_open(lab, "prometheus", "/api/v1/query?query=" + metric) as response:
            result = json.loads(response.read())["data"]["result"]
        assert {r["metric"]["instance"] for r in result} == set(lab["prometheus"]["instances"].values()), metric
        assert all("host" not in r["metric"] for r in result), metric


def test_alertmanager_answers_v2(lab):
    with labkit.monitoring_open(lab, "alertmanager", "/api/v2/status") as response:
        assert response.status == 200 and json.loads(response.read())["cluster"]["status"] == "disabled"


def test_artifact_checksums_verify(lab):
    status, sums, _unused = get(lab["artifacts"]["url"] + "/SHA256SUMS")
    entries = dict(reversed(line.split()) for line in sums.decode().splitlines())
    assert set(entries) == {"app-1.0.0.tar.gz", "app-1.1.0.tar.gz", "app-1.2.0-unhealthy.tar.gz",
                            "app-1.3.0-errors.tar.gz", "app-1.4.0-slowstart.tar.gz", "app-1.5.0-leak.tar.gz",
                            "app-1.6.0-cpuburn.tar.gz"}
    for name, digest in entries.items():
        status, data, _unused = get(f"{lab['artifacts']['url']}/{name}")
        assert hashlib.sha256(data).hexdigest() == digest, name


def test_ssh_reaches_every_host_with_the_lab_key(lab):
    for h in lab["hosts"]:
        r = subprocess.run(["ssh", "-p", str(lab["ssh"]["port"]), "-i", lab["ssh"]["key"],
                            "-o", f"UserKnownHostsFile={lab['ssh']['known_hosts']}",
                            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                            f"{lab['ssh']['user']}@{h['address']}", "readlink", f"{h['root']}/current"],
                           capture_output=True, text=True, timeout=30, check=False)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "releases/app-1.0.0"


def test_load_generator_counts_a_clean_run(lab):
    with labkit.LoadRun(lab["haproxy"]["url"], rate=30) as run:
        time.sleep(2)
    s = run.summary
    assert s["requests"] > 20 and s["errors"] == 0 and s["ok"] == s["requests"]
    assert set(s["by_backend"]) == {h["name"] for h in lab["hosts"]}


def test_load_generator_sees_a_killed_backend(lab):
    """The judge must see dropped requests: kill an app mid-run, load aimed straight at it."""
    h = lab["hosts"][-1]
    pidfile = Path(h["root"]) / "shared" / "run" / "app.pid"
    try:
        with labkit.LoadRun(h["url"], rate=30, path="/?delay=0.5") as run:
            time.sleep(1)
            os.kill(int(pidfile.read_text()), signal.SIGKILL)
            time.sleep(2)
        assert run.summary["conn_errors"] > 0
        assert run.summary["errors"] >= run.summary["conn_errors"]
    finally:
        subprocess.run([str(Path(h["root"]) / "current" / "bin" / "start")], check=True, capture_output=True)
        assert wait(lambda: get(h["url"] + "/health")[0] == 200)
        assert wait(lambda: server_states(lab)[lab["haproxy"]["servers"][h["name"]]] == "UP")


def test_load_generator_sees_a_reset_connection():
    """A server that accepts and then resets must count as a connection error, not as success."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    port = srv.getsockname()[1]
    stop = threading.Event()

    def serve():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _unused = srv.accept()
            except TimeoutError:
                continue
            conn.recv(1024)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            conn.close()  # linger 0: RST instead of FIN

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        out = subprocess.run([sys.executable, str(labkit.LOAD_PY), "--url", f"http://127.0.0.1:{port}/",
                              "--rate", "20", "--duration", "1"], capture_output=True, text=True, timeout=30, check=False)
    finally:
        stop.set()
        t.join()
        srv.close()
    s = json.loads(out.stdout)
    assert s["requests"] > 5 and s["ok"] == 0 and s["conn_errors"] == s["requests"]


def test_lab_up_from_nothing_and_down_leaves_nothing(tmp_path):
    """A second, small lab in a fresh directory: up, check, down, nothing left running."""
    env = dict(os.environ, LAB_DIR=str(tmp_path / "lab"), LAB_NET="19", LAB_HOSTS="2")
    up = subprocess.run([sys.executable, str(LAB_PY), "up"], env=env, capture_output=True, text=True, timeout=180, check=False)
    try:
        assert up.returncode == 0, up.stderr + up.stdout
        lab = json.loads((tmp_path / "lab" / "lab.json").read_text())
        assert [h["name"] for h in lab["hosts"]] == ["web01", "web02"]
        assert lab["hosts"][1]["address"] == "127.0.19.2"
        pids = [int(p.read_text()) for p in (tmp_path / "lab").rglob("*.pid")]
        assert len(pids) == 9  # sshd, haproxy, nginx (lua), nginx (reload mode), prometheus, alertmanager, artifacts, 2 apps
        again = subprocess.run([sys.executable, str(LAB_PY), "up"], env=env, capture_output=True, text=True,
                               timeout=180, check=False)
        assert again.returncode == 0 and "started" not in again.stdout  # idempotent

        # the lab keeps its own shape: another LAB_NET for a running lab is refused ...
        clash = subprocess.run([sys.executable, str(LAB_PY), "up"], env={**env, "LAB_NET": "18"},
                               capture_output=True, text=True, timeout=60, check=False)
        assert clash.returncode == 1 and "runs on 127.0.19.0/24" in clash.stderr and "LAB_NET=18" in clash.stderr
        # ... and with LAB_DIR alone, reset acts on the lab's own addresses (no LAB_NET default of 10)
        only_dir = {k: v for k, v in env.items() if k not in ("LAB_NET", "LAB_HOSTS")}
        reset = subprocess.run([sys.executable, str(LAB_PY), "reset"], env=only_dir, capture_output=True,
                               text=True, timeout=180, check=False)
        assert reset.returncode == 0, reset.stderr + reset.stdout
        upstream = (tmp_path / "lab" / "nginx" / "upstream_app.conf").read_text()
        assert "127.0.19.1:8080" in upstream and "127.0.10." not in upstream
        app_env = (tmp_path / "lab" / "hosts" / "web02" / "shared" / "app.env").read_text()
        assert "APP_HOST=127.0.19.2" in app_env
    finally:
        down = subprocess.run([sys.executable, str(LAB_PY), "down"], env=env, capture_output=True, text=True,
                              timeout=120, check=False)
    assert down.returncode == 0
    assert not [p for p in pids if labkit_alive(p)], "lab processes left running after down"
    again = subprocess.run([sys.executable, str(LAB_PY), "down"], env=env, capture_output=True, text=True, check=False)
    assert again.returncode == 0 and "0 process(es) stopped" in again.stdout


def labkit_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_lab_of_24_hosts_answers_ssh_on_every_host_and_goes_down_clean(tmp_path):
    """More hosts than one sshd can listen for (16 listen sockets): the lab runs an sshd per 16 hosts.

    Every host answers Ansible over ssh on its own address, and the fault gate still cuts off one host
    by its address (web20, served by the second sshd) while its neighbours answer.
    """
    lab_dir = tmp_path / "lab"
    net = os.environ.get("TEST_BIG_LAB_NET", "17")  # a net of its own, beside make test's labs
    env = dict(os.environ, LAB_DIR=str(lab_dir), LAB_NET=net, LAB_HOSTS="24")
    up = subprocess.run([sys.executable, str(LAB_PY), "up"], env=env, capture_output=True, text=True, timeout=300,
                        check=False)
    pids: list[int] = []
    try:
        assert up.returncode == 0, up.stderr + up.stdout
        pids = [int(p.read_text()) for p in lab_dir.rglob("*.pid")]
        assert sorted(p.name for p in (lab_dir / "run").glob("sshd*.pid")) == ["sshd-2.pid", "sshd.pid"]
        ansible = [str(labkit.VENV_BIN / "ansible"), "-i", str(labkit.REPO / "inventories" / "lab"),
                   "-e", f"@{lab_dir / 'lab_vars.json'}", "-m", "ansible.builtin.ping", "-o"]
        aenv = labkit.ansible_env({"LAB_DIR": str(lab_dir)})
        ping = subprocess.run([*ansible, "all"], env=aenv, cwd=labkit.REPO, capture_output=True, text=True,
                              timeout=300, check=False)
        assert ping.returncode == 0, ping.stdout[-3000:] + ping.stderr[-3000:]
        answered = sorted(line.split(" | ")[0] for line in ping.stdout.splitlines() if " | SUCCESS" in line)
        assert answered == [f"web{i:02d}" for i in range(1, 25)], ping.stdout[-3000:]

        (lab_dir / "faults" / f"127.0.{net}.20").write_text("unreachable\n")
        cut = subprocess.run([*ansible, "web19,web20,web21"], env=aenv, cwd=labkit.REPO, capture_output=True,
                             text=True, timeout=120, check=False)
        status = {line.split(" | ")[0]: line.split(" | ")[1].split()[0] for line in cut.stdout.splitlines()
                  if " | " in line}
        assert status == {"web19": "SUCCESS", "web20": "UNREACHABLE!:", "web21": "SUCCESS"}, cut.stdout[-3000:]
    finally:
        down = subprocess.run([sys.executable, str(LAB_PY), "down"], env=env, capture_output=True, text=True,
                              timeout=180, check=False)
    assert down.returncode == 0, down.stderr
    assert "stopped sshd-2" in down.stdout
    assert not [p for p in pids if labkit_alive(p)], "lab processes left running after down"
