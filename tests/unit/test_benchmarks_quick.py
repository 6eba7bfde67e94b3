"""The benchmarks' quick modes run in make test, so a benchmark cannot rot unnoticed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.parametrize("script", ["bench_cmdb.py", "bench_plan.py"])
def test_quick_mode_prints_json(script):
    run = subprocess.run([sys.executable, str(BENCH / script), "--quick"], capture_output=True, text=True,
                         timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    data = json.loads(run.stdout)
    assert isinstance(data, dict) and data, run.stdout[:500]
