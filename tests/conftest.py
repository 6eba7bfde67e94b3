"""Fixtures shared by the unit and integration tests.

Unit tests import the collection as ``ansible_collections.sre.rollout`` (made
importable by ``make setup``'s ``.collections`` link). Integration tests use the
running lab, described by ``$LAB_DIR/lab.json`` (``make lab-up``).
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / ".collections"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

# Ansible's own collection loader, as ansible-test units installs it: plugins loaded in-process
# (the inventory plugin's tests) then find their doc fragments by FQCN (sre.rollout.cmdb).
from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder  # noqa: E402

_AnsibleCollectionFinder(paths=[str(REPO / ".collections")], scan_sys_paths=False)._install()

import labkit  # noqa: E402  (needs the path above)


def _worker_lab() -> None:
    """Under pytest-xdist (``make test``), worker gwN tests the N-th lab of ``$TEST_LAB_DIRS``.

    The labs run side by side (own LAB_DIR, own 127.0.NET.0/24), so each worker has a lab
    to itself and tests never see another worker's releases, locks or drained members.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    dirs = [d for d in os.environ.get("TEST_LAB_DIRS", "").split(os.pathsep) if d]
    if worker.startswith("gw") and dirs:
        index = int(worker[2:])
        if index >= len(dirs):
            raise pytest.UsageError(f"worker {worker} has no lab: TEST_LAB_DIRS names {len(dirs)}")
        os.environ["LAB_DIR"] = dirs[index]


_worker_lab()


def _profile(lab_dir: Path) -> str:
    try:
        return json.loads((lab_dir / "lab.json").read_text()).get("profile", "default")
    except (OSError, ValueError):
        return "default"


@pytest.fixture(autouse=True)
def _the_tests_lab(request, monkeypatch):
    """Each integration test has a lab to itself for its duration: its worker's, or the profile it asks for.

    ``make test`` runs a default lab and a LAB_PROFILE=production lab side by side, a worker each.
    A test marked ``profile("production")`` (or ``"default"``) runs on the lab of that profile
    whichever worker runs it: LAB_DIR points there for the test, and a lock on the lab keeps the
    other worker's tests off it meanwhile. Every integration test takes its lab's lock, so two tests
    never share a lab. Without a lab of the profile asked for (TEST_LABS=1), the test is skipped
    with the reason.
    """
    if "tests/integration/" not in request.node.nodeid.replace("\\", "/"):
        yield
        return
    target = labkit.lab_dir()
    wanted = request.node.get_closest_marker("profile")
    if wanted and _profile(target) != wanted.args[0]:
        dirs = [Path(d) for d in os.environ.get("TEST_LAB_DIRS", "").split(os.pathsep) if d]
        others = [d for d in dirs if _profile(d) == wanted.args[0]]
        if not others:
            pytest.skip(f"needs a LAB_PROFILE={wanted.args[0]} lab (make test runs one beside the default lab)")
        target = others[0]
        monkeypatch.setenv("LAB_DIR", str(target))
    target.mkdir(parents=True, exist_ok=True)
    with open(target / ".test.lock", "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture()
def lab(_the_tests_lab) -> dict:
    """The test's lab's description; fails (never skips) when the lab is down."""
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


@pytest.fixture()
def ansible(_the_tests_lab):
    """Run modules / playbooks against the lab through ansible-runner."""
    return labkit.Ansible()


def pytest_report_header(config):
    return f"LAB_DIR={os.environ.get('LAB_DIR', str(REPO / '.lab'))}"


# The whole releases take minutes each; the rest takes seconds. Started first, they spread over
# the xdist workers and the short tests fill the gaps, instead of one long release running last.
_LONG_FIRST = ("tests/integration/test_release.py", "tests/integration/test_release_failures.py")


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=lambda item: 0 if item.nodeid.startswith(_LONG_FIRST) else 1)
