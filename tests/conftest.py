"""Fixtures shared by the unit and integration tests.

Unit tests import the collection as ``ansible_collections.sre.rollout`` (made
importable by ``make setup``'s ``.collections`` link). Integration tests use the
running lab, described by ``$LAB_DIR/lab.json`` (``make lab-up``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / ".collections"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import labkit  # noqa: E402  (needs the path above)


@pytest.fixture(scope="session")
def lab() -> dict:
    """The running lab's description; fails (never skips) when the lab is down."""
    return labkit.load_lab()


@pytest.fixture()
def load(lab):
    """Start the load generator against a URL; stop it and get its JSON summary.

    Usage::

        with load(lab["haproxy"]["url"], rate=40) as run:
            ...  # do things under load
        assert run.summary["errors"] == 0
    """
    return labkit.LoadRun


@pytest.fixture(scope="session")
def ansible():
    """Run modules / playbooks against the lab through ansible-runner."""
    return labkit.Ansible()


def pytest_report_header(config):
    return f"LAB_DIR={os.environ.get('LAB_DIR', str(REPO / '.lab'))}"
