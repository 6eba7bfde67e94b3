"""Every integration test starts from a serving lab.

Tests leave the lab as they found it, but some of them restart apps or reload
HAProxy; a health check needs a second or two to see a host come back. This
waits (bounded) until every host answers /health and is UP in HAProxy, and
fails with the lab's state when it does not, so a test never starts on a host
that is still coming back.
"""

from __future__ import annotations

import time
import urllib.request

import pytest

from release_checks import haproxy_states, reset_lab


def _serving(lab: dict) -> tuple[bool, dict]:
    health = {}
    for h in lab["hosts"]:
        try:
            with urllib.request.urlopen(h["url"] + "/health", timeout=2) as r:
                health[h["name"]] = r.status
        except OSError as exc:
            health[h["name"]] = type(exc).__name__
    states = haproxy_states(lab)
    ok = all(v == 200 for v in health.values()) and set(states.values()) == {"UP"}
    return ok, {"health": health, "haproxy": states}


@pytest.fixture(autouse=True)
def lab_is_serving(request):
    if "lab" not in request.fixturenames:
        yield
        return
    lab = request.getfixturevalue("lab")
    deadline = time.monotonic() + 30
    ok, seen = _serving(lab)
    while not ok and time.monotonic() < deadline:
        time.sleep(0.5)
        ok, seen = _serving(lab)
    assert ok, f"the lab is not serving before {request.node.name}: {seen}"
    yield


@pytest.fixture()
def fresh(lab):
    """The lab reset before and after: every host on app-1.0.0, ready, no silence, no lock."""
    reset_lab()
    yield lab
    reset_lab()
