"""Benchmark: plan a release over 5,000 hosts; prints one JSON document.

Run: .venv/bin/python tests/bench/bench_plan.py [--hosts 5000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".collections"))

from ansible_collections.sre.rollout.plugins.module_utils._plan import build_plan, format_table  # noqa: E402


def scenario(hosts: int, zones: int, excluded: int) -> dict:
    host_list = [{"name": f"web{i:05d}", "zone": f"zone-{i % zones}"} for i in range(hosts)]
    return {"hosts": host_list,
            "excluded": {f"web{i:05d}": "unhealthy" for i in range(0, excluded * 7, 7)},
            "min_ready": "60%"}


def measure(kwargs: dict, repeat: int) -> dict:
    timings = []
    for _unused in range(repeat):
        start = time.perf_counter()
        plan = build_plan(**kwargs).as_dict()
        table = format_table(plan)
        timings.append(time.perf_counter() - start)
    return {"median_ms": round(1000 * statistics.median(timings), 2),
            "max_ms": round(1000 * max(timings), 2),
            "batches": len(plan["batches"]), "batch_size": plan["batch_size"],
            "released": len(plan["order"]), "table_lines": len(table)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="200 hosts, once: the CI run that keeps it working")
    args = parser.parse_args()
    if args.quick:
        args.hosts, args.repeat = 200, 1
    results = {}
    for name, zones in (("3_zones", 3), ("50_zones", 50), ("zone_per_host", args.hosts)):
        results[name] = measure(scenario(args.hosts, zones, excluded=min(50, args.hosts // 10)), args.repeat)
    print(json.dumps({"benchmark": "release_plan", "hosts": args.hosts, "repeat": args.repeat,
                      "python": sys.version.split()[0], "results": results}, indent=2))


if __name__ == "__main__":
    main()
