# Copyright: sre.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that read what the release role recorded on its hosts and decide outcomes.

The rules live in ``module_utils/_outcome.py``; these filters only fetch each host's
recorded variables from ``hostvars`` and hand them over, so the role's YAML stays a list of
named steps.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from ansible.errors import AnsibleFilterError
from jinja2 import Undefined

from ansible_collections.sre.rollout.plugins.module_utils import _outcome


def _getter(hostvars: Any, host: str):
    try:
        hv = hostvars[host]
    except KeyError:
        hv = None
    if hv is None or isinstance(hv, Undefined):
        raise AnsibleFilterError(f"{host} is not in the inventory")

    def get(name: str) -> Any:
        try:
            return hv[name] if name in hv else None
        except Exception:  # an undefined or untemplatable value counts as not recorded
            return None
    return get


def swap_dropped(hostvars: Any, hosts: Iterable[str]) -> list[str]:
    """Hosts (of ``hosts``) that began their swap and recorded no outcome: Ansible dropped them
    from the play (unreachable, or hung until a connection timeout). The release must halt."""
    return [h for h in hosts if _outcome.dropped(_getter(hostvars, h))]


def swap_last_step(hostvars: Any, host: str) -> str:
    """The last swap step ``host`` completed, from the step results it registered."""
    return _outcome.last_step(_getter(hostvars, host))


def metrics_instances(hostvars: Any, hosts: Iterable[str]) -> dict[str, str]:
    """Host -> the ``instance`` label of its series in Prometheus (``rollout_metrics_instance``, else its name)."""
    return {str(h): str(_getter(hostvars, h)("rollout_metrics_instance") or h) for h in hosts}


def failed_swap_outcome(failure: Any, rollback: bool = False, restore_failed: bool = False) -> str:
    """The outcome of a rescued swap: timed_out, rolled_back or failed (see module_utils/_outcome.py)."""
    return _outcome.failed_swap_outcome(failure if isinstance(failure, Mapping) else None, bool(rollback),
                                        bool(restore_failed))


def _member_states(get, pools: list[Mapping[str, Any]]) -> dict[str, Any]:
    """{lb name: state} of this host's member in each LB of its rollout_lbs, from a snapshot."""
    states: dict[str, Any] = {}
    for lb in get("rollout_lbs") or []:
        if not isinstance(lb, Mapping):
            continue
        name = str(lb.get("name") or lb.get("kind") or lb.get("backend") or lb.get("pool"))
        found = None
        for pool in pools:
            if str(pool.get("pool")) != str(lb.get("pool")):
                continue
            for member in pool.get("members") or []:
                if str(member.get("name")) == str(lb.get("member")) or str(member.get("address")) == str(lb.get("member")):
                    found = member
        states[name] = None if found is None else ("ready" if found.get("ready") else str(found.get("state")))
    return states


def _silence(get, kept: bool) -> str:
    """kept (a host left as it was), lifted, lift failed (Alertmanager did not answer), or none."""
    if kept:
        return "kept"
    for name in ("_fin_unsilence", "_step_unsilenced"):  # finalize's attempt, else the swap's
        result = get(name)
        if isinstance(result, Mapping) and not result.get("skipped"):
            return "lifted" if "action" in result else "lift failed"
    return "lifted" if get("_step_silenced") else "none"


def _silence_end(get) -> str | None:
    silenced = get("_step_silenced") or {}
    return ((silenced.get("silence") or {}) if isinstance(silenced, Mapping) else {}).get("endsAt")


