# Copyright: sre.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The contract between the LB set (``_lb.py``) and the LB drivers (one per kind, next to its client).

This module is private to the sre.rollout collection: its interface may change
without notice and it must not be used from outside the collection.

- ``LBSpec``: one LB of the set as the caller gives it (``lbs`` of lb_member / lb_pool_info).
- ``member_record``: the one shape of a pool member that every driver returns, with the one
  rule for "ready" (takes new traffic).
- ``Driver``: what ``_lb.Operation`` asks of a driver, for one member on one LB instance.
- ``Kind``: how a kind builds its drivers from an ``LBSpec``; ``_lb.KINDS`` is the registry.

Adding an LB kind: a client module with its driver and its ``Kind`` (as ``_haproxy.py`` and
``_nginx.py`` do), one line in ``_lb.KINDS``, its options in ``doc_fragments/lb.py``, tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from difflib import get_close_matches
from typing import Any, Callable, ContextManager, Protocol

from ansible_collections.sre.rollout.plugins.module_utils._common import RolloutError

# Health values a driver reports: UP / DOWN / NOLB from an LB's own checks, UNKNOWN when the LB
# has none (nginx without health_uri). UNKNOWN counts as ready: nothing says otherwise.
READY_HEALTH = ("UP", "UNKNOWN")


def is_ready(state: str, health: str, weight: int | None, backup: bool) -> bool:
    """Takes new traffic: administratively ready, health UP (or unknown), weight above 0, not a backup."""
    return state == "ready" and health in READY_HEALTH and (weight is None or weight > 0) and not backup


def member_record(name: str, address: str, state: str, health: str, weight: int | None, sessions: int | None,
                  backup: bool = False, status: str | None = None, **extra: Any) -> dict[str, Any]:
    """One pool member as every driver reports it; ``extra`` are the kind's own keys (admin_flags, queued, ...)."""
    record = {
        "name": name, "address": address, "state": state, "health": health, "status": status,
        "weight": weight, "sessions": sessions, "backup": backup,
        "admin_flags": None, "initial_weight": None, "queued": None, "check_status": None, "tracked": None,
    }
    record.update(extra)
    record["ready"] = is_ready(state, health, weight, backup)
    return record


@dataclass
class LBSpec:
    """One LB of the set: ``kind`` behind every endpoint of ``endpoints``, one ``pool``, its members."""

    kind: str
    endpoints: list[Any]
    pool: str
    name: str = ""
    members: list[str] = field(default_factory=list)
    address: str | None = None
    weight: Any = None
    health_uri: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 1   # tasks acting on this LB at the same moment (the hosts of one batch step)

    @property
    def label(self) -> str:
        return self.name or f"{self.kind} {self.pool}"

    def check_options(self, known: tuple[str, ...]) -> None:
        """Refuse an option the kind does not know, with the closest known name."""
        for key in self.options:
            if key not in known:
                close = get_close_matches(key, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise RolloutError(
                    f"LB {self.label}: {key!r} is not an option of kind {self.kind}{hint}; its options are "
                    f"{', '.join(known) or '(none)'}", lb=self.label, option=key)


class Driver(Protocol):
    """One member on one LB instance.

    ``snapshot`` reads the whole pool (``member_record`` dicts); ``find`` picks this driver's member
    out of it (and may learn its real name and address). The state changes act on the member only.
    """

    kind: str
    endpoint: str
    pool: str
    member: str
    name: str
    lb: LBSpec
    has_health_check: bool   # can say whether the member is healthy (wait_healthy waits on it)
    percent_weights: bool    # weights may be percentages (of a configured weight), as warm-ups use

    @property
    def lb_key(self) -> tuple: ...

    @property
    def instance_key(self) -> Any: ...   # drivers sharing one instance share one batch

    @property
    def reloads(self) -> int: ...

    def batch(self) -> ContextManager[None]: ...

    def snapshot(self) -> list[dict[str, Any]]: ...

    def find(self, members: list[dict[str, Any]]) -> dict[str, Any]: ...

    def preflight(self) -> None: ...

    def in_state(self, current: dict[str, Any], target: str) -> bool: ...

    def sessions(self, current: dict[str, Any]) -> int | None: ...

    def take_out(self, current: dict[str, Any]) -> None: ...

    def remaining(self) -> int: ...

    def force(self) -> None: ...

    def finish(self) -> None: ...

    def disable(self) -> None: ...

    def enable(self) -> None: ...

    def restore(self, previous: dict[str, Any]) -> None: ...

    def resolve_weight(self, current: dict[str, Any], weight: Any) -> int: ...

    def set_weight(self, weight: int) -> None: ...

    def healthy(self) -> tuple[bool, str]: ...


@dataclass(frozen=True)
class Kind:
    """An LB kind: its name, the options it takes, and how it builds drivers for one LBSpec."""

    name: str
    options: tuple[str, ...]
    drivers: Callable[[LBSpec, float], list[Driver]]   # (spec, timeout) -> one driver per member and endpoint
