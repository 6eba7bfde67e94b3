"""Faults the lab can inject into a release, for the failure-path tests and the fault matrix.

- ``unreachable`` / ``hang``: the lab sshd's fault gate (tests/lab/lab.py ``write_fault_gate``) cuts a
  host's ssh sessions off, or holds them, while ``$LAB_DIR/faults/<address>`` says so;
- ``kill``: ansible-playbook is SIGKILLed;
- ``stop-hangs``: the host's ``bin/stop`` hangs (tests/lab/app/bin/stop).

The fault fires at an exact step of one host's swap, from the ``lab_faults`` callback
(tests/lab/callbacks/lab_faults.py), which sees each result before the next task starts.
"""

from __future__ import annotations

from pathlib import Path

import labkit

CALLBACKS = labkit.REPO / "tests" / "lab" / "callbacks"
# the steps of a swap a fault can follow, in order (the plugin's vocabulary, plus "before")
STEPS = ("before", "silenced", "drained", "quiet", "stopped", "activated", "started", "health", "warm-up", "enabled")


def host(lab: dict, name: str) -> dict:
    return next(h for h in lab["hosts"] if h["name"] == name)


def flag_file(lab: dict, name: str) -> Path:
    return labkit.lab_dir() / "faults" / host(lab, name)["address"]


def fault_env(lab: dict, name: str, step: str, kind: str, once: Path) -> dict:
    """Environment for ansible-playbook that injects ``kind`` into ``name``'s swap after ``step``."""
    return {
        "ANSIBLE_CALLBACK_PLUGINS": str(CALLBACKS),
        "ANSIBLE_CALLBACKS_ENABLED": "sre.rollout.release_report,lab_faults",
        "LAB_FAULT": f"{name}:{step}:{kind}",
        "LAB_FAULT_FLAG": str(flag_file(lab, name)) if kind in ("unreachable", "hang") else "",
        "LAB_FAULT_ONCE": str(once),
    }


def clear(lab: dict) -> None:
    """Every host answers again, no stop hangs."""
    for h in lab["hosts"]:
        flag_file(lab, h["name"]).unlink(missing_ok=True)
        stop_hangs(h, False)


def stop_hangs(h: dict, on: bool) -> None:
    f = Path(h["root"]) / "shared" / "fault-stop-hangs"
    if on:
        f.write_text("hang\n")
    else:
        f.unlink(missing_ok=True)
