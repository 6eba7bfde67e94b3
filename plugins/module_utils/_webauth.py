# Copyright: sre.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Credentials and TLS settings shared by the Alertmanager and Prometheus clients.

This module is private to the sre.rollout collection: its interface may change
without notice and it must not be used from outside the collection.

Nothing here returns or formats a secret into a message: the Authorization
header is built once and only ever sent.
"""

from __future__ import annotations

import base64
import os
import ssl
from typing import Any

from ansible_collections.sre.rollout.plugins.module_utils._common import RolloutError


def auth_headers(token: str | None = None, username: str | None = None, password: str | None = None,
                 what: str = "the server") -> dict[str, str]:
    """The Authorization header for a bearer token or HTTP basic auth (never both)."""
    if token and (username or password):
        raise RolloutError(f"give {what} either token or username/password, not both")
    if password and not username:
        raise RolloutError(f"password for {what} is set without username: set username too")
    if token:
        return {"Authorization": f"Bearer {token}"}
    if username:
        raw = f"{username}:{password or ''}".encode("utf-8")
        return {"Authorization": "Basic " + base64.b64encode(raw).decode("ascii")}
    return {}


def check_ca_path(ca_path: str | None, what: str) -> str | None:
    """The CA bundle path, refused early when it cannot be read."""
    if not ca_path:
        return None
    if not os.path.isfile(ca_path) or not os.access(ca_path, os.R_OK):
        raise RolloutError(f"ca_path {ca_path!r} for {what} is not a readable file: give the PEM bundle of "
                           "the CA that signed its certificate")
    return ca_path


def is_tls_error(exc: BaseException) -> bool:
    reason: Any = getattr(exc, "reason", exc)
    if isinstance(reason, (ssl.SSLError, ssl.CertificateError)) or isinstance(exc, ssl.SSLError):
        return True
    text = str(reason).upper()
    return "CERTIFICATE" in text or "SSL" in text or "TLS" in text


def tls_message(what: str, url: str, reason: Any, ca_path: str | None, ca_option: str) -> str:
    """What to do when the TLS handshake with ``url`` fails (usually an unknown CA)."""
    given = f"the CA bundle {ca_path} does not" if ca_path else "the system CA store does not"
    return (f"TLS verification of {what} at {url} failed: {reason}; {given} verify its certificate. "
            f"Set {ca_option} to the PEM bundle of the CA that signed it (validate_certs=false only to debug)")


def unauthorized_hint(status: int, has_credentials: bool, options: str) -> str:
    if status == 401:
        return (f"the credentials given were refused: check {options}" if has_credentials
                else f"it wants credentials and none were given: set {options}")
    if status == 403:
        return f"the credentials may not do this: check {options} and their permissions"
    return ""
