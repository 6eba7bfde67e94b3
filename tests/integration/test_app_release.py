"""app_release, wait_healthy, app_service and app_backup on the lab hosts, over real SSH.

Everything the modules do is checked on the hosts' own files (each lab host's root is a
directory on this machine) and against the hosts' running app, not only through the
modules' answers. Each test works on its own host; the ``restored`` fixture puts that host
back as the lab left it: on app-1.0.0, running and healthy, ready in HAProxy, with its
original state file, no other release, no lock and no backups.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

import labkit
from release_checks import artifact_sha

pytestmark = pytest.mark.lab

INITIAL = "app-1.0.0"


# --------------------------------------------------------------------------- lab access (independent of the modules)


def host(lab: dict, name: str) -> dict:
    return next(h for h in lab["hosts"] if h["name"] == name)


def http_get(url: str, timeout: float = 3.0) -> tuple[int | None, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return None, ""


def running_version(h: dict) -> str | None:
    status, body = http_get(h["url"] + "/version")
    return json.loads(body)["version"] if status == 200 else None


def app_pid(h: dict) -> int | None:
    try:
        return int((Path(h["root"]) / "shared" / "run" / "app.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def alive(pid: int | None) -> bool:
    try:
        return pid is not None and Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def port_open(h: dict) -> bool:
    try:
        with socket.create_connection((h["address"], h["port"]), timeout=1):
            return True
    except OSError:
        return False


def haproxy_status(lab: dict, name: str) -> str:
    address, port = lab["haproxy"]["admin_tcp"].rsplit(":", 1)
    with socket.create_connection((address, int(port)), timeout=5) as s:
        s.sendall(f"show stat {lab['haproxy']['backend']} 4 -1\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    lines = data.decode().splitlines()
    header = lines[0].lstrip("# ").split(",")
    rows = {row[1]: dict(zip(header, row)) for row in (line.split(",") for line in lines[1:] if line)}
    return rows[lab["haproxy"].get("servers", {}).get(name, name)]["status"]  # HAProxy's own server name


def wait_until(what: str, predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def tree(root: Path, skip: tuple[str, ...] = ("shared/logs", "shared/run")) -> dict[str, str]:
    """Every path under root -> kind and content (links by target), except the app's own runtime files."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        dirnames[:] = [d for d in dirnames if os.path.normpath(os.path.join(rel_dir, d)) not in skip]
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = "file:" + hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def state_file(h: dict) -> dict:
    return json.loads((Path(h["root"]) / ".rollout" / "state.json").read_text())


# --------------------------------------------------------------------------- putting a host back


def restore_host(lab: dict, h: dict, saved: dict) -> None:
    """Back to the lab's initial layout, running app-1.0.0 and ready in HAProxy."""
    root = Path(h["root"])
    initial = root / "releases" / INITIAL
    if not (initial / ".rollout-complete").exists():
        shutil.rmtree(initial, ignore_errors=True)
        initial.mkdir(parents=True)
        with tarfile.open(Path(lab["artifacts"]["dir"]) / f"{INITIAL}.tar.gz") as tar:
            tar.extractall(initial)
        (initial / ".rollout-complete").write_text(json.dumps({"sha256": artifact_sha(lab, INITIAL)}) + "\n")
    link = root / "current"
    on_initial = link.is_symlink() and os.readlink(link) == f"releases/{INITIAL}"
    restart = not on_initial or running_version(h) != "1.0.0" or not alive(app_pid(h))
    if restart:
        subprocess.run([str(initial / "bin" / "stop"), "5"], capture_output=True, timeout=30, check=False)
        tmp = root / "current.test-tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(f"releases/{INITIAL}")
        os.replace(tmp, link)
    for entry in (root / "releases").iterdir():
        if entry.name != INITIAL:
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    for entry in root.iterdir():
        if entry.name.startswith("current.tmp-"):
            entry.unlink()
    (root / ".rollout" / "lock.json").unlink(missing_ok=True)
    (root / ".rollout" / "state.json").write_bytes(saved["state"])
    (root / "shared" / "app.env").write_bytes(saved["app_env"])
    backups = root / "backups"
    for entry in backups.iterdir():
        if entry.name not in saved["backups"]:
            entry.unlink()
    backups.chmod(saved["backups_mode"])
    if restart:
        subprocess.run([str(link / "bin" / "start")], capture_output=True, timeout=30, check=True)
    wait_until(f"{h['name']} healthy on 1.0.0",
               lambda: http_get(h["url"] + "/health")[0] == 200 and running_version(h) == "1.0.0")
    wait_until(f"{h['name']} UP in HAProxy", lambda: haproxy_status(lab, h["name"]) == "UP")


