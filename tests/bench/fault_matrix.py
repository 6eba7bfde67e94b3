"""The fault matrix: a release of the running lab with one fault injected at one step of one host's swap.

A row is a fault x step. The fault hits the first host of batch 1 (the canary is already released):
- ``unreachable``: its ssh sessions are refused from that step on (the lab sshd's fault gate);
- ``hang``: its ssh sessions block from that step on (every step has a timeout);
- ``kill``: ansible-playbook is SIGKILLed at that step, then the same release is run again.

Columns: halted (the run failed, or for ``kill`` was killed), hosts touched after the fault (later
batches that were swapped anyway), ledger written, hosts left out of traffic / silenced / locked at the
end, and failed requests through HAProxy and nginx. For ``kill`` the re-run must finish: ``rerun_ok``.

    .venv/bin/python tests/bench/fault_matrix.py            # every fault x step (about a minute a row)
    .venv/bin/python tests/bench/fault_matrix.py --quick    # two rows, for CI
    .venv/bin/python tests/bench/fault_matrix.py --faults unreachable --steps drained,stopped

Prints the matrix as JSON (stdout) and as a table (stderr). Needs a running lab (make lab-up).
Exit 0 when every row kept the promise: halted, nothing touched after the fault, ledger written,
no failed request, and (kill) the re-run finished with every host serving.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent.parent / ".collections"))

import faults  # noqa: E402
import labkit  # noqa: E402
from release_checks import (activations, active_silences, haproxy_states, locks, nginx_down_members,  # noqa: E402
                            planned, release_id, reset_lab, versions)

FAULTS = ("unreachable", "hang", "kill")
QUICK = (("hang", "drained"), ("kill", "stopped"))
FAST = {"rollout_version": "1.1.0", "rollout_approval": "none", "rollout_canary_analysis": False,
        "rollout_canary_soak": 2, "rollout_backup_paths": [], "rollout_step_timeout": 5}


def _ledger(rid: str) -> dict | None:
    path = labkit.REPO / ".rollout" / "ledger" / f"{rid}.json"
    return json.loads(path.read_text()) if path.exists() else None


def run_row(ansible, lab: dict, kind: str, step: str) -> dict:
    reset_lab()
    plan = planned(ansible, lab)
    victim = plan["batches"][0][0]
    later = [h for b in plan["batches"][1:] for h in b]
    rid = release_id(f"m-{kind}-{step}")
    with tempfile.TemporaryDirectory() as tmp:
        env = faults.fault_env(lab, victim, step, kind, Path(tmp) / "fired")
        ha = labkit.LoadRun(lab["haproxy"]["url"], rate=20)
        ng = labkit.LoadRun(lab["nginx"]["url"], rate=10)
        started = time.monotonic()
        with ha, ng:
            run = ansible.playbook("playbooks/release.yml", envvars=env, extravars={**FAST, "rollout_release_id": rid})
            fired = (Path(tmp) / "fired").exists()
            rerun = None
            if kind == "kill":
                faults.clear(lab)
                # the re-run has no fault to cut short: the role's own step timeout, not the matrix's 5 s,
                # so that a loaded machine does not time a healthy step out
                rerun = ansible.playbook("playbooks/release.yml", extravars={
                    **FAST, "rollout_release_id": rid, "rollout_step_timeout": 60})
        seconds = round(time.monotonic() - started, 1)
    hosts = {h["name"]: h for h in lab["hosts"]}
    entry = _ledger(rid)
    out = [n for n, s in haproxy_states(lab).items() if s != "UP"]
    down = set(nginx_down_members(lab))
    out += [h["name"] for h in lab["hosts"] if f"{h['address']}:{h['port']}" in down and h["name"] not in out]
    silenced = sorted({m["value"] for s in active_silences(lab) for m in s["matchers"] if m["name"] == "host"})
    record = next((h for h in (entry or {}).get("hosts", []) if h["host"] == victim), {})
    row = {
        "fault": kind, "step": step, "host": victim, "fired": fired, "seconds": seconds,
        "halted": run.rc != 0,
        "touched_after_fault": sorted(n for n in later if activations(hosts[n], rid)) if kind != "kill" else [],
        "ledger_written": entry is not None,
        "outcome": record.get("outcome"), "last_step": record.get("last_step"),
        "out_of_traffic": sorted(out), "silenced": silenced, "locked": sorted(locks(lab)),
        "failed_haproxy": ha.summary.get("errors"), "failed_nginx": ng.summary.get("errors"),
    }
    if kind == "kill":
        row["rerun_ok"] = bool(rerun and rerun.rc == 0 and set(versions(lab).values()) == {"1.1.0"}
                               and not out and not silenced and not locks(lab))
        row["ledger_written"] = _ledger(rid) is not None
    faults.clear(lab)
    row["kept_promise"] = bool(row["fired"] and row["halted"] and not row["touched_after_fault"]
                               and row["ledger_written"] and row["failed_haproxy"] == 0 and row["failed_nginx"] == 0
                               and row.get("rerun_ok", True))
    return row


def table(rows: list[dict]) -> str:
    cols = ["fault", "step", "halted", "touched_after_fault", "ledger_written", "outcome", "last_step",
            "out_of_traffic", "silenced", "locked", "failed_haproxy", "failed_nginx", "rerun_ok", "kept_promise"]

    def cell(row, col):
        value = row.get(col, "")
        if isinstance(value, bool):
            return "y" if value else "n"
        if isinstance(value, list):
            return ",".join(value) or "-"
        return "" if value is None else str(value)
    widths = {c: max(len(c), *(len(cell(r, c)) for r in rows)) for c in cols}
    lines = ["  ".join(c.ljust(widths[c]) for c in cols), "  ".join("-" * widths[c] for c in cols)]
    lines += ["  ".join(cell(r, c).ljust(widths[c]) for c in cols) for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--quick", action="store_true", help="two rows, for CI")
    parser.add_argument("--faults", default=",".join(FAULTS))
    parser.add_argument("--steps", default=",".join(faults.STEPS))
    args = parser.parse_args(argv)
    if args.quick:
        cells = list(QUICK)
    else:
        cells = [(k, s) for k in args.faults.split(",") for s in args.steps.split(",")]
    lab = labkit.load_lab()
    ansible = labkit.Ansible()
    rows = []
    for kind, step in cells:
        rows.append(run_row(ansible, lab, kind, step))
        print(f"fault_matrix: {kind} at {step}: {'kept' if rows[-1]['kept_promise'] else 'BROKE'} the promise",
              file=sys.stderr, flush=True)
    reset_lab()
    print(table(rows), file=sys.stderr)
    print(json.dumps({"lab_hosts": len(lab["hosts"]), "quick": args.quick, "rows": rows}, indent=2))
    return 0 if all(r["kept_promise"] for r in rows) else 1


if __name__ == "__main__":
    os.environ.setdefault("LAB_DIR", str(labkit.lab_dir()))
    sys.exit(main())
