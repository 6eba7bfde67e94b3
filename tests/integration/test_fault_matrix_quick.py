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
    assert set(rows) == {("unreachable", "drained"), ("kill", "stopped")}
    unreachable = rows[("unreachable", "drained")]
    assert (unreachable["outcome"], unreachable["last_step"]) == ("unreachable", "drained"), unreachable
    assert unreachable["halted"] and unreachable["ledger_written"] and unreachable["touched_after_fault"] == []
    assert unreachable["host"] in unreachable["locked"] and unreachable["host"] in unreachable["out_of_traffic"]
    assert rows[("kill", "stopped")]["rerun_ok"], rows[("kill", "stopped")]
    assert "fault" in run.stderr and "kept_promise" in run.stderr  # the table
    assert run.returncode == 0, run.stderr[-3000:]
