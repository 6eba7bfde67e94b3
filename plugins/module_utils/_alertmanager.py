# Copyright: sre.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Alertmanager v2 API client and silence logic for sre.rollout.

This module is private to the sre.rollout collection: its interface may change
without notice and it must not be used from outside the collection.

One client for every front end (the ``alertmanager_silence`` module now, a
lookup or callback later): :class:`AlertmanagerClient` speaks HTTP,
:func:`ensure_silence` and :func:`remove_silences` hold the idempotency rules.
Everything raises :class:`AlertmanagerError` (a ``RolloutError``); nothing here
prints or returns the bearer token.

Identity of a silence = its matchers (order-insensitive) + ``createdBy`` + the
release id carried at the start of its comment as ``[sre.rollout release=<id>]``.
"""

from __future__ import annotations

import json
import re
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlencode

from ansible.module_utils.urls import open_url
from ansible_collections.sre.rollout.plugins.module_utils._common import RolloutError
from ansible_collections.sre.rollout.plugins.module_utils._vocab import validate_release_id
from ansible_collections.sre.rollout.plugins.module_utils._webauth import (
    auth_headers, check_ca_path, is_tls_error, tls_message, unauthorized_hint)

DEFAULT_DURATION = 3600.0
DEFAULT_MAX_DURATION = 24 * 3600.0
DEFAULT_TOLERANCE = 120.0
DEFAULT_COMMENT = "silenced by sre.rollout during a release"
LIVE_STATES = ("active", "pending")
BODY_EXCERPT = 500

_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MATCHER_STRING = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$", re.DOTALL)
_RELEASE_TAG = re.compile(r"^\[sre\.rollout release=([^\s\[\]]+)\]")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_ISO_TIME = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}(?::\d{2})?)(?:\.(\d+))?\s*(Z|z|[+-]\d{2}:?\d{2})?$"
)


class AlertmanagerError(RolloutError):
    """Alertmanager could not be reached, refused a request, or the input is invalid."""


# --------------------------------------------------------------------------- matchers


@dataclass(frozen=True, order=True)
class Matcher:
    """One label matcher of a silence, as Alertmanager's v2 API has it."""

    name: str
    value: str
    is_regex: bool = False
    is_equal: bool = True

    @property
    def operator(self) -> str:
        return {(False, True): "=", (False, False): "!=", (True, True): "=~", (True, False): "!~"}[
            (self.is_regex, self.is_equal)
        ]

    def to_api(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "isRegex": self.is_regex, "isEqual": self.is_equal}

    def to_filter(self) -> str:
        """The matcher as a ``filter=`` value of the list endpoints (value quoted and escaped)."""
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.name}{self.operator}"{escaped}"'

    def matches_empty(self) -> bool:
        """Whether the matcher matches an absent label (Alertmanager refuses silences made only of those)."""
        if not self.is_regex:
            hit = self.value == ""
        else:
            try:
                hit = re.fullmatch(self.value, "") is not None
            except re.error:
                hit = False  # RE2 syntax Python lacks: let Alertmanager judge it
        return hit if self.is_equal else not hit

    def __str__(self) -> str:
        return f"{self.name}{self.operator}{self.value}"

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> "Matcher":
        return cls(
            name=str(data.get("name", "")),
            value=str(data.get("value", "")),
            is_regex=bool(data.get("isRegex", False)),
            # Alertmanager before 0.22 has no isEqual: every matcher was an equality.
            is_equal=bool(data.get("isEqual", True)),
        )


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        inner = value[1:-1]
        if value[0] == '"':
            return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), inner)
        return inner
    return value


def parse_matcher_string(text: str) -> Matcher:
    """``name=value``, ``name!=value``, ``name=~regex`` or ``name!~regex``; the value may be quoted."""
    found = _MATCHER_STRING.match(text)
    if not found:
        raise AlertmanagerError(
            f"matcher {text!r} is not of the form name=value, name!=value, name=~regex or name!~regex: "
            "write it like 'host=web01' or 'instance=~\"web01.*\"' (label names are letters, digits and _)"
        )
    name, operator, value = found.groups()
    return Matcher(name=name, value=_unquote(value), is_regex="~" in operator, is_equal=operator[0] == "=")


