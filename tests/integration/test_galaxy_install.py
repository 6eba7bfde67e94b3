"""The collection as a Galaxy user gets it: `ansible-galaxy collection build`, installed into an
empty collections path, playbooks run by FQCN from a directory outside the collection (no
checkout on any path, no ansible.cfg) against the lab's inventory. The release serves every
request and writes nothing inside the installed collection; its state lands under ./.rollout."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

import labkit
from release_checks import assert_all_serving, release_id, versions

pytestmark = [pytest.mark.lab, pytest.mark.slow]


def snapshot(root: Path) -> dict[str, str]:
    """Every file and directory under root, with a digest of each file."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        out[rel] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def user_env(collections: Path) -> dict[str, str]:
    """A user's environment: the installed collection only, no ansible.cfg, the report callback enabled."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "SRE_ROLLOUT_"))}
    env.update(PATH=f"{labkit.REPO / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}",
               ANSIBLE_COLLECTIONS_PATH=str(collections), ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false",
               ANSIBLE_CALLBACKS_ENABLED="sre.rollout.release_report", ANSIBLE_NOCOLOR="1",
               ANSIBLE_HOST_KEY_CHECKING="true", LAB_DIR=str(labkit.lab_dir()))
    return env


def test_built_collection_releases_the_lab_by_fqcn(fresh, tmp_path):
    lab = fresh
    tarball = labkit.build_collection(tmp_path / "dist")
    assert tarball.name == f"sre-rollout-{labkit.galaxy_version()}.tar.gz"
    collections = tmp_path / "collections"
    collections.mkdir()
    workdir = tmp_path / "work"  # where the user runs ansible-playbook
    workdir.mkdir()
    env = user_env(collections)
    proc = subprocess.run(["ansible-galaxy", "collection", "install", "--offline", str(tarball), "-p",
                           str(collections)], cwd=workdir, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    installed = collections / "ansible_collections" / "sre" / "rollout"
    # the user's tarball: no lab, no development configuration
    for dev_only in ("ansible.cfg", "inventories", "tests", "scripts", "Makefile", "pytest.ini", ".ansible-lint",
                     "requirements.txt", ".ci", "extensions/molecule"):
        assert not (installed / dev_only).exists(), dev_only
    proc = subprocess.run(["ansible-galaxy", "collection", "list", "sre.rollout", "--format", "json"], cwd=workdir,
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list(json.loads(proc.stdout)) == [str(collections / "ansible_collections")]  # only the installed one
    before = snapshot(installed)

    rid = release_id("galaxy")
    cmd = ["ansible-playbook", "-i", str(labkit.REPO / "inventories" / "lab"), "sre.rollout.release",
           "-e", f"@{labkit.lab_dir() / 'lab_vars.json'}", "-e", "rollout_version=1.1.0",
           "-e", f"rollout_release_id={rid}", "-e", "rollout_approval=none", "-e", '{"rollout_backup_paths": []}']
    with labkit.LoadRun(lab["haproxy"]["url"], rate=30) as load:
        proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=1200, check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert load.summary["errors"] == 0, load.summary
    assert set(versions(lab).values()) == {"1.1.0"}
    assert_all_serving(lab)

    assert snapshot(installed) == before, "the release wrote inside the installed collection"
    entry = json.loads((workdir / ".rollout" / "ledger" / f"{rid}.json").read_text())
    assert entry["result"] == "success"
    assert (workdir / ".rollout" / "reports" / rid / "report.html").is_file()
    assert (workdir / ".rollout" / "cache" / "app-1.1.0.tar.gz").is_file()
    assert f"release report: {workdir / '.rollout' / 'reports' / rid / 'report.html'}" in proc.stdout
