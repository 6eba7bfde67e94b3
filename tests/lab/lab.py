"""The lab: real HAProxy, nginx, Prometheus, Alertmanager, sshd and app hosts on loopback.

    lab.py up       start whatever is not running (idempotent), write lab.json
    lab.py down     stop exactly the lab's processes, by their pidfiles
    lab.py status   what runs
    lab.py reset    every host back on app-1.0.0, enabled in both LBs, no silences
    lab.py haproxy-reload   reload HAProxy keeping runtime state (server-state-file)

Two nginx instances: `nginx`, the second LB of every release, in LAB_NGINX_MODE
(default `lua`: the reload-free Lua balancer of tests/lab/nginx/, members in a
shared dict changed through a loopback admin API; `reload`: a plain upstream
file, changed by edit + `nginx -t` + reload), and `nginx-reload`, a plain nginx
(no Lua module loaded) in reload mode, for the tests of that mode.

LAB_PROFILE=production shapes the lab like production: Alertmanager and Prometheus over HTTPS
(certificates of a CA the lab makes with the openssl CLI, $LAB_DIR/pki/ca.crt) with HTTP basic
auth (their --web.config.file; bcrypt hashes), the passwords in $LAB_DIR/secrets/ (mode 0600,
never printed); HAProxy's backend and servers and nginx's upstream named unlike the inventory
(backend be_shop, servers shop-a1..., upstream up_shop). lab.json records the profile and the
names; the lab inventory takes them from there. The default profile keeps plain HTTP and the
inventory's names (backend and upstream `app`, servers web01...).

Environment: LAB_DIR (default <repo>/.lab), LAB_NET (default 10: hosts on
127.0.<NET>.N, service ports 10000 + 100*NET + offset), LAB_HOSTS (default 6).
LAB_NET and LAB_HOSTS shape a new lab; a lab that exists keeps the shape recorded
in its lab.json (a running one refuses another), so `reset` or `down` with only
LAB_DIR set acts on that lab's own addresses.
Everything listens on loopback only. Nothing is ever killed by name.
"""

from __future__ import annotations

import base64
import getpass
import json
import secrets
import ssl
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
LAB = Path(os.environ.get("LAB_DIR") or REPO / ".lab").resolve()


def log(msg: str) -> None:
    print(f"lab: {msg}", flush=True)


