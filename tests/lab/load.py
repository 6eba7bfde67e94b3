#!/usr/bin/env python3
"""Load generator: the judge of "no request dropped".

Drives a fixed request rate at a URL for ``--duration`` seconds or until
SIGTERM/SIGINT, then prints one JSON object: requests, ok (2xx), non_2xx by
code, conn_errors (refused, reset, timeout, truncated answer), errors (their
sum), latency percentiles and requests per backend (``X-Served-By``).
Each request uses a fresh connection, so a reset or refused connection is
seen as such, not hidden by a retry.
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse


class Stats:
    def __init__(self, events_path: str | None) -> None:
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.requests = 0
        self.ok = 0
        self.non_2xx: dict[str, int] = {}
        self.conn_errors = 0
        self.errors_by_kind: dict[str, int] = {}
        self.by_backend: dict[str, int] = {}
        self.events = open(events_path, "w") if events_path else None

    def record(self, t_start: float, t_end: float, status: int | None, backend: str | None,
               error: str | None) -> None:
        with self.lock:
            self.requests += 1
            self.latencies.append(t_end - t_start)
            if error is not None:
                self.conn_errors += 1
                self.errors_by_kind[error] = self.errors_by_kind.get(error, 0) + 1
            elif 200 <= status < 300:
                self.ok += 1
            else:
                self.non_2xx[str(status)] = self.non_2xx.get(str(status), 0) + 1
            if backend:
                self.by_backend[backend] = self.by_backend.get(backend, 0) + 1
            if self.events:
                self.events.write(json.dumps({"t_start": t_start, "t_end": t_end, "status": status,
                                              "backend": backend, "error": error}) + "\n")

    def summary(self, url: str, rate: float, elapsed: float) -> dict:
        lat = sorted(self.latencies)

        def pct(p: float) -> float | None:
            if not lat:
                return None
            return round(lat[min(len(lat) - 1, int(p / 100.0 * len(lat)))] * 1000, 2)

        non_2xx_total = sum(self.non_2xx.values())
        return {
            "url": url, "rate": rate, "duration_s": round(elapsed, 2),
            "requests": self.requests, "ok": self.ok, "non_2xx": self.non_2xx,
            "conn_errors": self.conn_errors, "errors_by_kind": self.errors_by_kind,
            "errors": non_2xx_total + self.conn_errors,
            "p50_ms": pct(50), "p99_ms": pct(99), "max_ms": pct(100),
            "by_backend": self.by_backend,
        }


def one_request(url, timeout: float, stats: Stats) -> None:
    t0 = time.time()
    status = backend = error = None
    conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=timeout)
    try:
        path = url.path or "/"
        if url.query:
            path += "?" + url.query
        conn.request("GET", path, headers={"Connection": "close", "User-Agent": "sre-rollout-load"})
        resp = conn.getresponse()
        resp.read()  # a truncated body raises IncompleteRead: counted as a dropped request
        status = resp.status
        backend = resp.getheader("X-Served-By")
    except Exception as exc:  # noqa: BLE001 - every failure kind is a data point
        error = type(exc).__name__
    finally:
        conn.close()
    stats.record(t0, time.time(), status, backend, error)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--url", required=True)
    p.add_argument("--rate", type=float, default=50.0, help="requests per second")
    p.add_argument("--duration", type=float, default=10.0, help="seconds (upper bound when signalled)")
    p.add_argument("--timeout", type=float, default=10.0, help="per-request timeout, seconds")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--events", help="write every request as a JSON line to this file")
    args = p.parse_args()
    url = urlparse(args.url)
    if url.scheme != "http" or not url.hostname:
        print(json.dumps({"error": f"only http:// URLs are supported, got {args.url!r}"}))
        return 2
    stats = Stats(args.events)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    start = time.monotonic()
    interval = 1.0 / args.rate
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        n = 0
        while not stop.is_set():
            now = time.monotonic()
            if now - start >= args.duration:
                break
            due = start + n * interval
            if due > now:
                stop.wait(due - now)
                continue
            pool.submit(one_request, url, args.timeout, stats)
            n += 1
    elapsed = time.monotonic() - start
    if stats.events:
        stats.events.close()
    print(json.dumps(stats.summary(args.url, args.rate, elapsed), sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
