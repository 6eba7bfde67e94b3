"""The lab's sample application (Python standard library only).

Endpoints: ``/`` (200, header ``X-Served-By``; ``?delay=<s>`` for a slow
request), ``/health`` (200 once ready, 503 before), ``/version`` (JSON),
``/metrics`` (Prometheus text format).

HTTP/1.1 with keep-alive, as most apps behind a load balancer: a connection
stays open for the next request until it has been idle for ``IDLE_TIMEOUT``
seconds (longer than the LBs keep idle connections to it, so the LB closes
first). Graceful stop on SIGTERM, which the release sends only after the LB
has stopped sending to this host (drained): stop accepting new connections,
finish every request in flight (its answer says ``Connection: close``), serve
a request that still arrives on a kept-alive connection (also with
``Connection: close``), close a kept-alive connection only once it has been
idle for ``STOP_IDLE_GRACE`` seconds, then exit.

Behaviour comes from ``behavior.json`` beside this file (baked into each
artifact) and may be overridden by the host's ``shared/app.env``:
``APP_STARTUP_DELAY`` (seconds before /health turns 200), ``APP_ERROR_RATE``
(share of ``/`` requests answered with 500), ``APP_UNHEALTHY`` (never ready),
``APP_STOP_IDLE_GRACE`` (seconds, see above). Two faults only an artifact carries:
``leak_mb_per_second`` (memory grows while it runs) and ``cpu_burn`` (a thread spins).

``/metrics`` names its series as a Prometheus client library does: ``http_requests_total{code}``,
the ``http_request_duration_seconds`` histogram and the ``process_*`` collector's
``process_cpu_seconds_total``, ``process_resident_memory_bytes`` and ``process_open_fds``. No
series says which host it is: Prometheus adds ``instance`` and ``job`` when it scrapes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

HERE = Path(__file__).resolve().parent
IDLE_TIMEOUT = 75.0      # seconds a kept-alive connection may wait for its next request
STOP_IDLE_GRACE = 0.5    # on stop, seconds a connection must have been idle before it is closed
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_code: dict[str, int] = {}
        self.bucket_counts = [0] * len(BUCKETS)
        self.count = 0
        self.total = 0.0

    def observe(self, code: int, seconds: float) -> None:
        with self.lock:
            self.by_code[str(code)] = self.by_code.get(str(code), 0) + 1
            self.count += 1
            self.total += seconds
            for i, le in enumerate(BUCKETS):
                if seconds <= le:
                    self.bucket_counts[i] += 1

    def render(self, version: str) -> str:
        """The metrics as a Prometheus client library names them (RED metrics, process_* collector).

        No label says which host this is: Prometheus adds ``instance`` and ``job`` when it scrapes,
        as for any real exporter.
        """
        lines = [
            "# HELP app_build_info Version of the running build.",
            "# TYPE app_build_info gauge",
            f'app_build_info{{version="{version}"}} 1',
            "# HELP http_requests_total Requests served, by HTTP status code.",
            "# TYPE http_requests_total counter",
        ]
        with self.lock:
            codes = dict(self.by_code) or {"200": 0}
            for code, n in sorted(codes.items()):
                lines.append(f'http_requests_total{{code="{code}"}} {n}')
            lines += [
                "# HELP http_request_duration_seconds Request latency.",
                "# TYPE http_request_duration_seconds histogram",
            ]
            for le, n in zip(BUCKETS, self.bucket_counts):
                lines.append(f'http_request_duration_seconds_bucket{{le="{le}"}} {n}')
            lines.append(f'http_request_duration_seconds_bucket{{le="+Inf"}} {self.count}')
            lines.append(f"http_request_duration_seconds_sum {self.total:.6f}")
            lines.append(f"http_request_duration_seconds_count {self.count}")
        lines += process_metrics()
        return "\n".join(lines) + "\n"


def process_metrics() -> list[str]:
    """process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds (Linux /proc)."""
    try:
        rss_pages = int(Path("/proc/self/statm").read_text().split()[1])
        open_fds = len(os.listdir("/proc/self/fd"))
    except (OSError, IndexError, ValueError):
        return []
    return [
        "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.",
        "# TYPE process_cpu_seconds_total counter",
        f"process_cpu_seconds_total {time.process_time():.3f}",
        "# HELP process_resident_memory_bytes Resident memory size in bytes.",
        "# TYPE process_resident_memory_bytes gauge",
        f"process_resident_memory_bytes {rss_pages * PAGE_SIZE}",
        "# HELP process_open_fds Number of open file descriptors.",
        "# TYPE process_open_fds gauge",
        f"process_open_fds {open_fds}",
    ]


def leak(mb_per_second: float, cap_mb: int = 512) -> None:
    """A faulty build: keep ``mb_per_second`` MB more memory every second (up to ``cap_mb``)."""
    kept = []
    while len(kept) < cap_mb / max(mb_per_second, 0.001):
        kept.append(b"x" * int(mb_per_second * 1024 * 1024))  # written, so resident
        time.sleep(1.0)
    threading.Event().wait()


def burn() -> None:
    """A faulty build: spend a CPU core on nothing."""
    n = 0
    while True:
        n = (n * 31 + 7) % 1_000_003


class App:
    def __init__(self, host: str, name: str, version: str, startup_delay: float,
                 error_rate: float, unhealthy: bool) -> None:
        self.host = host
        self.name = name
        self.version = version
        self.error_rate = error_rate
        self.unhealthy = unhealthy
        self.ready_at = time.monotonic() + startup_delay
        self.metrics = Metrics()
        self.stopping = False
        self.conn_lock = threading.Lock()
        # connection -> None while a request is being served, else when it became idle (monotonic)
        self.conns: dict[socket.socket, float | None] = {}

    def track(self, conn: socket.socket, idle: bool) -> None:
        with self.conn_lock:
            self.conns[conn] = time.monotonic() if idle else None

    def untrack(self, conn: socket.socket) -> None:
        with self.conn_lock:
            self.conns.pop(conn, None)

    def close_idle(self, grace: float) -> int:
        """Shut down the connections idle for ``grace`` seconds; return how many connections remain."""
        now = time.monotonic()
        with self.conn_lock:
            for conn, idle_since in self.conns.items():
                if idle_since is not None and now - idle_since >= grace:
                    try:
                        conn.shutdown(socket.SHUT_RDWR)  # the handler's read returns, it closes and untracks
                    except OSError:
                        pass
            return len(self.conns)

    def ready(self) -> bool:
        return not self.unhealthy and not self.stopping and time.monotonic() >= self.ready_at


def make_handler(app: App):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "lab-app"
        timeout = IDLE_TIMEOUT  # socket timeout: an idle kept-alive connection is closed after it

        def setup(self) -> None:
            super().setup()
            app.track(self.connection, idle=True)

        def finish(self) -> None:
            app.untrack(self.connection)
            super().finish()

        def parse_request(self) -> bool:
            app.track(self.connection, idle=False)  # the request line is in: busy until answered
            return super().parse_request()

        def handle_one_request(self) -> None:
            super().handle_one_request()
            app.track(self.connection, idle=True)

        def log_message(self, fmt, *args):  # access log would grow without bound in soak runs
            pass

        def _send(self, code: int, body: str, ctype: str = "text/plain; charset=utf-8") -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Served-By", app.name)
            self.send_header("X-App-Version", app.version)
            if app.stopping:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 (http.server naming)
            started = time.monotonic()
            url = urlparse(self.path)
            code = 200
            if url.path == "/health":
                code = 200 if app.ready() else 503
                self._send(code, "ok\n" if code == 200 else "starting\n")
                return
            if url.path == "/version":
                self._send(200, json.dumps({"version": app.version, "host": app.name}) + "\n",
                           "application/json")
                return
            if url.path == "/metrics":
                self._send(200, app.metrics.render(app.version),
                           "text/plain; version=0.0.4")
                return
            delay = parse_qs(url.query).get("delay", ["0"])[0]
            try:
                time.sleep(min(float(delay), 60.0))
            except ValueError:
                code = 400
            if code == 200 and app.error_rate > 0 and random.random() < app.error_rate:
                code = 500
            body = {200: f"hello from {app.name} {app.version}\n", 400: "bad delay\n",
                    500: "injected error\n"}[code]
            self._send(code, body)
            app.metrics.observe(code, time.monotonic() - started)

    return Handler


def env_file(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                k, v = line.split("=", 1)
                out[k.strip()] = v.strip().strip('"')
    return out


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--root", required=True, help="the app root (holds shared/app.env)")
    args = p.parse_args()
    root = Path(args.root)
    env = env_file(root / "shared" / "app.env")
    behavior = json.loads((HERE / "behavior.json").read_text()) if (HERE / "behavior.json").exists() else {}
    version = (HERE / "VERSION").read_text().strip()
    app = App(
        host=env.get("APP_HOST", "127.0.0.1"),
        name=env.get("APP_NAME", "app"),
        version=version,
        startup_delay=float(env.get("APP_STARTUP_DELAY", behavior.get("startup_delay", 0.5))),
        error_rate=float(env.get("APP_ERROR_RATE", behavior.get("error_rate", 0.0))),
        unhealthy=env.get("APP_UNHEALTHY", str(behavior.get("unhealthy", False))).lower() in ("1", "true", "yes"),
    )
    if float(behavior.get("leak_mb_per_second", 0)) > 0:
        threading.Thread(target=leak, args=(float(behavior["leak_mb_per_second"]),), daemon=True).start()
    if behavior.get("cpu_burn"):
        threading.Thread(target=burn, daemon=True).start()
    server = ThreadingHTTPServer((app.host, int(env.get("APP_PORT", "8080"))), make_handler(app))
    server.daemon_threads = False  # server_close() waits for requests in flight
    server.request_queue_size = 128

    def on_term(signum, frame):
        app.stopping = True
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    print(f"{app.name} {app.version} listening on {app.host}:{server.server_address[1]}", flush=True)
    server.serve_forever(poll_interval=0.2)
    server.socket.close()  # no new connections from here on
    grace = float(env.get("APP_STOP_IDLE_GRACE", STOP_IDLE_GRACE))
    while app.close_idle(grace):
        time.sleep(0.05)
    server.server_close()  # joins the request threads (every connection is closed by now)
    print(f"{app.name} {app.version} stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