def die(msg: str) -> None:
    print(f"lab: ERROR: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is not alive for our purposes
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except OSError:
        return False


def running(pidfile: Path) -> bool:
    return alive(read_pid(pidfile))


def _shape() -> tuple[int, int]:
    """(NET, number of hosts): recorded by an existing lab, else from LAB_NET / LAB_HOSTS."""
    wanted = (int(os.environ.get("LAB_NET") or 10), int(os.environ.get("LAB_HOSTS") or 6))
    try:
        recorded_json = json.loads((LAB / "lab.json").read_text())
        recorded = (int(recorded_json["net"]), len(recorded_json["hosts"]))
    except (OSError, ValueError, KeyError, TypeError):
        return wanted
    explicit = [(name, int(os.environ[name]), have) for name, have in (("LAB_NET", recorded[0]),
                ("LAB_HOSTS", recorded[1])) if os.environ.get(name)]
    clash = [f"{name}={value} (the lab has {have})" for name, value, have in explicit if value != have]
    if not clash:
        return recorded
    command = sys.argv[1] if len(sys.argv) > 1 else "status"
    if command != "up":
        return recorded  # stop, reset, inspect the lab that is there
    if any(running(p) for p in [*LAB.glob("run/*.pid"), *LAB.glob("hosts/*/shared/run/*.pid")]):
        print(f"lab: ERROR: the lab in {LAB} runs on 127.0.{recorded[0]}.0/24 with {recorded[1]} hosts; "
              f"{', '.join(clash)} needs `make lab-down` first, or another LAB_DIR", file=sys.stderr)
        sys.exit(1)
    return wanted


NET, NHOSTS = _shape()
BASE = 10000 + 100 * NET
APP_PORT = 8080
SSH_PORT = 2222
SSHD_MAX_LISTEN = 16  # OpenSSH's MAX_LISTEN_SOCKS: ListenAddress lines per sshd
MAX_HOSTS = 254  # one address each, 127.0.NET.1-254
ZONES = ("zone-a", "zone-b", "zone-c")
INITIAL = "app-1.0.0"
NGINX_MODES = ("lua", "reload")
PROFILES = ("default", "production")


def _profile() -> str:
    """LAB_PROFILE for a new lab; a lab that exists keeps the profile its lab.json records."""
    wanted = os.environ.get("LAB_PROFILE", "")
    recorded = ""
    try:
        recorded = json.loads((LAB / "lab.json").read_text()).get("profile", "default")
    except (OSError, ValueError, AttributeError):
        pass
    profile = wanted or recorded or "default"
    if profile not in PROFILES:
        die(f"LAB_PROFILE must be one of {', '.join(PROFILES)}, got {profile!r}")
    if recorded and wanted and wanted != recorded and any(
            running(p) for p in LAB.glob("run/*.pid")):
        die(f"the lab in {LAB} runs the {recorded} profile; `make lab-down` first to start it as {wanted}")
    return profile


PROFILE = _profile()
PRODUCTION = PROFILE == "production"
SCHEME = "https" if PRODUCTION else "http"
# The load balancers' own names for the pool and its members (production: not the inventory's).
BACKEND = "be_shop" if PRODUCTION else "app"
UPSTREAM = "up_shop" if PRODUCTION else "app"
PKI = LAB / "pki"
SECRETS = LAB / "secrets"
MONITORING_USERS = {"alertmanager": "rollout-am", "prometheus": "rollout-prom"}


def server_name(index: int, host_name: str) -> str:
    """HAProxy's name of the index-th host (1-based): the inventory name, or shop-a1... in production."""
    return f"shop-a{index}" if PRODUCTION else host_name


PORTS = {
    "haproxy_frontend": BASE + 80,
    "nginx": BASE + 81,
    "nginx_admin": BASE + 82,
    "nginx_reload": BASE + 83,
    "artifacts": BASE + 88,
    "prometheus": BASE + 90,
    "alertmanager": BASE + 93,
    "haproxy_admin": BASE + 99,
    "haproxy_exporter": BASE + 44,
}

RUN = LAB / "run"
LOGS = LAB / "logs"


# --------------------------------------------------------------------------- processes

def descendants(pid: int) -> list[int]:
    """Children of pid, recursively, found through /proc (by parent pid, never by name)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def stop_pidfile(pidfile: Path, what: str, grace: float = 10.0) -> bool:
    pid = read_pid(pidfile)
    if not alive(pid):
        pidfile.unlink(missing_ok=True)
        return False
    tree = [pid] + descendants(pid)
    for p in tree:
        try:
            os.kill(p, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p) for p in tree):
        time.sleep(0.1)
    for p in tree:
        if alive(p):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
    pidfile.unlink(missing_ok=True)
    log(f"stopped {what} (pid {pid})")
    return True


def spawn(name: str, cmd: list[str], cwd: Path | None = None) -> None:
    """Start a foreground-style server in its own session, recording its pid."""
    pidfile = RUN / f"{name}.pid"
    if running(pidfile):
        return
    logf = open(LOGS / f"{name}.log", "ab")
    proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            cwd=cwd, start_new_session=True)
    pidfile.write_text(f"{proc.pid}\n")
    log(f"started {name} (pid {proc.pid})")


def port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) != 0


def require_port(host: str, port: int, who: str) -> None:
    if not port_free(host, port):
        die(f"{host}:{port} is already in use by a process that is not this lab's {who}; "
            f"stop it or choose another LAB_NET (ports {BASE}..{BASE + 99})")


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)
    if r.returncode != 0:
        die(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip() or r.stdout.strip()}")
    return r


def which(*names: str) -> str:
    for n in names:
        for d in ("/usr/sbin", "/usr/bin", "/sbin", "/bin"):
            if os.access(f"{d}/{n}", os.X_OK):
                return f"{d}/{n}"
        found = shutil.which(n)
        if found:
            return found
    die(f"none of {names} is installed: run `make setup`")
    return ""


def monitoring_request(service: str, path: str, method: str = "GET") -> urllib.request.Request:
    """A request to the lab's Alertmanager / Prometheus, with the profile's credentials."""
    req = urllib.request.Request(monitoring_json(service)["url"] + path, method=method)
    if PRODUCTION:
        raw = f"{MONITORING_USERS[service]}:{password(service)}".encode()
        req.add_header("Authorization", "Basic " + base64.b64encode(raw).decode())
    return req


def tls_context() -> ssl.SSLContext | None:
    return ssl.create_default_context(cafile=str(PKI / "ca.crt")) if PRODUCTION else None


def http_get(url, timeout: float = 2.0) -> tuple[int, bytes]:
    """GET a URL or a Request (monitoring_request); the lab CA verifies https."""
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=tls_context()) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (OSError, urllib.error.URLError):
        return 0, b""


def wait_for(what: str, check, timeout: float = 60.0, interval: float = 0.3) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    die(f"timed out after {timeout:.0f}s waiting for {what}; logs are in {LOGS}")


# --------------------------------------------------------------------------- layout

def hosts() -> list[dict]:
    out = []
    for i in range(1, NHOSTS + 1):
        name = f"web{i:02d}"
        addr = f"127.0.{NET}.{i}"
        out.append({"name": name, "address": addr, "port": APP_PORT, "root": str(LAB / "hosts" / name),
                    "url": f"http://{addr}:{APP_PORT}", "zone": ZONES[(i - 1) % len(ZONES)],
                    "haproxy_server": server_name(i, name)})
    return out


def lab_json() -> dict:
    return {
        "lab_dir": str(LAB), "net": NET, "repo": str(REPO), "profile": PROFILE,
        "haproxy": {"url": f"http://127.0.0.1:{PORTS['haproxy_frontend']}",
                    "socket": str(LAB / "haproxy" / "admin.sock"),
                    "admin_tcp": f"127.0.0.1:{PORTS['haproxy_admin']}",
                    "exporter": f"http://127.0.0.1:{PORTS['haproxy_exporter']}/metrics",
                    "backend": BACKEND, "config": str(LAB / "haproxy" / "haproxy.cfg"),
                    "servers": {h["name"]: h["haproxy_server"] for h in hosts()},
                    "pidfile": str(RUN / "haproxy.pid"),
                    "state_file": str(LAB / "haproxy" / "server-state")},
        "nginx": nginx_json("nginx", NGINX_MODE),
        "nginx_reload": nginx_json("nginx-reload", "reload"),
        "prometheus": {**monitoring_json("prometheus"),
                       "instances": {h["name"]: metrics_instance(h) for h in hosts()}},
        "alertmanager": monitoring_json("alertmanager"),
        "artifacts": {"url": f"http://127.0.0.1:{PORTS['artifacts']}", "dir": str(LAB / "artifacts")},
        "ssh": {"port": SSH_PORT, "key": str(LAB / "ssh" / "id_ed25519"), "user": getpass.getuser(),
                "known_hosts": str(LAB / "ssh" / "known_hosts")},
        "cmdb": {"file": str(LAB / "cmdb.json")},
        "app": {"name": "app", "env": "lab", "initial": INITIAL},
        "hosts": hosts(),
    }


def monitoring_json(service: str) -> dict:
    """Where Alertmanager / Prometheus answer; in production also the CA and the credentials' location.

    The password is not in lab.json: ``password_file`` names the file (mode 0600) that holds it.
    """
    out = {"url": f"{SCHEME}://127.0.0.1:{PORTS[service]}"}
    if PRODUCTION:
        out.update({"ca_path": str(PKI / "ca.crt"), "username": MONITORING_USERS[service],
                    "password_file": str(SECRETS / f"{service}.password")})
    return out


def write_inventory_vars() -> None:
    """The lab description as static inventory vars.

    `$LAB_DIR/lab_vars.json` always (tests pass it with -e @file for any LAB_DIR), and
    `inventories/lab/group_vars/all/lab.json` for the default lab, so that a plain
    `ansible-playbook -i inventories/lab ...` finds it. Static vars, not a lookup in
    group_vars: Ansible would re-read and re-parse the file for every variable of every
    task on every host, which made each task two to three times slower.
    """
    data = json.dumps({"lab": lab_json()}, indent=2) + "\n"
    (LAB / "lab_vars.json").write_text(data)
    if LAB == (REPO / ".lab").resolve():
        target = REPO / "inventories" / "lab" / "group_vars" / "all" / "lab.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        tmp.write_text(data)
        os.replace(tmp, target)


def cmdb_json() -> dict:
    """The lab's CMDB: NetBox-shaped virtual machine records, one per host."""
    vms = []
    for i, h in enumerate(hosts(), start=1):
        vms.append({
            "id": i, "name": h["name"],
            "status": {"value": "active", "label": "Active"},
            "role": {"slug": "web", "name": "web"},
            "tags": [{"slug": "app-app", "name": "app-app"}],
            "site": {"slug": h["zone"], "name": h["zone"]},
            "tenant": None,
            "primary_ip4": {"address": f"{h['address']}/32"},
            "custom_fields": {"app": "app", "env": "lab", "zone": h["zone"]},
        })
    return {"virtual_machines": vms}


# --------------------------------------------------------------------------- components

def build_artifacts() -> None:
    out = LAB / "artifacts"
    run([sys.executable, str(HERE / "build_artifacts.py"), str(out)])


def artifact_sha(name: str) -> str:
    for line in (LAB / "artifacts" / "SHA256SUMS").read_text().splitlines():
        digest, fname = line.split()
        if fname == f"{name}.tar.gz":
            return digest
    die(f"{name} missing from SHA256SUMS")
    return ""


FAULTS = LAB / "faults"


def write_fault_gate(d: Path) -> Path:
    """The lab's sshd runs every session through this gate, so tests can make a host vanish or hang.

    ``$LAB_DIR/faults/<host address>`` holding ``unreachable`` makes every new ssh session to that
    address end with exit code 255, which Ansible reports as UNREACHABLE (as for a host whose network
    went away); holding ``hang``, sessions block while the file exists (a host that accepts the
    connection and never answers). No file: the command runs as sshd would run it. A persistent
    control connection does not bypass it: every Ansible task is a new session.
    """
    FAULTS.mkdir(parents=True, exist_ok=True)
    gate = d / "fault-gate"
    gate.write_text(f"""#!/bin/sh
# ForceCommand of the lab sshd (tests/lab/lab.py write_fault_gate).
set -- $SSH_CONNECTION
flag="{FAULTS}/$3"
if [ -e "$flag" ]; then
  case "$(cat "$flag" 2>/dev/null)" in
    hang) while [ -e "$flag" ]; do sleep 0.5; done; exit 255 ;;
    *) echo "lab fault: $3 is cut off" >&2; exit 255 ;;
  esac
fi
case "$SSH_ORIGINAL_COMMAND" in
  "") exec "${{SHELL:-/bin/sh}}" -l ;;
  internal-sftp) exec /usr/lib/openssh/sftp-server ;;
esac
exec "${{SHELL:-/bin/sh}}" -c "$SSH_ORIGINAL_COMMAND"
""")
    os.chmod(gate, 0o755)
    return gate


def setup_ssh() -> None:
    d = LAB / "ssh"
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    keygen = which("ssh-keygen")
    if not (d / "id_ed25519").exists():
        run([keygen, "-q", "-t", "ed25519", "-N", "", "-C", "sre-rollout-lab", "-f", str(d / "id_ed25519")])
    if not (d / "ssh_host_ed25519_key").exists():
        run([keygen, "-q", "-t", "ed25519", "-N", "", "-C", "sre-rollout-lab-host",
             "-f", str(d / "ssh_host_ed25519_key")])
    (d / "authorized_keys").write_text((d / "id_ed25519.pub").read_text())
    os.chmod(d / "authorized_keys", 0o600)
    hostkey = (d / "ssh_host_ed25519_key.pub").read_text().split()[:2]
    (d / "known_hosts").write_text("".join(f"[{h['address']}]:{SSH_PORT} {' '.join(hostkey)}\n" for h in hosts()))
    gate = write_fault_gate(d)
    for name, group in sshd_instances():
        listen = "".join(f"ListenAddress {h['address']}:{SSH_PORT}\n" for h in group)
        (d / sshd_config_name(name)).write_text(sshd_config(listen, gate, name))


def sshd_instances() -> list[tuple[str, list[dict]]]:
    """The lab's sshd instances and the hosts each listens for: at most SSHD_MAX_LISTEN hosts each.

    sshd accepts at most 16 listen sockets (MAX_LISTEN_SOCKS in OpenSSH), one per ListenAddress, so a
    lab of more hosts runs several sshd, each with its own config and pidfile: `sshd` for web01-web16,
    `sshd-2` for web17-web32, and so on. Each host keeps its own address on the ssh side, which the
    fault gate needs (it reads the address a session came in on from SSH_CONNECTION).
    """
    all_hosts = hosts()
    groups = [all_hosts[i:i + SSHD_MAX_LISTEN] for i in range(0, len(all_hosts), SSHD_MAX_LISTEN)]
    return [("sshd" if n == 0 else f"sshd-{n + 1}", group) for n, group in enumerate(groups)]


def sshd_config_name(name: str) -> str:
    return "sshd_config" if name == "sshd" else f"{name}_config"


def sshd_config(listen: str, gate: Path, name: str) -> str:
    d = LAB / "ssh"
    return f"""# lab sshd ({name}): loopback host addresses only, own keys, own authorized_keys
{listen}HostKey {d / 'ssh_host_ed25519_key'}
# Every session passes the lab's fault gate (see write_fault_gate): cut or hung on request.
ForceCommand {gate}
PidFile {RUN / f'{name}.pid'}
AuthorizedKeysFile {d / 'authorized_keys'}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowUsers {getpass.getuser()}
UsePAM no
StrictModes no
MaxStartups 200:30:400
MaxSessions 100
LogLevel ERROR
Subsystem sftp internal-sftp
# Bash runs ~/.bashrc for a command sent over ssh unless SHLVL says it is nested. The lab's
# hosts share the controller user's home, whose interactive set-up (pyenv init and the like)
# would then run before every Ansible task; a server's command shell does not do that.
SetEnv SHLVL=1
"""


def start_sshd() -> None:
    """Start every sshd instance that is not running (each daemonises and writes its own pidfile)."""
    sshd = which("sshd")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
    for name, group in sshd_instances():
        pidfile = RUN / f"{name}.pid"
        if running(pidfile):
            continue
        for h in group:
            require_port(h["address"], SSH_PORT, name)
        cfg = str(LAB / "ssh" / sshd_config_name(name))
        run([sshd, "-t", "-f", cfg])
        run([sshd, "-f", cfg, "-E", str(LOGS / f"{name}.log")])
        wait_for(name, lambda pidfile=pidfile, group=group: running(pidfile)
                 and all(not port_free(h["address"], SSH_PORT) for h in group), 15)
        log(f"started {name} (pid {read_pid(pidfile)}) for {group[0]['name']}..{group[-1]['name']}")


def write_state(root: Path, artifact: str, sha: str) -> None:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    state = {"version": 1, "current": artifact, "previous": None,
             "releases": {artifact: {"sha256": sha, "staged_at": now, "complete": True}},
             "history": [{"artifact": artifact, "action": "activate", "release_id": "lab-init",
                          "time": now, "outcome": "ok"}]}
    (root / ".rollout").mkdir(parents=True, exist_ok=True)
    tmp = root / ".rollout" / "state.json.tmp"
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(tmp, root / ".rollout" / "state.json")


def installed_sha(h: dict) -> str:
    marker = Path(h["root"]) / "releases" / INITIAL / ".rollout-complete"
    try:
        return json.loads(marker.read_text()).get("sha256", "")
    except (OSError, ValueError):
        return ""


def install_initial(h: dict) -> None:
    """Lay out a host's root on app-1.0.0 (what a first deploy would leave)."""
    root = Path(h["root"])
    rel = root / "releases" / INITIAL
    for sub in ("releases", "shared/run", "shared/logs", "backups"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    sha = artifact_sha(INITIAL)
    if installed_sha(h) != sha:  # missing, or built from an older tests/lab/app
        shutil.rmtree(rel, ignore_errors=True)
        rel.mkdir(parents=True)
        with tarfile.open(LAB / "artifacts" / f"{INITIAL}.tar.gz") as tar:
            tar.extractall(rel, filter="tar") if hasattr(tarfile, "data_filter") else tar.extractall(rel)
        (rel / ".rollout-complete").write_text(json.dumps({"sha256": sha}) + "\n")
    tmp = root / "current.lab-tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(f"releases/{INITIAL}")
    os.replace(tmp, root / "current")
    write_state(root, INITIAL, sha)


def app_env(h: dict) -> str:
    return f"APP_HOST={h['address']}\nAPP_PORT={h['port']}\nAPP_NAME={h['name']}\nAPP_ZONE={h['zone']}\n"


def write_app_env(h: dict) -> None:
    root = Path(h["root"])
    (root / "shared").mkdir(parents=True, exist_ok=True)
    (root / "shared" / "app.env").write_text(app_env(h))


def app_pidfile(h: dict) -> Path:
    return Path(h["root"]) / "shared" / "run" / "app.pid"


def start_app(h: dict) -> None:
    if running(app_pidfile(h)):
        return
    require_port(h["address"], h["port"], f"app on {h['name']}")
    run([str(Path(h["root"]) / "current" / "bin" / "start")])


def setup_hosts() -> None:
    for h in hosts():
        root = Path(h["root"])
        write_app_env(h)
        if not (root / "current").exists():
            install_initial(h)
        start_app(h)


def haproxy_cfg() -> str:
    servers = "".join(f"    server {h['haproxy_server']} {h['address']}:{h['port']} check\n" for h in hosts())
    hp = LAB / "haproxy"
    return f"""# lab HAProxy: everything on loopback
global
    pidfile {RUN / 'haproxy.pid'}
    stats socket {hp / 'admin.sock'} mode 600 level admin
    stats socket ipv4@{lab_json()['haproxy']['admin_tcp']} level admin
    stats timeout 30s
    server-state-file {hp / 'server-state'}

defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout queue 10s
    option redispatch
    retries 3
    load-server-state-from-file global

frontend fe_app
    bind 127.0.0.1:{PORTS['haproxy_frontend']}
    default_backend {BACKEND}

frontend fe_exporter
    bind 127.0.0.1:{PORTS['haproxy_exporter']}
    http-request use-service prometheus-exporter if {{ path /metrics }}

backend {BACKEND}
    balance roundrobin
    option httpchk GET /health
    http-check expect status 200
    default-server inter 1s fall 2 rise 2 weight 100
{servers}"""


def haproxy_cmd(sock_cmd: str) -> str:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(str(LAB / "haproxy" / "admin.sock"))
        s.sendall(sock_cmd.encode() + b"\n")
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
    return b"".join(chunks).decode()


def start_haproxy() -> None:
    hp = LAB / "haproxy"
    hp.mkdir(parents=True, exist_ok=True)
    cfg = hp / "haproxy.cfg"
    cfg.write_text(haproxy_cfg())
    if running(RUN / "haproxy.pid"):
        return
    # A fresh start begins from the configuration: a state file left by an earlier
    # lab would bring back its MAINT/DRAIN states (load-server-state-from-file).
    (hp / "server-state").unlink(missing_ok=True)
    for key in ("haproxy_frontend", "haproxy_exporter", "haproxy_admin"):
        require_port("127.0.0.1", PORTS[key], "haproxy")
    haproxy = which("haproxy")
    run([haproxy, "-c", "-q", "-f", str(cfg)])
    run([haproxy, "-D", "-f", str(cfg), "-p", str(RUN / "haproxy.pid")])
    wait_for("haproxy", lambda: running(RUN / "haproxy.pid") and (hp / "admin.sock").exists(), 15)
    log(f"started haproxy (pid {read_pid(RUN / 'haproxy.pid')})")


def haproxy_reload() -> None:
    """Reload HAProxy keeping runtime state (maint/drain/weight) via server-state-file."""
    hp = LAB / "haproxy"
    (hp / "server-state").write_text(haproxy_cmd("show servers state"))
    old = read_pid(RUN / "haproxy.pid")
    haproxy = which("haproxy")
    run([haproxy, "-c", "-q", "-f", str(hp / "haproxy.cfg")])
    run([haproxy, "-D", "-f", str(hp / "haproxy.cfg"), "-p", str(RUN / "haproxy.pid"), "-sf", str(old)])
    wait_for("the new haproxy", lambda: read_pid(RUN / "haproxy.pid") != old and running(RUN / "haproxy.pid"), 15)
    wait_for("the old haproxy to exit", lambda: not alive(old), 30)
    log(f"reloaded haproxy (pid {old} -> {read_pid(RUN / 'haproxy.pid')})")


def nginx_json(name: str, mode: str) -> dict:
    """One lab nginx: where it listens, its files, and the lb_member endpoint for its mode."""
    ng = LAB / name
    port = PORTS["nginx" if name == "nginx" else "nginx_reload"]
    out = {"name": name, "mode": mode, "url": f"http://127.0.0.1:{port}", "upstream": UPSTREAM,
           "upstream_file": str(ng / "upstream_app.conf"), "conf": str(ng / "nginx.conf"), "prefix": str(ng),
           "pidfile": str(ng / "nginx.pid"), "binary": which("nginx")}
    if mode == "lua":
        out["admin_url"] = f"http://127.0.0.1:{PORTS['nginx_admin']}/sre-rollout"
        out["members_file"] = str(ng / "members_app.txt")
        out["endpoint"] = {"mode": "lua", "admin_url": out["admin_url"]}
    else:
        # the tasks of one batch step (one per host) share one reload: see lb_member's batch_window
        out["endpoint"] = {"mode": "reload", "upstream_file": out["upstream_file"], "batch_window": 3}
    return out


def _nginx_mode() -> str:
    """LAB_NGINX_MODE for a new lab; a lab that exists keeps the mode its lab.json records."""
    wanted = os.environ.get("LAB_NGINX_MODE", "")
    recorded = ""
    try:
        recorded = json.loads((LAB / "lab.json").read_text())["nginx"].get("mode", "")
    except (OSError, ValueError, KeyError):
        pass
    mode = wanted or recorded or "lua"
    if mode not in NGINX_MODES:
        die(f"LAB_NGINX_MODE must be one of {', '.join(NGINX_MODES)}, got {mode!r}")
    if recorded and wanted and wanted != recorded and running(LAB / "nginx" / "nginx.pid"):
        die(f"the lab's nginx runs in {recorded} mode; `make lab-down` first to start it in {wanted} mode")
    return mode


NGINX_MODE = _nginx_mode()


def nginx_upstream() -> str:
    """The reload mode's upstream file: one server line per host, named by its address."""
    servers = "".join(f"    server {h['address']}:{h['port']} max_fails=1 fail_timeout=2s;\n" for h in hosts())
    return f"upstream {UPSTREAM} {{\n{servers}}}\n"


def nginx_members() -> str:
    """The Lua mode's member file: the seed of the shared dict, read when nginx starts or reloads."""
    return "".join(f"{h['name']} {h['address']}:{h['port']} weight=100\n" for h in hosts())


def nginx_conf(name: str, mode: str) -> str:
    """nginx.conf of one lab nginx.

    Judged path: no retry and no next upstream, so every failed request reaches the client and the
    load generator counts it. Client connections are kept alive (nginx's default).
    """
    ng = LAB / name
    port = PORTS["nginx" if name == "nginx" else "nginx_reload"]
    temp = "".join(f"    {kind}_temp_path {ng / 'tmp' / kind};\n"
                   for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    head = f"""# lab nginx ({mode} mode): the second, independent load balancer
pid {ng / 'nginx.pid'};
error_log {ng / 'logs' / 'error.log'} warn;
worker_processes 2;
"""
    location_extra = ""
    http_extra = f"    include {ng / 'upstream_app.conf'};\n"
    admin = ""
    if mode == "lua":
        head = ("load_module /usr/lib/nginx/modules/ndk_http_module.so;\n"
                "load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;\n") + head
        http_extra = f"""    lua_shared_dict sre_rollout 1m;
    lua_package_path "{HERE / 'nginx'}/?.lua;;";
    init_by_lua_block {{ require("rollout_balancer").seed("{UPSTREAM}", "{ng / 'members_app.txt'}") }}
    upstream {UPSTREAM} {{
        server 0.0.0.1;  # placeholder: the balancer sets the peer of every request
        balancer_by_lua_block {{ require("rollout_balancer").balance("{UPSTREAM}") }}
    }}
"""
        location_extra = """            log_by_lua_block { require("rollout_balancer").done() }
"""
        admin = f"""    server {{
        listen 127.0.0.1:{PORTS['nginx_admin']};
        allow 127.0.0.1;
        deny all;
        location /sre-rollout/ {{
            content_by_lua_block {{ require("rollout_balancer").admin() }}
        }}
    }}
"""
    return f"""{head}events {{ worker_connections 1024; }}
http {{
    access_log off;
{temp}{http_extra}    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://{UPSTREAM};
            proxy_connect_timeout 2s;
            proxy_read_timeout 60s;
            proxy_next_upstream off;
{location_extra}        }}
    }}
{admin}}}
"""


def nginx_cmd(name: str, *args: str) -> list[str]:
    ng = LAB / name
    return [which("nginx"), "-p", str(ng), "-c", str(ng / "nginx.conf"), "-e", str(ng / "logs" / "error.log"),
            *args]


def start_nginx(name: str = "nginx", mode: str | None = None) -> None:
    mode = mode or (NGINX_MODE if name == "nginx" else "reload")
    ng = LAB / name
    for sub in ("logs", "tmp"):
        (ng / sub).mkdir(parents=True, exist_ok=True)
    (ng / "nginx.conf").write_text(nginx_conf(name, mode))
    # A stopped nginx starts from this lab's hosts: a LAB_DIR that held a lab of another size
    # would otherwise seed members that no longer exist (a running nginx keeps its own).
    fresh = not running(ng / "nginx.pid")
    if fresh or not (ng / "upstream_app.conf").exists():
        (ng / "upstream_app.conf").write_text(nginx_upstream())
    if mode == "lua" and (fresh or not (ng / "members_app.txt").exists()):
        (ng / "members_app.txt").write_text(nginx_members())
    if not fresh:
        return
    port = PORTS["nginx" if name == "nginx" else "nginx_reload"]
    require_port("127.0.0.1", port, name)
    if mode == "lua":
        require_port("127.0.0.1", PORTS["nginx_admin"], f"{name} admin API")
    run(nginx_cmd(name, "-t", "-q"))
    run(nginx_cmd(name))
    wait_for(name, lambda: running(ng / "nginx.pid"), 15)
    log(f"started {name} in {mode} mode (pid {read_pid(ng / 'nginx.pid')})")


def nginx_admin(L: dict, member: str = "", **params: str) -> str:
    """The Lua mode's admin API: GET the pool, or POST a member's state/weight."""
    url = f"{L['admin_url']}/{L['upstream']}" + (f"/{member}" if member else "")
    if params:
        url += "?" + "&".join(f"{k}={v}" for k, v in params.items())
    req = urllib.request.Request(url, method="POST" if params else "GET", data=b"" if params else None)
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.read().decode()


def reset_nginx(name: str) -> None:
    """Every member back in, at its seed weight: admin API (Lua mode), or the upstream file + reload."""
    L = lab_json()[name.replace("-", "_")]
    if L["mode"] == "lua":
        for h in hosts():
            nginx_admin(L, h["name"], state="ready", weight="100")
        return
    up_file = Path(L["upstream_file"])
    if up_file.read_text() != nginx_upstream():
        up_file.write_text(nginx_upstream())
        run(nginx_cmd(name, "-s", "reload"))


# --------------------------------------------------------------------------- production profile: TLS, auth


def openssl(*args: str) -> None:
    run([which("openssl"), *args])


def setup_pki() -> None:
    """The lab CA and one server certificate for 127.0.0.1 (made once, with the openssl CLI)."""
    PKI.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = PKI / "ca.key", PKI / "ca.crt"
    key, crt = PKI / "server.key", PKI / "server.crt"
    if ca_crt.exists() and crt.exists() and key.exists():
        return
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca_crt),
            "-days", "365", "-subj", "/CN=sre-rollout lab CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    (PKI / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
                                    "basicConstraints=CA:FALSE\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(PKI / "server.csr"),
            "-subj", "/CN=127.0.0.1")
    openssl("x509", "-req", "-in", str(PKI / "server.csr"), "-CA", str(ca_crt), "-CAkey", str(ca_key),
            "-CAcreateserial", "-out", str(crt), "-days", "365", "-extfile", str(PKI / "server.ext"))
    for f in (ca_key, key):
        os.chmod(f, 0o600)
    log(f"made the lab CA {ca_crt} and a certificate for 127.0.0.1")


def password(service: str) -> str:
    return (SECRETS / f"{service}.password").read_text().strip()


def bcrypt_hash(secret: str) -> str:
    """A bcrypt hash for basic_auth_users: Python's bcrypt, else libcrypt's (Python's crypt), else htpasswd -B."""
    try:
        import bcrypt  # type: ignore[import-not-found]
        return bcrypt.hashpw(secret.encode(), bcrypt.gensalt(rounds=10)).decode()
    except ImportError:
        pass
    try:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt  # pylint: disable=deprecated-module  # libxcrypt's bcrypt ($2b$)
        if crypt.METHOD_BLOWFISH in crypt.methods:
            return crypt.crypt(secret, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 10))
    except ImportError:
        pass
    htpasswd = shutil.which("htpasswd")
    if htpasswd:
        out = subprocess.run([htpasswd, "-inbBC", "10", "rollout"], input=secret, capture_output=True,
                             text=True, check=True).stdout.strip()
        return out.split(":", 1)[1]
    die("no bcrypt implementation: install python3-bcrypt (or apache2-utils for htpasswd)")
    return ""