def _flag(data: dict[str, Any], snake: str, camel: str, default: bool, where: str) -> bool:
    value = data.get(snake, data.get(camel, default))
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
        return value.lower() in ("true", "yes", "on", "1")
    raise AlertmanagerError(f"matcher {where}: {snake} must be true or false, got {value!r}")


def parse_matcher_dict(data: dict[str, Any]) -> Matcher:
    """``{name, value, is_regex, is_equal}`` (Alertmanager's ``isRegex``/``isEqual`` spelling too)."""
    unknown = set(data) - {"name", "value", "is_regex", "is_equal", "isRegex", "isEqual"}
    if unknown:
        raise AlertmanagerError(
            f"matcher {data!r} has unknown keys {sorted(unknown)}: use name, value, is_regex, is_equal"
        )
    name, value = data.get("name"), data.get("value")
    if not isinstance(name, str) or not _LABEL_NAME.match(name):
        raise AlertmanagerError(
            f"matcher {data!r}: name must be a label name (letters, digits and _, not starting with a digit)"
        )
    if value is None or isinstance(value, (dict, list)):
        raise AlertmanagerError(f"matcher {data!r}: value must be a string (use '' to match a missing label)")
    return Matcher(
        name=name,
        value=str(value),
        is_regex=_flag(data, "is_regex", "isRegex", False, repr(data)),
        is_equal=_flag(data, "is_equal", "isEqual", True, repr(data)),
    )


def parse_matcher(item: Any) -> Matcher:
    if isinstance(item, Matcher):
        return item
    if isinstance(item, str):
        return parse_matcher_string(item)
    if isinstance(item, dict):
        return parse_matcher_dict(item)
    raise AlertmanagerError(
        f"matcher {item!r} is a {type(item).__name__}: give a string like 'host=web01' "
        "or a dict {name, value, is_regex, is_equal}"
    )


def parse_matchers(items: Iterable[Any] | None) -> list[Matcher]:
    """Parse and validate a silence's matchers; duplicates are dropped, order is kept."""
    matchers: list[Matcher] = []
    for item in items or []:
        matcher = parse_matcher(item)
        if matcher not in matchers:
            matchers.append(matcher)
    if not matchers:
        raise AlertmanagerError("matchers is empty: a silence needs at least one matcher, e.g. ['host=web01']")
    _check_regexes(matchers)
    if all(m.matches_empty() for m in matchers):
        raise AlertmanagerError(
            f"matchers {[str(m) for m in matchers]} all match the empty string, so the silence would "
            "mute every alert: add a matcher that needs a real label value, e.g. 'host=web01'"
        )
    return matchers


def _check_regexes(matchers: list[Matcher]) -> None:
    for matcher in matchers:
        if not matcher.is_regex:
            continue
        try:
            re.compile(matcher.value)
        except re.error as exc:
            if "unknown extension" in str(exc) or "bad escape" in str(exc):
                continue  # maybe RE2-only syntax: Alertmanager validates it
            raise AlertmanagerError(f"matcher {matcher}: invalid regular expression ({exc}): fix the pattern")


def matcher_key(matchers: Iterable[Matcher]) -> frozenset[Matcher]:
    return frozenset(matchers)


# --------------------------------------------------------------------------- time


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def parse_duration(value: Any, option: str = "duration") -> float:
    """Seconds from ``3600``, ``"90s"``, ``"30m"``, ``"2h"``, ``"1h30m"``, ``"1d"``; must be positive."""
    if isinstance(value, bool) or value is None:
        raise AlertmanagerError(f"{option} {value!r} is not a duration: use e.g. 30m, 2h or a number of seconds")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip().lower()
        if re.fullmatch(r"[+-]?\d+(?:\.\d+)?", text):
            seconds = float(text)
        elif re.fullmatch(r"(?:\d+(?:\.\d+)?[smhdw])+", text):
            seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in _DURATION_PART.findall(text))
        elif text.startswith("-"):
            seconds = -1.0
        else:
            raise AlertmanagerError(
                f"{option} {value!r} is not a duration: use e.g. 90s, 30m, 2h, 1h30m, 1d or a number of seconds"
            )
    if seconds <= 0:
        raise AlertmanagerError(f"{option} {value!r} must be positive: a silence needs a future end time")
    return seconds


