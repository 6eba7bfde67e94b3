"""A small NetBox/Nautobot-shaped REST server for unit tests and the benchmark.

It serves ``/api/virtualization/virtual-machines/``, ``/api/dcim/devices/`` and
``/api/dcim/locations/<id>/`` with ``limit``/``offset`` pagination and absolute
``next`` links, applies the filters the real server applies (and, like NetBox,
silently ignores the parameters it does not know), and can be told to fail:
an HTTP status for the next N requests, a delay (timeouts), a token check.

Loopback only. Never the only proof of a feature: the live NetBox test
(``tests/cmdb/test_netbox_live.py``) checks the real thing.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

ENDPOINTS = {"/api/virtualization/virtual-machines/": "virtual_machines", "/api/dcim/devices/": "devices"}


def netbox_vm(i: int, name: str | None = None, status: str = "active", role: str = "web",
              tags: tuple[str, ...] = ("app-shop",), site: str | None = "dc1", tenant: str | None = None,
              ip: str | None = "auto", app: str | None = "shop", env: str | None = "prod",
              zone: str | None = None, cluster: str | None = "c1", unnamed: bool = False) -> dict:
    """A NetBox 4.x virtual machine record (``unnamed``: ``name`` null, as NetBox allows for devices)."""
    address = f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}/24" if ip == "auto" else ip
    shown = None if unnamed else (name or f"vm{i:05d}")
    return {
        "id": i, "name": shown, "display": shown or f"Unnamed device ({i})",
        "status": {"value": status, "label": status.title()},
        "role": {"id": 1, "slug": role, "name": role.title()} if role else None,
        "tags": [{"id": n, "slug": t, "name": t.upper()} for n, t in enumerate(tags)],
        "site": {"id": 1, "slug": site, "name": site.upper()} if site else None,
        "cluster": {"id": 1, "name": cluster} if cluster else None,
        "tenant": {"id": 1, "slug": tenant, "name": tenant.title()} if tenant else None,
        "primary_ip4": {"id": i, "family": {"value": 4}, "address": address} if address else None,
        "primary_ip": {"id": i, "address": address} if address else None,
        "custom_fields": {"app": app, "env": env, "zone": zone},
        "config_context": {"big": "x" * 50},
    }


def netbox_device(i: int, name: str | None = None, role: str = "tor-switch", site: str | None = "dc1",
                  status: str = "active", ip: str | None = "auto", tags: tuple[str, ...] = ("demo",),
                  unnamed: bool = False) -> dict:
    """A NetBox 4.x device: like a VM, plus device type and location, no cluster, no custom fields set."""
    record = netbox_vm(i, name, status=status, role=role, tags=tags, site=site, ip=ip, app=None, env=None,
                       cluster=None, unnamed=unnamed)
    record.update(device_type={"id": 1, "slug": "patch-48", "model": "Patch 48"}, location=None)
    return record


def real_world_records() -> dict[str, list[dict]]:
    """The shapes a published NetBox demo data set has, and the odd ones users add to it.

    Virtual machines: 180 without a primary IP (``demo-vm001``...), names with a space and non-ASCII letters
    (``Zürich db 2``), a colon (``app:blue``), a comma (``lb,01``), a dotted non-ASCII name that is fine
    (``db1.zürich.example``), a VM with a cluster and no site, one with neither, and the same name twice
    (``dup-vm``, one of them planned). Devices: a top-of-rack switch with an address, an unnamed patch panel
    and two patch panels both named ``PP:MDF`` (one planned). All carry the tag ``demo``.
    """
    demo = ("demo",)
    vms = [netbox_vm(100 + n, f"demo-vm{n:03d}", ip=None, tags=demo, app="demo", env="demo")
           for n in range(1, 181)]
    vms += [
        netbox_vm(301, "Zürich db 2", role="db", tags=demo, app="demo", env="demo", site=None, cluster="zrh-1"),
        netbox_vm(302, "app:blue", tags=demo, app="demo", env="demo"),
        netbox_vm(303, "lb,01", tags=demo, app="demo", env="demo", site="dc2"),
        netbox_vm(304, "db1.zürich.example", role="db", tags=demo, app="demo", env="demo", site=None,
                  cluster="zrh-1"),
        netbox_vm(305, "orphan-vm", tags=demo, app="demo", env="demo", site=None, cluster=None),
        netbox_vm(306, "dup-vm", tags=demo, app="demo", env="demo"),
        netbox_vm(307, "dup-vm", tags=demo, app="demo", env="demo", status="planned", site="dc2", cluster=None),
    ]
    devices = [
        netbox_device(401, "tor1.dc1"),
        netbox_device(402, role="patch-panel", ip=None, unnamed=True),
        netbox_device(403, "PP:MDF", role="patch-panel", ip=None),
        netbox_device(404, "PP:MDF", role="patch-panel", ip=None, status="planned", site="dc2"),
    ]
    return {"virtual_machines": vms, "devices": devices}


def nautobot_vm(i: int, name: str | None = None, status: str = "Active", role: str = "web",
                tags: tuple[str, ...] = ("app-shop",), location: str | None = "dc1", app: str | None = "shop",
                env: str | None = "prod", ip: str | None = "auto") -> dict:
    """A Nautobot 3.x virtual machine at depth=1 (its cluster's location a bare reference)."""
    uid = f"00000000-0000-0000-0000-{i:012d}"
    address = f"10.1.{i // 256 % 256}.{i % 256}/24" if ip == "auto" else ip
    loc_ref = {"id": f"loc-{location}", "object_type": "dcim.location",
               "url": f"/api/dcim/locations/loc-{location}/"} if location else None
    return {
        "id": uid, "name": name or f"vm{i:05d}",
        "status": {"id": "st-1", "object_type": "extras.status", "name": status},
        "role": {"id": "r-1", "object_type": "extras.role", "name": role} if role else None,
        "tags": [{"id": f"t-{t}", "object_type": "extras.tag", "name": t} for t in tags],
        "cluster": {"id": "c-1", "object_type": "virtualization.cluster", "name": "c1", "location": loc_ref},
        "tenant": None,
        "primary_ip4": {"id": f"ip-{i}", "object_type": "ipam.ipaddress", "address": address} if address else None,
        "custom_fields": {"app": app, "env": env},
    }


def _bare(value: Any) -> Any:
    if isinstance(value, dict) and "id" in value:
        return {"id": value["id"], "object_type": value.get("object_type", "x"), "url": f"/api/x/{value['id']}/"}
    if isinstance(value, list):
        return [_bare(v) for v in value]
    return value


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up early (a plain-HTTP probe, a refused TLS handshake) is not an error here."""


class FakeCmdb:
    """Start with ``with FakeCmdb(records) as fake: fake.url``."""

    def __init__(self, records: dict[str, list[dict]] | list[dict], flavor: str = "netbox",
                 token: str | None = None, ignore: tuple[str, ...] = (), locations: dict | None = None,
                 next_origin: str | None = None) -> None:
        self.records = records if isinstance(records, dict) else {"virtual_machines": records}
        self.flavor = flavor
        self.token = token
        self.ignore = set(ignore)  # filter params this "version" does not know: silently dropped
        self.locations = locations or {}
        self.next_origin = next_origin  # a proxy that rewrites next links
        self.fail_status: int | None = None
        self.fail_body = '{"detail": "boom"}'
        self.fail_times = 0
        self.delay = 0.0
        self.not_json = False
        self.loop_next = False
        self.requests: list[tuple[str, dict[str, list[str]]]] = []
        self.auth_headers: list[str | None] = []
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle

    def __enter__(self) -> "FakeCmdb":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                fake._handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- requests

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(req.path)
        query = parse_qs(parts.query)
        self.requests.append((parts.path, query))
        self.auth_headers.append(req.headers.get("Authorization"))
        if self.delay:
            time.sleep(self.delay)
        if self.fail_status and self.fail_times > 0:
            self.fail_times -= 1
            return self._send(req, self.fail_status, self.fail_body)
        if self.token and req.headers.get("Authorization") not in (f"Token {self.token}", f"Bearer {self.token}"):
            return self._send(req, 403, '{"detail": "Invalid token"}')
        if self.not_json:
            return self._send(req, 200, "<html>login</html>")
        if parts.path.startswith("/api/dcim/locations/"):
            loc = self.locations.get(parts.path.rstrip("/").rsplit("/", 1)[-1])
            return self._send(req, 200 if loc else 404, json.dumps(loc or {"detail": "Not found."}))
        kind = ENDPOINTS.get(parts.path)
        if kind is None:
            return self._send(req, 404, '{"detail": "Not found."}')
        page = self._page(kind, parts.path, query)
        if self.loop_next:
            page["next"] = f"{self.url}{req.path}"  # a broken server: "next" is this very page
        self._send(req, 200, json.dumps(page))

    def _send(self, req: BaseHTTPRequestHandler, status: int, body: str) -> None:
        data = body.encode()
        req.send_response(status)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(data)))
        req.end_headers()
        req.wfile.write(data)

    def _page(self, kind: str, path: str, query: dict[str, list[str]]) -> dict:
        rows = [r for r in self.records.get(kind, []) if self._matches(r, query)]
        limit = int(query.get("limit", ["50"])[0])
        offset = int(query.get("offset", ["0"])[0])
        page = rows[offset:offset + limit]
        if self.flavor == "nautobot" and query.get("depth", ["0"])[0] == "0":
            page = [{k: _bare(v) if k != "custom_fields" else v for k, v in r.items()} for r in page]
        if self.flavor == "netbox" and "config_context" in query.get("exclude", []):
            page = [{k: v for k, v in r.items() if k != "config_context"} for r in page]
        nxt = None
        if offset + limit < len(rows):
            args = {k: v for k, v in query.items() if k != "offset"}
            args["offset"] = [str(offset + limit)]
            nxt = f"{self.next_origin or self.url}{path}?{urlencode(args, doseq=True)}"
        return {"count": len(rows), "next": nxt, "previous": None, "results": page}

    # -- filters, as the real servers apply them

    def _matches(self, record: dict, query: dict[str, list[str]]) -> bool:
        for key, values in query.items():
            if key in ("limit", "offset", "depth", "exclude") or key in self.ignore:
                continue
            got = self._values(record, key)
            if got is None:
                continue  # unknown parameter: silently ignored, as NetBox does
            if key in ("tag", "tags"):
                if not set(values) <= got:
                    return False
            elif not set(values) & got:
                return False
        return True

    def _values(self, record: dict, key: str) -> set[str] | None:
        by = "name" if self.flavor == "nautobot" else "slug"
        if key == "status":
            return {(record.get("status") or {}).get("name" if self.flavor == "nautobot" else "value")}
        if key in ("role", "site", "tenant"):
            return {(record.get(key) or {}).get(by)}
        if key == "location":
            loc = record.get("location") or (record.get("cluster") or {}).get("location") or {}
            return {loc.get(by), str(loc.get("id")).removeprefix("loc-")}
        if key == ("tags" if self.flavor == "nautobot" else "tag"):
            return {t.get(by) for t in record.get("tags") or []}
        if key.startswith("cf_"):
            fields = record.get("custom_fields") or {}
            if key[3:] not in fields:
                return None  # a custom field the server does not define: NetBox ignores the parameter
            return {str(fields[key[3:]])}
        return None