def setup_secrets() -> None:
    """One password per service (made once, mode 0600) and the web config that asks for it."""
    SECRETS.mkdir(parents=True, exist_ok=True)
    os.chmod(SECRETS, 0o700)
    for service in MONITORING_USERS:
        f = SECRETS / f"{service}.password"
        if not f.exists():
            f.write_text(secrets.token_urlsafe(18) + "\n")
            os.chmod(f, 0o600)
        web = LAB / service / "web.yml"
        web.parent.mkdir(parents=True, exist_ok=True)
        stamp = SECRETS / f"{service}.hashed"
        if web.exists() and stamp.exists() and stamp.stat().st_mtime >= f.stat().st_mtime:
            continue
        web.write_text(f"""# lab {service}: HTTPS with the lab CA's certificate, basic auth (LAB_PROFILE=production)
tls_server_config:
  cert_file: {PKI / 'server.crt'}
  key_file: {PKI / 'server.key'}
basic_auth_users:
  {MONITORING_USERS[service]}: '{bcrypt_hash(password(service))}'
""")
        os.chmod(web, 0o600)
        stamp.write_text("")


def web_config_flag(service: str) -> list[str]:
    return [f"--web.config.file={LAB / service / 'web.yml'}"] if PRODUCTION else []


def metrics_instance(h: dict) -> str:
    """The instance label of a host's app series in Prometheus."""
    return f"{h['address']}:{h['port']}" if PRODUCTION else h["name"]


