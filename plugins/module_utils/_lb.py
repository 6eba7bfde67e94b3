# Copyright: sre.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Load-balancer membership: one member across several LB instances, both LB kinds.

This module is private to the sre.rollout collection: its interface may change
without notice and it must not be used from outside the collection.

A driver wraps one LB instance (an HAProxy runtime API endpoint, or an nginx
instance with its upstream file) and one member of one pool. ``ensure_member``
looks at every instance before touching any (all reachable, member known,
capacity guard), then drains / disables / enables the member on all of them
together: one drain deadline for all, one warm-up schedule for all.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from ansible_collections.sre.rollout.plugins.module_utils._common import RolloutError
from ansible_collections.sre.rollout.plugins.module_utils._haproxy import (
    ADMF_FDRAIN, ADMF_FMAINT, HAProxyError, RuntimeAPI, resolve_weight,
)
from ansible_collections.sre.rollout.plugins.module_utils._nginx import (
    LuaBalancer, NginxInstance, as_lua_member, as_member, connection_counts, find_lua_member, find_server, probe,
    still_running,
)
from ansible_collections.sre.rollout.plugins.module_utils._vocab import parse_quantity

TARGET_STATE = {"drained": "maint", "disabled": "maint", "enabled": "ready"}

# The options every LB module takes (documented once, in doc_fragments/lb.py).
COMMON_ARGUMENT_SPEC = dict(
    backend=dict(type="str", choices=["haproxy", "nginx"], default="haproxy"),
    pool=dict(type="str", required=True),
    nginx_conf=dict(type="path", default="/etc/nginx/nginx.conf"),
    nginx_prefix=dict(type="path"),
    nginx_pidfile=dict(type="path", default="/run/nginx.pid"),
    nginx_binary=dict(type="path", default="/usr/sbin/nginx"),
    nginx_mode=dict(type="str", choices=["reload", "lua"], default="reload"),
    nginx_admin_url=dict(type="str"),
)
NGINX_KEYS = ("upstream_file", "conf", "prefix", "pidfile", "binary", "mode", "admin_url")
NGINX_MODES = ("reload", "lua")


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


# -- drivers ---------------------------------------------------------------------------------------
class HAProxyDriver:
    kind = "haproxy"

    def __init__(self, endpoint: str, pool: str, member: str, address: str | None, timeout: float) -> None:
        self.endpoint = endpoint
        self.pool = pool
        self.member = member
        self.address = address
        self.api = RuntimeAPI(endpoint, timeout)
        self.name = member

    @property
    def lb_key(self) -> tuple:
        return (self.kind, self.endpoint, self.pool)

    @staticmethod
    def batch():
        """Changes through the runtime API apply one by one: nothing to collect."""
        return nullcontext()

    def snapshot(self) -> list[dict[str, Any]]:
        return [s.as_dict() for s in self.api.servers(self.pool).values()]

    def find(self, members: list[dict[str, Any]]) -> dict[str, Any]:
        for m in members:
            if m["name"] == self.member or (self.address and m["address"] == self.address):
                self.name = m["name"]
                return m
        raise HAProxyError(f"HAProxy at {self.endpoint}: backend {self.pool!r} has no server {self.member!r}"
                           + (f" (or address {self.address})" if self.address else "")
                           + f"; its servers are: {', '.join(m['name'] for m in members) or '(none)'}. Fix "
                           f"`member` (the server name in the HAProxy configuration).",
                           endpoint=self.endpoint, pool=self.pool, member=self.member,
                           members=[m["name"] for m in members])

    def preflight(self) -> None:
        self.api.require_admin()

    @staticmethod
    def in_state(current: dict[str, Any], target: str) -> bool:
        """maint: forced into maintenance; ready: neither forced into maintenance nor into drain.

        Maintenance or drain inherited from a tracked server (MAINT (via ...)) is not ours to change.
        """
        flags = current["admin_flags"]
        if target == "maint":
            return bool(flags & ADMF_FMAINT)
        return not flags & (ADMF_FMAINT | ADMF_FDRAIN)

    @staticmethod
    def sessions(current: dict[str, Any]) -> int | None:
        return current["sessions"] + current["queued"]

    def take_out(self, current: dict[str, Any]) -> None:
        if current["state"] != "drain":
            self.api.set_state(self.pool, self.name, "drain")

    def remaining(self) -> int:
        server = self.api.server(self.pool, self.name)
        return server.in_flight

    def force(self) -> None:
        self.api.shutdown_sessions(self.pool, self.name)

    def finish(self) -> None:
        self.api.set_state(self.pool, self.name, "maint")

    def disable(self) -> None:
        self.api.set_state(self.pool, self.name, "maint")

    def enable(self) -> None:
        self.api.set_state(self.pool, self.name, "ready")

    def restore(self, previous: dict[str, Any]) -> None:
        self.api.set_state(self.pool, self.name, previous["state"])

    def resolve_weight(self, current: dict[str, Any], weight: Any) -> int:
        return resolve_weight(weight, current["initial_weight"])

    def set_weight(self, weight: int) -> None:
        self.api.set_weight(self.pool, self.name, weight)

    def healthy(self) -> tuple[bool, str]:
        server = self.api.server(self.pool, self.name)
        return server.settled_up, server.status


