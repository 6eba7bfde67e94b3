# Copyright: sre.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The words of a release, each with its one rule: release ids, app / version / artifact names,
quantities ("N or NN%"), host outcomes and release results.

This module is private to the sre.rollout collection: its interface may change
without notice and it must not be used from outside the collection.

Modules, module_utils and plugins call these functions; the role uses the same rules
through the ``sre.rollout`` test plugins (``is sre.rollout.version``, ...) and the
``sre.rollout.vocab_refusal`` filter, so a rule and its message are written once.
Only the standard library is used: this runs on the target too (``app_release``).
"""

from __future__ import annotations

import math
import re
from typing import Any, Type

from ansible_collections.sre.rollout.plugins.module_utils._common import RolloutError

# --------------------------------------------------------------------------- names
#
# One artifact is one directory under releases/ on every host and one file <artifact>.tar.gz in
# the repository: ``<app>-<version>``, one path component. What a host cannot stage is refused
# here, before any change - '~' (Debian-style pre-releases) included: write 1.2.0-rc1.

APP_CHARS = "letters, digits and '._-'"
VERSION_CHARS = "letters, digits and '._+-'"
ARTIFACT_CHARS = "letters, digits and '._+-'"
RELEASE_ID_CHARS = "letters, digits and '._:@+-'"

ARTIFACT_MAX = 200
RELEASE_ID_MAX = 128

_APP_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_ARTIFACT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,%d}$" % (ARTIFACT_MAX - 1))
_RELEASE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,%d}$" % (RELEASE_ID_MAX - 1))
_NOT_RELEASE_ID = re.compile(r"[^A-Za-z0-9._:@+-]+")


def _name_ok(pattern: re.Pattern, value: Any) -> bool:
    return isinstance(value, str) and bool(pattern.match(value)) and ".." not in value


def _hint(value: Any, why: str = "cannot be staged") -> str:
    if isinstance(value, str) and "~" in value:
        return f" ('~' {why}: write {value.replace('~', '-')!r})"
    return ""


def is_app_name(value: Any) -> bool:
    return _name_ok(_APP_RE, value)


def is_version(value: Any) -> bool:
    return _name_ok(_VERSION_RE, value) and len(value) < ARTIFACT_MAX


def is_artifact_name(value: Any) -> bool:
    return _name_ok(_ARTIFACT_RE, value)


def is_release_id(value: Any) -> bool:
    return _name_ok(_RELEASE_ID_RE, value)


def app_name_refusal(value: Any, what: str = "app name") -> str:
    if is_app_name(value):
        return ""
    return (f"invalid {what} {value!r}: use {APP_CHARS}, starting with a letter or digit, "
            "without '..', e.g. 'app'")


def version_refusal(value: Any, what: str = "version") -> str:
    if is_version(value):
        return ""
    return (f"invalid {what} {value!r}{_hint(value)}: use {VERSION_CHARS}, starting with a letter or digit, "
            "without '/' or '..', e.g. '1.2.0' or '1.2.0-rc1'")


def artifact_refusal(value: Any, what: str = "artifact name") -> str:
    if is_artifact_name(value):
        return ""
    return (f"invalid {what} {value!r}{_hint(value)}: use one name such as 'app-1.1.0' made of {ARTIFACT_CHARS}, "
            f"starting with a letter or digit, without '/' or '..' (at most {ARTIFACT_MAX})")


def release_id_refusal(value: Any, what: str = "release id") -> str:
    if is_release_id(value):
        return ""
    return (f"invalid {what} {value!r}{_hint(value, 'is not allowed')}: use {RELEASE_ID_CHARS} (at most {RELEASE_ID_MAX}), "
            "starting with a letter or digit, without '..', e.g. '2024-05-01-app-1.1.0'")


REFUSALS = {"app": app_name_refusal, "version": version_refusal, "artifact": artifact_refusal,
            "release_id": release_id_refusal}


def refusal(value: Any, kind: str, what: str | None = None) -> str:
    """What is wrong with ``value`` as a ``kind`` (app, version, artifact, release_id); "" when nothing."""
    try:
        check = REFUSALS[kind]
    except KeyError:
        raise RolloutError(f"unknown kind of name {kind!r}: use one of {', '.join(REFUSALS)}") from None
    return check(value) if what is None else check(value, what)


def validate_app_name(value: Any, what: str = "app name", error: Type[RolloutError] = RolloutError) -> str:
    problem = app_name_refusal(value, what)
    if problem:
        raise error(problem, app=value)
    return value


def validate_version(value: Any, what: str = "version", error: Type[RolloutError] = RolloutError) -> str:
    problem = version_refusal(value, what)
    if problem:
        raise error(problem, version=value)
    return value


def validate_artifact(value: Any, what: str = "artifact name", error: Type[RolloutError] = RolloutError) -> str:
    problem = artifact_refusal(value, what)
    if problem:
        raise error(problem, artifact=value)
    return value


def validate_release_id(value: Any, what: str = "release id", error: Type[RolloutError] = RolloutError) -> str:
    problem = release_id_refusal(value, what)
    if problem:
        raise error(problem, release_id=value)
    return value


def artifact_name(app: Any, version: Any, error: Type[RolloutError] = RolloutError) -> str:
    """``<app>-<version>``, refused unless the app, the version and the name all follow their rules."""
    validate_app_name(app, "app name", error)
    validate_version(version, "version", error)
    return validate_artifact(f"{app}-{version}", "artifact name", error)


def release_id_dirname(value: Any) -> str:
    """A release id made usable as one directory name: characters outside the release id rule become
    ``_``, no leading dot, at most 128. "" when nothing usable is left."""
    text = "" if value is None else str(value)
    return _NOT_RELEASE_ID.sub("_", text.strip()).lstrip(".")[:RELEASE_ID_MAX]


# --------------------------------------------------------------------------- quantities

_COUNT = re.compile(r"^\s*(\d+)\s*$")
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


def quantity_refusal(value: Any, what: str) -> str:
    return f"{what} {value!r} must be a count such as 2 or a percentage such as '50%'"


def parse_quantity_spec(value: Any, what: str = "min_ready",
                        error: Type[RolloutError] = RolloutError) -> tuple[float, bool]:
    """``2`` or ``'2'`` -> (2, False); ``'50%'`` -> (50.0, True). A count is a whole number from 0, a
    percentage is from 0 to 100; anything else (negative, fractional count, bool, '150%') is refused."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value >= 0:
            return value, False
    elif isinstance(value, str):
        match = _COUNT.match(value)
        if match:
            return int(match.group(1)), False
        match = _PERCENT.match(value)
        if match and float(match.group(1)) <= 100:
            return float(match.group(1)), True
    raise error(quantity_refusal(value, what), **{what: value})