def instance_label(h: dict) -> str:
    return "" if PRODUCTION else f"instance: {h['name']}, "


def start_prometheus() -> None:
    pd = LAB / "prometheus"
    pd.mkdir(parents=True, exist_ok=True)
    # The app's series carry no host label; Prometheus adds instance (the scrape address) and job.
    # The default profile names the instance after the host (a target label, as file_sd or a
    # relabeling rule sets it on many real fleets); the production profile keeps the scrape address.
    # lab.json's prometheus.instances maps each host to its instance.
    targets = "".join(
        f"      - targets: ['{h['address']}:{h['port']}']\n        labels: {{{instance_label(h)}zone: {h['zone']}}}\n"
        for h in hosts())
    (pd / "prometheus.yml").write_text(f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: haproxy
    static_configs:
      - targets: ['127.0.0.1:{PORTS['haproxy_exporter']}']
  - job_name: app
    scrape_timeout: 900ms
    static_configs:
{targets}""")
    if running(RUN / "prometheus.pid"):
        return
    require_port("127.0.0.1", PORTS["prometheus"], "prometheus")
    spawn("prometheus", [which("prometheus"), f"--config.file={pd / 'prometheus.yml'}",
                         f"--storage.tsdb.path={pd / 'data'}", "--storage.tsdb.retention.time=1d",
                         f"--web.listen-address=127.0.0.1:{PORTS['prometheus']}", "--web.enable-lifecycle",
                         *web_config_flag("prometheus")])


def start_alertmanager() -> None:
    ad = LAB / "alertmanager"
    ad.mkdir(parents=True, exist_ok=True)
    (ad / "alertmanager.yml").write_text("""route:
  receiver: blackhole
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: blackhole
""")
    if running(RUN / "alertmanager.pid"):
        return
    require_port("127.0.0.1", PORTS["alertmanager"], "alertmanager")
    spawn("alertmanager", [which("prometheus-alertmanager", "alertmanager"),
                           f"--config.file={ad / 'alertmanager.yml'}", f"--storage.path={ad / 'data'}",
                           f"--web.listen-address=127.0.0.1:{PORTS['alertmanager']}",
                           "--cluster.listen-address=", *web_config_flag("alertmanager")])


def start_artifacts() -> None:
    if running(RUN / "artifacts.pid"):
        return
    require_port("127.0.0.1", PORTS["artifacts"], "artifact repository")
    spawn("artifacts", [sys.executable, "-m", "http.server", str(PORTS["artifacts"]), "--bind", "127.0.0.1",
                        "--directory", str(LAB / "artifacts")])


# --------------------------------------------------------------------------- checks

def haproxy_status() -> dict[str, str]:
    out = {}
    for line in haproxy_cmd("show stat").splitlines():
        f = line.split(",")
        if len(f) > 17 and f[0] == BACKEND and f[1] not in ("BACKEND", "FRONTEND"):
            out[f[1]] = f[17]
    return out


def wait_ready() -> None:
    L = lab_json()
    for h in hosts():
        wait_for(f"{h['name']} /health", lambda h=h: http_get(h["url"] + "/health")[0] == 200, 30)
    wait_for("every server UP in HAProxy",
             lambda: all(s == "UP" for s in haproxy_status().values()) and len(haproxy_status()) == NHOSTS, 30)
    wait_for("nginx answering", lambda: http_get(L["nginx"]["url"] + "/")[0] == 200, 15)
    wait_for("nginx-reload answering", lambda: http_get(L["nginx_reload"]["url"] + "/")[0] == 200, 15)
    wait_for("artifact repository", lambda: http_get(L["artifacts"]["url"] + "/SHA256SUMS")[0] == 200, 15)
    wait_for("alertmanager", lambda: http_get(monitoring_request("alertmanager", "/api/v2/status"))[0] == 200, 30)

    def prom_targets_up() -> bool:
        code, body = http_get(monitoring_request("prometheus", "/api/v1/targets"))
        if code != 200:
            return False
        active = json.loads(body)["data"]["activeTargets"]
        return len(active) == NHOSTS + 1 and all(t["health"] == "up" for t in active)

    wait_for("prometheus targets up", prom_targets_up, 60)


# --------------------------------------------------------------------------- commands

def up() -> None:
    if not 1 <= NHOSTS <= MAX_HOSTS:
        die(f"LAB_HOSTS must be 1..{MAX_HOSTS} (one address each on 127.0.{NET}.0/24), got {NHOSTS}")
    for d in (LAB, RUN, LOGS, LAB / "hosts"):
        d.mkdir(parents=True, exist_ok=True)
    build_artifacts()
    (LAB / "cmdb.json").write_text(json.dumps(cmdb_json(), indent=2) + "\n")
    if PRODUCTION:
        setup_pki()
        setup_secrets()
    setup_ssh()
    start_sshd()
    setup_hosts()
    start_artifacts()
    start_haproxy()
    start_nginx("nginx")
    start_nginx("nginx-reload")
    start_prometheus()
    start_alertmanager()
    (LAB / "lab.json").write_text(json.dumps(lab_json(), indent=2) + "\n")
    write_inventory_vars()
    wait_ready()
    L = lab_json()
    production = f"""
  TLS           CA {PKI / 'ca.crt'}; HAProxy backend {BACKEND} (servers shop-a1...), nginx upstream {UPSTREAM}
  credentials   basic auth, user and password file per service in lab.json (passwords in {SECRETS})"""
    print(f"""
lab is up, {PROFILE} profile ({NHOSTS} hosts on 127.0.{NET}.1-{NHOSTS}, every host on {INITIAL}):
  HAProxy       {L['haproxy']['url']}   runtime API {L['haproxy']['socket']} and {L['haproxy']['admin_tcp']}
  HAProxy stats {L['haproxy']['exporter']}
  nginx         {L['nginx']['url']}   {L['nginx']['mode']} mode, {L['nginx'].get('admin_url') or 'upstream file ' + L['nginx']['upstream_file']}
  nginx-reload  {L['nginx_reload']['url']}   reload mode, upstream file {L['nginx_reload']['upstream_file']}
  Prometheus    {L['prometheus']['url']}
  Alertmanager  {L['alertmanager']['url']}
  artifacts     {L['artifacts']['url']}/
  ssh           port {SSH_PORT}, key {L['ssh']['key']}
  hosts         {', '.join(h['name'] + '=' + h['url'] for h in L['hosts'])}
  description   {LAB / 'lab.json'}""" + (production if PRODUCTION else ""), flush=True)


def all_pidfiles() -> list[tuple[Path, str]]:
    files = [(p, p.stem) for p in sorted(RUN.glob("*.pid"))] if RUN.exists() else []
    files.append((LAB / "nginx" / "nginx.pid", "nginx"))
    files.append((LAB / "nginx-reload" / "nginx.pid", "nginx-reload"))
    if (LAB / "hosts").exists():
        for hd in sorted((LAB / "hosts").iterdir()):
            files.append((hd / "shared" / "run" / "app.pid", f"app on {hd.name}"))
    return files


def down() -> None:
    if not LAB.exists():
        log(f"nothing to stop ({LAB} does not exist)")
        return
    stopped = 0
    # apps first, load balancers and sshd last, so nothing in the lab sees a half-stopped peer
    order = sorted(all_pidfiles(), key=lambda pf: (0 if pf[1].startswith("app on") else 1, pf[1]))
    for pidfile, what in order:
        stopped += stop_pidfile(pidfile, what)
    log(f"down: {stopped} process(es) stopped")


def status() -> int:
    rc = 0
    for pidfile, what in all_pidfiles():
        pid = read_pid(pidfile)
        state = "running" if alive(pid) else "stopped"
        if state == "stopped":
            rc = 1
        print(f"{what:20s} {state:8s} {pid or ''}")
    return rc


def reset() -> None:
    """Put the lab back to its initial state: every host on app-1.0.0, all enabled, no silences."""
    for flag in FAULTS.glob("*") if FAULTS.is_dir() else []:  # no host is cut off or hung any more
        flag.unlink(missing_ok=True)
    for h in hosts():
        root = Path(h["root"])
        (root / "shared" / "fault-stop-hangs").unlink(missing_ok=True)
        cur = os.readlink(root / "current") if (root / "current").is_symlink() else ""
        env_file = root / "shared" / "app.env"
        env_changed = not env_file.exists() or env_file.read_text() != app_env(h)
        if (cur != f"releases/{INITIAL}" or not running(app_pidfile(h)) or env_changed
                or installed_sha(h) != artifact_sha(INITIAL)
                or http_get(f"{h['url']}/health")[0] != 200):
            subprocess.run([str(root / "current" / "bin" / "stop"), "10"], capture_output=True, check=False)
            install_initial(h)
        else:
            write_state(root, INITIAL, artifact_sha(INITIAL))
        for rel in (root / "releases").iterdir():
            if rel.name != INITIAL:
                shutil.rmtree(rel, ignore_errors=True)
        (root / ".rollout" / "lock.json").unlink(missing_ok=True)
        write_app_env(h)
        start_app(h)
    for h in hosts():
        haproxy_cmd(f"set server {BACKEND}/{h['haproxy_server']} state ready")
        haproxy_cmd(f"set server {BACKEND}/{h['haproxy_server']} weight 100")
    reset_nginx("nginx")
    reset_nginx("nginx-reload")
    code, body = http_get(monitoring_request("alertmanager", "/api/v2/silences"))
    if code == 200:
        for s in json.loads(body):
            if s["status"]["state"] != "expired":
                req = monitoring_request("alertmanager", f"/api/v2/silence/{s['id']}", method="DELETE")
                urllib.request.urlopen(req, timeout=5, context=tls_context()).read()
    wait_ready()
    log("reset: every host on app-1.0.0 and ready in both load balancers")


def main() -> int:
    cmd = sys.argv[1] if len(sys.argv) > 1 else "status"
    if cmd == "up":
        up()
    elif cmd == "down":
        down()
    elif cmd == "status":
        return status()
    elif cmd == "reset":
        reset()
    elif cmd == "haproxy-reload":
        haproxy_reload()
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
