# Copyright: sre.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The LB set: members across every load balancer they are in, of any kind, as one unit.

This module is private to the sre.rollout collection: its interface may change
without notice and it must not be used from outside the collection.

The caller gives the set as ``lbs``: one item per LB, ``{name, kind, endpoints, pool, member(s),
weight?, health_uri?, options: {kind-specific}}``. ``KINDS`` maps each kind to the driver its
client module defines (``_haproxy.py``, ``_nginx.py``; the contract is ``_lbtypes.py``). An
``Operation`` looks at every LB of the set before touching any (all reachable, members known,
capacity checked once per pool), then takes the members out of all of them at once, waits for
all of them under one drain deadline, and reports per LB.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from ansible_collections.sre.rollout.plugins.module_utils import _haproxy, _nginx
from ansible_collections.sre.rollout.plugins.module_utils._common import RolloutError
from ansible_collections.sre.rollout.plugins.module_utils._lbtypes import Driver, Kind, LBSpec, is_ready
from ansible_collections.sre.rollout.plugins.module_utils._vocab import parse_quantity

# The registry of LB kinds: adding a kind is one line here (and its client module with its driver).
KINDS: dict[str, Kind] = {kind.name: kind for kind in (_haproxy.KIND, _nginx.KIND)}

TARGET_STATE = {"drained": "maint", "disabled": "maint", "enabled": "ready"}

# One LB of the set (lb_member / lb_pool_info ``lbs`` items; documented once, in doc_fragments/lb.py).
LB_SPEC = dict(
    name=dict(type="str"),
    kind=dict(type="str", required=True, choices=sorted(KINDS), aliases=["backend"]),
    endpoints=dict(type="list", elements="raw", required=True),
    pool=dict(type="str", required=True),
    member=dict(type="str"),
    members=dict(type="list", elements="str"),
    address=dict(type="str"),
    weight=dict(type="raw"),
    health_uri=dict(type="str"),
    options=dict(type="dict", default={}),
)

# The options every LB module takes: the set (lbs), or one LB given by the single-LB options.
COMMON_ARGUMENT_SPEC = dict(
    lbs=dict(type="list", elements="dict", options=LB_SPEC),
    backend=dict(type="str", choices=sorted(KINDS), default="haproxy"),
    endpoints=dict(type="list", elements="raw"),
    pool=dict(type="str"),
    health_uri=dict(type="str"),
    nginx_conf=dict(type="path"),
    nginx_prefix=dict(type="path"),
    nginx_pidfile=dict(type="path"),
    nginx_binary=dict(type="path"),
    nginx_mode=dict(type="str", choices=["reload", "lua"]),
    nginx_admin_url=dict(type="str"),
    timeout=dict(type="float", default=5),
)
COMMON_MODULE_KWARGS = dict(
    mutually_exclusive=[("lbs", "endpoints"), ("lbs", "pool")],
    required_one_of=[("lbs", "endpoints")],
    required_by={"endpoints": ("pool",)},
)
# The single-LB form's kind options: nginx_<option> for the nginx kind's options.
_SINGLE_FORM_OPTIONS = ("conf", "prefix", "pidfile", "binary", "mode", "admin_url")


def ready_names(members: list[dict[str, Any]]) -> list[str]:
    return [m["name"] for m in members if m["ready"]]


def capacity_check(members: list[dict[str, Any]], leaving: dict[str, Any] | list[dict[str, Any]], min_ready: Any,
                   where: str) -> None:
    """Refuse if fewer than ``min_ready`` members other than ``leaving`` (one or several) would stay ready."""
    leaving_list = leaving if isinstance(leaving, list) else [leaving]
    names = [m["name"] for m in leaving_list]
    pool_size = len([m for m in members if not m["backup"]])
    required = parse_quantity(min_ready, pool_size)
    others = [name for name in ready_names(members) if name not in names]
    if len(others) < required:
        raise RolloutError(
            f"refusing to take {', '.join(names)} out of {where}: only {len(others)} other member(s) would stay "
            f"ready ({', '.join(others) or 'none'}) and min_ready is {min_ready} ({required} of {pool_size}). "
            f"Bring members back first, or lower min_ready.",
            member=names[0] if len(names) == 1 else names, ready_members=others, min_ready=min_ready,
            required=required)