@pytest.fixture()
def restored(lab):
    """``restored("web02")`` -> the host's lab entry; the host is put back after the test."""
    taken = []

    def take(name: str) -> dict:
        h = host(lab, name)
        root = Path(h["root"])
        assert os.readlink(root / "current") == f"releases/{INITIAL}", f"{name} is not on {INITIAL} before the test"
        taken.append((h, {"state": (root / ".rollout" / "state.json").read_bytes(),
                          "app_env": (root / "shared" / "app.env").read_bytes(),
                          "backups": {e.name for e in (root / "backups").iterdir()},
                          "backups_mode": stat.S_IMODE((root / "backups").stat().st_mode)}))
        return h

    yield take
    for h, saved in taken:
        restore_host(lab, h, saved)


# --------------------------------------------------------------------------- running Ansible


def play(ansible, target: str, tasks: list[dict], check: bool = False, diff: bool = False) -> labkit.RunResult:
    return ansible.playbook([{"name": "test", "hosts": target, "gather_facts": False, "tasks": tasks}],
                            check=check, diff=diff)


def one(run: labkit.RunResult, task: str) -> dict:
    results = run.results(task=task)
    assert len(results) == 1, f"task {task!r}: {len(results)} results\n{run.stdout[-3000:]}"
    return results[0]


def release(name: str, **args) -> dict:
    """A task running app_release on the host's root."""
    return {"name": name, "sre.rollout.app_release": {"root": "{{ rollout_app_root }}", **args}}


def failing(task: dict) -> dict:
    return {**task, "ignore_errors": True}


def staged_from_lab(lab: dict, artifact: str, **extra) -> dict:
    repo = lab["artifacts"]["url"]
    return {"state": "staged", "artifact": artifact, "url": f"{repo}/{artifact}.tar.gz",
            "checksum_url": f"{repo}/SHA256SUMS", **extra}


def ignoring(include: dict) -> dict:
    """An include_role whose tasks may fail without stopping the play."""
    role = dict(include["ansible.builtin.include_role"], apply={"ignore_errors": True})
    return {**include, "ansible.builtin.include_role": role}


def artifact_version(lab: dict, artifact: str) -> str:
    """The version the artifact's app reports (its VERSION file)."""
    with tarfile.open(Path(lab["artifacts"]["dir"]) / f"{artifact}.tar.gz") as tar:
        return tar.extractfile("VERSION").read().decode().strip()


def service(name: str, action: str) -> dict:
    return {"name": name, "ansible.builtin.include_role": {"name": "sre.rollout.app_service", "tasks_from": action},
            "vars": {"app_service_stop_timeout": 10}}


def healthy(name: str, **args) -> dict:
    return {"name": name, "sre.rollout.wait_healthy": {"url": "{{ rollout_app_url }}/health", "interval": 0.5,
                                                       "request_timeout": 2, **args},
            "delegate_to": "localhost"}


# --------------------------------------------------------------------------- app_release


