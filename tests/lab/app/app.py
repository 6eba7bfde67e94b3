#!/usr/bin/env python3
"""The lab's sample application (Python standard library only).

Endpoints: ``/`` (200, header ``X-Served-By``; ``?delay=<s>`` for a slow
request), ``/health`` (200 once ready, 503 before), ``/version`` (JSON),
``/metrics`` (Prometheus text format). On SIGTERM it stops accepting new
connections, finishes the requests in flight and exits.

Behaviour comes from ``behavior.json`` beside this file (baked into each
artifact) and may be overridden by the host's ``shared/app.env``:
``APP_STARTUP_DELAY`` (seconds before /health turns 200), ``APP_ERROR_RATE``
(share of ``/`` requests answered with 500), ``APP_UNHEALTHY`` (never ready).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

HERE = Path(__file__).resolve().parent
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

    def render(self, version: str, host: str) -> str:
        lines = [
            "# HELP app_build_info Version of the running build.",
            "# TYPE app_build_info gauge",
            f'app_build_info{{version="{version}",host="{host}"}} 1',
            "# HELP app_http_requests_total Requests served, by HTTP status code.",
            "# TYPE app_http_requests_total counter",
        ]
        with self.lock:
            codes = dict(self.by_code) or {"200": 0}
            for code, n in sorted(codes.items()):
                lines.append(f'app_http_requests_total{{code="{code}"}} {n}')
            lines += [
                "# HELP app_http_request_duration_seconds Request latency.",
                "# TYPE app_http_request_duration_seconds histogram",
            ]
            for le, n in zip(BUCKETS, self.bucket_counts):
                lines.append(f'app_http_request_duration_seconds_bucket{{le="{le}"}} {n}')
            lines.append(f'app_http_request_duration_seconds_bucket{{le="+Inf"}} {self.count}')
            lines.append(f"app_http_request_duration_seconds_sum {self.total:.6f}")
            lines.append(f"app_http_request_duration_seconds_count {self.count}")
        return "\n".join(lines) + "\n"


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

    def ready(self) -> bool:
        return not self.unhealthy and not self.stopping and time.monotonic() >= self.ready_at


def make_handler(app: App):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"
        server_version = "lab-app"

        def log_message(self, fmt, *args):  # access log would grow without bound in soak runs
            pass

        def _send(self, code: int, body: str, ctype: str = "text/plain; charset=utf-8") -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Served-By", app.name)
            self.send_header("X-App-Version", app.version)
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
                self._send(200, app.metrics.render(app.version, app.name),
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
    server.server_close()  # closes the listener, then joins the request threads
    print(f"{app.name} {app.version} stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
