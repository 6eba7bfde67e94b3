"""Kept-alive connections: the judge sees them closed, nginx's reload mode closes them, the app does not.

- load.py's keep-alive clients reuse a connection without probing it and without retrying, so a
  server that closes a kept-alive connection shows as failed requests (a tiny server that closes
  its connections after answering; a bare ``nginx -s reload`` of the lab's plain nginx).
- The reload mode's residual is measured here: failures per reload per kept-alive client.
- The lab app's graceful stop finishes what is in flight, serves a request that still arrives on
  a kept-alive connection (answering ``Connection: close``), closes idle connections only after
  they have been idle for its grace, refuses new connections, and exits without waiting for the
  keep-alive timeout.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

import labkit

pytestmark = [pytest.mark.lab, pytest.mark.profile("default")]  # the lab's default names and plain HTTP


class ClosingServer:
    """HTTP/1.1 server on loopback that answers with keep-alive and then closes every ``close_every``-th connection.

    It never says ``Connection: close``: the client believes the connection is reusable, as with a
    server (or an nginx worker at a reload) that closes idle kept-alive connections.
    """

    def __init__(self, close_every: int = 3) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.close_every = close_every
        self.closed_after_answer = 0
        self.answered = 0
        self.lock = threading.Lock()
        self.stopped = False

    def __enter__(self) -> "ClosingServer":
        threading.Thread(target=self.accept, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped = True
        self.sock.close()

    def accept(self) -> None:
        while not self.stopped:
            try:
                conn, _peer = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        served = 0
        try:
            while True:
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    line = reader.readline()
                    if not line:
                        return
                    head += line
                body = b"ok\n"
                keep = b"connection: close" not in head.lower()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-Served-By: closer\r\n"
                             + (b"" if keep else b"Connection: close\r\n") + b"\r\n" + body)
                served += 1
                with self.lock:
                    self.answered += 1
                if not keep:
                    return
                if served % self.close_every == 0:
                    with self.lock:
                        self.closed_after_answer += 1
                    return  # close a connection the client was told it may keep
        finally:
            reader.close()
            conn.close()


def test_judge_counts_requests_lost_on_a_closed_kept_alive_connection():
    with ClosingServer(close_every=3) as server:
        with labkit.LoadRun(f"http://127.0.0.1:{server.port}", rate=40, max_seconds=4, events=True) as run:
            time.sleep(4)
    keepalive, fresh = run.summary["by_kind"]["keepalive"], run.summary["by_kind"]["fresh"]
    assert fresh["requests"] > 50 and fresh["errors"] == 0, run.describe()
    lost = keepalive["failures"]["closed"] + keepalive["failures"]["reset"]
    assert keepalive["requests"] > 50 and lost > 0, run.describe()
    assert keepalive["errors"] == lost and run.summary["errors"] == lost
    # every request lost was sent on a reused connection that the server had closed, none was retried
    failed = [e for e in run.events() if e["failure"]]
    assert failed and all(e["kind"] == "keepalive" and e["reused"] for e in failed), failed[:3]
    assert lost <= server.closed_after_answer
    assert keepalive["reused_connections"] > keepalive["requests"] / 2


def test_judge_reports_every_kind_of_failure_separately():
    """A refused connection and a non-2xx answer land in their own counters, per client kind."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once closed
    with labkit.LoadRun(f"http://127.0.0.1:{port}", rate=20, max_seconds=2) as run:
        time.sleep(2)
    for kind in ("keepalive", "fresh"):
        counts = run.summary["by_kind"][kind]
        assert counts["requests"] > 5 and counts["failures"]["refused"] == counts["requests"], run.describe()


