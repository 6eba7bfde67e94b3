"""Load generator: the judge of "no request dropped".

Drives a fixed request rate at a URL for ``--duration`` seconds or until
SIGTERM/SIGINT, with two kinds of client side by side:

- ``fresh``: every request on a new connection (``Connection: close``);
- ``keepalive``: ``--keepalive-clients`` clients, each with one connection kept
  alive and reused for its next request, as a pooled client (a browser, a
  service client, another proxy) does. A pooled client does not probe a
  connection before reusing it and does not retry: a request lost because the
  server closed the kept-alive connection is a failure, counted as such. The
  client then opens a new connection for its next request.

``--keepalive-share`` (default 0.5) of the rate goes to the keep-alive clients.
Prints one JSON object: the totals (requests, ok, non_2xx by code,
conn_errors, errors, latency percentiles, requests per backend from
``X-Served-By``) and ``by_kind``: the same per client kind, with
``failures`` counted per kind of failure:

- ``refused``: the connection was refused;
- ``reset``: the connection was reset (or broken while sending);
- ``closed``: the server closed the connection without (a whole) answer;
- ``timeout``: no answer within ``--timeout``;
- ``non_2xx``: an answer that is not 2xx;
- ``other``: anything else (the exception's name is in ``errors_by_kind``).
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

KINDS = ("keepalive", "fresh")
FAILURE_KINDS = ("refused", "reset", "closed", "timeout", "non_2xx", "other")


def failure_kind(exc: BaseException) -> str:
    """The kind of a failed request, from the exception http.client / socket raised."""
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    # RemoteDisconnected (closed before the status line; a ConnectionResetError subclass, so first),
    # IncompleteRead (body cut short), BadStatusLine (an empty or broken status line): the server
    # closed the connection without a whole answer.
    if isinstance(exc, (http.client.RemoteDisconnected, http.client.IncompleteRead, http.client.BadStatusLine)):
        return "closed"
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return "reset"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timeout"
    return "other"


class Counts:
    """Requests of one client kind (or of all)."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.requests = 0
        self.ok = 0
        self.non_2xx: dict[str, int] = {}
        self.conn_errors = 0
        self.errors_by_kind: dict[str, int] = {}
        self.failures = {kind: 0 for kind in FAILURE_KINDS}
        self.reused = 0
        self.by_backend: dict[str, int] = {}

    def add(self, seconds: float, status: int | None, backend: str | None, error: str | None,
            failure: str | None, reused: bool) -> None:
        self.requests += 1
        self.latencies.append(seconds)
        self.reused += int(reused)
        if error is not None:
            self.conn_errors += 1
            self.errors_by_kind[error] = self.errors_by_kind.get(error, 0) + 1
        elif 200 <= status < 300:
            self.ok += 1
        else:
            self.non_2xx[str(status)] = self.non_2xx.get(str(status), 0) + 1
        if failure:
            self.failures[failure] += 1
        if backend:
            self.by_backend[backend] = self.by_backend.get(backend, 0) + 1

    def summary(self) -> dict:
        lat = sorted(self.latencies)

        def pct(p: float) -> float | None:
            if not lat:
                return None
            return round(lat[min(len(lat) - 1, int(p / 100.0 * len(lat)))] * 1000, 2)

        return {
            "requests": self.requests, "ok": self.ok, "non_2xx": self.non_2xx,
            "conn_errors": self.conn_errors, "errors_by_kind": self.errors_by_kind,
            "errors": sum(self.non_2xx.values()) + self.conn_errors, "failures": self.failures,
            "reused_connections": self.reused,
            "p50_ms": pct(50), "p99_ms": pct(99), "max_ms": pct(100), "by_backend": self.by_backend,
        }


class Stats:
    def __init__(self, events_path: str | None) -> None:
        self.lock = threading.Lock()
        self.total = Counts()
        self.kinds = {kind: Counts() for kind in KINDS}
        self.events = open(events_path, "w") if events_path else None

    def record(self, kind: str, t_start: float, t_end: float, status: int | None, backend: str | None,
               exc: BaseException | None, reused: bool = False) -> None:
        error = type(exc).__name__ if exc is not None else None
        failure = failure_kind(exc) if exc is not None else (None if 200 <= status < 300 else "non_2xx")
        with self.lock:
            for counts in (self.total, self.kinds[kind]):
                counts.add(t_end - t_start, status, backend, error, failure, reused)
            if self.events:
                self.events.write(json.dumps({"t_start": t_start, "t_end": t_end, "kind": kind, "status": status,
                                              "backend": backend, "error": error, "failure": failure,
                                              "reused": reused}) + "\n")

    def summary(self, url: str, rate: float, elapsed: float, keepalive_clients: int) -> dict:
        out = {"url": url, "rate": rate, "duration_s": round(elapsed, 2), **self.total.summary()}
        out["by_kind"] = {kind: counts.summary() for kind, counts in self.kinds.items()}
        out["keepalive_clients"] = keepalive_clients
        return out