def test_stage_activate_query_activate_rollback_prune(lab, ansible, restored):
    h = restored("web01")
    root = Path(h["root"])
    run = play(ansible, "web01", [
        release("stage 1.1.0", **staged_from_lab(lab, "app-1.1.0", release_id="it-1")),
        release("stage 1.1.0 again", **staged_from_lab(lab, "app-1.1.0", release_id="it-1")),
        release("activate 1.1.0", state="active", artifact="app-1.1.0", release_id="it-1"),
        release("activate 1.1.0 again", state="active", artifact="app-1.1.0", release_id="it-1"),
        release("query", state="query"),
        release("stage 1.3.0", **staged_from_lab(lab, "app-1.3.0-errors", release_id="it-2")),
        release("activate 1.3.0", state="active", artifact="app-1.3.0-errors", release_id="it-2"),
        release("rollback to previous", state="active", rollback_to="previous", release_id="it-2"),
        release("rollback to previous again", state="active", rollback_to="previous", release_id="it-2"),
        release("rollback to 1.0.0 by name", state="active", rollback_to=INITIAL, release_id="it-3"),
        release("prune keep 1", state="pruned", keep=1, release_id="it-3"),
        release("prune keep 1 again", state="pruned", keep=1, release_id="it-3"),
    ], diff=True)
    assert run.rc == 0, run.stdout[-3000:]

    staged = one(run, "stage 1.1.0")
    assert staged["changed"] and staged["staged"]
    assert staged["sha256"] == artifact_sha(lab, "app-1.1.0")
    assert staged["diff"]["after"]["releases"] == [INITIAL, "app-1.1.0"]
    assert one(run, "stage 1.1.0 again")["changed"] is False
    assert one(run, "stage 1.1.0 again")["staged"] is False

    activated = one(run, "activate 1.1.0")
    assert activated["changed"] and activated["activated"] == "app-1.1.0"
    assert (activated["current"], activated["previous"], activated["replaced"]) == ("app-1.1.0", INITIAL, INITIAL)
    assert activated["diff"]["before"]["current"] == INITIAL and activated["diff"]["after"]["current"] == "app-1.1.0"
    again = one(run, "activate 1.1.0 again")
    assert again["changed"] is False and again["activated"] is None

    query = one(run, "query")
    assert query["changed"] is False and query["lock"] is None and query["leftovers"] == []
    assert (query["current"], query["previous"]) == ("app-1.1.0", INITIAL)
    by_name = {r["artifact"]: r for r in query["releases"]}
    assert by_name["app-1.1.0"]["complete"] and by_name["app-1.1.0"]["current"]
    assert by_name[INITIAL]["previous"]
    assert [(e["action"], e["artifact"], e["release_id"]) for e in query["history"][-2:]] == \
        [("stage", "app-1.1.0", "it-1"), ("activate", "app-1.1.0", "it-1")]

    second = one(run, "activate 1.3.0")
    assert (second["current"], second["previous"]) == ("app-1.3.0-errors", "app-1.1.0")
    back = one(run, "rollback to previous")
    assert back["changed"] and back["rolled_back_from"] == "app-1.3.0-errors"
    assert (back["current"], back["previous"]) == ("app-1.1.0", "app-1.3.0-errors")
    noop = one(run, "rollback to previous again")
    assert noop["changed"] is False and noop["current"] == "app-1.1.0"
    assert noop["rolled_back_from"] == "app-1.3.0-errors"
    named = one(run, "rollback to 1.0.0 by name")
    assert (named["current"], named["previous"], named["rolled_back_from"]) == (INITIAL, "app-1.1.0", "app-1.1.0")

    pruned = one(run, "prune keep 1")
    assert pruned["changed"] and pruned["removed"] == ["app-1.3.0-errors"]
    assert sorted(pruned["kept"]) == [INITIAL, "app-1.1.0"]  # current and previous, whatever keep says
    assert one(run, "prune keep 1 again")["changed"] is False

    # What is on the host, read directly.
    assert os.readlink(root / "current") == f"releases/{INITIAL}"
    assert sorted(p.name for p in (root / "releases").iterdir()) == [INITIAL, "app-1.1.0"]
    assert (root / "releases" / "app-1.1.0" / ".rollout-complete").exists()
    assert (root / "releases" / "app-1.1.0" / "VERSION").read_text().strip() == "1.1.0"
    state = state_file(h)
    assert (state["current"], state["previous"]) == (INITIAL, "app-1.1.0")
    assert state["releases"]["app-1.1.0"]["failed"] is True  # rolled back from
    assert "app-1.3.0-errors" not in state["releases"]
    assert [(e["action"], e["artifact"]) for e in state["history"] if e["release_id"] == "it-2"] == [
        ("stage", "app-1.3.0-errors"), ("activate", "app-1.3.0-errors"), ("rollback", "app-1.1.0")]
    assert state["history"][-1] == {**state["history"][-1], "action": "prune", "artifact": "app-1.3.0-errors"}