class NginxDriver:
    kind = "nginx"

    def __init__(self, instance: NginxInstance, pool: str, member: str, address: str | None,
                 health_uri: str | None) -> None:
        self.instance = instance
        self.endpoint = instance.upstream_file
        self.pool = pool
        self.member = member
        self.address = address
        self.health_uri = health_uri
        self.old_workers: dict[int, str] = {}
        self.name = member

    @property
    def lb_key(self) -> tuple:
        return (self.kind, self.endpoint, self.pool)

    def batch(self):
        """Changes of every member on this instance made in the block: one edit, one ``nginx -t``, one reload."""
        return self.instance.deferred()

    def _health(self, server) -> str:
        return probe(server.address, self.health_uri) if self.health_uri else "UNKNOWN"

    def snapshot(self) -> list[dict[str, Any]]:
        self.instance.master_pid()  # nginx must be running: check before touching anything
        servers = self.instance.servers(self.pool)
        sessions = connection_counts(list(self.instance.workers()), [s.address for s in servers])
        with ThreadPoolExecutor(max_workers=min(16, len(servers) or 1)) as pool:
            health = list(pool.map(self._health, servers))
        return [as_member(s, h, sessions[s.address]) for s, h in zip(servers, health)]

    def find(self, members: list[dict[str, Any]]) -> dict[str, Any]:
        servers = self.instance.servers(self.pool)
        server = find_server(servers, self.member, self.address, f"{self.endpoint} upstream {self.pool!r}")
        self.name = server.name
        self.address = server.address
        return next(m for m in members if m["address"] == server.address)

    def preflight(self) -> None:
        self.instance.check_writable()

    @staticmethod
    def in_state(current: dict[str, Any], target: str) -> bool:
        return current["state"] == target

    @staticmethod
    def sessions(current: dict[str, Any]) -> int | None:
        return current["sessions"]

    def _change(self, **kwargs: Any) -> None:
        self.old_workers = self.instance.change(self.pool, self.name, self.address, **kwargs)

    def take_out(self, current: dict[str, Any]) -> None:
        self._change(down=True)

    def remaining(self) -> int:
        """Old workers still running (they exit once their in-flight requests are done)."""
        return len(still_running(self.old_workers))

    def force(self) -> None:
        self.instance.terminate(self.old_workers)

    def finish(self) -> None:
        pass  # already `down` in the file nginx runs

    def disable(self) -> None:
        self._change(down=True)

    def enable(self) -> None:
        self._change(down=False)

    def restore(self, previous: dict[str, Any]) -> None:
        self._change(down=previous["state"] == "maint")

    def resolve_weight(self, current: dict[str, Any], weight: Any) -> int:
        """A whole number from 1; ``100%`` keeps the weight written in the file (nginx has no other reference)."""
        text = str(weight).strip()
        if text == "100%":
            return current["weight"]
        if not text.isdigit() or int(text) < 1:
            raise RolloutError(f"nginx weights are whole numbers from 1, or '100%' for the weight in the upstream "
                               f"file as it is (nginx has no configured weight that other percentages could refer "
                               f"to); got {weight!r}", weight=weight)
        return int(text)

    def set_weight(self, weight: int) -> None:
        self._change(weight=weight)

    def healthy(self) -> tuple[bool, str]:
        health = probe(self.address, self.health_uri) if self.health_uri else "UNKNOWN"
        return health == "UP", health