def test_bare_nginx_reload_closes_kept_alive_connections(lab):
    """The reload mode's residual: a reload with no change at all loses requests of kept-alive clients only."""
    ng = lab["nginx_reload"]
    reloads, clients = 4, 8
    with labkit.LoadRun(ng["url"], rate=50, keepalive_clients=clients) as run:
        time.sleep(2)
        for _reload in range(reloads):
            subprocess.run([ng["binary"], "-p", ng["prefix"], "-c", ng["conf"], "-s", "reload"], check=True,
                           capture_output=True, timeout=30)
            time.sleep(2)
    keepalive, fresh = run.summary["by_kind"]["keepalive"], run.summary["by_kind"]["fresh"]
    print(json.dumps({"reloads": reloads, "keepalive_clients": clients, "keepalive_failures": keepalive["failures"],
                      "fresh_failures": fresh["failures"],
                      "failed_per_reload": keepalive["errors"] / reloads}))
    assert fresh["requests"] > 100 and fresh["errors"] == 0, run.describe()
    assert keepalive["errors"] > 0, run.describe()
    assert {k for k, v in keepalive["failures"].items() if v} <= {"closed", "reset"}, run.describe()
    assert keepalive["errors"] <= reloads * clients, run.describe()  # at most one per client per reload


# --------------------------------------------------------------------------- the app's graceful stop

APP = labkit.REPO / "tests" / "lab" / "app" / "app.py"


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@pytest.fixture()
def lone_app(lab, tmp_path):
    """A lab app of its own on the lab's network, outside every LB (its own root and address)."""
    host = f"127.0.{lab['net']}.250"
    port = free_port(host)
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "app.env").write_text(
        f"APP_HOST={host}\nAPP_PORT={port}\nAPP_NAME=lone\nAPP_STARTUP_DELAY=0\nAPP_STOP_IDLE_GRACE=1.5\n")
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "app.py").write_text(APP.read_text())
    (app_dir / "VERSION").write_text("0.0.0-test\n")
    proc = subprocess.Popen([sys.executable, str(app_dir / "app.py"), "--root", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.1)
    yield proc, host, port
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


def get(conn: http.client.HTTPConnection, path: str = "/") -> http.client.HTTPResponse:
    conn.request("GET", path)
    resp = conn.getresponse()
    resp.read()
    return resp


def test_app_keeps_connections_alive_and_stops_without_dropping_one(lone_app):
    proc, host, port = lone_app
    busy = http.client.HTTPConnection(host, port, timeout=10)
    reused = http.client.HTTPConnection(host, port, timeout=10)
    idle = http.client.HTTPConnection(host, port, timeout=10)
    try:
        for conn in (busy, reused, idle):
            first = get(conn)
            assert first.status == 200 and not first.will_close  # HTTP/1.1 keep-alive
        slow: dict = {}

        def slow_request() -> None:
            try:
                resp = get(busy, "/?delay=1.2")
                slow.update(status=resp.status, close=resp.getheader("Connection"))
            except Exception as exc:  # noqa: BLE001 - a dropped request is the data point
                slow["error"] = repr(exc)

        thread = threading.Thread(target=slow_request)
        thread.start()
        time.sleep(0.3)  # the slow request is in flight
        get(reused)  # and this kept-alive connection was just used
        t_term = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)

        # a request that still arrives on a kept-alive connection is served, and told the connection ends
        late = get(reused)
        assert late.status == 200 and late.getheader("Connection") == "close" and late.will_close
        # a new connection is refused: the app stopped accepting
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((host, port), timeout=2).close()
        # the request in flight at SIGTERM finishes, answered with Connection: close
        thread.join(10)
        assert slow == {"status": 200, "close": "close"}, slow
        # the idle kept-alive connection is closed by the app once idle for its grace (1.5 s), not before
        idle.sock.settimeout(5)
        assert idle.sock.recv(1) == b""
        closed_after = time.monotonic() - t_term
        assert 0.8 <= closed_after < 4.0, closed_after
        # and the app exits then, without waiting for the 75 s keep-alive timeout
        assert proc.wait(timeout=5) == 0
        assert time.monotonic() - t_term < 5.0
    finally:
        for conn in (busy, reused, idle):
            conn.close()
    out = proc.stdout.read()
    assert "lone 0.0.0-test stopped" in out, out