class StallingArtifactServer:
    """Serves the first half of an artifact with the full Content-Length, then stalls (loopback only)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.sent_half = threading.Event()
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                self.send_response(200)
                self.send_header("Content-Length", str(len(server.data)))
                self.end_headers()
                self.wfile.write(server.data[: len(server.data) // 2])
                self.wfile.flush()
                server.sent_half.set()
                server.release.wait(60)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/app-1.1.0.tar.gz"

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def holders_of(prefix: str) -> list[int]:
    """Pids of processes with a file open whose path starts with ``prefix``."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd).startswith(prefix) for fd in (proc / "fd").iterdir()):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def test_refused_stages_change_nothing(lab, ansible, restored):
    """Checksum mismatches, bad names, no space, no checksum, a stalled download: all refused, host untouched."""
    h = restored("web02")
    root = Path(h["root"])
    repo = lab["artifacts"]["url"]
    data = (Path(lab["artifacts"]["dir"]) / "app-1.1.0.tar.gz").read_bytes()
    upload = Path(tempfile.mkdtemp(prefix="sre-rollout-it-")) / "app-1.1.0.tar.gz"
    upload.write_bytes(data)
    before = tree(root)
    try:
        with StallingArtifactServer(data) as server:
            run = play(ansible, "web02", [
                failing(release("wrong checksum", state="staged", artifact="app-1.1.0",
                                url=f"{repo}/app-1.1.0.tar.gz", checksum="sha256:" + artifact_sha(lab, INITIAL))),
                failing(release("SHA256SUMS line of another artifact", state="staged", artifact="app-1.1.0",
                                url=f"{repo}/app-1.1.0.tar.gz", checksum_url=f"{repo}/SHA256SUMS",
                                checksum_name="app-1.2.0-unhealthy.tar.gz")),
                failing(release("wrong checksum from src", state="staged", artifact="app-1.1.0", src=str(upload),
                                checksum="sha256:" + "0" * 64)),
                failing(release("no checksum", state="staged", artifact="app-1.1.0", url=f"{repo}/app-1.1.0.tar.gz")),
                failing(release("bad name", state="staged", artifact="../evil", url=f"{repo}/app-1.1.0.tar.gz",
                                checksum_url=f"{repo}/SHA256SUMS")),
                failing(release("no space", **staged_from_lab(lab, "app-1.1.0", min_free_mb=10 ** 9))),
                failing(release("unknown artifact", **staged_from_lab(lab, "app-9.9.9"))),
                failing(release("stalled download", state="staged", artifact="app-1.1.0", url=server.url,
                                checksum="sha256:" + artifact_sha(lab, "app-1.1.0"), timeout=2)),
            ])
        after = tree(root)
        good = play(ansible, "web02", [release("from src", state="staged", artifact="app-1.1.0", src=str(upload),
                                               checksum="sha256:" + artifact_sha(lab, "app-1.1.0"))])
    finally:
        shutil.rmtree(upload.parent)

    for task in ("wrong checksum", "SHA256SUMS line of another artifact", "wrong checksum from src"):
        result = one(run, task)
        assert result.get("failed") and "checksum mismatch for app-1.1.0" in result["msg"], result
        assert "nothing was changed" in result["msg"]
    assert one(run, "wrong checksum")["actual_sha256"] == artifact_sha(lab, "app-1.1.0")
    assert "checksum_url=" in one(run, "no checksum")["msg"]
    assert "invalid artifact name '../evil'" in one(run, "bad name")["msg"]
    assert "not enough disk space" in one(run, "no space")["msg"]
    assert "SHA256SUMS has no line for 'app-9.9.9.tar.gz'" in one(run, "unknown artifact")["msg"]
    stalled = one(run, "stalled download")
    assert stalled.get("failed") and "download interrupted after" in stalled["msg"]
    assert stalled["received_bytes"] == len(data) // 2
    assert after == before
    assert not (root / "evil").exists() and not (root.parent / "evil").exists()
    assert running_version(h) == "1.0.0"

    assert one(good, "from src")["changed"] and (root / "releases" / "app-1.1.0" / ".rollout-complete").exists()
    assert state_file(h)["releases"]["app-1.1.0"]["source"] == str(upload)


