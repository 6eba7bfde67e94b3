# Copyright: sre.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Client for the Prometheus HTTP API (instant queries, ``/api/v1/query``).

This module is private to the sre.rollout collection: its interface may change
without notice and it must not be used from outside the collection.

Only the standard library and ``ansible.module_utils.urls`` are used, so the
client also runs where ``requests`` is not installed.
"""

from __future__ import annotations

import json
import socket
import urllib.error
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from ansible.module_utils.urls import Request, make_context

from ansible_collections.sre.rollout.plugins.module_utils._common import RolloutError
from ansible_collections.sre.rollout.plugins.module_utils._webauth import (
    auth_headers, check_ca_path, is_tls_error, tls_message, unauthorized_hint)

CREDENTIAL_OPTIONS = ("username/password or token (rollout_prometheus_username/rollout_prometheus_password "
                      "or rollout_prometheus_token)")

DEFAULT_TIMEOUT = 10.0

# errorType values Prometheus puts in its error envelope; ``bad_data`` means the
# query itself is invalid, so asking again cannot help.
INVALID_QUERY = "bad_data"
# Our own error types, for failures that happen before Prometheus answers.
UNREACHABLE = "unreachable"
TIMEOUT = "timeout"
BAD_RESPONSE = "bad_response"
HTTP_ERROR = "http"


class PrometheusError(RolloutError):
    """A query that gave no result; ``error_type`` says why.

    ``error_type`` is Prometheus' own ``errorType`` (``bad_data``, ``execution``,
    ``timeout``, ``canceled``, ``internal``, ``unavailable``...) when it answered
    with its error envelope, else one of ``unreachable``, ``timeout``, ``http``,
    ``bad_response``.
    """

    def __init__(self, msg: str, error_type: str, **details: Any) -> None:
        super().__init__(msg, error_type=error_type, **details)
        self.error_type = error_type

    @property
    def invalid_query(self) -> bool:
        """True when the query is wrong (retrying cannot help)."""
        return self.error_type == INVALID_QUERY


@dataclass(frozen=True)
class Sample:
    """One series of an instant vector (or the scalar, with no labels)."""

    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class QueryResult:
    """The ``data`` of a successful instant query.

    ``result_type`` is ``vector``, ``scalar``, ``matrix`` or ``string``; for a
    scalar ``samples`` holds one sample without labels. Values are floats and may
    be NaN or +/-Inf (Prometheus sends them as the strings ``NaN``, ``+Inf``,
    ``-Inf``). ``matrix`` and ``string`` results keep no samples. ``time`` is
    the evaluation time Prometheus reports (Unix seconds), None when the result
    carries none (an empty vector).
    """

    result_type: str
    samples: tuple[Sample, ...] = ()
    warnings: tuple[str, ...] = field(default=())
    time: float | None = None


class PrometheusClient:
    """Instant queries against one Prometheus (or a compatible API such as Thanos)."""

    def __init__(self, url: str, timeout: float = DEFAULT_TIMEOUT, validate_certs: bool = True,
                 headers: dict[str, str] | None = None, token: str | None = None, username: str | None = None,
                 password: str | None = None, ca_path: str | None = None) -> None:
        if not url or not url.startswith(("http://", "https://")):
            raise RolloutError(f"Prometheus URL {url!r} is not an http(s) URL: set `url` (or PROMETHEUS_URL) "
                               "to the server's base address, e.g. http://prometheus:9090")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.validate_certs = validate_certs
        self.ca_path = check_ca_path(ca_path, f"Prometheus at {self.url}")
        self.headers = {"Accept": "application/json", **(headers or {})}
        self.headers.update(auth_headers(token, username, password, f"Prometheus at {self.url}"))
        self.has_credentials = "Authorization" in self.headers
        # One TLS context for all queries: open_url would load the CA store again for every request.
        self._request = Request(headers=self.headers, timeout=timeout, validate_certs=validate_certs,
                                follow_redirects="safe",
                                context=make_context(validate_certs=validate_certs, cafile=self.ca_path))

    def query(self, promql: str, at: float | None = None) -> QueryResult:
        """Evaluate ``promql`` at ``at`` (Unix time; default: now on the server)."""
        params: dict[str, str] = {"query": promql, "timeout": f"{self.timeout:g}s"}
        if at is not None:
            params["time"] = f"{at:.3f}"
        url = f"{self.url}/api/v1/query?{urlencode(params)}"
        status, body = self._get(url)
        return parse_response(body, status=status, url=self.url, has_credentials=self.has_credentials)

    def ready(self) -> str:
        """``GET /-/ready``; returns Prometheus' answer, raises when it is not ready or does not answer."""
        status, body = self._get(f"{self.url}/-/ready")
        text = body[:200].decode("utf-8", errors="replace").strip()
        if status != 200:
            hint = "; " + unauthorized_hint(status, self.has_credentials, CREDENTIAL_OPTIONS) \
                if status in (401, 403) else "; it is still starting (replaying its WAL) or shutting down" if status == 503 else ""
            raise PrometheusError(f"Prometheus at {self.url} is not ready: HTTP {status} {text!r}{hint}",
                                  HTTP_ERROR, status=status, url=self.url)
        return text

    def _get(self, url: str) -> tuple[int, bytes]:
        try:
            resp = self._request.open("GET", url)
            return resp.getcode() or 200, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, _read_error_body(exc)
        except (socket.timeout, TimeoutError) as exc:
            raise PrometheusError(f"Prometheus at {self.url} did not answer within {self.timeout:g}s ({exc}); "
                                  "check that it is up, or raise `timeout`", TIMEOUT, url=self.url) from exc
        except (urllib.error.URLError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if self.url.startswith("https://") and is_tls_error(exc):
                raise PrometheusError(tls_message("Prometheus", self.url, reason, self.ca_path,
                                                  "ca_path (rollout_prometheus_ca_path)"),
                                      UNREACHABLE, url=self.url, tls=True) from exc
            hint = ""
            raise PrometheusError(f"cannot reach Prometheus at {self.url}: {reason}; check `url` (or "
                                  f"PROMETHEUS_URL) and that Prometheus is running{hint}",
                                  UNREACHABLE, url=self.url) from exc


def _read_error_body(exc: urllib.error.HTTPError) -> bytes:
    try:
        return exc.read() or b""
    except Exception:  # pylint: disable=broad-except  # body of a failed answer is best effort
        return b""


def parse_value(raw: Any) -> float:
    """A sample value as Prometheus sends it (``"1.5"``, ``"NaN"``, ``"+Inf"``) as a float."""
    if not isinstance(raw, str):
        raise ValueError(f"sample value {raw!r} is not a string")
    return float(raw)  # float() understands NaN, +Inf and -Inf


def _parse_time(raw: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise ValueError(f"evaluation time {raw!r} is not a number")
    return float(raw)


def _is_pair(item: Any) -> bool:
    return isinstance(item, dict) and isinstance(item.get("value"), list) and len(item["value"]) == 2


def _parse_sample(item: Any) -> Sample:
    if not _is_pair(item):
        raise ValueError(f"vector element {item!r} has no [time, value] pair")
    return Sample(labels=dict(item.get("metric") or {}), value=parse_value(item["value"][1]))


def _parse_data(data: Any) -> QueryResult:
    if not isinstance(data, dict) or "resultType" not in data:
        raise ValueError("no data.resultType")
    result_type = data["resultType"]
    result = data.get("result")
    if result_type == "vector":
        if not isinstance(result, list):
            raise ValueError("vector result is not a list")
        stamp = _parse_time(result[0]["value"][0]) if result and _is_pair(result[0]) else None
        return QueryResult("vector", tuple(_parse_sample(item) for item in result), time=stamp)
    if result_type == "scalar":
        if not isinstance(result, list) or len(result) != 2:
            raise ValueError("scalar result is not a [time, value] pair")
        return QueryResult("scalar", (Sample(labels={}, value=parse_value(result[1])),), time=_parse_time(result[0]))
    if result_type in ("matrix", "string"):
        return QueryResult(result_type)
    raise ValueError(f"unknown resultType {result_type!r}")


def _error_from_envelope(doc: dict, status: int, url: str) -> PrometheusError:
    error_type = str(doc.get("errorType") or "unknown")
    error = str(doc.get("error") or "no error text")
    if error_type == INVALID_QUERY:
        msg = f"Prometheus rejected the query as invalid ({error_type}): {error}; fix the PromQL"
    else:
        msg = f"Prometheus could not run the query ({error_type}, HTTP {status}): {error}"
    return PrometheusError(msg, error_type, status=status, url=url)


def parse_response(body: bytes, status: int = 200, url: str = "", has_credentials: bool = False) -> QueryResult:
    """Turn an ``/api/v1/query`` answer into a QueryResult, or raise PrometheusError.

    Understands the error envelope ``{"status": "error", "errorType": ..., "error": ...}``
    whatever the HTTP status it came with.
    """
    try:
        doc = json.loads(body.decode("utf-8", errors="replace"))
    except ValueError:
        doc = None
    if isinstance(doc, dict) and doc.get("status") == "error":
        raise _error_from_envelope(doc, status, url)
    if status >= 400:
        snippet = body[:200].decode("utf-8", errors="replace").strip()
        hint = "; " + unauthorized_hint(status, has_credentials, CREDENTIAL_OPTIONS) if status in (401, 403) else ""
        raise PrometheusError(f"Prometheus at {url} answered HTTP {status}: {snippet!r}{hint}",
                              HTTP_ERROR, status=status, url=url)
    if not isinstance(doc, dict) or doc.get("status") != "success":
        snippet = body[:200].decode("utf-8", errors="replace").strip()
        raise PrometheusError(f"{url} did not answer like a Prometheus query API: {snippet!r}; check `url` "
                              "(the base address, without /api/v1/query)", BAD_RESPONSE, status=status, url=url)
    try:
        result = _parse_data(doc.get("data"))
    except ValueError as exc:
        raise PrometheusError(f"Prometheus at {url} sent a malformed result: {exc}", BAD_RESPONSE,
                              status=status, url=url) from exc
    warnings = tuple(str(w) for w in doc.get("warnings") or ())
    return QueryResult(result.result_type, result.samples, warnings, result.time)