class NginxLuaDriver:
    """nginx in Lua mode: the balancer's shared dict, through its admin API; never a reload.

    Drain: ``drain`` (the balancer picks the member for no new request), wait until its in-flight
    count is 0, then ``maint``. The in-flight count is the balancer's own: +1 when it picks the
    member for a request, -1 when the request is logged.
    """

    kind = "nginx"
    mode = "lua"

    def __init__(self, balancer: LuaBalancer, pool: str, member: str, address: str | None,
                 health_uri: str | None) -> None:
        self.balancer = balancer
        self.endpoint = balancer.admin_url
        self.pool = pool
        self.member = member
        self.address = address
        self.health_uri = health_uri
        self.name = member

    @property
    def lb_key(self) -> tuple:
        return (self.kind, self.endpoint, self.pool)

    @staticmethod
    def batch():
        return nullcontext()

    def _health(self, member) -> str:
        return probe(member.address, self.health_uri) if self.health_uri else "UNKNOWN"

    def snapshot(self) -> list[dict[str, Any]]:
        members = self.balancer.members(self.pool)
        with ThreadPoolExecutor(max_workers=min(16, len(members) or 1)) as pool:
            health = list(pool.map(self._health, members))
        return [as_lua_member(m, h) for m, h in zip(members, health)]

    def find(self, members: list[dict[str, Any]]) -> dict[str, Any]:
        found = find_lua_member(self.balancer.members(self.pool), self.member, self.address,
                                f"nginx admin API {self.endpoint} pool {self.pool!r}")
        self.name = found.name
        self.address = found.address
        return next(m for m in members if m["name"] == found.name)

    def preflight(self) -> None:
        pass  # the snapshot already reached the admin API

    @staticmethod
    def in_state(current: dict[str, Any], target: str) -> bool:
        return current["state"] == target

    @staticmethod
    def sessions(current: dict[str, Any]) -> int | None:
        return current["sessions"]

    def take_out(self, current: dict[str, Any]) -> None:
        if current["state"] != "drain":
            self.balancer.set(self.pool, self.name, state="drain")

    def remaining(self) -> int:
        return self.balancer.member(self.pool, self.name).in_flight

    def force(self) -> None:
        """nginx cannot cut one upstream's requests without a reload: they run on; the member goes to maint."""

    def finish(self) -> None:
        self.balancer.set(self.pool, self.name, state="maint")

    def disable(self) -> None:
        self.balancer.set(self.pool, self.name, state="maint")

    def enable(self) -> None:
        self.balancer.set(self.pool, self.name, state="ready")

    def restore(self, previous: dict[str, Any]) -> None:
        self.balancer.set(self.pool, self.name, state=previous["state"])

    def resolve_weight(self, current: dict[str, Any], weight: Any) -> int:
        """A whole number from 1; ``100%`` keeps the member's current weight."""
        text = str(weight).strip()
        if text == "100%":
            return current["weight"]
        if not text.isdigit() or int(text) < 1:
            raise RolloutError(f"nginx weights are whole numbers from 1, or '100%' for the member's weight as it "
                               f"is; got {weight!r}", weight=weight)
        return int(text)

    def set_weight(self, weight: int) -> None:
        self.balancer.set(self.pool, self.name, weight=weight)

    def healthy(self) -> tuple[bool, str]:
        health = probe(self.address, self.health_uri) if self.health_uri else "UNKNOWN"
        return health == "UP", health


