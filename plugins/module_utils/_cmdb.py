# Copyright: sre.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""CMDB client: the hosts of an application from NetBox, Nautobot or a file.

This module is private to the sre.rollout collection: its interface may change
without notice and it must not be used from outside the collection.

One client, three backends, shared by the ``sre.rollout.cmdb`` inventory plugin
and the ``sre.rollout.cmdb_hosts`` module:

* ``file``: a YAML or JSON export of CMDB records (NetBox- or Nautobot-shaped),
  filtered here;
* ``netbox``: the NetBox 4.x REST API;
* ``nautobot``: the Nautobot REST API, whose shape differs (``depth=1``, status
  by name, no slugs, ``tags=`` filter, a VM's location through its cluster).

A REST server silently ignores filter parameters it does not know, so every
record it returns is checked against every filter sent; a record that does not
match fails the query instead of being released onto. Of the records the filters
select, those the release cannot use (no primary IP, no name, a duplicate or an
untargetable name) fail the query together, or are left out or grouped
(``on_unusable``).
"""

from __future__ import annotations

import difflib
import json
import os
import re
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode, urlsplit, urlunsplit

from ansible.module_utils.urls import open_url

from ansible_collections.sre.rollout.plugins.module_utils._common import RolloutError

try:
    import yaml

    HAS_YAML = True
except ImportError:  # pragma: no cover - PyYAML is everywhere ansible runs
    HAS_YAML = False

BACKENDS = ("file", "netbox", "nautobot")  # each has a factory in _FACTORIES (build_backend)
KINDS = ("virtual_machines", "devices")
GROUP_BY = ("app", "env", "zone", "role")
INACTIVE_GROUP = "cmdb_inactive"
UNUSABLE_GROUP = "cmdb_unusable"
ON_UNUSABLE = ("fail", "exclude", "group")
UNTARGETABLE_NAMES = ("rename", "unusable")
# Why a selected record cannot be released onto, in the order the error lists them.
REASONS = {
    "no_name": ("has no name", "have no name"),
    "duplicate": ("has the same name as another record", "share a name with another record"),
    "untargetable": ("has a name no host pattern can target", "have names no host pattern can target"),
    "no_ip": ("has no primary IP address", "have no primary IP address"),
}
FIRST_SHOWN = 5
DEFAULT_APP_FROM = ["custom_fields.app"]
DEFAULT_ENV_FROM = ["custom_fields.env"]
DEFAULT_ZONE_FROM = ["custom_fields.zone", "location", "site"]
ENV_TOKEN = ("SRE_ROLLOUT_CMDB_TOKEN", "NETBOX_TOKEN", "NAUTOBOT_TOKEN")

_KIND_LABEL = {"virtual_machines": "virtual machine", "devices": "device"}
_ENDPOINTS = {"virtual_machines": "/api/virtualization/virtual-machines/", "devices": "/api/dcim/devices/"}
_REF_FIELDS = ("role", "site", "location", "tenant", "cluster")
_SOURCE_HELP = "role, site, location, tenant, cluster, status, custom_fields.<name> or tag:<prefix>"
_UNSAFE_GROUP_CHARS = re.compile(r"[^A-Za-z0-9_]")
# What ansible-core's split_host_pattern splits a pattern on (",", ":", whitespace) and its [x:y] subscripts;
# a leading !, & or ~ is an operator (exclude, intersect, regex) and a leading @ reads --limit from a file.
_PATTERN_SPLIT_CHARS = frozenset(",:[]")
_PATTERN_OPERATORS = frozenset("!&~@")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


class CmdbError(RolloutError):
    """The CMDB could not be read, or what it returned cannot be released onto."""


# --------------------------------------------------------------------------- values


def _ident(value: Any) -> str | None:
    """The identifier of a scalar or a nested NetBox/Nautobot object (slug first)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (str, int, float)):
        return str(value)
    if isinstance(value, dict):
        for key in ("slug", "value", "name", "label", "display"):
            if value.get(key) not in (None, ""):
                return str(value[key])
    return None


def _aliases(value: Any) -> set[str]:
    """Every name a filter may use for a value: slug, name, value, label (lowercase)."""
    if isinstance(value, dict):
        keys = ("slug", "value", "name", "label", "display")
        return {str(value[k]).lower() for k in keys if value.get(k) not in (None, "")}
    ident = _ident(value)
    return {ident.lower()} if ident is not None else set()


def _is_bare_reference(value: Any) -> bool:
    """A nested object that carries only id/url (Nautobot without ``depth``)."""
    return isinstance(value, dict) and bool(value) and _ident(value) is None and (
        "id" in value or "url" in value)


def _address(record: dict) -> str | None:
    for key in ("primary_ip4", "primary_ip", "primary_ip6"):
        ip = record.get(key)
        if isinstance(ip, dict):
            ip = ip.get("address") or ip.get("host")
        if isinstance(ip, str) and ip:
            return ip.split("/", 1)[0]
    return None


def safe_group_name(name: str) -> str:
    """Group names Ansible accepts without warnings: letters, digits, underscores."""
    return _UNSAFE_GROUP_CHARS.sub("_", name)


def _unsafe_in_pattern(char: str) -> bool:
    return char in _PATTERN_SPLIT_CHARS or char.isspace() or not char.isprintable()


def is_targetable(name: str) -> bool:
    """Whether a host pattern can select ``name`` alone (``ansible 'Zürich db 2'`` matches Zürich, db and 2)."""
    return bool(name) and name[0] not in _PATTERN_OPERATORS and not any(_unsafe_in_pattern(c) for c in name)