def parse_time(value: Any, option: str) -> datetime:
    """An ISO 8601 time with a zone (``Z`` or an offset), as an aware UTC datetime."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise AlertmanagerError(f"{option} {value!r} has no time zone: add Z or an offset like +02:00")
        return value.astimezone(timezone.utc)
    found = _ISO_TIME.match(str(value).strip())
    if not found:
        raise AlertmanagerError(
            f"{option} {value!r} is not an ISO 8601 time: use e.g. 2030-01-31T18:00:00Z"
        )
    day, clock, fraction, zone = found.groups()
    if zone is None:
        raise AlertmanagerError(f"{option} {value!r} has no time zone: add Z or an offset like +02:00")
    if len(clock) == 5:
        clock += ":00"
    zone = "+00:00" if zone in ("Z", "z") else (zone if ":" in zone else zone[:3] + ":" + zone[3:])
    micro = (fraction or "0")[:6].ljust(6, "0")
    try:
        parsed = datetime.fromisoformat(f"{day}T{clock}.{micro}{zone}")
    except ValueError as exc:
        raise AlertmanagerError(f"{option} {value!r} is not a valid time ({exc})") from exc
    return parsed.astimezone(timezone.utc)


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with milliseconds, the way Alertmanager prints times."""
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# --------------------------------------------------------------------------- comments and identity


def release_tag(release_id: str | None) -> str:
    return f"[sre.rollout release={release_id}]" if release_id else ""


def check_release_id(release_id: str | None) -> str | None:
    """The release id (None when empty); it must fit in the comment's tag."""
    if release_id:
        validate_release_id(release_id, "release_id", AlertmanagerError)
    return release_id or None


def compose_comment(release_id: str | None, comment: str | None) -> str:
    """``[sre.rollout release=<id>] <reason>``: the record of why the alerts were muted."""
    release_id = check_release_id(release_id)
    text = (comment or "").strip() or DEFAULT_COMMENT
    if _RELEASE_TAG.match(text):
        raise AlertmanagerError(
            "comment starts with an [sre.rollout release=...] tag: give the release id as release_id "
            "and only the reason as comment"
        )
    tag = release_tag(release_id)
    return f"{tag} {text}" if tag else text


def release_id_of(comment: str | None) -> str | None:
    found = _RELEASE_TAG.match(comment or "")
    return found.group(1) if found else None


@dataclass(frozen=True)
class SilenceIdentity:
    """What makes two silences the same one for sre.rollout."""

    matchers: frozenset[Matcher]
    created_by: str
    release_id: str | None

    @classmethod
    def of(cls, matchers: Iterable[Matcher], created_by: str, release_id: str | None) -> "SilenceIdentity":
        return cls(matcher_key(matchers), created_by, release_id or None)

    def matches(self, silence: dict[str, Any]) -> bool:
        return (
            silence.get("createdBy") == self.created_by
            and release_id_of(silence.get("comment")) == self.release_id
            and matcher_key(Matcher.from_api(m) for m in silence.get("matchers") or []) == self.matchers
        )


def silence_state(silence: dict[str, Any]) -> str:
    return str((silence.get("status") or {}).get("state", ""))


def silence_view(silence: dict[str, Any] | None) -> dict[str, Any] | None:
    """The part of a silence the module returns (and diffs): what, when, who, why."""
    if silence is None:
        return None
    keys = ("id", "matchers", "startsAt", "endsAt", "createdBy", "comment")
    view = {k: silence.get(k) for k in keys}
    view["matchers"] = [Matcher.from_api(m).to_api() for m in silence.get("matchers") or []]
    view["state"] = silence_state(silence) or None
    return view


# --------------------------------------------------------------------------- HTTP client