def nginx_spec(endpoint: Any, defaults: dict[str, Any]) -> dict[str, Any]:
    """An endpoint is the upstream file path (reload mode), or a dict of NGINX_KEYS over ``defaults``."""
    spec = {key: defaults.get(key) for key in NGINX_KEYS}
    if isinstance(endpoint, dict):
        unknown = set(endpoint) - set(NGINX_KEYS)
        if unknown:
            raise RolloutError(f"unknown keys {sorted(unknown)} in an nginx endpoint; use {', '.join(NGINX_KEYS)}",
                               endpoint=endpoint)
        spec.update({k: v for k, v in endpoint.items() if v is not None})
    elif spec.get("mode") == "lua":
        spec["admin_url"] = str(endpoint)
    else:
        spec["upstream_file"] = str(endpoint)
    spec["mode"] = spec.get("mode") or "reload"
    if spec["mode"] not in NGINX_MODES:
        raise RolloutError(f"nginx mode must be one of {', '.join(NGINX_MODES)}, got {spec['mode']!r}",
                           endpoint=endpoint)
    if spec["mode"] == "lua" and not spec.get("admin_url"):
        raise RolloutError("an nginx endpoint in lua mode needs admin_url (the balancer's admin location, such as "
                           "http://127.0.0.1:8081/sre-rollout): set it in the endpoint or as nginx_admin_url",
                           endpoint=endpoint)
    if spec["mode"] == "reload" and not spec.get("upstream_file"):
        raise RolloutError("an nginx endpoint needs upstream_file (the file holding the upstream block)",
                           endpoint=endpoint)
    return spec


def nginx_instance(endpoint: Any, defaults: dict[str, Any], timeout: float) -> NginxInstance:
    """The reload mode's instance of an endpoint (see ``nginx_spec``)."""
    spec = nginx_spec(endpoint, defaults)
    keys = ("upstream_file", "conf", "prefix", "pidfile", "binary")
    return NginxInstance(timeout=timeout, **{k: spec[k] for k in keys if spec.get(k) is not None})


def make_drivers(params: dict[str, Any]) -> list[Any]:
    """Drivers for the module options backend/endpoints/pool/member(s)/address/timeout/health_uri/nginx_*.

    One driver per member and endpoint, members first; the drivers of one nginx endpoint share its
    instance, so that a batch of members changes in one edit and one reload.
    """
    endpoints = params["endpoints"] or []
    if not endpoints:
        raise RolloutError("endpoints is empty: give at least one LB endpoint")
    members = params.get("members") or [params.get("member") or ""]
    if params.get("members") and params.get("address"):
        raise RolloutError("address applies to one member; with members, name each member (or give its "
                           "address as the name)")
    nginx_defaults = {key: params.get(f"nginx_{key}") for key in NGINX_KEYS}
    clients: list[Any] = []
    for endpoint in endpoints:
        if params["backend"] == "haproxy":
            if not isinstance(endpoint, str):
                raise RolloutError(f"an HAProxy endpoint is a socket path or tcp://host:port, got {endpoint!r}")
            clients.append(endpoint)
            continue
        spec = nginx_spec(endpoint, nginx_defaults)
        if spec["mode"] == "lua":
            clients.append(LuaBalancer(spec["admin_url"], params["timeout"]))
        else:
            clients.append(nginx_instance(endpoint, nginx_defaults, params["timeout"]))
    drivers: list[Any] = []
    for member in members:
        for client in clients:
            if params["backend"] == "haproxy":
                drivers.append(HAProxyDriver(client, params["pool"], member, params.get("address"),
                                             params["timeout"]))
            elif isinstance(client, LuaBalancer):
                drivers.append(NginxLuaDriver(client, params["pool"], member, params.get("address"),
                                              params.get("health_uri")))
            else:
                drivers.append(NginxDriver(client, params["pool"], member, params.get("address"),
                                           params.get("health_uri")))
    return drivers


# -- the operation ---------------------------------------------------------------------------------
@dataclass
class LBView:
    driver: Any
    members: list[dict[str, Any]]
    before: dict[str, Any]
    state_change: bool = False
    target_weight: int | None = None
    steps: list[int] = field(default_factory=list)
    waited: float = 0.0
    forced: bool = False
    touched: bool = False

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
    """Every driver's batch around the block: the reload mode applies the block's changes in one reload."""
    with ExitStack() as stack:
        seen: set[int] = set()
        for view in views:
            shared = id(getattr(view.driver, "instance", view.driver))
            if shared in seen or not hasattr(view.driver, "batch"):
                continue
            seen.add(shared)
            stack.enter_context(view.driver.batch())
        yield