def host_records(hostvars: Any, hosts: Iterable[str], release_id: str,
                 lb_after: list[Mapping[str, Any]] | None = None, command: str = "") -> list[dict[str, Any]]:
    """One ledger record per host: outcome, last completed step, where it stands, what to do.

    Works for hosts that finalize could reach (``_fin_state`` is their state file now) and for
    hosts it could not (their records come from what the swap registered before they dropped).
    """
    pools = list(lb_after or [])
    records = []
    for host in hosts:
        get = _getter(hostvars, host)
        found = _outcome.host_outcome(get)
        fin_state = get("_fin_state") if isinstance(get("_fin_state"), Mapping) else None
        if fin_state and not fin_state.get("unreachable") and not fin_state.get("failed"):
            state = fin_state
        else:
            state = None
        history = [h for h in (state or {}).get("history") or [] if h.get("release_id") == release_id]
        outcome = found["outcome"]
        if not outcome:
            outcome = _outcome.outcome_from_history(history) if state else "unreachable"
        before = get("_swap_state") if isinstance(get("_swap_state"), Mapping) else {}
        lbs = _member_states(get, pools) if pools else {}
        out_of_traffic = sorted(name for name, st in lbs.items() if st != "ready")
        kept = outcome in ("unreachable",) or state is None
        record = {
            "host": host,
            "zone": get("cmdb_zone") or "",
            "env": get("cmdb_env") or "",
            "outcome": outcome,
            "last_step": found["last_step"],
            "restored": bool(found.get("restored")),
            "current": (state or {}).get("current", before.get("current")),
            "previous": (state or {}).get("previous", before.get("previous")),
            "failure": found.get("failure"),
            "history": history,
            "lbs": lbs,
            "out_of_traffic": out_of_traffic,
            "silence": _silence(get, kept),
            "silence_ends": _silence_end(get),
            "lock": "held" if kept else "released",
        }
        record["action"] = _action(record, release_id, command)
        records.append(record)
    return records


def _action(record: Mapping[str, Any], release_id: str, command: str) -> str:
    """One line an operator can act on, for a host that did not end serving."""
    host, outcome, step = record["host"], record["outcome"], record["last_step"]
    where = ", ".join(record["out_of_traffic"]) or "no load balancer"
    if outcome == "unreachable":
        rerun = f" When it answers again, re-run the same release: {command} -e rollout_release_id={release_id}" \
            if command else f" When it answers again, re-run release {release_id}."
        silence = f" until {record['silence_ends']}" if record.get("silence_ends") else ""
        return (f"{host} UNREACHABLE after step '{step}': left as it was, out of traffic in {where}, silenced{silence} "
                f"and locked by {release_id}.{rerun}")
    if outcome == "timed_out":
        state = "rolled back and serving" if record["restored"] else f"left out of traffic in {where}"
        return f"{host} TIMED OUT after step '{step}' ({(record.get('failure') or {}).get('msg', '')[:200]}): {state}."
    if outcome == "failed":
        return (f"{host} FAILED after step '{step}' and could not be restored: left out of traffic in {where}; "
                f"look at it before putting it back.")
    if outcome in _outcome.OK_OUTCOMES and record["lock"] == "held":
        return (f"{host} {outcome} but did not answer at finalize: its lock ({release_id}) is held. When it answers "
                f"again, re-run the same release to release it.")
    if outcome == "rolled_back":
        return f"{host} rolled back to {record.get('current')} after step '{step}'; it serves again."
    return ""


def release_verdict(records: Iterable[Mapping[str, Any]], halted: bool = False, paused: bool = False,
                    lost: Iterable[Any] = (), mode: str = "release") -> str:
    """failed | paused | success, from the host records and the run's halt flags (``_outcome``)."""
    return _outcome.release_verdict(records, halted=halted, paused=paused, lost=lost, mode=mode)


def count_outcomes(records: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    counts = {name: 0 for name in _outcome.OUTCOMES}
    for record in records:
        counts[str(record.get("outcome"))] = counts.get(str(record.get("outcome")), 0) + 1
    return {k: v for k, v in counts.items() if v}


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"swap_dropped": swap_dropped, "swap_last_step": swap_last_step, "host_records": host_records,
                "release_verdict": release_verdict, "count_outcomes": count_outcomes,
                "failed_swap_outcome": failed_swap_outcome, "metrics_instances": metrics_instances}
