"""The load judge's failure kinds and per-kind counts (tests/lab/load.py), without a server."""

from __future__ import annotations

import http.client
import importlib.util
import socket
from pathlib import Path

import pytest

LOAD_PY = Path(__file__).resolve().parents[2] / "lab" / "load.py"
spec = importlib.util.spec_from_file_location("lab_load", LOAD_PY)
load = importlib.util.module_from_spec(spec)
spec.loader.exec_module(load)


@pytest.mark.parametrize("exc, kind", [
    (ConnectionRefusedError(), "refused"),
    (ConnectionResetError(), "reset"),
    (BrokenPipeError(), "reset"),
    (http.client.RemoteDisconnected("closed"), "closed"),
    (http.client.IncompleteRead(b"ab", 3), "closed"),
    (http.client.BadStatusLine(""), "closed"),
    (socket.timeout(), "timeout"),
    (TimeoutError(), "timeout"),
    (ValueError("odd"), "other"),
])
def test_failure_kinds(exc, kind):
    assert load.failure_kind(exc) == kind


def test_counts_per_client_kind_and_in_total():
    stats = load.Stats(None)
    stats.record("keepalive", 0.0, 0.01, 200, "web01", None, reused=True)
    stats.record("keepalive", 0.0, 0.02, None, None, http.client.RemoteDisconnected("x"), reused=True)
    stats.record("fresh", 0.0, 0.01, 503, "web02", None)
    stats.record("fresh", 0.0, 0.01, None, None, ConnectionRefusedError())
    out = stats.summary("http://x/", 4, 1.0, 8)
    keepalive, fresh = out["by_kind"]["keepalive"], out["by_kind"]["fresh"]
    assert (keepalive["requests"], keepalive["errors"], keepalive["reused_connections"]) == (2, 1, 2)
    assert keepalive["failures"] == {"refused": 0, "reset": 0, "closed": 1, "timeout": 0, "non_2xx": 0, "other": 0}
    assert fresh["failures"]["non_2xx"] == 1 and fresh["failures"]["refused"] == 1 and fresh["non_2xx"] == {"503": 1}
    assert (out["requests"], out["ok"], out["errors"], out["conn_errors"]) == (4, 1, 3, 2)
    assert out["errors_by_kind"] == {"RemoteDisconnected": 1, "ConnectionRefusedError": 1}