class Operation:
    """Bring one member, or several, to ``options.state`` on every LB of ``drivers``.

    ``drivers`` holds one driver per member and LB (``make_drivers``). Members of one batch are
    taken out together: one capacity check per LB for all of them, one drain deadline, and in
    nginx's reload mode one edit and one reload per LB for each step.
    """

    def __init__(self, drivers: list[Any], options: Options, check_mode: bool = False,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.drivers = drivers
        self.opts = options
        self.check_mode = check_mode
        self.clock = clock
        self.sleep = sleep
        self.views: list[LBView] = []
        self.target = TARGET_STATE[options.state]

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
            key = getattr(driver, "lb_key", id(driver))
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
                    leaving.setdefault(getattr(view.driver, "lb_key", id(view.driver)), []).append(view)
            for views in leaving.values():
                first = views[0]
                capacity_check(first.members, [v.before for v in views], self.opts.min_ready,
                               f"pool {first.driver.pool!r} at {first.driver.endpoint}")

    def _plan_weights(self, view: LBView) -> None:
        final = self.opts.weight
        if final is None and self.opts.warmup and view.driver.kind == "haproxy":
            final = "100%"
        if final is None and self.opts.warmup:
            final = view.before["weight"]
        if final is not None:
            view.target_weight = view.driver.resolve_weight(view.before, final)
        if self.opts.warmup and view.state_change and self.target == "ready":
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

    def _drain(self) -> None:
        out = [v for v in self.views if v.state_change]
        try:
            with batched(out):
                for view in out:
                    view.driver.take_out(view.before)
                    view.touched = True
        except RolloutError as exc:
            self._restore(out, exc)
            raise
        start = self.clock()
        deadline = start + self.opts.drain_timeout
        pending = list(out)
        left: dict[str, int] = {}
        while True:
            for view in list(pending):
                left[self.key(view)] = view.driver.remaining()
                if left[self.key(view)] == 0:
                    view.waited = round(self.clock() - start, 3)
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
        deadline = self.clock() + self.opts.health_timeout
        status: dict[str, str] = {}
        while True:
            pending = []
            for view in self.views:
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
            "reloads": sum(getattr(i, "reloads", 0) for i in {id(getattr(d, "instance", d)): getattr(d, "instance", d)
                                                              for d in self.drivers}.values()),
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
            after["ready"] = after["state"] == "ready" and after["health"] in ("UP", "UNKNOWN") \
                and (after["weight"] or 0) > 0 and not after["backup"]
        else:
            key = getattr(view.driver, "lb_key", id(view.driver))
            if key not in after_snapshots:
                after_snapshots[key] = view.driver.snapshot()
            members = after_snapshots[key]
            after = next(m for m in members if m["name"] == before["name"])
        return {
            "endpoint": view.driver.endpoint, "backend": view.driver.kind, "pool": view.driver.pool,
            "member": before["name"], "address": before["address"],
            "previous_state": before["state"], "state": after["state"],
            "previous_weight": before["weight"], "weight": after["weight"],
            "health": after["health"], "sessions_at_start": view.driver.sessions(before),
            "waited": view.waited, "forced": view.forced, "changed": view.changed,
            "ready_members": ready_names(members),
        }


def pool_snapshot(drivers: list[Any]) -> dict[str, Any]:
    """Members of the pool on every LB, and the members ready on all of them."""
    pools = []
    for driver in drivers:
        pools.append({"endpoint": driver.endpoint, "backend": driver.kind, "pool": driver.pool,
                      "members": driver.snapshot()})
    ready_sets = [set(ready_names(p["members"])) for p in pools]
    common = set.intersection(*ready_sets) if ready_sets else set()
    order = [m["name"] for m in pools[0]["members"]] if pools else []
    return {"pools": pools, "ready_members": [name for name in order if name in common]}