# -- the set ---------------------------------------------------------------------------------------
def lb_specs(params: dict[str, Any], need_members: bool = True) -> list[LBSpec]:
    """The LB set of the module options: ``lbs``, or the one LB of the single-LB options.

    Top-level ``member``/``members``/``address`` (lb_member) apply to every LB of the set that does
    not name its own members.
    """
    top_members = params.get("members") or ([params["member"]] if params.get("member") else [])
    if params.get("members") is not None and not params["members"]:
        raise RolloutError("members is empty: give at least one member, or use member")
    if params.get("members") and params.get("address"):
        raise RolloutError("address applies to one member; with members, name each member (or give its "
                           "address as the name)")
    if params.get("lbs") is not None:
        items = params["lbs"]
        if not items:
            raise RolloutError("lbs is empty: give at least one LB (name, kind, endpoints, pool, member)")
    else:
        options = {key: params.get(f"nginx_{key}") for key in _SINGLE_FORM_OPTIONS
                   if params.get(f"nginx_{key}") is not None}
        items = [{"name": "", "kind": params["backend"], "endpoints": params.get("endpoints"),
                  "pool": params.get("pool"), "health_uri": params.get("health_uri"), "options": options}]
    specs = []
    for index, item in enumerate(items):
        kind = item.get("kind") or item.get("backend")
        label = item.get("name") or f"lbs[{index}]"
        if kind not in KINDS:
            raise RolloutError(f"LB {label}: kind {kind!r} is not one of {', '.join(sorted(KINDS))}", lb=label)
        if not item.get("endpoints"):
            raise RolloutError(f"LB {label}: endpoints is empty: give at least one LB endpoint", lb=label)
        if item.get("members") is not None and not item["members"]:
            raise RolloutError(f"LB {label}: members is empty: give at least one member, or use member", lb=label)
        members = item.get("members") or ([item["member"]] if item.get("member") else []) or top_members
        if need_members and not members:
            raise RolloutError(f"LB {label}: no member: give member (or members) for this LB", lb=label)
        specs.append(LBSpec(kind=kind, endpoints=list(item["endpoints"]), pool=item["pool"],
                            name=item.get("name") or "", members=list(members),
                            address=item.get("address") or params.get("address"), weight=item.get("weight"),
                            health_uri=item.get("health_uri") or params.get("health_uri"),
                            options=dict(item.get("options") or {}),
                            batch_size=int(params.get("batch_size") or 1)))
    return specs


def make_drivers(params: dict[str, Any], need_members: bool = True) -> list[Driver]:
    """Drivers for the module options: one per LB, member and endpoint (see ``lb_specs``).

    Members first within an LB; the drivers of one nginx endpoint share its instance, so that a
    batch of members changes in one edit and one reload.
    """
    drivers: list[Driver] = []
    for spec in lb_specs(params, need_members):
        if not spec.members:
            spec.members = [""]
        drivers.extend(KINDS[spec.kind].drivers(spec, params["timeout"]))
    return drivers


# -- the operation ---------------------------------------------------------------------------------
@dataclass
class LBView:
    driver: Driver
    members: list[dict[str, Any]]
    before: dict[str, Any]
    state_change: bool = False
    target_weight: int | None = None
    steps: list[int] = field(default_factory=list)
    waited: float = 0.0
    forced: bool = False
    touched: bool = False
    out_at: float | None = None    # seconds from the operation's start: taken out (drain)
    done_at: float | None = None   # ... no work left in flight (drain)

    @property
    def weight_change(self) -> bool:
        return self.target_weight is not None and self.target_weight != self.before["weight"]

    @property
    def changed(self) -> bool:
        return self.state_change or self.weight_change or bool(self.steps)


@dataclass
class Options:
    state: str
    drain_timeout: float = 60.0
    on_timeout: str = "fail"
    min_ready: Any = 1
    weight: Any = None
    warmup: list[dict[str, Any]] = field(default_factory=list)
    wait_healthy: bool = False
    health_timeout: float = 30.0
    poll_interval: float = 0.5


@contextmanager
def batched(views: list[LBView]) -> Iterator[None]:
    """Every instance's batch around the block: the reload mode applies the block's changes in one reload."""
    with ExitStack() as stack:
        seen: set[Any] = set()
        for view in views:
            if view.driver.instance_key in seen:
                continue
            seen.add(view.driver.instance_key)
            stack.enter_context(view.driver.batch())
        yield