def parse_quantity(value: Any, total: int, what: str = "min_ready", round_up: bool = True,
                   error: Type[RolloutError] = RolloutError) -> int:
    """``2`` -> 2; ``'50%'`` -> half of ``total``.

    A percentage rounds up for a minimum (``round_up``: a minimum is never rounded away), and
    down for a step size - but never to 0 when the percentage is not 0 (like Ansible's ``serial``).
    """
    return parse_quantity_counted(value, total, what, round_up, error)[0]


def parse_quantity_counted(value: Any, total: int, what: str = "min_ready", round_up: bool = True,
                           error: Type[RolloutError] = RolloutError) -> tuple[int, bool]:
    """:func:`parse_quantity`, and whether ``value`` was a percentage."""
    number, percent = parse_quantity_spec(value, what, error)
    if not percent:
        return int(number), False
    exact = total * number / 100.0
    if round_up:
        return math.ceil(exact - 1e-9), True
    count = math.floor(exact + 1e-9)
    return (max(count, 1) if number > 0 else count), True


# --------------------------------------------------------------------------- outcomes and results
#
# A host the swap left serving the target (or already on it) is "released" or "skipped";
# "rolled_back" went back to its previous artifact and serves again; "failed" could not be
# restored and is out of traffic; "timed_out" hit a step timeout (``restored`` says whether it
# serves again); "unreachable" dropped out mid-swap and is left as it was - out of traffic once
# drained, silenced, locked; "not touched" was never swapped (the release halted before it);
# "excluded" was left out by preflight. The role records them (``_swap_outcome``), the ledger
# keeps them (``hosts[].outcome``), the report shows them: nobody guesses them from other words.

RELEASED = "released"
SKIPPED = "skipped"
ROLLED_BACK = "rolled_back"
FAILED = "failed"
TIMED_OUT = "timed_out"
UNREACHABLE = "unreachable"
NOT_TOUCHED = "not touched"
EXCLUDED = "excluded"
UNKNOWN = "unknown"

OK_OUTCOMES = (RELEASED, SKIPPED)
FAILED_OUTCOMES = (ROLLED_BACK, FAILED, TIMED_OUT, UNREACHABLE)
OUTCOMES = OK_OUTCOMES + FAILED_OUTCOMES + (NOT_TOUCHED, EXCLUDED, UNKNOWN)

# The result of a release, judged once (``_outcome.release_verdict``): the ledger's ``result``,
# ``set_stats`` ``rollout_out_result`` and the report's result are this word.
SUCCESS = "success"
PAUSED = "paused"
RESULTS = (SUCCESS, PAUSED, FAILED)