def safe_host_name(name: str) -> str:
    """The inventory name for a CMDB name: each run of characters host patterns split on (whitespace,
    ``,``, ``:``, ``[``, ``]``, control characters) becomes one ``_``, as does a leading ``!``, ``&``,
    ``~`` or ``@``; dots, hyphens and non-ASCII letters stay (``Zürich db 2`` → ``Zürich_db_2``)."""
    out: list[str] = []
    for char in name:
        unsafe = _unsafe_in_pattern(char) or (not out and char in _PATTERN_OPERATORS)
        if unsafe:
            if not out or out[-1] != "_":
                out.append("_")
        else:
            out.append(char)
    return "".join(out)


def closest(name: str, valid: Iterable[str]) -> str | None:
    found = difflib.get_close_matches(name, sorted(valid), n=1, cutoff=0.6)
    return found[0] if found else None


def unknown_options(given: Iterable[str], valid: Iterable[str], what: str = "option") -> str | None:
    """``unknown option 'role' — did you mean 'roles'?`` for every name not in ``valid`` (None if all known)."""
    valid = set(valid)
    parts = []
    for name in sorted({str(n) for n in given} - valid):
        near = closest(name, valid)
        hint = f" — did you mean {near!r}?" if near else f" (valid: {', '.join(sorted(valid))})"
        parts.append(f"unknown {what} {name!r}{hint}")
    return "; ".join(parts) or None


def expand_env(text: str, environ: dict | None = None) -> str:
    """Expand ``$VAR``, ``${VAR}`` and ``${VAR:-default}`` (unset or empty → default)."""
    env = os.environ if environ is None else environ

    def repl(match: re.Match) -> str:
        name = match.group(1) or match.group(3)
        default = match.group(2)
        value = env.get(name, "")
        if value == "" and default is not None:
            return default
        return value if name in env or default is not None else match.group(0)

    return _ENV_REF.sub(repl, text)


def as_list(value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, (list, tuple, set)):
        return list(value)
    return [value]


# --------------------------------------------------------------------------- hosts


