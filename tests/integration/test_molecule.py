"""The collection's molecule scenarios (extensions/molecule), run against the lab."""

from __future__ import annotations

import re
import subprocess

import pytest

import labkit

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.mark.parametrize("scenario", ["app_service"])
def test_molecule_scenario(lab, scenario):
    env = labkit.ansible_env({"NO_COLOR": "1"})
    molecule = str(labkit.REPO / ".venv" / "bin" / "molecule")
    # forget an earlier run's state, so that prepare runs again
    subprocess.run([molecule, "reset", "-s", scenario], cwd=labkit.REPO, env=env, capture_output=True, timeout=120, check=False)
    r = subprocess.run([molecule, "test", "-s", scenario], cwd=labkit.REPO, env=env, capture_output=True,
                       text=True, timeout=600, check=False)
    out = ANSI.sub("", r.stdout + r.stderr)
    assert r.returncode == 0, out[-5000:]
    # prepare, converge (which changes), idempotence (which does not), verify: every action ran
    assert re.search(r"actions=(\d+)\s+successful=\1\b", out), out[-3000:]
    recaps = re.findall(r"web06\s+: ok=\d+\s+changed=(\d+)", out)
    assert recaps[:3] == ["1", "1", "0"], recaps