def test_killed_download_leaves_nothing_activatable(lab, ansible, restored, tmp_path):
    h = restored("web02")
    root = Path(h["root"])
    sha = artifact_sha(lab, "app-1.1.0")
    data = (Path(lab["artifacts"]["dir"]) / "app-1.1.0.tar.gz").read_bytes()
    playbook = tmp_path / "stage.yml"
    with StallingArtifactServer(data) as server:
        playbook.write_text(yaml.safe_dump([{"hosts": "web02", "gather_facts": False, "tasks": [
            release("stage", state="staged", artifact="app-1.1.0", url=server.url, checksum=f"sha256:{sha}")]}]))
        cli = subprocess.Popen(labkit.ansible_playbook_cmd(playbook), cwd=labkit.REPO, env=labkit.ansible_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            assert server.sent_half.wait(60), "the module never started downloading"
            prefix = str(root / "releases" / ".tmp-app-1.1.0-")
            wait_until("the module holding the partial download", lambda: holders_of(prefix), timeout=15)
            for pid in holders_of(prefix):
                os.kill(pid, signal.SIGKILL)  # the module process on the host, mid-download
            out, _unused = cli.communicate(timeout=60)
        finally:
            if cli.poll() is None:
                os.killpg(cli.pid, signal.SIGTERM)
                cli.wait(timeout=30)
    assert cli.returncode != 0, out

    leftovers = [p.name for p in (root / "releases").iterdir() if p.name.startswith(".tmp-app-1.1.0-")]
    assert len(leftovers) == 1  # the partial download, under a name that is never a release
    assert not (root / "releases" / "app-1.1.0").exists()
    assert "app-1.1.0" not in state_file(h)["releases"]

    run = play(ansible, "web02", [
        release("query", state="query"),
        failing(release("activate the interrupted artifact", state="active", artifact="app-1.1.0")),
        release("stage again", **staged_from_lab(lab, "app-1.1.0")),
    ])
    assert [Path(p).name for p in one(run, "query")["leftovers"]] == leftovers
    assert "app-1.1.0 is not staged" in one(run, "activate the interrupted artifact")["msg"]
    assert os.readlink(root / "current") == f"releases/{INITIAL}"
    again = one(run, "stage again")
    assert again["changed"] and [Path(p).name for p in again["cleaned"]] == leftovers
    assert sorted(p.name for p in (root / "releases").iterdir()) == [INITIAL, "app-1.1.0"]
    assert (root / "releases" / "app-1.1.0" / ".rollout-complete").exists()


def test_lock_refuses_another_release_until_unlocked(lab, ansible, restored):
    h = restored("web04")
    root = Path(h["root"])
    run = play(ansible, "web04", [
        release("lock r1", state="locked", release_id="r1", holder="alice"),
        release("lock r1 again", state="locked", release_id="r1", holder="alice"),
        failing(release("lock r2", state="locked", release_id="r2")),
        failing(release("stage for r2", **staged_from_lab(lab, "app-1.1.0", release_id="r2"))),
        release("break for r2", state="locked", release_id="r2", break_lock=True),
        release("unlock r2", state="unlocked", release_id="r2"),
        release("unlock again", state="unlocked", release_id="r2"),
    ])
    assert one(run, "lock r1")["changed"] and one(run, "lock r1")["lock"]["holder"] == "alice"
    assert one(run, "lock r1 again")["changed"] is False
    for task in ("lock r2", "stage for r2"):
        result = one(run, task)
        assert result.get("failed") and "locked by release 'r1' (holder 'alice'" in result["msg"], task
        assert result["lock"]["release_id"] == "r1"
    assert not (root / "releases" / "app-1.1.0").exists()
    broken = one(run, "break for r2")
    assert broken["changed"] and broken["broken_lock"]["release_id"] == "r1" and broken["lock"]["release_id"] == "r2"
    assert one(run, "unlock r2")["changed"]
    assert one(run, "unlock again")["changed"] is False
    assert not (root / ".rollout" / "lock.json").exists()


# --------------------------------------------------------------------------- wait_healthy and app_service


def test_wait_healthy_against_the_lab_app(lab, ansible, restored):
    h = restored("web05")
    run = play(ansible, "web05", [
        healthy("healthy", expect_version="1.0.0", successes=3),
        failing(healthy("version mismatch", expect_version="1.1.0", timeout=2)),
        healthy("json field", json_path="version", json_value="1.0.0",
                **{"url": "{{ rollout_app_url }}/version", "successes": 1}),
        {"name": "tcp", "sre.rollout.wait_healthy": {"tcp": "{{ ansible_host }}:8080", "successes": 2, "interval": 0.2},
         "delegate_to": "localhost"},
        {"name": "tcp closed", "ignore_errors": True, "delegate_to": "localhost",
         "sre.rollout.wait_healthy": {"tcp": "{{ ansible_host }}:8099", "timeout": 1, "interval": 0.2}},
    ], check=False)
    ok = one(run, "healthy")
    assert not ok.get("failed") and ok["changed"] is False
    assert ok["attempts"] == 3 and ok["successes"] == 3 and ok["version"] == "1.0.0"
    assert ok["last_status"] == 200 and ok["last_body"].strip() == "ok"

    mismatch = one(run, "version mismatch")
    assert mismatch["failed"] and mismatch["version"] == "1.0.0"
    assert "version is '1.0.0', expected '1.1.0'" in mismatch["msg"] and mismatch["attempts"] >= 2
    assert not one(run, "json field").get("failed")
    assert not one(run, "tcp").get("failed")
    closed = one(run, "tcp closed")
    assert closed["failed"] and f"cannot connect to {h['address']}:8099" in closed["last_error"]


def test_never_healthy_release_is_caught_and_rolled_back(lab, ansible, restored):
    h = restored("web06")
    root = Path(h["root"])
    old_pid = app_pid(h)
    bad_version = artifact_version(lab, "app-1.2.0-unhealthy")
    swap = [
        release("stage", **staged_from_lab(lab, "app-1.2.0-unhealthy")),
        service("stop", "stop"),
        release("activate", state="active", artifact="app-1.2.0-unhealthy", release_id="bad"),
        service("start", "start"),
        failing(healthy("health of the new release", expect_version=bad_version, timeout=4)),
    ]
    run = play(ansible, "web06", swap)
    assert run.rc == 0, run.stdout[-3000:]
    assert not alive(old_pid)  # the old process was stopped, and confirmed gone
    bad_pid = app_pid(h)
    assert alive(bad_pid) and bad_pid != old_pid
    failed = one(run, "health of the new release")
    assert failed["failed"] and failed["last_status"] == 503 and failed["successes"] == 0
    assert "HTTP 503" in failed["msg"]
    assert running_version(h) == bad_version

    back = play(ansible, "web06", [
        service("stop", "stop"),
        release("rollback", state="active", rollback_to="previous", release_id="bad"),
        service("start", "start"),
        healthy("health after the rollback", expect_version="1.0.0"),
        service("start again", "start"),
    ])
    assert back.rc == 0, back.stdout[-3000:]
    assert not alive(bad_pid)
    assert one(back, "rollback")["rolled_back_from"] == "app-1.2.0-unhealthy"
    assert one(back, "health after the rollback")["version"] == "1.0.0"
    starts = [r for r in back.results(host="web06") if r["_task"].startswith("App service | Start with the bin")]
    assert [r.get("changed", False) for r in starts] == [True, False]  # the second start finds it running
    assert os.readlink(root / "current") == f"releases/{INITIAL}"
    assert state_file(h)["releases"]["app-1.2.0-unhealthy"]["failed"] is True


def test_stop_fails_when_something_else_holds_the_port(lab, ansible, restored):
    # The pidfile names nothing (as after a crash), but a process still listens on the app's port.
    h = restored("web05")
    pid = app_pid(h)
    no_pidfile = {"app_service_confirm_timeout": 1, "app_service_pidfile": "{{ rollout_app_root }}/shared/run/x.pid"}
    run = play(ansible, "web05", [ignoring({**service("stop", "stop"), "vars": no_pidfile})])
    failed = [r for r in run.results(host="web05") if r.get("failed")]
    assert failed and "another process holds the port" in failed[0]["msg"]
    assert failed[0]["_task"].startswith("App service | Confirm the port is closed")
    assert alive(pid) and running_version(h) == "1.0.0"


# --------------------------------------------------------------------------- backups


def test_backup_keep_and_restore(lab, ansible, restored):
    h = restored("web04")
    root = Path(h["root"])
    env = root / "shared" / "app.env"
    original = env.read_bytes()

    def backup(name: str, backup_id: str, **extra) -> dict:
        return {"name": name, "ansible.builtin.include_role": {"name": "sre.rollout.app_backup"},
                "vars": {"app_backup_id": backup_id, "app_backup_keep": 2, **extra}}

    def restore(name: str, backup_id: str) -> dict:
        return {"name": name, "ansible.builtin.include_role": {"name": "sre.rollout.app_backup",
                                                               "tasks_from": "restore"},
                "vars": {"app_backup_id": backup_id}}

    first = play(ansible, "web04", [backup("backup b1", "b1")])
    archive = root / "backups" / "b1.tar.gz"
    assert first.rc == 0 and archive.exists(), first.stdout[-3000:]
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert stat.S_IMODE((root / "backups").stat().st_mode) == 0o700
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        member = str(env).lstrip("/")
        assert member in names and tar.extractfile(member).read() == original
    assert not any("/shared/logs" in n or "/shared/run" in n for n in names)
    content = archive.read_bytes()

    env.write_text("APP_BROKEN=1\n")
    os.utime(archive, (time.time() - 60, time.time() - 60))
    second = play(ansible, "web04", [
        backup("backup b1 again", "b1"),
        restore("restore b1", "b1"),
        backup("backup b2, keep 1", "b2", app_backup_keep=1),
        ignoring(backup("backup of a missing path", "b4", app_backup_paths=["shared/nope"])),
        ignoring(restore("restore a missing backup", "nope")),
    ])
    again = [r for r in second.results(host="web04") if r["_task"].startswith("App backup | Archive")]
    assert again[0].get("changed") is False  # b1 exists: the backup taken before the change is kept
    assert env.read_bytes() == original  # restored from b1, taken before the change
    assert sorted(p.name for p in (root / "backups").iterdir()) == ["b2.tar.gz"]  # keep 1: b1 is older
    msgs = [r["msg"] for r in second.results(host="web04") if r.get("failed")]
    assert any("Nothing to back up at" in m and "shared/nope" in m for m in msgs), msgs
    assert any("No backup" in m and "nope.tar.gz" in m for m in msgs), msgs
    assert not (root / "backups" / "b4.tar.gz").exists()


# --------------------------------------------------------------------------- a whole host swap: check, real, re-run


def test_host_swap_check_mode_then_real_then_second_run_not_changed(lab, ansible, restored):
    h = restored("web03")
    root = Path(h["root"])
    skip_if_on_target = {"when": "_query.current != 'app-1.1.0'"}
    tasks = [
        {**release("query", state="query"), "register": "_query"},
        release("lock", state="locked", release_id="swap", holder="pytest"),
        release("stage", **staged_from_lab(lab, "app-1.1.0", release_id="swap")),
        {"name": "back up", "ansible.builtin.include_role": {"name": "sre.rollout.app_backup"},
         "vars": {"app_backup_id": "swap"}},
        {**service("stop", "stop"), **skip_if_on_target},
        {**release("activate", state="active", artifact="app-1.1.0", release_id="swap"), **skip_if_on_target},
        {**service("start", "start"), **skip_if_on_target},
        {**healthy("healthy", expect_version="1.1.0"), "when": "not ansible_check_mode"},
        release("prune", state="pruned", keep=3, release_id="swap"),
        release("unlock", state="unlocked", release_id="swap"),
    ]
    pid = app_pid(h)
    before = tree(root)
    check = play(ansible, "web03", tasks, check=True, diff=True)
    assert check.rc == 0, check.stdout[-3000:]
    assert tree(root) == before
    assert app_pid(h) == pid and alive(pid) and running_version(h) == "1.0.0"
    changed = {r["_task"] for r in check.results(host="web03") if r.get("changed")}
    assert {"lock", "stage", "activate"} <= changed  # unlock: check mode took no lock to drop
    assert any(t.startswith("App service | Stop gracefully") for t in changed)
    assert any(t.startswith("App backup | Archive") for t in changed)
    assert one(check, "stage")["sha256"] == artifact_sha(lab, "app-1.1.0")  # SHA256SUMS is read in check mode
    assert one(check, "activate")["diff"]["after"]["current"] == "app-1.1.0"

    real = play(ansible, "web03", tasks)
    assert real.rc == 0, real.stdout[-3000:]
    assert {"lock", "stage", "activate", "unlock"} <= {r["_task"] for r in real.results(host="web03")
                                                       if r.get("changed")}
    assert running_version(h) == "1.1.0" and not alive(pid)
    assert os.readlink(root / "current") == "releases/app-1.1.0"
    assert (root / "backups" / "swap.tar.gz").exists()
    assert not (root / ".rollout" / "lock.json").exists()
    new_pid = app_pid(h)

    rerun = play(ansible, "web03", tasks)
    assert rerun.rc == 0, rerun.stdout[-3000:]
    # Only the lock is taken and dropped again, as every run does; nothing else changes.
    assert [r["_task"] for r in rerun.results(host="web03") if r.get("changed")] == ["lock", "unlock"]
    assert app_pid(h) == new_pid and running_version(h) == "1.1.0"