@dataclass
class CmdbHost:
    """One CMDB record, normalised across NetBox, Nautobot and file exports."""

    name: str
    kind: str
    id: str | None
    status: str
    address: str | None
    role: str | None = None
    site: str | None = None
    location: str | None = None
    tenant: str | None = None
    cluster: str | None = None
    tags: list[str] = field(default_factory=list)
    custom_fields: dict[str, Any] = field(default_factory=dict)
    app: str | None = None
    env: str | None = None
    zone: str | None = None
    active: bool = True
    cmdb_name: str | None = None  # the CMDB's name: None if the record has none; differs from name if renamed
    unusable: list[str] = field(default_factory=list)  # keys of REASONS
    position: int = 0
    refs: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.cmdb_name is None and self.name and "no_name" not in self.unusable:
            self.cmdb_name = self.name

    def aliases(self, name: str) -> set[str]:
        """Every name of a reference (role, site, tags...) a filter may use, lowercase; computed on demand."""
        value = self.refs.get(name)
        if name == "tags":
            out: set[str] = set()
            for tag in as_list(value):
                out |= _aliases(tag)
            return out
        return _aliases(value)

    @property
    def label(self) -> str:
        kind = _KIND_LABEL.get(self.kind, self.kind)
        if self.cmdb_name is None:
            return f"{kind} record #{self.position} (id {self.id})"
        ident = f" (id {self.id})" if self.id is not None else ""
        return f"{kind} {self.cmdb_name}{ident}"

    def hostvars(self) -> dict[str, Any]:
        """The host variables the inventory plugin and cmdb_hosts both publish."""
        hv: dict[str, Any] = {
            "cmdb_app": self.app, "cmdb_env": self.env, "cmdb_zone": self.zone,
            "cmdb_status": self.status, "cmdb_role": self.role, "cmdb_site": self.site,
            "cmdb_location": self.location, "cmdb_tenant": self.tenant, "cmdb_cluster": self.cluster,
            "cmdb_tags": list(self.tags), "cmdb_custom_fields": dict(self.custom_fields),
            "cmdb_id": self.id, "cmdb_kind": self.kind,
        }
        if self.cmdb_name != self.name:
            hv["cmdb_name"] = self.cmdb_name
        if self.unusable:
            hv["cmdb_unusable"] = [REASONS[r][0] for r in self.unusable]
        elif self.address:
            hv["ansible_host"] = self.address
        return hv

    def groups(self, group_by: Iterable[str] = GROUP_BY) -> list[str]:
        """``app_<app>``, ``env_<env>``, ``zone_<zone>``, ``role_<role>``; inactive → ``cmdb_inactive``;
        unusable → ``cmdb_unusable``."""
        if self.unusable:
            return [UNUSABLE_GROUP]
        if not self.active:
            return [INACTIVE_GROUP]
        out = []
        for key in group_by:
            value = getattr(self, key)
            if value:
                out.append(safe_group_name(f"{key}_{value}"))
        return out

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (for module results and the inventory cache)."""
        return {
            "name": self.name, "kind": self.kind, "id": self.id, "status": self.status,
            "address": self.address, "role": self.role, "site": self.site, "location": self.location,
            "tenant": self.tenant, "cluster": self.cluster, "tags": list(self.tags),
            "custom_fields": dict(self.custom_fields), "app": self.app, "env": self.env,
            "zone": self.zone, "active": self.active, "cmdb_name": self.cmdb_name,
            "unusable": list(self.unusable), "position": self.position,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "CmdbHost":
        return cls(**{k: data.get(k) for k in (
            "name", "kind", "id", "status", "address", "role", "site", "location", "tenant", "cluster",
            "app", "env", "zone", "cmdb_name")}, tags=list(data.get("tags") or []),
            custom_fields=dict(data.get("custom_fields") or {}), active=bool(data.get("active", True)),
            unusable=list(data.get("unusable") or []), position=int(data.get("position") or 0))


def normalize(record: Any, kind: str, source: str, position: int) -> CmdbHost:
    """Turn one raw record into a CmdbHost, or fail naming the CMDB and the record."""
    if not isinstance(record, dict):
        raise CmdbError(f"{source}: {_KIND_LABEL[kind]} record #{position} is a {type(record).__name__}, "
                        "not an object; fix the export (each record is a NetBox/Nautobot object)",
                        cmdb=source, record=record)
    name = record.get("name")
    rid = None if record.get("id") is None else str(record["id"])
    named = isinstance(name, str) and bool(name.strip())
    # An unnamed record is not refused here: the filters may leave it out; if they select it, the
    # on_unusable policy decides (see CmdbClient.hosts).
    shown = name.strip() if named else f"record #{position}"
    status_raw = record.get("status")
    if _ident(status_raw) is None:
        raise CmdbError(f"{source}: {_KIND_LABEL[kind]} {shown} (id {rid}) has no status "
                        f"(got {status_raw!r}); for Nautobot use backend: nautobot, which asks for depth=1",
                        cmdb=source, record=shown)
    host = CmdbHost(name=name.strip() if named else "", kind=kind, id=rid, status=_ident(status_raw).lower(),
                    address=_address(record), position=position)
    _fill_references(host, record, source)
    host.tags = _tag_names(record.get("tags"), host, source)
    cfs = record.get("custom_fields") or {}
    if not isinstance(cfs, dict):
        raise CmdbError(f"{source}: {host.label} has custom_fields of type {type(cfs).__name__}; "
                        "expected an object", cmdb=source, record=host.name)
    host.custom_fields = cfs
    return host


def _fill_references(host: CmdbHost, record: dict, source: str) -> None:
    refs = {name: record.get(name) for name in _REF_FIELDS}
    if refs["role"] is None:
        refs["role"] = record.get("device_role")  # NetBox < 4.0 devices
    if refs["location"] is None and isinstance(refs["cluster"], dict):
        refs["location"] = refs["cluster"].get("location")  # Nautobot VMs
    for name, value in refs.items():
        if _is_bare_reference(value):
            raise CmdbError(f"{source}: {host.label} has a {name} reference without a name ({value!r}); "
                            "for Nautobot use backend: nautobot, which asks for depth=1",
                            cmdb=source, record=host.name)
        setattr(host, name, _ident(value))
        host.refs[name] = value


def _tag_names(tags: Any, host: CmdbHost, source: str) -> list[str]:
    out: list[str] = []
    for tag in as_list(tags):
        ident = _ident(tag)
        if ident is None:
            raise CmdbError(f"{source}: {host.label} has a tag without a name ({tag!r})",
                            cmdb=source, record=host.name)
        out.append(ident)
    host.refs["tags"] = tags
    return out


# --------------------------------------------------------------------------- mapping


def _check_source(option: str, source: str) -> None:
    if source in _REF_FIELDS or source == "status":
        return
    if source.startswith("custom_fields.") and len(source) > len("custom_fields."):
        return
    if source.startswith("tag:"):
        return
    raise CmdbError(f"{option}: unknown source {source!r}; use {_SOURCE_HELP}", option=option)


def _custom_field_value(host: CmdbHost, key: str, source: str) -> str | None:
    value = host.custom_fields.get(key)
    if isinstance(value, list):
        if len(value) > 1:
            raise CmdbError(f"{source}: custom field {key!r} of {host.label} holds several values "
                            f"{value!r}; map app/env/zone from a single-valued field",
                            cmdb=source, record=host.name)
        value = value[0] if value else None
    return _ident(value)


def _tag_value(host: CmdbHost, prefix: str, source: str) -> str | None:
    found = sorted({t[len(prefix):] for t in host.tags if t.startswith(prefix) and len(t) > len(prefix)})
    if len(found) > 1:
        raise CmdbError(f"{source}: {host.label} has several tags with prefix {prefix!r} ({found}); "
                        "a host belongs to one app/env/zone", cmdb=source, record=host.name)
    return found[0] if found else None


def resolve(host: CmdbHost, sources: list[str], cmdb: str) -> str | None:
    """The first non-empty value among ``sources`` (e.g. custom_fields.app, role, tag:app-)."""
    for src in sources:
        if src.startswith("custom_fields."):
            value = _custom_field_value(host, src[len("custom_fields."):], cmdb)
        elif src.startswith("tag:"):
            value = _tag_value(host, src[len("tag:"):], cmdb)
        else:
            value = getattr(host, src)
        if value:
            return value
    return None


# --------------------------------------------------------------------------- query


@dataclass
class Filter:
    """One requested restriction; ``params`` is how a REST server is asked for it."""

    name: str
    wanted: list[str]
    test: Callable[[CmdbHost], bool]
    params: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # flavor -> params

    def describe(self) -> str:
        return f"{self.name}={','.join(self.wanted)}"


@dataclass
class CmdbQuery:
    """What to ask the CMDB and how to map a record to app, env and zone."""

    kinds: list[str] = field(default_factory=lambda: ["virtual_machines"])
    app: str | None = None
    env: str | None = None
    roles: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    status: list[str] = field(default_factory=lambda: ["active"])
    sites: list[str] = field(default_factory=list)
    locations: list[str] = field(default_factory=list)
    tenants: list[str] = field(default_factory=list)
    custom_fields: dict[str, Any] = field(default_factory=dict)
    app_from: list[str] = field(default_factory=lambda: list(DEFAULT_APP_FROM))
    env_from: list[str] = field(default_factory=lambda: list(DEFAULT_ENV_FROM))
    zone_from: list[str] = field(default_factory=lambda: list(DEFAULT_ZONE_FROM))
    inactive: str = "exclude"
    allow_empty: bool = False
    on_unusable: str = "fail"
    untargetable_names: str = "rename"

    def validate(self) -> None:
        for kind in self.kinds:
            if kind not in KINDS:
                raise CmdbError(f"kinds: unknown kind {kind!r}; use {' and/or '.join(KINDS)}", option="kinds")
        if not self.kinds:
            raise CmdbError("kinds: empty; use virtual_machines and/or devices", option="kinds")
        if self.inactive not in ("exclude", "group"):
            raise CmdbError(f"inactive: {self.inactive!r} is not exclude or group", option="inactive")
        if self.on_unusable not in ON_UNUSABLE:
            raise CmdbError(f"on_unusable: {self.on_unusable!r} is not fail, exclude or group", option="on_unusable")
        if self.untargetable_names not in UNTARGETABLE_NAMES:
            raise CmdbError(f"untargetable_names: {self.untargetable_names!r} is not rename or unusable",
                            option="untargetable_names")
        for key, value in self.custom_fields.items():
            if not all(isinstance(v, (str, int, float, bool)) for v in as_list(value)) or not as_list(value):
                raise CmdbError(f"custom_fields.{key}: {value!r} is not a value or a list of values "
                                f"(e.g. custom_fields: {{{key}: prod}})", option="custom_fields")
        if not self.status:
            raise CmdbError("status: empty; list the statuses that count as active (e.g. [active])",
                            option="status")
        for option in ("app_from", "env_from", "zone_from"):
            sources = getattr(self, option)
            if not sources:
                raise CmdbError(f"{option}: empty; use {_SOURCE_HELP}", option=option)
            for src in sources:
                _check_source(option, src)

    @property
    def active_statuses(self) -> set[str]:
        return {s.lower() for s in self.status}

    def filters(self, flavor: str) -> list[Filter]:
        """The restrictions every returned record must satisfy (status only when excluding)."""
        out: list[Filter] = []
        if self.inactive == "exclude":
            out.append(_ref_filter("status", self.status, "status", flavor, lambda h: {h.status}))
        for option, param, ref in (("roles", "role", "role"), ("sites", "site", "site"),
                                   ("locations", "location", "location"), ("tenants", "tenant", "tenant")):
            values = getattr(self, option)
            if values:
                if flavor == "nautobot" and option == "sites":
                    raise CmdbError("sites: Nautobot has no sites; filter by locations instead",
                                    option="sites")
                out.append(_ref_filter(ref, values, param, flavor, lambda h, r=ref: h.aliases(r)))
        if self.tags:
            out.append(_tags_filter(self.tags))
        for key, value in self.custom_fields.items():
            out.append(_custom_field_filter(key, as_list(value)))
        for what, sources in (("app", self.app_from), ("env", self.env_from)):
            value = getattr(self, what)
            if value:
                out.append(_mapped_filter(what, value, sources))
        return out


def _ref_filter(name: str, values: list[str], param: str, flavor: str,
                aliases: Callable[[CmdbHost], set]) -> Filter:
    wanted = [str(v) for v in values]
    lowered = {v.lower() for v in wanted}
    sent = [v.title() if flavor == "nautobot" and name == "status" and v.islower() else v for v in wanted]
    return Filter(name, wanted, lambda h: bool(aliases(h) & lowered),
                  {"netbox": {param: sent}, "nautobot": {param: sent}})


def _tags_filter(tags: list[str]) -> Filter:
    wanted = [str(t) for t in tags]
    lowered = {t.lower() for t in wanted}
    # NetBox and Nautobot both AND repeated tag parameters: a host needs every tag.
    return Filter("tags", wanted, lambda h: lowered <= h.aliases("tags"),
                  {"netbox": {"tag": wanted}, "nautobot": {"tags": wanted}})


def _custom_field_filter(key: str, values: list) -> Filter:
    wanted = [str(v) for v in values]

    def test(host: CmdbHost) -> bool:
        got = host.custom_fields.get(key)
        got_all = {str(_ident(g)) for g in got} if isinstance(got, list) else {str(_ident(got))}
        return bool(got_all & set(wanted))

    params = {f"cf_{key}": wanted}
    return Filter(f"custom_fields.{key}", wanted, test, {"netbox": params, "nautobot": params})


def _mapped_filter(what: str, value: str, sources: list[str]) -> Filter:
    params: dict[str, dict[str, list[str]]] = {}
    if len(sources) == 1:  # with several sources the server cannot express "first non-empty"
        src = sources[0]
        if src.startswith("custom_fields."):
            p = {f"cf_{src[len('custom_fields.'):]}": [value]}
            params = {"netbox": p, "nautobot": p}
        elif src.startswith("tag:"):
            params = {"netbox": {"tag": [src[4:] + value]}, "nautobot": {"tags": [src[4:] + value]}}
        elif src in ("role", "site", "location", "tenant"):
            params = {"netbox": {src: [value]}, "nautobot": {src: [value]}}
    return Filter(what, [value], lambda h: getattr(h, what) == value, params)


# --------------------------------------------------------------------------- backends


class FileBackend:
    """A YAML or JSON export: ``{virtual_machines: [...], devices: [...]}``, a list, or a REST page."""

    flavor = "file"

    def __init__(self, path: str) -> None:
        self.path = path
        self.name = f"CMDB file {path}"

    def records(self, kind: str, filters: list[Filter]) -> Iterator[dict]:
        data = self._load()
        # A bare list or a REST page has no sections: it is read as the VM export it usually is.
        if isinstance(data, list):
            data = {"virtual_machines": data}
        elif isinstance(data, dict) and "results" in data:
            data = {"virtual_machines": data["results"]}
        if not isinstance(data, dict):
            raise CmdbError(f"{self.name} holds a {type(data).__name__}; expected an object with "
                            "virtual_machines and/or devices lists", cmdb=self.name)
        section = data.get(kind) or []
        if not isinstance(section, list):
            raise CmdbError(f"{self.name}: {kind} is a {type(section).__name__}, not a list", cmdb=self.name)
        return iter(section)

    def _load(self) -> Any:
        if not hasattr(self, "_data"):
            self._data = self._read()
        return self._data

    def _read(self) -> Any:
        try:
            with open(self.path, "rb") as handle:
                raw = handle.read()
        except OSError as exc:
            raise CmdbError(f"cannot read the {self.name}: {exc.strerror}; check path (or "
                            "SRE_ROLLOUT_CMDB_FILE / LAB_DIR) and that the lab is up", cmdb=self.name) from exc
        try:
            if self.path.endswith(".json") or raw.lstrip()[:1] in (b"{", b"["):
                return json.loads(raw)
            if not HAS_YAML:
                raise CmdbError(f"{self.name} is YAML but PyYAML is not installed here; install "
                                "python3-yaml or export the CMDB as JSON", cmdb=self.name)
            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
            return yaml.load(raw, Loader=loader)  # noqa: S506 - a safe loader
        except (ValueError, yaml.YAMLError if HAS_YAML else ValueError) as exc:
            raise CmdbError(f"{self.name} is not valid JSON/YAML: {exc}", cmdb=self.name) from exc


class RestBackend:
    """NetBox 4.x or Nautobot REST API; follows ``next`` pagination."""

    def __init__(self, url: str, token: str | None = None, flavor: str = "netbox", validate_certs: bool = True,
                 ca_path: str | None = None, timeout: float = 30, page_size: int = 250, retries: int = 2,
                 retry_delay: float = 1.0, opener: Callable[..., Any] = open_url) -> None:
        if not url:
            raise CmdbError(f"backend {flavor} needs url (or SRE_ROLLOUT_CMDB_URL)", option="url")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise CmdbError(f"url {url!r} is not an http(s) URL; give the {flavor} base URL, "
                            "e.g. https://netbox.example.com", option="url")
        self.base = url.rstrip("/")
        if self.base.endswith("/api"):
            self.base = self.base[:-4]
        self.flavor = flavor
        self.token = token
        self.validate_certs = validate_certs
        self.ca_path = ca_path
        self.timeout = timeout
        self.page_size = page_size
        self.retries = retries
        self.retry_delay = retry_delay
        self._open = opener
        self._locations: dict[str, Any] = {}
        self.name = f"{'NetBox' if flavor == 'netbox' else 'Nautobot'} {self.base}"
        self.requests = 0

    # -- requests

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.token:
            scheme = "Bearer" if self.token.startswith("nbt_") else "Token"  # NetBox 4.5 v2 tokens
            headers["Authorization"] = f"{scheme} {self.token}"
        return headers

    def _same_origin(self, url: str) -> str:
        """Keep ``next`` links on the configured origin (a proxy may rewrite scheme/host; never leak the token)."""
        base, nxt = urlsplit(self.base), urlsplit(url)
        return urlunsplit((base.scheme, base.netloc, nxt.path, nxt.query, ""))

    def get_json(self, url: str) -> Any:
        attempt = 0
        while True:
            try:
                return self._get_once(url)
            except _Retryable as exc:
                attempt += 1
                if attempt > self.retries:
                    raise exc.error from None
                time.sleep(self.retry_delay * attempt)

    def _get_once(self, url: str) -> Any:
        self.requests += 1
        try:
            resp = self._open(url, headers=self._headers(), method="GET", validate_certs=self.validate_certs,
                              ca_path=self.ca_path, timeout=self.timeout, follow_redirects="safe",
                              http_agent="sre.rollout-cmdb")
            body = resp.read()
        except HTTPError as exc:
            raise self._http_error(url, exc) from None
        except (socket.timeout, TimeoutError) as exc:
            raise _Retryable(self._timeout_error(url)) from exc
        except URLError as exc:
            raise self._url_error(url, exc) from None
        except ssl.SSLError as exc:
            raise self._tls_error(url, exc) from None
        try:
            return json.loads(body)
        except ValueError:
            raise CmdbError(f"{self.name} answered {url} with something that is not JSON "
                            f"({body[:200]!r}); is url the {self.flavor} base URL?",
                            cmdb=self.name, url=url) from None

    def _http_error(self, url: str, exc: HTTPError) -> Exception:
        try:
            body = exc.read()[:300].decode("utf-8", "replace")
        except Exception:  # noqa: BLE001 - the body is only decoration
            body = ""
        details = {"cmdb": self.name, "url": url, "status": exc.code, "body": body}
        if exc.code in (401, 403):
            what = "rejected the token" if exc.code == 401 else "refused access"
            return CmdbError(f"{self.name} {what} (HTTP {exc.code}) for {url}: {body}; set token (or "
                             "SRE_ROLLOUT_CMDB_TOKEN) to a valid API token with read permission on "
                             "virtual machines/devices", **details)
        if exc.code == 429 or exc.code >= 500:
            return _Retryable(CmdbError(
                f"{self.name} failed (HTTP {exc.code}) for {url}: {body}; the CMDB is unhealthy, "
                f"retry later (tried {self.retries + 1} times)", **details))
        if exc.code == 404:
            return CmdbError(f"{self.name} has no {url} (HTTP 404): {body}; check url and backend "
                             f"({self.flavor}) match the server", **details)
        spelling = (" (NetBox filters take slugs, e.g. roles: [database-server], and lowercase status values, "
                    "e.g. status: [active])" if self.flavor == "netbox" else "")
        return CmdbError(f"{self.name} refused the query (HTTP {exc.code}) for {url}: {body}; "
                         f"check the filter values exist in the CMDB{spelling}", **details)

    def _timeout_error(self, url: str) -> CmdbError:
        return CmdbError(f"{self.name} did not answer {url} within {self.timeout}s (tried "
                         f"{self.retries + 1} times); check the CMDB is up or raise timeout",
                         cmdb=self.name, url=url, timeout=self.timeout)

    def _url_error(self, url: str, exc: URLError) -> Exception:
        reason = exc.reason
        if isinstance(reason, (socket.timeout, TimeoutError)):
            return _Retryable(self._timeout_error(url))
        if isinstance(reason, ssl.SSLError):
            return self._tls_error(url, reason)
        return _Retryable(CmdbError(f"cannot reach {self.name} at {url}: {reason}; check url and that the "
                                    f"CMDB is up (tried {self.retries + 1} times)", cmdb=self.name, url=url))

    def _tls_error(self, url: str, exc: Exception) -> CmdbError:
        if not isinstance(exc, ssl.SSLCertVerificationError) and self._speaks_plain_http():
            plain = urlunsplit(("http",) + tuple(urlsplit(self.base))[1:])
            return CmdbError(f"{self.name}: {urlsplit(self.base).netloc} does not speak TLS (it answers plain "
                             f"HTTP; the TLS handshake failed with: {exc}); use the server's https port, or "
                             f"url: {plain} if plain HTTP is really meant", cmdb=self.name, url=url)
        if not isinstance(exc, ssl.SSLCertVerificationError):
            return CmdbError(f"TLS handshake with {self.name} failed for {url}: {exc}; check that url names "
                             "the server's https port", cmdb=self.name, url=url)
        return CmdbError(f"TLS verification of {self.name} failed for {url}: {exc}; give ca_path with the "
                         "CA that signed its certificate (validate_certs: false only for a lab)",
                         cmdb=self.name, url=url)

    def _speaks_plain_http(self) -> bool:
        """Whether the https URL's port answers a plain HTTP request (a port that does not speak TLS)."""
        parts = urlsplit(self.base)
        try:
            with socket.create_connection((parts.hostname, parts.port or 443), timeout=min(self.timeout, 5)) as sock:
                sock.sendall(b"HEAD / HTTP/1.0\r\nHost: " + (parts.hostname or "").encode("idna") + b"\r\n\r\n")
                return sock.recv(5) == b"HTTP/"
        except (OSError, UnicodeError):
            return False

    # -- queries

    def query_url(self, kind: str, filters: list[Filter]) -> str:
        params: list[tuple[str, str]] = [("limit", str(self.page_size))]
        if self.flavor == "nautobot":
            params.append(("depth", "1"))
        else:
            params.append(("exclude", "config_context"))
        for flt in filters:
            for key, values in flt.params.get(self.flavor, {}).items():
                params.extend((key, v) for v in values)
        return f"{self.base}{_ENDPOINTS[kind]}?{urlencode(params)}"

    def records(self, kind: str, filters: list[Filter]) -> Iterator[dict]:
        url: str | None = self.query_url(kind, filters)
        seen: set[str] = set()
        while url:
            if url in seen:
                raise CmdbError(f"{self.name} paginates in a loop ({url} again); report it to the CMDB "
                                "admins", cmdb=self.name, url=url)
            seen.add(url)
            page = self.get_json(url)
            if not isinstance(page, dict) or not isinstance(page.get("results"), list):
                raise CmdbError(f"{self.name} answered {url} without a results list; is url the "
                                f"{self.flavor} base URL?", cmdb=self.name, url=url)
            for record in page["results"]:
                yield self._complete(record, kind)
            url = self._same_origin(page["next"]) if page.get("next") else None

    def _complete(self, record: Any, kind: str) -> Any:
        """Nautobot VMs: the location comes only through the cluster; name it if depth left it bare."""
        if self.flavor != "nautobot" or kind != "virtual_machines" or not isinstance(record, dict):
            return record
        cluster = record.get("cluster")
        if isinstance(cluster, dict) and _is_bare_reference(cluster.get("location")):
            cluster = dict(cluster)
            cluster["location"] = self._location(cluster["location"])
            record = dict(record, cluster=cluster)
        return record

    def _location(self, ref: dict) -> Any:
        key = str(ref.get("id") or ref.get("url"))
        if key not in self._locations:
            url = ref.get("url") or f"{self.base}/api/dcim/locations/{ref['id']}/"
            self._locations[key] = self.get_json(self._same_origin(url))
        return self._locations[key]


