# Copyright: sre.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""HAProxy runtime API client (HAProxy 2.x "stats socket").

This module is private to the sre.rollout collection: its interface may change
without notice and it must not be used from outside the collection.

One command per connection (HAProxy's non-interactive mode), over a unix socket
(``/run/haproxy/admin.sock`` or ``unix:///...``) or TCP (``tcp://host:port``).
A server's state is read from two commands: ``show stat`` gives sessions,
queue, health status and address; ``show servers state`` gives the
administrative flags, which ``show stat`` hides once a server is DOWN (a DOWN
server in drain shows only "DOWN").
"""

from __future__ import annotations

import csv
import errno
import socket
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from ansible_collections.sre.rollout.plugins.module_utils._common import RolloutError
from ansible_collections.sre.rollout.plugins.module_utils._lbtypes import Kind, LBSpec, is_ready, member_record

# srv_admin_state bits (management guide, "show servers state").
ADMF_FMAINT = 0x01   # forced into maintenance (set server ... state maint)
ADMF_IMAINT = 0x02   # maintenance inherited from a tracked server
ADMF_CMAINT = 0x04   # "disabled" in the configuration
ADMF_FDRAIN = 0x08   # forced into drain (set server ... state drain)
ADMF_IDRAIN = 0x10   # drain inherited from a tracked server
ADMF_RMAINT = 0x20   # maintenance because of a DNS resolution failure
MAINT_MASK = ADMF_FMAINT | ADMF_IMAINT | ADMF_CMAINT | ADMF_RMAINT
DRAIN_MASK = ADMF_FDRAIN | ADMF_IDRAIN

# srv_op_state values.
OP_HEALTH = {0: "DOWN", 1: "UP", 2: "UP", 3: "NOLB"}

ADMIN_STATES = ("ready", "drain", "maint")

# First line of the answers HAProxy gives when a command fails.
_NOT_FOUND = ("No such server.", "No such backend.", "No such proxy.", "Can't find backend.")
_DENIED = "Permission denied"
_UNKNOWN = ("Unknown command", "usage:")


class HAProxyError(RolloutError):
    """A runtime API call failed; ``details`` carry the endpoint and HAProxy's answer."""


@dataclass
class Server:
    """One server of a backend, as HAProxy sees it now."""

    name: str
    address: str
    status: str            # show stat "status" as is: "UP", "UP 1/2", "DRAIN", "MAINT (via app/web01)"
    admin_state: str       # ready | drain | maint
    admin_flags: int
    health: str            # UP | DOWN | NOLB
    weight: int            # user weight (what "set server ... weight" changes)
    initial_weight: int    # weight from the configuration (what "100%" means)
    sessions: int          # scur
    queued: int            # qcur
    check_status: str
    tracked: str
    backup: bool

    @property
    def ready(self) -> bool:
        """Takes new traffic: administratively ready, health UP, weight above 0, not a backup."""
        return is_ready(self.admin_state, self.health, self.weight, self.backup)

    @property
    def settled_up(self) -> bool:
        """Health is UP and not in transition ("UP 1/2" means one check already failed)."""
        return self.health == "UP" and self.status in ("UP", "DRAIN", "no check")

    @property
    def in_flight(self) -> int:
        return self.sessions + self.queued

    def as_dict(self) -> dict[str, Any]:
        return member_record(self.name, self.address, self.admin_state, self.health, self.weight, self.sessions,
                             backup=self.backup, status=self.status, admin_flags=self.admin_flags,
                             initial_weight=self.initial_weight, queued=self.queued,
                             check_status=self.check_status, tracked=self.tracked or None)


def parse_endpoint(endpoint: str) -> tuple[int, Any]:
    """``tcp://host:port`` → (AF_INET/AF_INET6, (host, port)); a path or ``unix://path`` → (AF_UNIX, path)."""
    if endpoint.startswith("tcp://"):
        rest = endpoint[len("tcp://"):].rstrip("/")
        host, sep, port = rest.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port.isdigit():
            raise HAProxyError(f"HAProxy endpoint {endpoint!r} is not tcp://host:port; write it like "
                               f"tcp://127.0.0.1:9999", endpoint=endpoint)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        return family, (host, int(port))
    path = endpoint[len("unix://"):] if endpoint.startswith("unix://") else endpoint
    if not path.startswith("/"):
        raise HAProxyError(f"HAProxy endpoint {endpoint!r} is neither an absolute unix socket path nor "
                           f"tcp://host:port", endpoint=endpoint)
    return socket.AF_UNIX, path


def parse_stat_csv(text: str) -> list[dict[str, str]]:
    """``show stat`` CSV → one dict per line, keyed by the header's column names."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or not lines[0].startswith("#"):
        raise HAProxyError("HAProxy answered `show stat` with something that is not its CSV: "
                           f"{text.strip()[:200]!r}", answer=text)
    header = [col.strip() for col in lines[0].lstrip("#").strip().split(",")]
    rows = []
    for values in csv.reader(lines[1:]):
        rows.append({col: values[i] if i < len(values) else "" for i, col in enumerate(header) if col})
    return rows


def parse_servers_state(text: str) -> list[dict[str, str]]:
    """``show servers state`` (format version 1) → one dict per server."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "1":
        raise HAProxyError("HAProxy answered `show servers state` in an unknown format (expected "
                           f"version 1): {text.strip()[:200]!r}", answer=text)
    header: list[str] = []
    rows = []
    for line in lines[1:]:
        if not line.strip():
            continue
        if line.startswith("#"):
            if not header:
                header = line.lstrip("#").split()
            continue
        rows.append(dict(zip(header, line.split())))
    return rows


def admin_state_from_flags(flags: int) -> str:
    if flags & MAINT_MASK:
        return "maint"
    if flags & DRAIN_MASK:
        return "drain"
    return "ready"


def _admin_state_from_status(status: str) -> str:
    if status.startswith("MAINT"):
        return "maint"
    if status.startswith("DRAIN"):
        return "drain"
    return "ready"


def _health_from_status(status: str) -> str:
    for word in ("DOWN", "NOLB", "MAINT"):
        if status.startswith(word):
            return "DOWN" if word == "MAINT" else word
    return "UP"


def _int(value: str | None, default: int = 0) -> int:
    try:
        return int(value) if value not in (None, "", "-") else default
    except ValueError:
        return default


def merge_server(stat: dict[str, str], state: dict[str, str] | None) -> Server:
    """Combine a ``show stat`` row and its ``show servers state`` row into a Server."""
    status = stat.get("status", "")
    if state is not None:
        flags = _int(state.get("srv_admin_state"))
        admin = admin_state_from_flags(flags)
        health = OP_HEALTH.get(_int(state.get("srv_op_state"), -1), _health_from_status(status))
        weight = _int(state.get("srv_uweight"), _int(stat.get("weight")))
        initial = _int(state.get("srv_iweight"), weight)
    else:
        admin = _admin_state_from_status(status)
        flags = {"maint": ADMF_FMAINT, "drain": ADMF_FDRAIN}.get(admin, 0)
        health = _health_from_status(status)
        weight = _int(stat.get("uweight"), _int(stat.get("weight")))
        initial = weight
    return Server(
        name=stat.get("svname", ""), address=stat.get("addr", ""), status=status,
        admin_state=admin, admin_flags=flags, health=health, weight=weight, initial_weight=initial,
        sessions=_int(stat.get("scur")), queued=_int(stat.get("qcur")),
        check_status=stat.get("check_status", "").lstrip("* "), tracked=stat.get("tracked", ""),
        backup=stat.get("bck") == "1",
    )


def resolve_weight(weight: str | int, initial_weight: int) -> int:
    """The user weight HAProxy will set for ``set server ... weight <weight>``: absolute or N% of initial."""
    text = str(weight).strip()
    if text.endswith("%"):
        number = text[:-1].strip()
        if not number.isdigit():
            raise HAProxyError(f"weight {weight!r} is not a whole percentage such as '50%'", weight=weight)
        return min(initial_weight * min(int(number), 25600) // 100, 256)
    if not text.isdigit() or int(text) > 256:
        raise HAProxyError(f"weight {weight!r} must be 0..256 or a percentage of the configured weight "
                           f"such as '50%'", weight=weight)
    return int(text)


class RuntimeAPI:
    """HAProxy's runtime API at one endpoint; one connection per command."""

    def __init__(self, endpoint: str, timeout: float = 5.0) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.family, self.address = parse_endpoint(endpoint)

    # -- transport ---------------------------------------------------------
    def raw(self, command: str) -> str:
        """Send one command, return HAProxy's whole answer (HAProxy closes the connection after it)."""
        try:
            with socket.socket(self.family, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect(self.address)
                sock.sendall(command.encode() + b"\n")
                chunks = []
                while True:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
        except OSError as exc:
            raise self._transport_error(command, exc) from exc
        return b"".join(chunks).decode("utf-8", "replace")

    def _transport_error(self, command: str, exc: OSError) -> HAProxyError:
        where = f"HAProxy runtime API at {self.endpoint}"
        details = {"endpoint": self.endpoint, "command": command, "error": str(exc)}
        if isinstance(exc, socket.timeout):
            return HAProxyError(f"{where} did not answer `{command}` within {self.timeout}s; check that "
                                f"HAProxy is not overloaded or raise `timeout`", **details)
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return HAProxyError(f"{where}: socket {self.address} does not exist; is HAProxy running, and does "
                                f"a `stats socket {self.address} level admin` line exist in its global section?",
                                **details)
        if exc.errno in (errno.EACCES, errno.EPERM):
            return HAProxyError(f"{where}: permission denied on socket {self.address}; run the task as a user "
                                f"that may write the socket (become: true) or set `mode`/`user`/`group` on "
                                f"its `stats socket` line", **details)
        if exc.errno in (errno.ECONNREFUSED, errno.ECONNRESET):
            return HAProxyError(f"{where} refused the connection; is HAProxy running with this stats socket "
                                f"or `stats socket ipv4@host:port` bound?", **details)
        return HAProxyError(f"{where} is unreachable: {exc}", **details)

    # -- commands ----------------------------------------------------------
    def run(self, command: str, output: bool = False) -> str:
        """Run a command; raise on HAProxy's error answers. Commands without output must answer nothing."""
        answer = self.raw(command)
        first = answer.strip().splitlines()[0] if answer.strip() else ""
        details = {"endpoint": self.endpoint, "command": command, "answer": answer.strip()}
        if first.startswith(_DENIED):
            raise HAProxyError(f"HAProxy runtime API at {self.endpoint} refused `{command}`: Permission denied. "
                               f"This socket's level is too low; use one with `level admin`", **details)
        if first in _NOT_FOUND:
            raise HAProxyError(f"HAProxy at {self.endpoint} answered `{command}` with: {first}", **details)
        if first.startswith(_UNKNOWN):
            raise HAProxyError(f"HAProxy at {self.endpoint} does not understand `{command}` (is it older than "
                               f"2.0?): {first}", **details)
        if not output and first:
            raise HAProxyError(f"HAProxy at {self.endpoint} rejected `{command}`: {answer.strip()}", **details)
        return answer

    def cli_level(self) -> str | None:
        """``admin``, ``operator`` or ``user``; None if this HAProxy cannot tell (older than 2.1)."""
        try:
            return self.run("show cli level", output=True).strip() or None
        except HAProxyError as exc:
            if "does not understand" in exc.msg:
                return None
            raise

    def require_admin(self) -> None:
        level = self.cli_level()
        if level not in (None, "admin"):
            raise HAProxyError(f"HAProxy runtime API at {self.endpoint} runs at level {level!r}, and changing a "
                               f"server needs level admin: Permission denied. Use a socket declared with "
                               f"`level admin`", endpoint=self.endpoint, level=level)

    def backends(self) -> list[str]:
        rows = parse_stat_csv(self.run("show stat -1 2 -1", output=True))
        return [row["pxname"] for row in rows if row.get("svname") == "BACKEND"]

    def servers(self, backend: str) -> dict[str, Server]:
        """Every server of ``backend`` by name, in configuration order."""
        try:
            stat_text = self.run(f"show stat {backend} 4 -1", output=True)
        except HAProxyError as exc:
            if exc.details.get("answer", "").startswith("No such proxy."):
                raise self._unknown_backend(backend) from exc
            raise
        states = {row.get("srv_name"): row for row in parse_servers_state(
            self.run(f"show servers state {backend}", output=True))}
        servers = {}
        for row in parse_stat_csv(stat_text):
            if row.get("pxname") != backend or row.get("svname") in ("FRONTEND", "BACKEND"):
                continue
            server = merge_server(row, states.get(row["svname"]))
            servers[server.name] = server
        return servers

    def _unknown_backend(self, backend: str) -> HAProxyError:
        try:
            known = self.backends()
        except HAProxyError:
            known = []
        return HAProxyError(f"HAProxy at {self.endpoint} has no backend {backend!r}; its backends are: "
                            f"{', '.join(known) or '(none)'}. Fix `pool`.",
                            endpoint=self.endpoint, pool=backend, backends=known)

    def server(self, backend: str, name: str) -> Server:
        servers = self.servers(backend)
        if name not in servers:
            raise HAProxyError(f"HAProxy at {self.endpoint}: backend {backend!r} has no server {name!r}; its "
                               f"servers are: {', '.join(servers) or '(none)'}. Fix `member` (the server "
                               f"name in the HAProxy configuration).",
                               endpoint=self.endpoint, pool=backend, member=name, members=list(servers))
        return servers[name]

    def set_state(self, backend: str, name: str, state: str) -> None:
        if state not in ADMIN_STATES:
            raise HAProxyError(f"unknown HAProxy server state {state!r}; use one of {', '.join(ADMIN_STATES)}")
        self.run(f"set server {backend}/{name} state {state}")

    def set_weight(self, backend: str, name: str, weight: str | int) -> None:
        self.run(f"set server {backend}/{name} weight {str(weight).strip()}")

    def shutdown_sessions(self, backend: str, name: str) -> None:
        self.run(f"shutdown sessions server {backend}/{name}")


# -- the LB driver (see _lbtypes.Driver) -------------------------------------------------------
class HAProxyDriver:
    """One server of one backend on one HAProxy, through its runtime API.

    Drain: ``drain`` (no new sessions), wait until its sessions and queue are 0, then ``maint``.
    HAProxy's own health checks say when an enabled server is UP; weights may be percentages of
    the configured weight, so a warm-up can step through them.
    """

    kind = "haproxy"
    has_health_check = True
    percent_weights = True
    reloads = 0

    def __init__(self, lb: LBSpec, endpoint: str, member: str, timeout: float) -> None:
        self.lb = lb
        self.endpoint = endpoint
        self.pool = lb.pool
        self.member = member
        self.address = lb.address
        self.api = RuntimeAPI(endpoint, timeout)
        self.name = member

    @property
    def lb_key(self) -> tuple:
        return (self.kind, self.endpoint, self.pool)

    @property
    def instance_key(self) -> Any:
        return id(self)

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
        return self.api.server(self.pool, self.name).in_flight

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

    @staticmethod
    def resolve_weight(current: dict[str, Any], weight: Any) -> int:
        return resolve_weight(weight, current["initial_weight"])

    def set_weight(self, weight: int) -> None:
        self.api.set_weight(self.pool, self.name, weight)

    def healthy(self) -> tuple[bool, str]:
        server = self.api.server(self.pool, self.name)
        return server.settled_up, server.status


def drivers(lb: LBSpec, timeout: float) -> list[HAProxyDriver]:
    """One driver per member and runtime API endpoint (a socket path or tcp://host:port)."""
    lb.check_options(KIND.options)
    for endpoint in lb.endpoints:
        if not isinstance(endpoint, str):
            raise RolloutError(f"LB {lb.label}: an HAProxy endpoint is a socket path or tcp://host:port, "
                               f"got {endpoint!r}", lb=lb.label)
    return [HAProxyDriver(lb, endpoint, member, timeout) for member in lb.members for endpoint in lb.endpoints]


KIND = Kind(name="haproxy", options=(), drivers=drivers)
