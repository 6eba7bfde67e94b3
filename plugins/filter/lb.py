# Copyright: sre.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters comparing load-balancer pool snapshots taken with sre.rollout.lb_pool_info."""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError


def _pools(snapshot: Any, which: str) -> list[dict[str, Any]]:
    """Accept a registered lb_pool_info result, its ``pools`` list, one pool, or a looped ``results``."""
    if isinstance(snapshot, dict):
        if snapshot.get("failed"):
            raise AnsibleFilterError(f"the {which} snapshot is a failed lb_pool_info result: "
                                     f"{snapshot.get('msg', '')}")
        if "pools" in snapshot:
            return list(snapshot["pools"])
        if "results" in snapshot:
            return _pools(snapshot["results"], which)
        if "members" in snapshot:
            return [snapshot]
    if isinstance(snapshot, list):
        pools: list[dict[str, Any]] = []
        for item in snapshot:
            pools.extend(_pools(item, which))
        return pools
    raise AnsibleFilterError(f"the {which} snapshot is not an lb_pool_info result (a dict with 'pools'), a list "
                             f"of pools, or a pool with 'members'; got {type(snapshot).__name__}")


def _index(snapshot: Any, which: str) -> dict[tuple[str, str, str], dict[str, Any]]:
    index = {}
    for pool in _pools(snapshot, which):
        for member in pool.get("members") or []:
            key = (str(pool.get("endpoint", "")), str(pool.get("pool", "")), str(member.get("name")))
            index[key] = member
    return index


def _brief(member: dict[str, Any] | None) -> dict[str, Any] | None:
    if member is None:
        return None
    return {k: member.get(k) for k in ("state", "health", "weight", "ready")}


def lb_lost_members(before: Any, after: Any) -> list[dict[str, Any]]:
    """Members that were ready in ``before`` and are not ready (or gone) in ``after``, per endpoint and pool."""
    now = _index(after, "after")
    lost = []
    for key, was in _index(before, "before").items():
        if not was.get("ready"):
            continue
        current = now.get(key)
        if current is not None and current.get("ready"):
            continue
        if current is None:
            reason = "missing from the pool"
        else:
            reason = ", ".join(f"{field} {current.get(field)}" for field in ("state", "health", "weight")
                               if current.get(field) != was.get(field)) or "not ready"
        lost.append({"endpoint": key[0], "pool": key[1], "member": key[2], "address": was.get("address"),
                     "before": _brief(was), "after": _brief(current), "reason": reason})
    return lost


def lb_ready_members(snapshot: Any) -> list[str]:
    """Names of the members ready on every endpoint of the snapshot, in pool order."""
    pools = _pools(snapshot, "given")
    if not pools:
        return []
    common = set.intersection(*[{m["name"] for m in p.get("members") or [] if m.get("ready")} for p in pools])
    return [m["name"] for m in pools[0].get("members") or [] if m["name"] in common]


def lb_names(hostvars: Any, hosts: Any, kind: str) -> dict[str, Any]:
    """How the LBs of ``kind`` in each host's ``rollout_lbs`` name the hosts: their pool, and host → member.

    For the queries that select an LB's own series (HAProxy's exporter labels its series with the
    backend and the server name, which need not be the inventory names).
    """
    if not isinstance(hosts, (list, tuple)):
        raise AnsibleFilterError(f"lb_names: hosts must be a list of host names, got {type(hosts).__name__}")
    pools: list[str] = []
    members: dict[str, str] = {}
    for host in hosts:
        try:
            lbs = (hostvars[host] or {}).get("rollout_lbs") or []
        except KeyError:
            raise AnsibleFilterError(f"lb_names: {host!r} is not a host of the inventory") from None
        for lb in lbs:
            if isinstance(lb, dict) and (lb.get("kind") or lb.get("backend")) == kind:
                if lb.get("pool") and lb["pool"] not in pools:
                    pools.append(str(lb["pool"]))
                if lb.get("member") and host not in members:
                    members[str(host)] = str(lb["member"])
    return {"pool": pools[0] if pools else None, "pools": pools, "members": members}


def lb_unknown_members(snapshot: Any, hostvars: Any, hosts: Any) -> list[dict[str, Any]]:
    """Each host's member of each LB in its ``rollout_lbs`` that the LB's pool (in ``snapshot``) does not have.

    A member is known by its name or its address in the pool. One entry per host and LB: host, lb, pool,
    member, and the names the pool has (``known``), so a mapping that names no real server is refused
    before any change instead of failing the first drain.
    """
    if not isinstance(hosts, (list, tuple)):
        raise AnsibleFilterError(f"lb_unknown_members: hosts must be a list of host names, got {type(hosts).__name__}")
    pools = _pools(snapshot, "preflight")
    unknown = []
    for host in hosts:
        try:
            lbs = (hostvars[host] or {}).get("rollout_lbs") or []
        except KeyError:
            raise AnsibleFilterError(f"lb_unknown_members: {host!r} is not a host of the inventory") from None
        for lb in lbs:
            if not isinstance(lb, dict) or not lb.get("member"):
                continue
            seen = [p for p in pools if p.get("name") == lb.get("name") and str(p.get("pool")) == str(lb.get("pool"))]
            if not seen:
                continue  # a pool lb_pool_info did not list: it failed on it already
            member = str(lb["member"])
            for pool in seen:
                names = [str(m.get("name")) for m in pool.get("members") or []]
                addresses = [str(m.get("address")) for m in pool.get("members") or []]
                if member not in names and member not in addresses:
                    unknown.append({"host": str(host), "lb": lb.get("name"), "pool": lb.get("pool"),
                                    "endpoint": pool.get("endpoint"), "member": member, "known": names})
                    break
    return unknown


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"lb_lost_members": lb_lost_members, "lb_ready_members": lb_ready_members, "lb_names": lb_names,
                "lb_unknown_members": lb_unknown_members}