class _Retryable(Exception):
    def __init__(self, error: CmdbError) -> None:
        super().__init__(error.msg)
        self.error = error


# --------------------------------------------------------------------------- client


@dataclass
class CmdbResult:
    """Active hosts (sorted by name), with ``inactive: group`` the others, and the selected records the
    release cannot use (``on_unusable: exclude`` or ``group``)."""

    source: str
    hosts: list[CmdbHost]
    inactive: list[CmdbHost]
    filters: list[str]
    unusable: list[CmdbHost] = field(default_factory=list)
    on_unusable: str = "fail"

    def all_hosts(self) -> list[CmdbHost]:
        """Every host of the inventory: with ``on_unusable: group`` the unusable ones too."""
        return self.hosts + self.inactive + (self.unusable if self.on_unusable == "group" else [])

    def warning(self) -> str | None:
        """The one warning for records left out (exclude) or listed without an address (group)."""
        if not self.unusable:
            return None
        done = ("left out" if self.on_unusable == "exclude"
                else f"put in group {UNUSABLE_GROUP} without ansible_host")
        return (f"{self.source}: {len(self.unusable)} selected record(s) cannot be released onto and were "
                f"{done} (on_unusable: {self.on_unusable}): {describe_unusable(self.unusable)}")

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "filters": list(self.filters), "on_unusable": self.on_unusable,
                "hosts": [h.to_dict() for h in self.hosts], "inactive": [h.to_dict() for h in self.inactive],
                "unusable": [h.to_dict() for h in self.unusable]}

    @classmethod
    def from_dict(cls, data: dict) -> "CmdbResult":
        return cls(source=data["source"], filters=list(data["filters"]), on_unusable=data["on_unusable"],
                   hosts=[CmdbHost.from_dict(h) for h in data["hosts"]],
                   inactive=[CmdbHost.from_dict(h) for h in data["inactive"]],
                   unusable=[CmdbHost.from_dict(h) for h in data["unusable"]])


