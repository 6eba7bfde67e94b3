"""tests/bench/fault_matrix.py --quick against the lab: the matrix runs, and its rows kept the promise."""

from __future__ import annotations

import json
import subprocess
import sys

import labkit


def test_fault_matrix_quick(lab):
    run = subprocess.run([sys.executable, str(labkit.REPO / "tests" / "bench" / "fault_matrix.py"), "--quick"],
                         capture_output=True, text=True, timeout=1200, env=labkit.ansible_env(), check=False)
    data = json.loads(run.stdout)
    rows = {(r["fault"], r["step"]): r for r in data["rows"]}
    assert set(rows) == {("hang", "drained"), ("kill", "stopped")}
    # a host that accepts ssh and never answers: every step hits its timeout, it is left out of traffic
    hung = rows[("hang", "drained")]
    assert (hung["outcome"], hung["last_step"]) == ("timed_out", "drained"), hung
    assert hung["halted"] and hung["ledger_written"] and hung["touched_after_fault"] == []
    assert hung["host"] in hung["out_of_traffic"] and hung["failed_haproxy"] == 0 and hung["failed_nginx"] == 0
    assert rows[("kill", "stopped")]["rerun_ok"], rows[("kill", "stopped")]
    assert "fault" in run.stderr and "kept_promise" in run.stderr  # the table
    assert run.returncode == 0, run.stderr[-3000:]