class AlertmanagerClient:
    """Alertmanager's v2 API (``/api/v2``) through ``open_url``: silences and alerts."""

    def __init__(self, url: str, token: str | None = None, headers: dict[str, str] | None = None,
                 validate_certs: bool = True, timeout: float = 10.0, username: str | None = None,
                 password: str | None = None, ca_path: str | None = None) -> None:
        if not url or not re.match(r"^https?://[^/]", url):
            raise AlertmanagerError(
                f"url {url!r} is not an http(s) URL: give Alertmanager's base URL, e.g. http://alertmanager:9093"
            )
        base = url.rstrip("/")
        self.url = base[: -len("/api/v2")] if base.endswith("/api/v2") else base
        self.validate_certs = validate_certs
        self.timeout = timeout
        self.ca_path = check_ca_path(ca_path, f"Alertmanager at {self.url}")
        self._headers = {"Accept": "application/json"}
        self._headers.update({str(k): str(v) for k, v in (headers or {}).items()})
        self._headers.update(auth_headers(token, username, password, f"Alertmanager at {self.url}"))
        self.has_credentials = "Authorization" in self._headers

    # -- transport

    def request(self, method: str, path: str, body: Any = None,
                query: list[tuple[str, str]] | None = None) -> Any:
        """Call ``/api/v2<path>``; return the decoded JSON (None for an empty body)."""
        target = f"{self.url}/api/v2{path}"
        full = f"{target}?{urlencode(query)}" if query else target
        headers = dict(self._headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        try:
            response = open_url(full, data=data, headers=headers, method=method, timeout=self.timeout,
                                validate_certs=self.validate_certs, follow_redirects="safe",
                                ca_path=self.ca_path)
            raw = response.read()
        except HTTPError as exc:
            raise self._http_error(method, target, exc) from None
        except (URLError, socket.timeout, OSError, ValueError) as exc:
            raise self._unreachable(method, target, exc) from None
        return self._decode(method, target, raw)

    def _http_error(self, method: str, target: str, exc: HTTPError) -> AlertmanagerError:
        try:
            body = exc.read().decode("utf-8", "replace").strip()
        except Exception:  # the body is a courtesy; the status is what matters
            body = ""
        hint = {
            400: "Alertmanager refused the request: fix what the body names",
            401: "Alertmanager (or a proxy in front) " + unauthorized_hint(
                401, self.has_credentials, "username/password or token (rollout_alertmanager_username/"
                "rollout_alertmanager_password or rollout_alertmanager_token)"),
            403: unauthorized_hint(403, self.has_credentials, "username/password or token"),
            404: "no such API path or object: check that url is Alertmanager's base URL (v2 API, >= 0.16)",
        }.get(exc.code, "Alertmanager failed: check its log and health, then retry" if exc.code >= 500
              else "unexpected answer: check url and any proxy in front of Alertmanager")
        return AlertmanagerError(
            f"Alertmanager at {self.url} answered HTTP {exc.code} to {method} {target}: "
            f"{body[:BODY_EXCERPT] or exc.reason}. {hint}",
            url=self.url, status=exc.code, body=body[:BODY_EXCERPT],
        )

    def _unreachable(self, method: str, target: str, exc: BaseException) -> AlertmanagerError:
        reason = getattr(exc, "reason", None) or exc
        if self.url.startswith("https://") and is_tls_error(exc):
            return AlertmanagerError(
                tls_message("Alertmanager", self.url, reason, self.ca_path,
                            "ca_path (rollout_alertmanager_ca_path)"),
                url=self.url, status=None, tls=True,
            )
        return AlertmanagerError(
            f"cannot reach Alertmanager at {self.url} ({method} {target}): {reason}. "
            "Check that url is right, Alertmanager is running and reachable from where the task runs "
            "(playbooks usually delegate_to localhost)",
            url=self.url, status=None,
        )

    def _decode(self, method: str, target: str, raw: bytes) -> Any:
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError:
            excerpt = raw[:BODY_EXCERPT].decode("utf-8", "replace")
            raise AlertmanagerError(
                f"Alertmanager at {self.url} answered {method} {target} with a body that is not JSON: "
                f"{excerpt!r}. Check that url points at Alertmanager itself, not a login page or another service",
                url=self.url, body=excerpt,
            ) from None

    # -- status

    def status(self) -> dict[str, Any]:
        """``GET /api/v2/status``: version, uptime and cluster state; raises when Alertmanager does not answer."""
        answer = self.request("GET", "/status")
        if not isinstance(answer, dict):
            raise AlertmanagerError(
                f"Alertmanager at {self.url} answered GET /api/v2/status with {type(answer).__name__}, "
                "not an object: check that url points at Alertmanager", url=self.url,
            )
        return answer

    # -- silences

    def list_silences(self, matchers: Iterable[Matcher] | None = None) -> list[dict[str, Any]]:
        """All silences (any state); with ``matchers``, those the server's filter keeps.

        The filter only narrows the answer: callers still check every silence
        themselves. A server that rejects the filter is asked again without it.
        """
        query = [("filter", m.to_filter()) for m in matchers or []]
        try:
            answer = self.request("GET", "/silences", query=query or None)
        except AlertmanagerError as exc:
            if not query or exc.details.get("status") != 400:
                raise
            answer = self.request("GET", "/silences")
        if not isinstance(answer, list):
            raise AlertmanagerError(
                f"Alertmanager at {self.url} answered GET /api/v2/silences with {type(answer).__name__}, "
                "not a list: check that url points at Alertmanager", url=self.url,
            )
        return answer

    def get_silence(self, silence_id: str) -> dict[str, Any] | None:
        """The silence, or None when Alertmanager does not know the id (never existed, or purged)."""
        try:
            return self.request("GET", f"/silence/{quote(silence_id, safe='')}")
        except AlertmanagerError as exc:
            if exc.details.get("status") in (404, 422):  # 422: not even a UUID
                return None
            raise

    def post_silence(self, silence: dict[str, Any]) -> str:
        """Create (no ``id``) or update (with ``id``); returns the id Alertmanager kept or gave."""
        answer = self.request("POST", "/silences", body=silence)
        silence_id = (answer or {}).get("silenceID") if isinstance(answer, dict) else None
        if not silence_id:
            raise AlertmanagerError(
                f"Alertmanager at {self.url} answered POST /api/v2/silences without a silenceID: {answer!r}",
                url=self.url,
            )
        return str(silence_id)

    def expire_silence(self, silence_id: str) -> None:
        self.request("DELETE", f"/silence/{quote(silence_id, safe='')}")


# --------------------------------------------------------------------------- silence logic


@dataclass
class SilenceRequest:
    """What the caller wants muted, for how long and why (already validated)."""

    matchers: list[Matcher]
    created_by: str
    release_id: str | None
    comment: str
    starts_at: datetime
    ends_at: datetime
    tolerance: float = DEFAULT_TOLERANCE

    @property
    def identity(self) -> SilenceIdentity:
        return SilenceIdentity.of(self.matchers, self.created_by, self.release_id)

    def to_api(self) -> dict[str, Any]:
        return {
            "matchers": [m.to_api() for m in self.matchers],
            "startsAt": format_time(self.starts_at),
            "endsAt": format_time(self.ends_at),
            "createdBy": self.created_by,
            "comment": self.comment,
        }


def build_request(matchers: Iterable[Any], created_by: str | None = "sre.rollout", release_id: str | None = None,
                  comment: str | None = None, duration: Any = None, ends_at: Any = None,
                  starts_at: Any = None, max_duration: Any = DEFAULT_MAX_DURATION,
                  tolerance: Any = DEFAULT_TOLERANCE, now: datetime | None = None) -> SilenceRequest:
    """Validate the caller's options into a :class:`SilenceRequest` with a bounded time range."""
    now = now or utcnow()
    parsed = parse_matchers(matchers)
    if duration is not None and ends_at is not None:
        raise AlertmanagerError("give either duration or ends_at, not both")
    if not created_by or not str(created_by).strip():
        raise AlertmanagerError("created_by is empty: name who silences, e.g. sre.rollout or your user name")
    start = parse_time(starts_at, "starts_at") if starts_at is not None else now
    if ends_at is not None:
        end = parse_time(ends_at, "ends_at")
    else:
        end = start + timedelta(seconds=parse_duration(DEFAULT_DURATION if duration is None else duration))
    _check_range(start, end, now, parse_duration(max_duration, "max_duration"), ends_at)
    return SilenceRequest(
        matchers=parsed,
        created_by=str(created_by).strip(),
        release_id=release_id or None,
        comment=compose_comment(release_id or None, comment),
        starts_at=start,
        ends_at=end,
        tolerance=_tolerance(tolerance),
    )


def _tolerance(value: Any) -> float:
    if value in (0, "0", 0.0):
        return 0.0
    return parse_duration(value, "tolerance")


def _check_range(start: datetime, end: datetime, now: datetime, max_seconds: float, ends_at: Any) -> None:
    if end <= now:
        raise AlertmanagerError(
            f"ends_at {format_time(end)} is not in the future (now {format_time(now)}): give a later ends_at "
            "or a duration", ends_at=format_time(end),
        )
    if end <= start:
        raise AlertmanagerError(
            f"the silence would end ({format_time(end)}) before it starts ({format_time(start)}): "
            "give an ends_at after starts_at"
        )
    length = (end - max(start, now)).total_seconds()
    if length > max_seconds:
        what = f"ends_at {ends_at}" if ends_at is not None else "duration"
        raise AlertmanagerError(
            f"{what} makes a silence of {_human(length)}, longer than max_duration {_human(max_seconds)}: "
            "a forgotten silence hides real incidents, so shorten it (or raise max_duration deliberately)",
            requested_seconds=int(length), max_seconds=int(max_seconds),
        )


def _human(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{secs}s" if secs else ""]
    return "".join(parts) or "0s"


def find_live(client: AlertmanagerClient, identity: SilenceIdentity,
              matchers: Iterable[Matcher]) -> list[dict[str, Any]]:
    """Active or pending silences with this identity, the one ending last first."""
    live = [s for s in client.list_silences(matchers)
            if silence_state(s) in LIVE_STATES and identity.matches(s)]
    return sorted(live, key=lambda s: parse_time(s["endsAt"], "endsAt"), reverse=True)


def _result(action: str, changed: bool, before: Any, after: Any, **extra: Any) -> dict[str, Any]:
    """A result with ``diff`` ({before, after}); silences in it are :func:`silence_view` s."""
    result = {"action": action, "changed": changed, "diff": {"before": before or {}, "after": after or {}}}
    result.update(extra)
    return result


def ensure_silence(client: AlertmanagerClient, request: SilenceRequest, check_mode: bool = False) -> dict[str, Any]:
    """Create the silence, or reuse a live one with the same identity (extending it when it ends too early).

    Returns ``action`` (created | extended | updated | unchanged), ``changed``,
    ``silence_id``, ``silence`` (after), ``before``/``after`` views,
    ``previous_silence_id`` (when Alertmanager replaced the silence with a new
    id) and ``warnings``.
    """
    existing = find_live(client, request.identity, request.matchers)
    if not existing:
        return _create(client, request, check_mode)
    current, others = existing[0], existing[1:]
    warnings = [
        f"other live silences with the same identity exist: {[s.get('id') for s in others]}; "
        "the one ending last is kept, expire the others with state=absent and silence_id"
    ] if others else []
    update = _update_for(current, request, warnings)
    if update is None:
        view = silence_view(current)
        return _result("unchanged", False, view, view, silence_id=current["id"], silence=view,
                       warnings=warnings)
    action = "updated" if (update["startsAt"], update["endsAt"]) == (current["startsAt"], current["endsAt"]) \
        else "extended"
    return _apply_update(client, current, update, action, check_mode, warnings)


def _create(client: AlertmanagerClient, request: SilenceRequest, check_mode: bool) -> dict[str, Any]:
    body = request.to_api()
    if check_mode:
        planned = dict(body, id=None, status={"state": "active" if request.starts_at <= utcnow() else "pending"})
        return _result("created", True, None, silence_view(planned), silence_id=None, silence=silence_view(planned),
                       warnings=[])
    silence_id = client.post_silence(body)
    created = client.get_silence(silence_id) or dict(body, id=silence_id)
    return _result("created", True, None, silence_view(created), silence_id=silence_id,
                   silence=silence_view(created), warnings=[])


def _update_for(current: dict[str, Any], request: SilenceRequest, warnings: list[str]) -> dict[str, Any] | None:
    """The POST body that brings ``current`` up to the request, or None when it already serves it."""
    cur_start = parse_time(current["startsAt"], "startsAt")
    cur_end = parse_time(current["endsAt"], "endsAt")
    tolerance = timedelta(seconds=request.tolerance)
    later_end = request.ends_at - cur_end > tolerance
    earlier_start = silence_state(current) == "pending" and cur_start - request.starts_at > tolerance
    new_comment = current.get("comment") != request.comment
    if cur_end - request.ends_at > tolerance:
        warnings.append(
            f"silence {current['id']} ends at {current['endsAt']}, later than the requested "
            f"{format_time(request.ends_at)}; it is kept as it is (never shortened): to shorten it, expire it "
            "with state=absent and create it again"
        )
    if not (later_end or earlier_start or new_comment):
        return None
    return {
        "id": current["id"],
        # The same matchers in the same order: Alertmanager only updates in place when they are identical.
        "matchers": current["matchers"],
        "startsAt": format_time(request.starts_at) if earlier_start else current["startsAt"],
        "endsAt": format_time(request.ends_at) if later_end else current["endsAt"],
        "createdBy": current["createdBy"],
        "comment": request.comment,
    }


def _apply_update(client: AlertmanagerClient, current: dict[str, Any], update: dict[str, Any], action: str,
                  check_mode: bool, warnings: list[str]) -> dict[str, Any]:
    if check_mode:
        planned = dict(update, status=current.get("status"))
        return _result(action, True, silence_view(current), silence_view(planned), silence_id=current["id"],
                       silence=silence_view(planned), warnings=warnings)
    silence_id = client.post_silence(update)
    after = client.get_silence(silence_id) or dict(update, id=silence_id)
    extra: dict[str, Any] = {}
    if silence_id != current["id"]:
        # Alertmanager expires the old silence and makes a new one when it cannot update in place.
        extra["previous_silence_id"] = current["id"]
    return _result(action, True, silence_view(current), silence_view(after), silence_id=silence_id,
                   silence=silence_view(after), warnings=warnings, **extra)


def remove_silences(client: AlertmanagerClient, silence_id: str | None = None,
                    identity: SilenceIdentity | None = None, matchers: Iterable[Matcher] | None = None,
                    check_mode: bool = False) -> dict[str, Any]:
    """Expire the silence ``silence_id``, or every live silence with ``identity``.

    Expiring what is already expired, or an id Alertmanager no longer knows, is
    not an error: ``action`` is then ``absent`` and nothing changed. Returns
    ``expired`` (the silences expired, as they were before) and ``silence_id``.
    """
    if silence_id:
        found = client.get_silence(silence_id)
        targets = [found] if found is not None and silence_state(found) in LIVE_STATES else []
        missing = found is None
    elif identity is not None:
        targets = find_live(client, identity, matchers or identity.matchers)
        missing = False
    else:
        raise AlertmanagerError("state=absent needs silence_id, or matchers (+ created_by, release_id) to find it")
    if not check_mode:
        for target in targets:
            _expire(client, target["id"])
    views = [silence_view(t) for t in targets]
    result = _result("expired" if targets else "absent", bool(targets), {"silences": views}, {"silences": []},
                     silence_id=silence_id or (targets[0]["id"] if targets else None), silence=None,
                     expired=views, warnings=[])
    if missing:
        result["warnings"].append(f"Alertmanager at {client.url} knows no silence {silence_id}: nothing to expire")
    return result


def _expire(client: AlertmanagerClient, silence_id: str) -> None:
    try:
        client.expire_silence(silence_id)
    except AlertmanagerError:
        # It may have ended (or been expired by someone else) since we looked: that is the goal reached.
        again = client.get_silence(silence_id)
        if again is not None and silence_state(again) in LIVE_STATES:
            raise