def describe_unusable(hosts: list[CmdbHost], first: int = FIRST_SHOWN) -> str:
    """Count per reason and the first records: ``180 records have no primary IP address: virtual machine
    vm1 (id 361), ... and 175 more``; a single record reads as before (``... (status active) has no ...``)."""
    parts = []
    for reason, (one, many) in REASONS.items():
        having = [h for h in hosts if reason in h.unusable]
        if not having:
            continue
        labels = [_unusable_label(h, reason) for h in having]
        if len(having) == 1:
            parts.append(f"{labels[0]} {one}")
            continue
        more = f" and {len(labels) - first} more" if len(labels) > first else ""
        parts.append(f"{len(having)} records {many}: {', '.join(labels[:first])}{more}")
    return "; ".join(parts)


def _unusable_label(host: CmdbHost, reason: str) -> str:
    if reason == "no_ip":
        return f"{host.label} (status {host.status})"
    if reason == "untargetable":
        return f"{host.label} (would be renamed {safe_host_name(host.cmdb_name or '')!r})"
    return host.label


_UNUSABLE_HELP = {
    "no_name": "name it in the CMDB",
    "duplicate": "rename one of each pair in the CMDB (an inventory host name must be unique)",
    "untargetable": "rename it in the CMDB, or set untargetable_names: rename",
    "no_ip": "set its primary IPv4 in the CMDB, or change its status so it is not released onto",
}


