# Copyright: sre.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Lab fault injector: at a chosen step of one host's swap, cut the host off, hang it, or kill
the controller. For the failure-path tests and the fault matrix (tests/bench/fault_matrix.py).

A callback runs in ansible-playbook's main process and sees each result before the next task
of that host starts, so the fault lands exactly between two steps, every time.

Environment:
  LAB_FAULT        ``<host>:<step>:<kind>``; step is one of STEP_TASKS below, kind one of
                   ``unreachable`` / ``hang`` (written to LAB_FAULT_FLAG, which the lab sshd's
                   fault gate reads), ``kill`` (SIGKILL to ansible-playbook itself) or
                   ``alertmanager-down`` (the lab's Alertmanager stopped by its pidfile).
  LAB_FAULT_FLAG   the gate's flag file for the host (``$LAB_DIR/faults/<address>``).
  LAB_FAULT_ONCE   a file created when the fault fires; while it exists the fault never fires again.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: lab_faults
type: aggregate
short_description: Inject a fault at one step of one host's swap (lab tests only)
description:
  - Reads LAB_FAULT, LAB_FAULT_FLAG and LAB_FAULT_ONCE from the environment; does nothing without LAB_FAULT.
requirements:
  - enabled with ANSIBLE_CALLBACKS_ENABLED and found through ANSIBLE_CALLBACK_PLUGINS
"""

# step -> (when, task name prefix): the fault fires when that task ends (ok or skipped) for the
# host, or, for "start", when the task starts (and then ``delay`` seconds later, in the task).
STEP_TASKS: dict[str, tuple[str, str, float]] = {
    "before": ("end", "Swap | Read the host's release state", 0),
    "silenced": ("end", "Steps | Silence the host's alerts", 0),
    "drained": ("end", "Steps | Drain the host from every load balancer", 0),
    "quiet": ("end", "Steps | Quiet period", 0),
    "stopped": ("end", "App service | Confirm the port is closed", 0),
    "activated": ("end", "Steps | Activate the artifact", 0),
    "started": ("end", "App service | Wait for the port to open", 0),
    "health": ("end", "Steps | Wait until the application is healthy", 0),
    "warm-up": ("start", "Steps | Warm up and put the host back", 0.3),
    "enabled": ("end", "Steps | Warm up and put the host back", 0),
    "soak": ("start", "Canary | Soak and judge", 2.0),
}


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "lab_faults"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        spec = os.environ.get("LAB_FAULT", "")
        self.host, self.step, self.kind = (spec.split(":") + ["", "", ""])[:3] if spec else ("", "", "")
        if self.step and self.step not in STEP_TASKS:
            raise ValueError(f"LAB_FAULT step {self.step!r} is not one of {', '.join(STEP_TASKS)}")
        if self.kind and self.kind not in ("unreachable", "hang", "kill", "alertmanager-down"):
            raise ValueError(f"LAB_FAULT kind {self.kind!r} is not unreachable, hang, kill or alertmanager-down")
        self.flag = os.environ.get("LAB_FAULT_FLAG", "")
        self.once = os.environ.get("LAB_FAULT_ONCE", "")

    def _armed(self) -> bool:
        return bool(self.host) and not (self.once and Path(self.once).exists())

    def _fire(self) -> None:
        if self.once:
            Path(self.once).write_text(f"{self.host}:{self.step}:{self.kind} at {time.time():.3f}\n")
        if self.kind == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if self.kind == "alertmanager-down":  # the lab's own Alertmanager, by its pidfile
            pid = int((Path(os.environ["LAB_DIR"]) / "run" / "alertmanager.pid").read_text().split()[0])
            os.kill(pid, signal.SIGTERM)
            for _attempt in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.1)
            return
        Path(self.flag).parent.mkdir(parents=True, exist_ok=True)
        Path(self.flag).write_text(self.kind + "\n")

    def _matches(self, when: str, task_name: str) -> bool:
        want_when, prefix = STEP_TASKS[self.step][:2]
        # get_name() puts the role in front: "sre.rollout.release : Steps | ..."
        return want_when == when and task_name.split(" : ", 1)[-1].startswith(prefix)

    def v2_runner_on_start(self, host, task):
        # the worker has started the task for this host: fire ``delay`` seconds into it
        if self._armed() and host.get_name() == self.host and self._matches("start", task.get_name()):
            timer = threading.Timer(STEP_TASKS[self.step][2], self._fire)
            timer.daemon = True
            timer.start()

    def _on_end(self, result) -> None:
        if not self._armed() or result._host.get_name() != self.host:
            return
        if self._matches("end", result._task.get_name()):
            self._fire()

    def v2_runner_on_ok(self, result):
        self._on_end(result)

    def v2_runner_on_skipped(self, result):
        self._on_end(result)