def _path(url) -> str:
    path = url.path or "/"
    return path + ("?" + url.query if url.query else "")


def _exchange(conn: http.client.HTTPConnection, path: str, headers: dict) -> tuple[int, str | None, bool]:
    """One request and its whole answer; (status, X-Served-By, whether the server will close)."""
    conn.request("GET", path, headers=headers)
    resp = conn.getresponse()
    resp.read()  # a truncated body raises IncompleteRead: counted as a dropped request
    return resp.status, resp.getheader("X-Served-By"), resp.will_close


def one_request(url, timeout: float, stats: Stats) -> None:
    """A fresh-connection request."""
    t0 = time.time()
    status = backend = error = None
    conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=timeout)
    try:
        status, backend, _body = _exchange(conn, _path(url), {"Connection": "close", "User-Agent": "sre-rollout-load"})
    except Exception as exc:  # noqa: BLE001 - every failure kind is a data point
        error = exc
    finally:
        conn.close()
    stats.record("fresh", t0, time.time(), status, backend, error)


def keepalive_client(url, timeout: float, interval: float, offset: float, start: float, duration: float,
                     stop: threading.Event, stats: Stats) -> None:
    """One pooled client: requests every ``interval`` seconds on one kept-alive connection.

    No probe before reuse and no retry: a failed request is recorded, the connection is dropped and the
    next request opens a new one.
    """
    conn: http.client.HTTPConnection | None = None
    used = False
    n = 0
    headers = {"User-Agent": "sre-rollout-load"}
    try:
        while not stop.is_set():
            due = start + offset + n * interval
            now = time.monotonic()
            if due - start >= duration:
                break
            if due > now:
                stop.wait(due - now)
                continue
            n += 1
            if conn is None:
                conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=timeout)
                used = False
            reused = used
            t0 = time.time()
            status = backend = error = None
            try:
                status, backend, will_close = _exchange(conn, _path(url), headers)
                used = True
            except Exception as exc:  # noqa: BLE001 - every failure kind is a data point
                error, will_close = exc, True
            stats.record("keepalive", t0, time.time(), status, backend, error, reused)
            if will_close:
                conn.close()
                conn = None
    finally:
        if conn is not None:
            conn.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True)
    p.add_argument("--rate", type=float, default=50.0, help="requests per second, both kinds together")
    p.add_argument("--duration", type=float, default=10.0, help="seconds (upper bound when signalled)")
    p.add_argument("--timeout", type=float, default=10.0, help="per-request timeout, seconds")
    p.add_argument("--concurrency", type=int, default=16, help="threads for the fresh-connection requests")
    p.add_argument("--keepalive-share", type=float, default=0.5,
                   help="share of the rate sent by keep-alive clients, 0..1 (default 0.5)")
    p.add_argument("--keepalive-clients", type=int, default=8, help="keep-alive clients (connections)")
    p.add_argument("--events", help="write every request as a JSON line to this file")
    args = p.parse_args()
    url = urlparse(args.url)
    if url.scheme != "http" or not url.hostname:
        print(json.dumps({"error": f"only http:// URLs are supported, got {args.url!r}"}))
        return 2
    if not 0 <= args.keepalive_share <= 1 or args.keepalive_clients < 1 or args.rate <= 0:
        print(json.dumps({"error": "--keepalive-share must be within 0..1, --keepalive-clients >= 1, --rate > 0"}))
        return 2
    stats = Stats(args.events)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    keepalive_rate = args.rate * args.keepalive_share
    fresh_rate = args.rate - keepalive_rate
    clients = args.keepalive_clients if keepalive_rate > 0 else 0
    start = time.monotonic()
    threads = []
    for i in range(clients):
        interval = clients / keepalive_rate
        t = threading.Thread(target=keepalive_client, daemon=True,
                             args=(url, args.timeout, interval, interval * i / clients, start, args.duration,
                                   stop, stats))
        t.start()
        threads.append(t)
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        n = 0
        while not stop.is_set() and fresh_rate > 0:
            now = time.monotonic()
            if now - start >= args.duration:
                break
            due = start + n / fresh_rate
            if due > now:
                stop.wait(due - now)
                continue
            pool.submit(one_request, url, args.timeout, stats)
            n += 1
        if fresh_rate <= 0:
            stop.wait(max(0.0, args.duration - (time.monotonic() - start)))
    stop.set()
    for t in threads:
        t.join(args.timeout + 1)
    elapsed = time.monotonic() - start
    with stats.lock:
        if stats.events:
            stats.events.close()
            stats.events = None
        summary = stats.summary(args.url, args.rate, elapsed, clients)
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