class CmdbClient:
    """Query one backend; check, normalise and map what it returns."""

    def __init__(self, backend: FileBackend | RestBackend) -> None:
        self.backend = backend

    @property
    def source(self) -> str:
        return self.backend.name

    def hosts(self, query: CmdbQuery) -> CmdbResult:
        query.validate()
        filters = query.filters(self.backend.flavor)
        selected: list[CmdbHost] = []
        cf_seen: set[str] = set()
        for kind in query.kinds:
            sent = self._server_side(filters)
            for pos, record in enumerate(self.backend.records(kind, filters), start=1):
                host = normalize(record, kind, self.source, pos)
                cf_seen |= set(host.custom_fields)
                self._map(host, query)
                if not self._keep(host, filters, sent):
                    continue
                host.active = host.status in query.active_statuses
                selected.append(host)
        self._check_custom_fields_exist(query, cf_seen)
        unusable = self._name_and_check(selected, query)
        usable = [h for h in selected if not h.unusable]
        active = sorted((h for h in usable if h.active), key=lambda h: h.name)
        inactive = sorted((h for h in usable if not h.active), key=lambda h: h.name)
        result = CmdbResult(self.source, active, inactive, [f.describe() for f in filters],
                            sorted(unusable, key=lambda h: h.name), query.on_unusable)
        if unusable and query.on_unusable == "fail":
            raise self._unusable_error(result)
        self._check_not_empty(result, query)
        return result

    def _server_side(self, filters: list[Filter]) -> set[str]:
        """Names of the filters the server was asked to apply (none for a file)."""
        flavor = self.backend.flavor
        return {f.name for f in filters if f.params.get(flavor)}

    def _map(self, host: CmdbHost, query: CmdbQuery) -> None:
        host.app = resolve(host, query.app_from, self.source)
        host.env = resolve(host, query.env_from, self.source)
        host.zone = resolve(host, query.zone_from, self.source)

    def _keep(self, host: CmdbHost, filters: list[Filter], sent: set[str]) -> bool:
        for flt in filters:
            if flt.test(host):
                continue
            if flt.name in sent:
                raise CmdbError(
                    f"{self.source} returned {host.label}, which does not match the filter "
                    f"{flt.describe()} ({flt.name} is {self._shown(host, flt.name)!r}): the server ignored "
                    "the filter, so this answer cannot be trusted and nothing is released onto it. Check "
                    f"that this {self.backend.flavor} version supports the filter (backend: netbox or "
                    "nautobot) and that the filter value is spelled as the CMDB spells it"
                    f"{self._custom_field_hint(host, flt.name)}",
                    cmdb=self.source, record=host.name or host.label, filter=flt.describe())
            return False
        return True

    @staticmethod
    def _custom_field_hint(host: CmdbHost, name: str) -> str:
        if not name.startswith("custom_fields.") or not host.custom_fields:
            return ""
        key = name[len("custom_fields."):]
        if key in host.custom_fields:
            return ""
        near = closest(key, host.custom_fields)
        hint = f" — did you mean {near!r}?" if near else ""
        return (f"; {host.label} has no custom field {key!r} (its custom fields: "
                f"{', '.join(sorted(host.custom_fields))}){hint}")

    def _check_custom_fields_exist(self, query: CmdbQuery, seen: set[str]) -> None:
        """A custom_fields filter on a field no returned record has is a typo, not an empty answer."""
        if not seen:
            return
        message = unknown_options(set(query.custom_fields) - seen, seen, "custom field")
        if message:
            raise CmdbError(f"{self.source}: custom_fields: {message} (no record returned has it; the "
                            f"records' custom fields are {', '.join(sorted(seen))})", cmdb=self.source,
                            option="custom_fields")

    @staticmethod
    def _shown(host: CmdbHost, name: str) -> Any:
        if name.startswith("custom_fields."):
            return host.custom_fields.get(name[len("custom_fields."):])
        return getattr(host, name, None)

    @staticmethod
    def _name_and_check(selected: list[CmdbHost], query: CmdbQuery) -> list[CmdbHost]:
        """Give every selected record its inventory name and mark the ones the release cannot use."""
        for host in selected:
            if host.cmdb_name is None:
                host.unusable.append("no_name")
                host.name = f"unnamed-{host.kind[:-1].replace('_', '-')}-{host.id or f'record{host.position}'}"
            elif not is_targetable(host.cmdb_name):
                host.name = safe_host_name(host.cmdb_name)  # also in cmdb_unusable: every host name is targetable
                if query.untargetable_names == "unusable":
                    host.unusable.append("untargetable")
        by_name: dict[str, list[CmdbHost]] = {}
        for host in selected:
            if "no_name" not in host.unusable:
                by_name.setdefault(host.name, []).append(host)
        for name, same in by_name.items():
            if len(same) > 1:
                for host in same:
                    host.unusable.append("duplicate")
                    host.name = f"{name}-id{host.id or host.position}"
        for host in selected:
            if host.active and not host.address:
                host.unusable.append("no_ip")
        _make_unique([h for h in selected if h.unusable], {h.name for h in selected if not h.unusable})
        return [h for h in selected if h.unusable]

    def _unusable_error(self, result: CmdbResult) -> CmdbError:
        hosts = result.unusable
        reasons = [r for r in REASONS if any(r in h.unusable for h in hosts)]
        if reasons == ["duplicate"] and len(hosts) == 2:
            what = f"{hosts[0].label} and {hosts[1].label} have the same name"
        else:
            what = describe_unusable(hosts)
        todo = "; ".join(_UNUSABLE_HELP[r] for r in reasons)
        counts = {r: sum(r in h.unusable for h in hosts) for r in reasons}
        return CmdbError(
            f"{self.source}: {what}. {len(hosts)} selected record(s) cannot be released onto: {todo}; or "
            "narrow the filters, or set on_unusable: exclude (leave them out, with a warning) or on_unusable: "
            f"group (list them in group {UNUSABLE_GROUP}, without ansible_host)",
            cmdb=self.source, record=hosts[0].cmdb_name or hosts[0].label, unusable=counts,
            unusable_records=[h.label for h in hosts[:FIRST_SHOWN * 4]])

    def _check_not_empty(self, result: CmdbResult, query: CmdbQuery) -> None:
        if result.hosts or query.allow_empty:
            return
        asked = ", ".join(result.filters) or "no filters"
        left = ""
        if result.unusable:
            left = (f" ({len(result.unusable)} selected record(s) cannot be released onto: "
                    f"{describe_unusable(result.unusable)})")
        raise CmdbError(f"{self.source} returned no active hosts for {asked}{left}; a release must never target "
                        "nothing: check app/env and the filters, or set allow_empty if an empty answer is "
                        "expected", cmdb=self.source, filters=result.filters)


