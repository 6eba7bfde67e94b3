# Copyright: sre.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nginx clients: the reload mode (an upstream file) and the Lua mode (a balancer's admin API).

This module is private to the sre.rollout collection: its interface may change
without notice and it must not be used from outside the collection.

Lua mode (``LuaBalancer``): nginx with lua-nginx-module and lua-resty-core runs a
``balancer_by_lua`` upstream whose members, weights, states and in-flight counts
live in a ``lua_shared_dict``; an admin location on loopback reads and changes
them. A drain marks the member ``drain`` (the balancer picks it for no new
request), waits until its in-flight count is 0, then marks it ``maint``. No
reload, so no kept-alive client connection is ever closed by a change.

Reload mode (``NginxInstance``): nginx (open source) has no runtime API, so a member is taken out by marking its
``server`` line ``down`` in the upstream file, checking the configuration with
``nginx -t`` and reloading gracefully. A graceful reload starts new worker
processes and lets the old ones finish their in-flight requests before they
exit; "drained" therefore means "every worker that existed before the reload
has exited". Workers are found as the children of the master process (from its
pidfile), identified by pid and start time so that a reused pid is not mistaken
for an old worker.

Members are named by a comment after their ``server`` line (``server
10.0.0.1:8080; # web01``) or, without one, by their address.
"""

from __future__ import annotations

import fcntl
import glob
import json
import os
import re
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Iterator
from urllib.parse import quote, urlencode

from ansible_collections.sre.rollout.plugins.module_utils._common import RolloutError, atomic_write
from ansible_collections.sre.rollout.plugins.module_utils._lbtypes import Kind, LBSpec, member_record

_UPSTREAM_RE = re.compile(r"^\s*upstream\s+(?P<name>[^\s{]+)\s*\{\s*(#.*)?$")
_SERVER_RE = re.compile(r"^(?P<indent>\s*)server\s+(?P<body>[^;#]+);(?P<tail>\s*(#\s*(?P<comment>.*))?)$")


class NginxError(RolloutError):
    """An nginx operation failed; ``details`` say which file / command and nginx's own message."""


@dataclass
class UpstreamServer:
    """One ``server`` line of an upstream block."""

    address: str
    params: list[str]
    comment: str
    line: int                       # index in the file's lines
    indent: str = "    "
    tail: str = ""

    @property
    def name(self) -> str:
        word = self.comment.split()[0] if self.comment.strip() else ""
        return word or self.address

    @property
    def down(self) -> bool:
        return "down" in self.params

    @property
    def backup(self) -> bool:
        return "backup" in self.params

    @property
    def weight(self) -> int:
        for param in self.params:
            if param.startswith("weight="):
                try:
                    return int(param.split("=", 1)[1])
                except ValueError:
                    return 1
        return 1

    def matches(self, member: str) -> bool:
        return member in (self.name, self.address)

    def render(self) -> str:
        return f"{self.indent}server {' '.join([self.address, *self.params])};{self.tail}"

    def with_changes(self, down: bool | None = None, weight: int | None = None) -> "UpstreamServer":
        params = list(self.params)
        if down is True and "down" not in params:
            params.append("down")
        elif down is False:
            params = [p for p in params if p != "down"]
        if weight is not None:
            rest = [p for p in params if not p.startswith("weight=")]
            at = next((i for i, p in enumerate(params) if p.startswith("weight=")), None)
            params = rest
            params.insert(len(rest) if at is None else at, f"weight={weight}")
        return UpstreamServer(self.address, params, self.comment, self.line, self.indent, self.tail)


def find_upstreams(text: str) -> dict[str, tuple[int, int]]:
    """Upstream name → (first line index inside the block, index of its closing line)."""
    lines = text.splitlines()
    found: dict[str, tuple[int, int]] = {}
    i = 0
    while i < len(lines):
        match = _UPSTREAM_RE.match(lines[i])
        if not match:
            i += 1
            continue
        depth, j = 1, i + 1
        while j < len(lines):
            code = lines[j].split("#", 1)[0]
            depth += code.count("{") - code.count("}")
            if depth <= 0:
                break
            j += 1
        if depth > 0:
            raise NginxError(f"upstream {match.group('name')!r} has no closing brace", upstream=match.group("name"))
        found[match.group("name")] = (i + 1, j)
        i = j + 1
    return found


def parse_upstream(text: str, upstream: str, path: str = "<upstream file>") -> list[UpstreamServer]:
    """The ``server`` lines of ``upstream``; each must sit on one line of its own."""
    blocks = find_upstreams(text)
    if upstream not in blocks:
        raise NginxError(f"{path} has no `upstream {upstream} {{ ... }}` block; its upstreams are: "
                         f"{', '.join(blocks) or '(none)'}. Fix `pool` or the endpoint's upstream file.",
                         path=path, pool=upstream, upstreams=list(blocks))
    first, last = blocks[upstream]
    lines = text.splitlines()
    servers = []
    for index in range(first, last):
        line = lines[index]
        code = line.split("#", 1)[0].strip()
        if not code.startswith("server ") and code != "server":
            continue
        match = _SERVER_RE.match(line)
        if not match:
            raise NginxError(f"{path} line {index + 1}: a `server` directive must fit on one line ending "
                             f"with ';' (optionally followed by '# name'); got {line.strip()!r}",
                             path=path, line=index + 1)
        words = match.group("body").split()
        servers.append(UpstreamServer(address=words[0], params=words[1:], comment=match.group("comment") or "",
                                      line=index, indent=match.group("indent"), tail=match.group("tail")))
    return servers


def replace_server(text: str, server: UpstreamServer) -> str:
    """``text`` with ``server``'s line re-rendered; every other byte stays as it was."""
    lines = text.split("\n")
    lines[server.line] = server.render()
    return "\n".join(lines)


def find_server(servers: list[UpstreamServer], member: str, address: str | None, where: str) -> UpstreamServer:
    matches = [s for s in servers if s.matches(member) or (address and s.address == address)]
    if len(matches) == 1:
        return matches[0]
    listing = ", ".join(f"{s.name}" + ("" if s.name == s.address else f" ({s.address})") for s in servers)
    if not matches:
        raise NginxError(f"{where} has no member {member!r}" + (f" or address {address!r}" if address else "")
                         + f"; its members are: {listing or '(none)'}. Give `member` as the name in the "
                         f"`# name` comment of its server line, or `address` as host:port.",
                         member=member, members=[s.name for s in servers])
    raise NginxError(f"{where}: {member!r} matches {len(matches)} server lines ({listing}); name them with "
                     f"`# name` comments", member=member, members=[s.name for s in servers])


# -- processes ---------------------------------------------------------------
def proc_stat(pid: int) -> tuple[int, str] | None:
    """(ppid, start time) of a process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            data = handle.read()
    except OSError:
        return None
    fields = data.rsplit(")", 1)[-1].split()
    # fields[0] is the state (stat field 3): ppid is field 4, starttime field 22.
    if len(fields) < 20 or fields[0] == "Z":
        return None
    return int(fields[1]), fields[19]


def children(ppid: int) -> dict[int, str]:
    """Live children of ``ppid``: pid → start time."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            info = proc_stat(int(entry))
            if info and info[0] == ppid:
                found[int(entry)] = info[1]
    return found


def still_running(procs: dict[int, str]) -> dict[int, str]:
    """The processes of ``procs`` that still exist (same pid and same start time)."""
    alive = {}
    for pid, started in procs.items():
        info = proc_stat(pid)
        if info and info[1] == started:
            alive[pid] = started
    return alive


# -- connections (best effort: needs /proc/<pid>/fd of the workers) ---------
def _decode_addr(hexaddr: str) -> tuple[str, int]:
    host, port = hexaddr.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        ip = socket.inet_ntop(socket.AF_INET, raw[::-1])
    else:
        words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
        ip = socket.inet_ntop(socket.AF_INET6, words)
        if ip.startswith("::ffff:") and "." in ip:
            ip = ip[len("::ffff:"):]
    return ip, int(port, 16)


def split_address(address: str) -> tuple[str, int] | None:
    if address.startswith("unix:"):
        return None
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return address.strip("[]"), 80
    return host.strip("[]"), int(port)


def _socket_inodes(pids: list[int]) -> set[str] | None:
    inodes = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except PermissionError:
            return None
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    return inodes


def _established_remotes(inodes: set[str], proc_net: str) -> list[tuple[str, int]]:
    remotes = []
    for table in ("tcp", "tcp6"):
        try:
            with open(os.path.join(proc_net, table)) as handle:
                rows = handle.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if len(cols) >= 10 and cols[3] == "01" and cols[9] in inodes:
                remotes.append(_decode_addr(cols[2]))
    return remotes


def connection_counts(pids: list[int], addresses: list[str], proc_net: str = "/proc/net") -> dict[str, int | None]:
    """ESTABLISHED TCP connections from ``pids`` to each address (host:port); None where unknown.

    Unknown: a unix socket address, a name that does not resolve, or /proc/<pid>/fd not readable.
    """
    counts: dict[str, int | None] = {address: None for address in addresses}
    inodes = _socket_inodes(pids)
    if inodes is None:
        return counts
    remotes = _established_remotes(inodes, proc_net)
    for address in addresses:
        target = split_address(address)
        if target is None:
            continue
        try:
            ips = {info[4][0] for info in socket.getaddrinfo(target[0], target[1], proto=socket.IPPROTO_TCP)}
        except OSError:
            continue
        counts[address] = sum(1 for ip, port in remotes if ip in ips and port == target[1])
    return counts


@dataclass
class NginxInstance:
    """One nginx instance and the upstream file the collection owns in it."""

    upstream_file: str
    conf: str = "/etc/nginx/nginx.conf"
    prefix: str | None = None
    pidfile: str = "/run/nginx.pid"
    binary: str = "/usr/sbin/nginx"
    timeout: float = 10.0
    batch_window: float = 0.0
    batch_size: int = 1
    reloads: int = field(default=0, init=False)
    _pending: list | None = field(default=None, init=False, repr=False)
    _pending_old: dict = field(default_factory=dict, init=False, repr=False)

    # -- reading -----------------------------------------------------------
    def read(self) -> str:
        try:
            with open(self.upstream_file) as handle:
                return handle.read()
        except FileNotFoundError as exc:
            raise NginxError(f"nginx upstream file {self.upstream_file} does not exist; create it (included from "
                             f"the nginx configuration) or fix `endpoints`", path=self.upstream_file) from exc
        except PermissionError as exc:
            raise NginxError(f"permission denied reading {self.upstream_file}; run the task as a user that may "
                             f"read it (become: true)", path=self.upstream_file) from exc

    def servers(self, upstream: str) -> list[UpstreamServer]:
        return parse_upstream(self.read(), upstream, self.upstream_file)

    def master_pid(self) -> int:
        try:
            with open(self.pidfile) as handle:
                pid = int(handle.read().split()[0])
        except FileNotFoundError as exc:
            raise NginxError(f"nginx pidfile {self.pidfile} does not exist: nginx is not running, or set "
                             f"`nginx_pidfile` to its `pid` directive", pidfile=self.pidfile) from exc
        except (OSError, ValueError, IndexError) as exc:
            raise NginxError(f"cannot read nginx's pid from {self.pidfile}: {exc}", pidfile=self.pidfile) from exc
        if proc_stat(pid) is None:
            raise NginxError(f"nginx is not running: pid {pid} from {self.pidfile} does not exist. Start nginx "
                             f"or fix `nginx_pidfile`", pidfile=self.pidfile, pid=pid)
        return pid

    def workers(self) -> dict[int, str]:
        return children(self.master_pid())

    def check_writable(self) -> None:
        directory = os.path.dirname(os.path.abspath(self.upstream_file))
        for path in (self.upstream_file, directory):
            if not os.access(path, os.W_OK):
                raise NginxError(f"permission denied: cannot write {path}; run the task as a user that may "
                                 f"(become: true)", path=path)

    # -- changing ----------------------------------------------------------
    def _cmd(self, *args: str) -> list[str]:
        cmd = [self.binary]
        if self.prefix:
            cmd += ["-p", self.prefix]
        return cmd + ["-c", self.conf, *args]

    def _execute(self, cmd: list[str]) -> subprocess.CompletedProcess:
        try:
            # the nginx binary runs on the controller, where the LB modules run, and its exit code is read:
            # module_utils shared with non-module code has no module to call run_command on
            return subprocess.run(  # pylint: disable=ansible-bad-function
                cmd, capture_output=True, text=True, timeout=max(self.timeout, 30.0), check=False)
        except FileNotFoundError as exc:
            raise NginxError(f"nginx binary {self.binary} not found; set `nginx_binary`", binary=self.binary) from exc
        except subprocess.TimeoutExpired as exc:
            raise NginxError(f"`{' '.join(cmd)}` did not finish in time", cmd=cmd) from exc

    def test(self) -> None:
        result = self._execute(self._cmd("-t", "-q"))
        if result.returncode != 0:
            message = (result.stderr or result.stdout).strip()
            raise NginxError(f"nginx -t rejected the configuration: {message}", nginx_stderr=message,
                             cmd=self._cmd("-t", "-q"))

    def reload(self, old: dict[int, str]) -> None:
        """Graceful reload; returns once the master has started new workers."""
        result = self._execute(self._cmd("-s", "reload"))
        if result.returncode != 0:
            message = (result.stderr or result.stdout).strip()
            raise NginxError(f"nginx reload failed: {message}", nginx_stderr=message, cmd=self._cmd("-s", "reload"))
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if set(self.workers()) - set(old):
                return
            time.sleep(0.05)
        raise NginxError(f"nginx (pidfile {self.pidfile}) started no new worker processes within {self.timeout}s "
                         f"of the reload: the new configuration was probably not applied; see nginx's error log",
                         pidfile=self.pidfile)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Serialise changes to the upstream file (several hosts drained in parallel share it)."""
        fd = os.open(os.path.dirname(os.path.abspath(self.upstream_file)), os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _write(self, text: str) -> None:
        atomic_write(self.upstream_file, text, mode=os.stat(self.upstream_file).st_mode & 0o7777)

    def change(self, upstream: str, member: str, address: str | None, down: bool | None = None,
               weight: int | None = None) -> dict[int, str]:
        """Rewrite the member's line, test, reload; return the workers that ran before the reload.

        If ``nginx -t`` or the reload fails, the previous file is put back (and nginx
        keeps running the previous configuration) before the error is raised.

        Inside ``deferred()`` the change is only recorded, and the dict returned is filled with the
        old workers when the block ends with its one edit and reload.
        """
        if self._pending is not None:
            self._pending.append((upstream, member, address, down, weight))
            return self._pending_old
        return self.change_many([(upstream, member, address, down, weight)])

    def change_many(self, changes: list[tuple[str, str, str | None, bool | None, int | None]]) -> dict[int, str]:
        """Several members' lines (upstream, member, address, down, weight) in ONE edit, one test, one reload.

        With ``batch_window``, the changes other processes make to the same file within that many
        seconds (the other hosts of a batch step, each in its own task) share that one reload: see
        ``_group_commit``.
        """
        if self.batch_window > 0:
            return self._group_commit(changes)
        with self.locked():
            return self._apply(changes)

    # -- group commit: one reload for the changes of a whole batch step ---------------------------
    @property
    def _spool(self) -> str:
        directory, name = os.path.split(os.path.abspath(self.upstream_file))
        return os.path.join(directory, f".sre-rollout-pending-{name}")

    def _group_commit(self, changes: list) -> dict[int, str]:
        """Leave the changes in the spool, wait ``batch_window``, then apply every pending change at once.

        Whoever takes the lock first applies the changes of every live process waiting in the spool
        in one edit, one ``nginx -t`` and one reload, and leaves each its outcome (the old workers,
        or the error); the others find theirs done. A ticket whose process is gone is dropped.
        """
        os.makedirs(self._spool, exist_ok=True)
        ticket = os.path.join(self._spool, f"{os.getpid()}-{time.monotonic_ns()}")
        _write_json(ticket + ".json", {"pid": os.getpid(), "changes": changes})
        # the batch step's other tasks: once ``batch_size`` changes wait (or are done), no need to wait on
        deadline = time.monotonic() + self.batch_window
        while time.monotonic() < deadline and self._pending_tickets() < self.batch_size \
                and not os.path.exists(ticket + ".done"):
            time.sleep(0.05)
        with self.locked():
            if not os.path.exists(ticket + ".done"):
                self._lead()
            with open(ticket + ".done") as handle:
                outcome = json.load(handle)
            os.unlink(ticket + ".done")
        if "error" in outcome:
            raise NginxError(outcome["error"], **outcome.get("details", {}))
        return {int(pid): cmd for pid, cmd in outcome["old"].items()}

    def _pending_tickets(self) -> int:
        return len(glob.glob(os.path.join(self._spool, "*.json")))

    def _lead(self) -> None:
        """Under the lock: apply every live pending ticket's changes together, and answer each."""
        tickets = []
        for path in sorted(glob.glob(os.path.join(self._spool, "*.json"))):
            try:
                with open(path) as handle:
                    ticket = json.load(handle)
            except (OSError, ValueError):
                continue
            if proc_stat(int(ticket["pid"])) is None:  # its task ended (killed, timed out): not ours to apply
                os.unlink(path)
                continue
            tickets.append((path, ticket))
        changes = [tuple(change) for _path, ticket in tickets for change in ticket["changes"]]
        try:
            old = self._apply(changes)
            outcome: dict[str, Any] = {"old": {str(pid): cmd for pid, cmd in old.items()}}
        except NginxError as exc:
            details = {k: v for k, v in exc.details.items() if isinstance(v, (str, int, bool, list))}
            outcome = {"error": exc.msg, "details": details}
        for path, _ticket in tickets:
            _write_json(path[:-len(".json")] + ".done", outcome)
            os.unlink(path)

    def _apply(self, changes: list) -> dict[int, str]:
        """The changes in one edit, one test and one reload; the caller holds the lock."""
        before = self.read()
        after = before
        for upstream, member, address, down, weight in changes:
            server = find_server(parse_upstream(after, upstream, self.upstream_file), member, address,
                                 f"{self.upstream_file} upstream {upstream!r}")
            after = replace_server(after, server.with_changes(down=down, weight=weight))
        if after == before:
            return {}
        old = self.workers()
        self._write(after)
        try:
            self.test()
            self.reload(old)
        except NginxError as exc:
            self._write(before)
            exc.details["restored"] = True
            raise
        self.reloads += 1
        return old

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Collect every ``change()`` made in the block and apply them together when it ends."""
        if self._pending is not None:  # already collecting: the outer block applies
            yield
            return
        self._pending, self._pending_old = [], {}
        ok = False
        try:
            yield
            ok = True
        finally:
            pending, old = self._pending, self._pending_old
            self._pending = None
            if ok and pending:
                old.update(self.change_many(pending))

    @staticmethod
    def terminate(procs: dict[int, str]) -> list[int]:
        """SIGTERM the given (old) workers that still run: nginx's fast shutdown, cutting their requests."""
        killed = []
        for pid in still_running(procs):
            try:
                os.kill(pid, signal.SIGTERM)
                killed.append(pid)
            except ProcessLookupError:
                pass
        return killed


def probe(address: str, uri: str, timeout: float = 2.0) -> str:
    """HTTP GET http://<address><uri>: "UP" on 2xx/3xx, else "DOWN"; "UNKNOWN" for unix sockets."""
    from ansible.module_utils.urls import open_url  # imported late: only probing needs it

    if address.startswith("unix:"):
        return "UNKNOWN"
    try:
        response = open_url(f"http://{address}{uri}", timeout=timeout, follow_redirects="none",
                            validate_certs=False)
        return "UP" if 200 <= response.getcode() < 400 else "DOWN"
    except Exception:  # noqa: BLE001 - any failure of the probe means the member is not healthy
        return "DOWN"


def as_member(server: UpstreamServer, health: str, sessions: int | None) -> dict[str, Any]:
    return member_record(server.name, server.address, "maint" if server.down else "ready", health, server.weight,
                         sessions, backup=server.backup, status="down" if server.down else "up")


# -- Lua mode ------------------------------------------------------------------
LUA_STATES = ("ready", "drain", "maint")


@dataclass
class LuaMember:
    """One member as the Lua balancer's admin API reports it."""

    name: str
    address: str
    state: str
    weight: int
    in_flight: int

    def matches(self, member: str) -> bool:
        return member in (self.name, self.address)


def parse_members(text: str, where: str) -> list[LuaMember]:
    """The admin API's answer: one member a line, ``name address state weight in_flight``."""
    members = []
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split()
        if not words:
            continue
        if len(words) != 5 or words[2] not in LUA_STATES or not words[3].isdigit() \
                or not words[4].lstrip("-").isdigit():
            raise NginxError(f"{where} answered line {number} {line!r}, not 'name address state weight in_flight': "
                             f"is admin_url the sre.rollout balancer's admin location?", admin_url=where)
        members.append(LuaMember(words[0], words[1], words[2], int(words[3]), max(0, int(words[4]))))
    return members


class LuaBalancer:
    """The admin API of nginx's Lua balancer (``<admin_url>/<pool>[/<member>]``), on loopback."""

    kind = "lua"

    def __init__(self, admin_url: str, timeout: float = 5.0) -> None:
        if not admin_url.startswith(("http://", "https://")):
            raise NginxError(f"nginx admin_url must be an http:// URL of the balancer's admin location, such as "
                             f"http://127.0.0.1:8081/sre-rollout; got {admin_url!r}", admin_url=admin_url)
        self.admin_url = admin_url.rstrip("/")
        self.timeout = timeout

    def _call(self, path: str, method: str = "GET") -> str:
        from ansible.module_utils.urls import open_url  # imported late: only the Lua mode needs it
        from urllib.error import HTTPError, URLError

        url = f"{self.admin_url}/{path}"
        try:
            with open_url(url, method=method, data=b"" if method == "POST" else None, timeout=self.timeout,
                          follow_redirects="none", validate_certs=False) as response:
                return response.read().decode()
        except HTTPError as exc:
            body = exc.read().decode(errors="replace").strip()
            raise NginxError(f"nginx admin API {url} answered {exc.code}: {body or exc.reason}. Check `pool`, "
                             f"`member` and that the pool is seeded in nginx", admin_url=self.admin_url,
                             status=exc.code, body=body) from exc
        except (URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise NginxError(f"cannot reach the nginx admin API at {url}: {reason}. Is nginx running with the "
                             f"sre.rollout Lua balancer and its admin location? Fix `admin_url` (nginx_admin_url)",
                             admin_url=self.admin_url) from exc

    def members(self, pool: str) -> list[LuaMember]:
        return parse_members(self._call(quote(pool, safe="")), f"{self.admin_url}/{pool}")

    def member(self, pool: str, name: str) -> LuaMember:
        found = parse_members(self._call(f"{quote(pool, safe='')}/{quote(name, safe='')}"),
                              f"{self.admin_url}/{pool}/{name}")
        if len(found) != 1:
            raise NginxError(f"nginx admin API {self.admin_url}/{pool}/{name} answered {len(found)} members, not 1",
                             admin_url=self.admin_url)
        return found[0]

    def set(self, pool: str, name: str, state: str | None = None, weight: int | None = None) -> LuaMember:
        if state is not None and state not in LUA_STATES:
            raise NginxError(f"state must be one of {', '.join(LUA_STATES)}, got {state!r}", state=state)
        query = urlencode({k: v for k, v in (("state", state), ("weight", weight)) if v is not None})
        found = parse_members(self._call(f"{quote(pool, safe='')}/{quote(name, safe='')}?{query}", "POST"),
                              f"{self.admin_url}/{pool}/{name}")
        return found[0]


def find_lua_member(members: list[LuaMember], member: str, address: str | None, where: str) -> LuaMember:
    matches = [m for m in members if m.matches(member) or (address and m.address == address)]
    if len(matches) == 1:
        return matches[0]
    listing = ", ".join(f"{m.name} ({m.address})" for m in members)
    if not matches:
        raise NginxError(f"{where} has no member {member!r}" + (f" or address {address!r}" if address else "")
                         + f"; its members are: {listing or '(none)'}. Give `member` as the name in the balancer's "
                         f"member file, or `address` as host:port.", member=member, members=[m.name for m in members])
    raise NginxError(f"{where}: {member!r} matches {len(matches)} members ({listing}); give `member` by name",
                     member=member, members=[m.name for m in members])


def as_lua_member(member: LuaMember, health: str) -> dict[str, Any]:
    return member_record(member.name, member.address, member.state, health, member.weight, member.in_flight,
                         status="up" if member.state == "ready" else member.state, in_flight=member.in_flight)


def _write_json(path: str, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` atomically (a reader never sees half a ticket)."""
    atomic_write(path, json.dumps(data))


# -- the LB drivers (see _lbtypes.Driver) ------------------------------------------------------
def _nginx_weight(current: dict[str, Any], weight: Any, reference: str) -> int:
    """A whole number from 1; ``100%`` keeps ``reference`` (nginx has no configured weight to scale)."""
    text = str(weight).strip()
    if text == "100%":
        return current["weight"]
    if not text.isdigit() or int(text) < 1:
        raise RolloutError(f"nginx weights are whole numbers from 1, or '100%' for {reference}; got {weight!r}",
                           weight=weight)
    return int(text)


class _NginxMember:
    """What both nginx drivers share: health from an HTTP probe of ``health_uri``, the state as the record says."""

    kind = "nginx"
    percent_weights = False
    pool: str
    endpoint: str
    address: str | None
    health_uri: str | None

    @property
    def has_health_check(self) -> bool:
        return bool(self.health_uri)

    @property
    def lb_key(self) -> tuple:
        return (self.kind, self.endpoint, self.pool)

    def _health(self, member) -> str:
        return probe(member.address, self.health_uri) if self.health_uri else "UNKNOWN"

    @staticmethod
    def in_state(current: dict[str, Any], target: str) -> bool:
        return current["state"] == target

    @staticmethod
    def sessions(current: dict[str, Any]) -> int | None:
        return current["sessions"]

    def healthy(self) -> tuple[bool, str]:
        health = probe(self.address, self.health_uri) if self.health_uri else "UNKNOWN"
        return health == "UP", health


class NginxDriver(_NginxMember):
    """nginx in reload mode: the member's ``server`` line in the upstream file, then one graceful reload.

    Drain: ``down`` and a reload, then wait until every worker that existed before it has exited
    (nginx lets an old worker exit once its in-flight requests are done). Health comes from an
    HTTP probe of ``health_uri`` when the LB has one; weights are whole numbers only.
    """

    def __init__(self, lb: LBSpec, instance: NginxInstance, member: str) -> None:
        self.lb = lb
        self.instance = instance
        self.endpoint = instance.upstream_file
        self.pool = lb.pool
        self.member = member
        self.address = lb.address
        self.health_uri = lb.health_uri
        self.old_workers: dict[int, str] = {}
        self.name = member

    @property
    def instance_key(self) -> Any:
        return id(self.instance)

    @property
    def reloads(self) -> int:
        return self.instance.reloads

    def batch(self):
        """Changes of every member on this instance made in the block: one edit, one ``nginx -t``, one reload."""
        return self.instance.deferred()

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

    @staticmethod
    def resolve_weight(current: dict[str, Any], weight: Any) -> int:
        return _nginx_weight(current, weight, "the weight in the upstream file as it is (nginx has no configured "
                                              "weight that other percentages could refer to)")

    def set_weight(self, weight: int) -> None:
        self._change(weight=weight)


class NginxLuaDriver(_NginxMember):
    """nginx in Lua mode: the balancer's shared dict, through its admin API; never a reload.

    Drain: ``drain`` (the balancer picks the member for no new request), wait until its in-flight
    count is 0, then ``maint``. The in-flight count is the balancer's own: +1 when it picks the
    member for a request, -1 when the request is logged.
    """

    mode = "lua"
    reloads = 0

    def __init__(self, lb: LBSpec, balancer: LuaBalancer, member: str) -> None:
        self.lb = lb
        self.balancer = balancer
        self.endpoint = balancer.admin_url
        self.pool = lb.pool
        self.member = member
        self.address = lb.address
        self.health_uri = lb.health_uri
        self.name = member

    @property
    def instance_key(self) -> Any:
        return id(self.balancer)

    @staticmethod
    def batch():
        return nullcontext()

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

    @staticmethod
    def resolve_weight(current: dict[str, Any], weight: Any) -> int:
        return _nginx_weight(current, weight, "the member's weight as it is")

    def set_weight(self, weight: int) -> None:
        self.balancer.set(self.pool, self.name, weight=weight)


# The options of an nginx LB (``options`` of an lbs item; an endpoint given as a dictionary may
# override them for itself, and names its own ``upstream_file``).
NGINX_OPTIONS = ("mode", "admin_url", "conf", "prefix", "pidfile", "binary", "batch_window")
NGINX_ENDPOINT_KEYS = ("upstream_file",) + NGINX_OPTIONS
NGINX_MODES = ("reload", "lua")
NGINX_DEFAULTS = {"mode": "reload", "conf": "/etc/nginx/nginx.conf", "pidfile": "/run/nginx.pid",
                  "binary": "/usr/sbin/nginx"}


def nginx_spec(endpoint: Any, options: dict[str, Any]) -> dict[str, Any]:
    """An endpoint is the upstream file path (reload mode), the admin URL (lua mode), or a dict over ``options``."""
    spec: dict[str, Any] = dict(NGINX_DEFAULTS)
    spec.update({k: v for k, v in options.items() if v is not None})
    if isinstance(endpoint, dict):
        unknown = set(endpoint) - set(NGINX_ENDPOINT_KEYS)
        if unknown:
            raise RolloutError(f"unknown keys {sorted(unknown)} in an nginx endpoint; use "
                               f"{', '.join(NGINX_ENDPOINT_KEYS)}", endpoint=endpoint)
        spec.update({k: v for k, v in endpoint.items() if v is not None})
    elif spec.get("mode") == "lua":
        spec["admin_url"] = str(endpoint)
    else:
        spec["upstream_file"] = str(endpoint)
    if spec["mode"] not in NGINX_MODES:
        raise RolloutError(f"nginx mode must be one of {', '.join(NGINX_MODES)}, got {spec['mode']!r}",
                           endpoint=endpoint)
    if spec["mode"] == "lua" and not spec.get("admin_url"):
        raise RolloutError("an nginx endpoint in lua mode needs admin_url (the balancer's admin location, such as "
                           "http://127.0.0.1:8081/sre-rollout): set it in the endpoint or as the LB's admin_url "
                           "option", endpoint=endpoint)
    if spec["mode"] == "reload" and not spec.get("upstream_file"):
        raise RolloutError("an nginx endpoint needs upstream_file (the file holding the upstream block)",
                           endpoint=endpoint)
    return spec


def nginx_instance(endpoint: Any, options: dict[str, Any], timeout: float, batch_size: int = 1) -> NginxInstance:
    """The reload mode's instance of an endpoint (see ``nginx_spec``)."""
    spec = nginx_spec(endpoint, options)
    keys = ("upstream_file", "conf", "prefix", "pidfile", "binary")
    instance = NginxInstance(timeout=timeout, batch_size=max(1, int(batch_size)),
                             **{k: spec[k] for k in keys if spec.get(k) is not None})
    try:
        instance.batch_window = float(spec.get("batch_window") or 0)
    except (TypeError, ValueError):
        raise RolloutError(f"nginx batch_window must be a number of seconds, got {spec.get('batch_window')!r}",
                           endpoint=endpoint) from None
    if not 0 <= instance.batch_window <= 10:
        raise RolloutError(f"nginx batch_window must be between 0 and 10 seconds, got {instance.batch_window}",
                           endpoint=endpoint)
    return instance


def drivers(lb: LBSpec, timeout: float) -> list[Any]:
    """One driver per member and endpoint; the drivers of one endpoint share its instance (one reload per batch)."""
    lb.check_options(NGINX_OPTIONS)
    clients: list[Any] = []
    for endpoint in lb.endpoints:
        spec = nginx_spec(endpoint, lb.options)
        if spec["mode"] == "lua":
            clients.append(LuaBalancer(spec["admin_url"], timeout))
        else:
            clients.append(nginx_instance(endpoint, lb.options, timeout, lb.batch_size))
    return [NginxLuaDriver(lb, client, member) if isinstance(client, LuaBalancer) else NginxDriver(lb, client, member)
            for member in lb.members for client in clients]


KIND = Kind(name="nginx", options=NGINX_OPTIONS, drivers=drivers)