def by_instance(views: list[LBView]) -> list[list[LBView]]:
    """The views grouped by the LB instance they act on, in order."""
    groups: dict[Any, list[LBView]] = {}
    for view in views:
        groups.setdefault(view.driver.instance_key, []).append(view)
    return list(groups.values())


class Operation:
    """Bring one member, or several, to ``options.state`` on every LB of ``drivers``.

    ``drivers`` holds one driver per member and LB (``make_drivers``). Members of one batch are
    taken out together: one capacity check per LB for all of them, one drain deadline, and in
    nginx's reload mode one edit and one reload per LB for each step.
    """

    def __init__(self, drivers: list[Driver], options: Options, check_mode: bool = False,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.drivers = drivers
        self.opts = options
        self.check_mode = check_mode
        self.clock = clock
        self.sleep = sleep
        self.views: list[LBView] = []
        self.target = TARGET_STATE[options.state]
        self.started = clock()

    def key(self, view: LBView) -> str:
        """How results and messages name a view: its endpoint, and its member when there are several."""
        if len({d.member for d in self.drivers}) > 1:
            return f"{view.driver.endpoint} {view.driver.name}"
        return view.driver.endpoint

    @property
    def members_label(self) -> str:
        names = list(dict.fromkeys(d.member for d in self.drivers))
        return ", ".join(names)

    # -- look ----------------------------------------------------------------
    def look(self) -> None:
        """Read every LB first: if any is unreachable or lacks a member, nothing is touched."""
        snapshots: dict[tuple, list[dict[str, Any]]] = {}
        for driver in self.drivers:
            key = driver.lb_key
            if key not in snapshots:
                snapshots[key] = driver.snapshot()
            members = snapshots[key]
            self.views.append(LBView(driver=driver, members=members, before=driver.find(members)))
        for view in self.views:
            view.state_change = not view.driver.in_state(view.before, self.target)
            self._plan_weights(view)
        for view in self.views:
            if view.changed:
                view.driver.preflight()
        if self.target == "maint":
            leaving: dict[Any, list[LBView]] = {}
            for view in self.views:
                if view.state_change and view.before["ready"]:
                    leaving.setdefault(view.driver.lb_key, []).append(view)
            for views in leaving.values():
                first = views[0]
                capacity_check(first.members, [v.before for v in views], self.opts.min_ready,
                               f"pool {first.driver.pool!r} at {first.driver.endpoint}")

    def _plan_weights(self, view: LBView) -> None:
        """The weight to end at: ``weight`` (``configured``: the LB's own, else 100%), else the LB's own.

        A warm-up ends at 100% unless a weight says otherwise. One given in percentages runs on the
        LBs whose weights are percentages (``percent_weights``); the others (nginx) skip it.
        """
        final = self.opts.weight
        if final == "configured":
            final = view.driver.lb.weight if view.driver.lb.weight is not None else "100%"
        if final is None and self.target == "ready":
            final = view.driver.lb.weight
        percent = any(str(step["weight"]).strip().endswith("%") for step in self.opts.warmup)
        warm = bool(self.opts.warmup) and (view.driver.percent_weights or not percent)
        if final is None and warm:
            final = "100%"
        if final is not None:
            view.target_weight = view.driver.resolve_weight(view.before, final)
        if warm and view.state_change and self.target == "ready":
            view.steps = [view.driver.resolve_weight(view.before, s["weight"]) for s in self.opts.warmup]

    # -- act -----------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        self.look()
        if not self.check_mode and any(v.changed for v in self.views):
            if self.opts.state == "drained":
                self._drain()
            elif self.opts.state == "disabled":
                with batched(self.views):
                    self._each(lambda v: v.driver.disable(), only_state=True)
            else:
                self._enable()
            if self.target == "maint":
                self._apply_weight()
        elif not self.check_mode and self.opts.state == "enabled" and self.opts.wait_healthy:
            self._wait_healthy()
        return self.result()

    def _each(self, action: Callable[[LBView], None], only_state: bool = False) -> None:
        for view in self.views:
            if only_state and not view.state_change:
                continue
            action(view)
            view.touched = True

    def _take_out(self, views: list[LBView]) -> None:
        """One LB instance: take its members out in one batch (one reload in nginx's reload mode)."""
        with batched(views):
            for view in views:
                view.driver.take_out(view.before)
                view.touched = True
        for view in views:
            view.out_at = round(self.clock() - self.started, 3)

    def _drain(self) -> None:
        """Take the members out of every LB at once, then wait for all of them under one deadline."""
        out = [v for v in self.views if v.state_change]
        groups = by_instance(out)
        with ThreadPoolExecutor(max_workers=min(8, len(groups) or 1)) as pool:
            errors = [f.exception() for f in [pool.submit(self._take_out, group) for group in groups]]
        failed = [e for e in errors if e is not None]
        if failed:
            error = failed[0] if isinstance(failed[0], RolloutError) else RolloutError(str(failed[0]))
            self._restore(out, error)
            raise error
        start = self.clock()
        deadline = start + self.opts.drain_timeout
        pending = list(out)
        left: dict[str, int] = {}
        while True:
            for view in list(pending):
                left[self.key(view)] = view.driver.remaining()
                if left[self.key(view)] == 0:
                    view.waited = round(self.clock() - start, 3)
                    view.done_at = round(self.clock() - self.started, 3)
                    pending.remove(view)
            now = self.clock()
            if not pending or now >= deadline:
                break
            self.sleep(min(self.opts.poll_interval, deadline - now))
        for view in pending:
            view.waited = round(self.clock() - start, 3)
        if pending and self.opts.on_timeout == "fail":
            error = RolloutError(
                f"{self.members_label} still had work in flight after drain_timeout={self.opts.drain_timeout}s "
                f"on {', '.join(self.key(v) for v in pending)} "
                f"({', '.join(str(left[self.key(v)]) for v in pending)} left). Raise drain_timeout, or use "
                f"on_timeout=force to cut the remaining sessions.",
                remaining={self.key(v): left[self.key(v)] for v in pending},
                waited=round(self.clock() - start, 3))
            self._restore(out, error)
            raise error
        for view in pending:
            view.driver.force()
            view.forced = True
        with batched(out):
            for view in out:
                view.driver.finish()

    def _restore(self, views: list[LBView], error: RolloutError) -> None:
        """Put the LBs already changed back to their previous state; say so in ``error``."""
        restored, failed = [], {}
        touched = [v for v in views if v.touched]
        try:
            with batched(touched):
                for view in touched:
                    view.driver.restore(view.before)
            restored = list(dict.fromkeys(v.driver.endpoint for v in touched))
        except RolloutError as exc:
            for view in touched:
                failed[view.driver.endpoint] = exc.msg
        error.details["restored"] = restored
        if restored:
            error.msg += f" The member was put back to its previous state on {', '.join(restored)}."
        if failed:
            error.details["restore_failed"] = failed
            error.msg += f" Restoring the previous state FAILED on {', '.join(failed)}: fix it by hand."
        error.args = (error.msg,)

    def _enable(self) -> None:
        warm = any(v.steps for v in self.views)
        with batched(self.views):
            if warm:
                self._each(lambda v: v.driver.set_weight(v.steps[0]) if v.steps else None)
            self._each(lambda v: v.driver.enable(), only_state=True)
        waited_from = self.clock()
        if self.opts.wait_healthy:
            self._wait_healthy()
        if warm:
            for index, step in enumerate(self.opts.warmup):
                self.sleep(float(step.get("pause") or 0))
                nxt = index + 1
                with batched(self.views):
                    self._each(lambda v: v.driver.set_weight(v.steps[nxt] if nxt < len(v.steps)
                                                             else v.target_weight) if v.steps else None)
        self._apply_weight(skip_warmed=True)
        for view in self.views:
            view.waited = round(self.clock() - waited_from, 3)

    def _apply_weight(self, skip_warmed: bool = False) -> None:
        with batched(self.views):
            for view in self.views:
                if view.weight_change and not (skip_warmed and view.steps):
                    view.driver.set_weight(view.target_weight)
                    view.touched = True

    def _wait_healthy(self) -> None:
        """Until the member is healthy on every LB that can tell (``has_health_check``)."""
        deadline = self.clock() + self.opts.health_timeout
        status: dict[str, str] = {}
        watched = [view for view in self.views if view.driver.has_health_check]
        while True:
            pending = []
            for view in watched:
                ok, status[self.key(view)] = view.driver.healthy()
                if not ok:
                    pending.append(self.key(view))
            now = self.clock()
            if not pending or now >= deadline:
                break
            self.sleep(min(self.opts.poll_interval, deadline - now))
        if pending:
            raise RolloutError(
                f"{self.members_label} is enabled but not healthy after health_timeout="
                f"{self.opts.health_timeout}s on {', '.join(pending)} (status: "
                f"{', '.join(status[e] for e in pending)}). Check the service on the member, or raise health_timeout.",
                health=status)

    # -- report --------------------------------------------------------------
    def result(self) -> dict[str, Any]:
        after: dict[Any, list[dict[str, Any]]] = {}
        lbs = [self._lb_result(view, after) for view in self.views]
        keys = [self.key(view) for view in self.views]
        ready_sets = [set(lb["ready_members"]) for lb in lbs]
        common = set.intersection(*ready_sets) if ready_sets else set()
        order = [m["name"] for m in self.views[0].members] if self.views else []
        members = list(dict.fromkeys(d.member for d in self.drivers))
        return {
            "changed": any(v.changed for v in self.views),
            "member": members[0] if len(members) == 1 else None,
            "members": members,
            "lbs": lbs,
            "ready_members": [name for name in order if name in common],
            "reloads": sum({d.instance_key: d.reloads for d in self.drivers}.values()),
            "diff": {
                "before": {k: {"state": lb["previous_state"], "weight": lb["previous_weight"]}
                           for k, lb in zip(keys, lbs)},
                "after": {k: {"state": lb["state"], "weight": lb["weight"]} for k, lb in zip(keys, lbs)},
            },
        }

    def _lb_result(self, view: LBView, after_snapshots: dict[Any, list[dict[str, Any]]]) -> dict[str, Any]:
        before = view.before
        if self.check_mode or not view.changed:
            members = [dict(m) for m in view.members]
            after = next(m for m in members if m["name"] == before["name"])
            if view.state_change:
                after["state"] = self.target
            if view.target_weight is not None:
                after["weight"] = view.target_weight
            after["ready"] = is_ready(after["state"], after["health"], after["weight"], after["backup"])
        else:
            key = view.driver.lb_key
            if key not in after_snapshots:
                after_snapshots[key] = view.driver.snapshot()
            members = after_snapshots[key]
            after = next(m for m in members if m["name"] == before["name"])
        return {
            "name": view.driver.lb.name or None, "kind": view.driver.kind,
            "endpoint": view.driver.endpoint, "backend": view.driver.kind, "pool": view.driver.pool,
            "member": before["name"], "address": before["address"],
            "previous_state": before["state"], "state": after["state"],
            "previous_weight": before["weight"], "weight": after["weight"],
            "health": after["health"], "sessions_at_start": view.driver.sessions(before),
            "waited": view.waited, "forced": view.forced, "changed": view.changed,
            "taken_out_at": view.out_at, "drained_at": view.done_at, "warmup_weights": view.steps,
            "ready_members": ready_names(members),
        }


def _serving(driver: Driver, members: list[dict[str, Any]]) -> bool | None:
    """Is the driver's member ready in ``members``? None when the driver names no member."""
    if not driver.member:
        return None
    try:
        return bool(driver.find(members)["ready"])
    except RolloutError:
        return False


def pool_snapshot(drivers: list[Driver]) -> dict[str, Any]:
    """Members of the pool on every LB, the members ready on all of them, and whether each LB's member serves.

    One snapshot per LB instance and pool, read in parallel; ``serving`` is true when every LB names
    a member and that member is ready there.
    """
    unique: dict[tuple, Driver] = {}
    for driver in drivers:
        unique.setdefault(driver.lb_key, driver)
    with ThreadPoolExecutor(max_workers=min(8, len(unique) or 1)) as pool:
        snapshots = dict(zip(unique, pool.map(lambda d: d.snapshot(), unique.values())))
    pools = []
    for key, driver in unique.items():
        pools.append({"name": driver.lb.name or None, "kind": driver.kind, "endpoint": driver.endpoint,
                      "backend": driver.kind, "pool": driver.pool, "members": snapshots[key]})
    serving = {}
    for driver in drivers:
        if driver.member:
            label = f"{driver.lb.label} {driver.endpoint} {driver.member}"
            serving[label] = _serving(driver, snapshots[driver.lb_key])
    ready_sets = [set(ready_names(p["members"])) for p in pools]
    common = set.intersection(*ready_sets) if ready_sets else set()
    order = [m["name"] for m in pools[0]["members"]] if pools else []
    return {"pools": pools, "ready_members": [name for name in order if name in common],
            "members_serving": serving, "serving": bool(serving) and all(serving.values())}