def _make_unique(hosts: list[CmdbHost], taken: set[str]) -> None:
    """Unusable records still need distinct inventory names (for on_unusable: group)."""
    for host in hosts:
        name, n = host.name, 2
        while name in taken:
            name, n = f"{host.name}-{n}", n + 1
        host.name = name
        taken.add(name)


# --------------------------------------------------------------------------- construction


def build_backend(options: dict[str, Any], base_dir: str | None = None) -> FileBackend | RestBackend:
    """A backend from plugin/module options (``backend``, ``path``, ``url``, ``token``...)."""
    backend = options.get("backend") or "file"
    if backend not in BACKENDS:
        raise CmdbError(f"backend {backend!r} is not one of {', '.join(BACKENDS)}", option="backend")
    return _FACTORIES[backend](options, base_dir)


def _file_backend(options: dict[str, Any], base_dir: str | None) -> FileBackend:
    return FileBackend(resolve_path(options.get("path"), base_dir))


def _rest_backend(options: dict[str, Any], base_dir: str | None) -> RestBackend:
    return RestBackend(
        url=options.get("url") or "", token=options.get("token"), flavor=options["backend"],
        validate_certs=bool(options.get("validate_certs", True)), ca_path=options.get("ca_path"),
        timeout=float(options.get("timeout") or 30), page_size=int(options.get("page_size") or 250),
        retries=int(options.get("retries") if options.get("retries") is not None else 2),
    )


