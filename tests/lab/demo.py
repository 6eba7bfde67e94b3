"""`make demo`: a real release in the lab, under load, with its summary.

1. Puts the lab back on app-1.0.0 (lab.py reset) and starts a constant load
   through HAProxy and through nginx (the lab's nginx mode, the Lua balancer
   by default), each half from clients that keep their connection alive and
   half from clients that open a fresh connection per request.
2. Releases app-1.1.0 with playbooks/release.yml: canary, soak, batches.
3. Stops the load and prints the summary: the plan, per-batch times, the load
   generator's counts per LB and per client kind with the failures per kind
   (refused, reset, closed, timeout, non_2xx, other; all must be 0), and where
   the ledger and report are.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "tests"))

import labkit  # noqa: E402

VERSION = os.environ.get("DEMO_VERSION", "1.1.0")
FAILURE_KINDS = ("refused", "reset", "closed", "timeout", "non_2xx", "other")


def main() -> int:
    lab = labkit.load_lab()
    subprocess.run([sys.executable, str(HERE / "lab.py"), "reset"], check=True, env=labkit.ansible_env())
    log = REPO / ".rollout" / "demo-release.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"demo: releasing app-{VERSION} onto {len(lab['hosts'])} hosts under load "
          f"(ansible output: {log})", flush=True)
    release_id = f"demo-{VERSION}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    started = time.monotonic()
    with labkit.LoadRun(lab["haproxy"]["url"], rate=40) as via_haproxy, \
            labkit.LoadRun(lab["nginx"]["url"], rate=20) as via_nginx:
        with open(log, "w") as out:
            rc = subprocess.run([str(REPO / ".venv" / "bin" / "ansible-playbook"), "-i",
                                 str(REPO / "inventories" / "lab"), str(REPO / "playbooks" / "release.yml"),
                                 "-e", f"rollout_version={VERSION}", "-e", "rollout_approval=none",
                                 "-e", f"rollout_release_id={release_id}"],
                                cwd=REPO, env=labkit.ansible_env(), stdout=out, stderr=subprocess.STDOUT, check=False).returncode
    elapsed = time.monotonic() - started
    ledger_dir = REPO / ".rollout" / "ledger"
    ledger = ledger_dir / f"{release_id}.json"
    entry = json.loads(ledger.read_text()) if ledger.exists() else {}
    report_dir = REPO / ".rollout" / "reports" / release_id
    timeline = {}
    if (report_dir / "timeline.json").exists():
        timeline = json.loads((report_dir / "timeline.json").read_text())

    print("\n=== release summary ===")
    print(f"release     {release_id}  result: {entry.get('result', 'unknown')} "
          f"(ansible-playbook rc={rc}, {elapsed:.0f}s)")
    plan = entry.get("plan", {})
    if plan:
        print(f"canary      {', '.join(plan.get('canary', []))}  (verdict: {entry.get('canary', {}).get('verdict')})")
        for i, b in enumerate(plan.get("batches", []), start=1):
            print(f"batch {i}     {', '.join(b)}")
    for b in timeline.get("batches", []):
        dur = b.get("duration")
        print(f"  {b.get('play', '')[:40]:40s} {', '.join(b.get('hosts', [])):30s} "
              f"{dur if dur is None else round(dur, 1)}s")
    for h in entry.get("hosts", []):
        print(f"host        {h['host']}: {h['outcome']} (now {h['current']})")
    nginx_name = f"nginx ({lab['nginx'].get('mode', 'reload')} mode)"
    for name, run in (("HAProxy", via_haproxy.summary), (nginx_name, via_nginx.summary)):
        print(f"load via {name}: requests={run['requests']} ok={run['ok']} errors={run['errors']}")
        for kind, counts in run["by_kind"].items():
            failures = "  ".join(f"{k}={counts['failures'][k]}" for k in FAILURE_KINDS)
            print(f"  {kind:9s} requests={counts['requests']:<6d} errors={counts['errors']:<4d} {failures}  "
                  f"p99={counts['p99_ms']}ms")
    print(f"ledger      {ledger if ledger.exists() else 'none (the release stopped before finalize)'}")
    print(f"report      {report_dir / 'report.html'}  (timeline of every host's steps, canary charts)")
    print(f"history     {report_dir.parent / 'history.html'}  (every release of the ledger; "
          "ansible-playbook sre.rollout.history rebuilds it)")
    errors = via_haproxy.summary["errors"] + via_nginx.summary["errors"]
    print(f"errors      {errors}")
    if rc != 0 or errors != 0:
        print(f"demo: FAILED — see {log}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
