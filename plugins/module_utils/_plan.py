# Copyright: sre.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Release planning: canary hosts and zone-balanced batches.

This module is private to the sre.rollout collection: its interface may change
without notice and it must not be used from outside the collection.

Pure logic, no I/O: ``build_plan()`` turns a host list and the release policy
into a plan, or raises ``PlanError`` saying which rule the request breaks and
what to change. ``format_table()`` renders a plan dict as text lines; the
``release_plan`` module and the ``release_report`` callback both use it.

The rules (DESIGN.md section 1):

* every step (the canary and each batch) takes **less than 50%** of the pool
  out of service;
* during every step, ``pool - excluded - step size >= min_ready``;
* a canary is mandatory (1 or 2 hosts) and goes first;
* batches spread over as many zones as possible.
"""

from __future__ import annotations

import heapq
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from ansible_collections.sre.rollout.plugins.module_utils._common import RolloutError
from ansible_collections.sre.rollout.plugins.module_utils._vocab import parse_quantity_counted

UNZONED = "unzoned"
MAX_CANARY = 2
ORDERS = ("inventory", "reverse_inventory", "sorted", "reverse_sorted")
TABLE_MAX_NAMES = 10

_INTEGER = re.compile(r"^\s*(\d+)\s*$")
_NATURAL = re.compile(r"(\d+)")


class PlanError(RolloutError):
    """The requested plan breaks a rule; ``msg`` names the rule and the fix."""


@dataclass(frozen=True)
class Host:
    name: str
    zone: str


@dataclass
class Plan:
    canary: list[str]
    batches: list[list[str]]
    excluded: dict[str, str]
    pool_size: int
    batch_size: int
    min_ready: int
    zones: dict[str, list[str]]
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "canary": list(self.canary),
            "batches": [list(batch) for batch in self.batches],
            "serial": [len(batch) for batch in self.batches],
            "order": list(self.canary) + [name for batch in self.batches for name in batch],
            "excluded": [{"host": name, "reason": reason} for name, reason in self.excluded.items()],
            "pool_size": self.pool_size,
            "batch_size": self.batch_size,
            "min_ready": self.min_ready,
            "zones": {zone: list(names) for zone, names in self.zones.items()},
        }


# --------------------------------------------------------------------------- input


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_count(value: Any, pool: int, option: str, round_up: bool) -> tuple[int, bool]:
    """An absolute count from ``N`` or ``"NN%"`` of the pool; returns ``(count, was_percent)``.

    Percentages round down for step sizes (like Ansible's ``serial``, at least 1)
    and up for ``min_ready`` (a minimum is never rounded away): the rule of ``_vocab``.
    """
    return parse_quantity_counted(value, pool, option, round_up, PlanError)


def normalize_hosts(hosts: Sequence[Any], zones: Mapping[str, Any] | None = None) -> list[Host]:
    """Hosts as ``Host(name, zone)``; refuses an empty list, bad items and duplicates."""
    if not hosts:
        raise PlanError("hosts is empty: there is nothing to release. Check the inventory group or "
                        "the CMDB query that produced the host list.")
    zones = zones or {}
    result: list[Host] = []
    for index, item in enumerate(hosts):
        if isinstance(item, Mapping):
            name, zone = item.get("name"), item.get("zone")
        else:
            name, zone = item, None
        if not isinstance(name, str) or not name.strip():
            raise PlanError(f"hosts[{index}] has no host name (got {item!r}): give a name, or a dict "
                            "with 'name' and optionally 'zone'.")
        name = name.strip()
        zone = zone if zone not in (None, "") else zones.get(name)
        result.append(Host(name, str(zone) if zone not in (None, "") else UNZONED))
    _refuse_duplicates([h.name for h in result], "hosts")
    return result


def _refuse_duplicates(names: Iterable[str], option: str) -> None:
    seen: set[str] = set()
    duplicates: list[str] = []
    for name in names:
        if name in seen and name not in duplicates:
            duplicates.append(name)
        seen.add(name)
    if duplicates:
        raise PlanError(f"{option} lists these hosts more than once: {', '.join(duplicates)}. "
                        "Each host may appear only once.", duplicates=duplicates)


def normalize_excluded(excluded: Any, known: Sequence[str]) -> dict[str, str]:
    """``{name: reason}`` from a dict or a list of ``{host, reason}``; unknown names refused."""
    if not excluded:
        return {}
    pairs: list[tuple[str, str]] = []
    if isinstance(excluded, Mapping):
        pairs = [(str(name), _reason(reason)) for name, reason in excluded.items()]
    elif isinstance(excluded, (list, tuple)):
        for index, item in enumerate(excluded):
            if isinstance(item, Mapping) and isinstance(item.get("host", item.get("name")), str):
                pairs.append((item.get("host", item.get("name")), _reason(item.get("reason"))))
            else:
                raise PlanError(f"excluded[{index}] must be a dict with 'host' and 'reason' (got {item!r}).")
    else:
        raise PlanError("excluded must be a dict of host name to reason, or a list of "
                        f"{{host, reason}} dicts (got {type(excluded).__name__}).")
    known_names = set(known)
    unknown = [name for name, _unused in pairs if name not in known_names]
    if unknown:
        raise PlanError(f"excluded names hosts that are not in hosts: {', '.join(unknown)}. "
                        "Exclude only hosts of this release (check for typos).", unknown=unknown)
    result: dict[str, str] = {}
    for name, reason in pairs:
        result[name] = f"{result[name]}; {reason}" if name in result and reason != result[name] else reason
    return result


def _reason(reason: Any) -> str:
    return str(reason).strip() if reason not in (None, "") else "no reason given"


def order_hosts(hosts: list[Host], order: str | None) -> list[Host]:
    order = order or "inventory"
    if order not in ORDERS:
        raise PlanError(f"order must be one of {', '.join(ORDERS)} (got {order!r}).")
    if order in ("sorted", "reverse_sorted"):
        hosts = sorted(hosts, key=lambda h: _natural_key(h.name))
    if order.startswith("reverse_"):
        hosts = list(reversed(hosts))
    return list(hosts)


def _natural_key(name: str) -> list[Any]:
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in _NATURAL.split(name)]


# --------------------------------------------------------------------------- rules


def largest_step(pool: int) -> int:
    """The largest number of hosts strictly under 50% of the pool."""
    return (pool - 1) // 2


def _check_pool(pool_size: Any, hosts: list[Host]) -> int:
    pool = len(hosts) if pool_size in (None, "") else pool_size
    if not _is_int(pool) or pool < len(hosts):
        raise PlanError(
            f"pool_size {pool_size!r} is smaller than the {len(hosts)} hosts given: the pool is every "
            "member serving the app, released or not. Leave pool_size unset to use the number of hosts.",
            pool_size=pool_size, hosts=len(hosts))
    return pool


def _check_min_ready(min_ready: Any, pool: int) -> int:
    count, _unused = parse_count(1 if min_ready in (None, "") else min_ready, pool, "min_ready", round_up=True)
    if count > pool:
        raise PlanError(f"min_ready {min_ready!r} ({_hosts(count)}) is more than the pool of {pool}.",
                        min_ready=count, pool_size=pool)
    return count


def _refuse_small_pool(pool: int) -> None:
    raise PlanError(
        f"a pool of {_hosts(pool)} cannot be released in steps under 50% of the pool: taking even one "
        f"host out leaves {pool - 1} of {pool} serving. Add capacity to the pool first"
        + (", or set allow_single_host: true to accept an outage of the only host." if pool == 1 else "."),
        pool_size=pool, largest_batch=0)


def _check_step(label: str, size: int, pool: int, excluded: int, min_ready: int, fix: str) -> None:
    """``label`` reads like "a batch of 3 hosts"; refuse >= 50% of the pool or breaking min_ready."""
    limit = largest_step(pool)
    if size > limit:
        raise PlanError(
            f"{label} is {_percent(size, pool)} of the pool of {pool}; every step must stay under 50%, "
            f"so the largest allowed is {limit}. {fix}".rstrip(),
            size=size, pool_size=pool, largest_allowed=limit)
    ready = pool - excluded - size
    if ready < min_ready:
        fits = pool - excluded - min_ready
        raise PlanError(
            f"{label} leaves {_hosts(ready)} ready (pool {pool} - excluded {excluded} - {size} = {ready}), "
            f"fewer than min_ready {min_ready}. "
            + (f"Use at most {_hosts(fits)} per step, or lower min_ready." if fits >= 1 else
               "No step size fits: lower min_ready or bring the excluded hosts back to health."),
            size=size, pool_size=pool, excluded=excluded, min_ready=min_ready, ready=ready)


def _hosts(count: int) -> str:
    return f"{count} host" if count == 1 else f"{count} hosts"


def _percent(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.0f}%"


# --------------------------------------------------------------------------- canary


def resolve_canary(canary: Any, eligible: list[Host], excluded: Mapping[str, str],
                   known: Sequence[str]) -> list[str]:
    """Canary names: given as a list of names, or N picked from the largest zones."""
    if _is_int(canary) or (isinstance(canary, str) and _INTEGER.match(canary)):
        return _pick_canary(int(canary), eligible)
    if isinstance(canary, str):
        canary = [part.strip() for part in canary.split(",") if part.strip()]
    if not isinstance(canary, (list, tuple)) or not all(isinstance(n, str) for n in canary):
        raise PlanError(f"canary must be 1, 2 or a list of 1-2 host names (got {canary!r}).")
    _check_canary_count(len(canary))
    _refuse_duplicates(canary, "canary")
    known_names = set(known)
    unknown = [name for name in canary if name not in known_names]
    if unknown:
        raise PlanError(f"canary names hosts that are not in hosts: {', '.join(unknown)}. "
                        "Pick canary hosts from this release's hosts.", unknown=unknown)
    bad = [name for name in canary if name in excluded]
    if bad:
        raise PlanError(f"canary host {', '.join(bad)} is excluded ({'; '.join(excluded[n] for n in bad)}). "
                        "Pick a healthy host as canary.", excluded=bad)
    return list(canary)


def _check_canary_count(count: int) -> None:
    if count < 1:
        raise PlanError("canary must be at least 1: a canary is mandatory, every release starts on 1-2 "
                        "hosts that soak under watch before the rest.")
    if count > MAX_CANARY:
        raise PlanError(f"a canary of {_hosts(count)} is refused: use 1 or 2 canary hosts; the rest go in batches.")


def _pick_canary(count: int, eligible: list[Host]) -> list[str]:
    _check_canary_count(count)
    if count > len(eligible):
        raise PlanError(f"a canary of {_hosts(count)} but only {_hosts(len(eligible))} can be released; "
                        f"set canary: {len(eligible)}.")
    by_zone = _group(eligible)
    picked: list[str] = []
    for _unused in range(count):
        zone = max(by_zone, key=lambda z: len(by_zone[z]))  # max() keeps the first of equals
        picked.append(by_zone[zone].popleft().name)
    return picked


def _group(hosts: Iterable[Host]) -> dict[str, deque[Host]]:
    groups: dict[str, deque[Host]] = {}
    for host in hosts:
        groups.setdefault(host.zone, deque()).append(host)
    return groups


# --------------------------------------------------------------------------- batches


def zone_balanced_batches(hosts: list[Host], size: int) -> list[list[str]]:
    """Split hosts into batches of ``size``, each spread over as many zones as possible.

    Each batch takes one host per zone in rounds, from the zones with the most
    hosts left first (so zones drain evenly and later batches can still
    spread); among equals, the zone whose next host comes first in the input.
    Inside a batch hosts keep the input order. O(n log z).
    """
    position = {host.name: index for index, host in enumerate(hosts)}
    groups = list(_group(hosts).values())
    heap = [(-len(queue), position[queue[0].name], rank) for rank, queue in enumerate(groups)]
    heapq.heapify(heap)
    batches: list[list[str]] = []
    while heap:
        batch: list[str] = []
        while heap and len(batch) < size:
            picked = [heapq.heappop(heap) for _unused in range(min(size - len(batch), len(heap)))]
            for negative_left, _unused, rank in picked:
                batch.append(groups[rank].popleft().name)
                if groups[rank]:
                    heapq.heappush(heap, (negative_left + 1, position[groups[rank][0].name], rank))
        batches.append(sorted(batch, key=position.__getitem__))
    return batches


# --------------------------------------------------------------------------- plan


def build_plan(hosts: Sequence[Any], zones: Mapping[str, Any] | None = None, excluded: Any = None,
               canary: Any = 1, batch_size: Any = None, pool_size: Any = None, min_ready: Any = 1,
               order: str | None = None, allow_single_host: bool = False) -> Plan:
    """Compute the release plan or raise ``PlanError`` naming the broken rule."""
    all_hosts = order_hosts(normalize_hosts(hosts, zones), order)
    names = [h.name for h in all_hosts]
    excluded_map = normalize_excluded(excluded, names)
    pool = _check_pool(pool_size, all_hosts)
    ready_floor = _check_min_ready(min_ready, pool)
    eligible = [h for h in all_hosts if h.name not in excluded_map]
    if not eligible:
        raise PlanError("every host is excluded: there is nothing to release. Fix the excluded hosts "
                        "or run with rollout_on_unhealthy: fail to see why.",
                        excluded=[{"host": n, "reason": r} for n, r in excluded_map.items()])
    zone_map = {zone: [h.name for h in group] for zone, group in _group(all_hosts).items()}
    if pool == 1:
        return _single_host_plan(eligible[0], excluded_map, ready_floor, zone_map, allow_single_host)
    if largest_step(pool) < 1:
        _refuse_small_pool(pool)

    canary_names = resolve_canary(canary, eligible, excluded_map, names)
    _check_step(f"a canary of {_hosts(len(canary_names))}", len(canary_names), pool, len(excluded_map),
                ready_floor, "Use canary: 1." if len(canary_names) > 1 else "")
    size = _batch_size(batch_size, pool, len(excluded_map), ready_floor)
    in_canary = set(canary_names)
    rest = [h for h in eligible if h.name not in in_canary]
    return Plan(canary=canary_names, batches=zone_balanced_batches(rest, size), excluded=excluded_map,
                pool_size=pool, batch_size=size, min_ready=ready_floor, zones=zone_map)


def _batch_size(batch_size: Any, pool: int, excluded: int, min_ready: int) -> int:
    if batch_size in (None, ""):
        # The canary check already passed, so this is at least 1.
        return min(largest_step(pool), pool - excluded - min_ready)
    size, was_percent = parse_count(batch_size, pool, "batch_size", round_up=False)
    if size < 1:
        raise PlanError(f"batch_size {batch_size!r} is 0 hosts of the pool of {pool}: use at least 1.",
                        batch_size=batch_size)
    label = f"a batch of {_hosts(size)}" + (f" (batch_size {batch_size!r})" if was_percent else "")
    _check_step(label, size, pool, excluded, min_ready,
                "Lower batch_size, or leave it unset for the largest safe size.")
    return size


def _single_host_plan(host: Host, excluded: dict[str, str], min_ready: int,
                      zone_map: dict[str, list[str]], allow_single_host: bool) -> Plan:
    if not allow_single_host:
        _refuse_small_pool(1)
    warning = (f"the pool has a single host ({host.name}): the service is down while it restarts. "
               "The plan is canary-only because allow_single_host is true.")
    if min_ready > 0:
        warning += f" min_ready {min_ready} cannot hold and is waived."
    return Plan(canary=[host.name], batches=[], excluded=excluded, pool_size=1, batch_size=1,
                min_ready=min_ready, zones=zone_map, warnings=[warning])


# --------------------------------------------------------------------------- table


def plan_rows(plan: Mapping[str, Any]) -> list[tuple[str, list[str], str, str]]:
    """One row per step of a plan dict: ``(step, names, zone summary, note)``.

    The excluded hosts follow, one row each, with the reason as the note.
    """
    zone_of = {name: zone for zone, names in (plan.get("zones") or {}).items() for name in names}
    rows = [("canary", list(plan.get("canary") or []))]
    rows += [(f"batch {i}", list(batch)) for i, batch in enumerate(plan.get("batches") or [], 1)]
    result = [(label, names, _zone_summary(names, zone_of), "") for label, names in rows]
    for item in plan.get("excluded") or []:
        name = str(item.get("host", ""))
        result.append(("excluded", [name], zone_of.get(name, UNZONED), str(item.get("reason", ""))))
    return result


def format_table(plan: Mapping[str, Any], max_names: int = TABLE_MAX_NAMES) -> list[str]:
    """The plan as text lines: a header line, then step / hosts / zones / names."""
    rows = [("step", "hosts", "zones", "names")]
    for label, names, zones, note in plan_rows(plan):
        shown = f"{names[0]}: {note}" if note else _names(names, max_names)
        rows.append((label, str(len(names)), zones, shown))
    widths = [max(len(row[col]) for row in rows) for col in range(3)]
    lines = [plan_summary(plan)]
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[col]) for col, cell in enumerate(row[:3])) + "  " + row[3])
        if index == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * max(5, len(row[3])))
    return [line.rstrip() for line in lines]


def plan_summary(plan: Mapping[str, Any]) -> str:
    """One line: how many hosts, steps, and the numbers the rules were checked with."""
    released = len(plan.get("order") or [])
    steps = len(plan.get("batches") or []) + 1
    return (f"release plan: {released} hosts in {steps} steps (canary + {steps - 1} batches); "
            f"pool {plan.get('pool_size')}, batch size {plan.get('batch_size')}, "
            f"min ready {plan.get('min_ready')}, excluded {len(plan.get('excluded') or [])}")


def _zone_summary(names: Sequence[str], zone_of: Mapping[str, str]) -> str:
    counts: dict[str, int] = {}
    for name in names:
        zone = zone_of.get(name, UNZONED)
        counts[zone] = counts.get(zone, 0) + 1
    return ", ".join(zone if n == 1 else f"{zone} ({n})" for zone, n in counts.items()) or "-"


def _names(names: Sequence[str], max_names: int) -> str:
    if len(names) <= max_names:
        return ", ".join(names) or "-"
    return ", ".join(names[:max_names]) + f", ... (+{len(names) - max_names} more)"