_FACTORIES = {"file": _file_backend, "netbox": _rest_backend, "nautobot": _rest_backend}


def resolve_path(path: str | None, base_dir: str | None) -> str:
    if not path:
        raise CmdbError("backend file needs path (or SRE_ROLLOUT_CMDB_FILE): the YAML/JSON CMDB export",
                        option="path")
    expanded = os.path.expanduser(expand_env(str(path)))
    if base_dir and not os.path.isabs(expanded):
        expanded = os.path.join(base_dir, expanded)
    return os.path.normpath(expanded)


def build_query(options: dict[str, Any]) -> CmdbQuery:
    """A CmdbQuery from plugin/module options; unset options keep their defaults."""
    query = CmdbQuery()
    for name in ("kinds", "roles", "tags", "status", "sites", "locations", "tenants",
                 "app_from", "env_from", "zone_from"):
        if options.get(name) is not None:
            setattr(query, name, [str(v) for v in as_list(options[name])])
    for name in ("app", "env"):
        if options.get(name) not in (None, ""):
            setattr(query, name, str(options[name]))
    if options.get("custom_fields"):
        if not isinstance(options["custom_fields"], dict):
            raise CmdbError("custom_fields must be a mapping of field name to value(s)", option="custom_fields")
        query.custom_fields = dict(options["custom_fields"])
    for name in ("inactive", "on_unusable", "untargetable_names"):
        if options.get(name):
            setattr(query, name, options[name])
    query.allow_empty = bool(options.get("allow_empty", False))
    query.validate()
    return query
