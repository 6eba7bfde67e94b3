# Copyright: sre.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where a host goes back to in a rollback, from its own release state. By name, never by age.

This module is private to the sre.rollout collection: its interface may change
without notice and it must not be used from outside the collection.

Pure functions over ``app_release state=query`` results, unit-tested without Ansible.
"""

from __future__ import annotations

from typing import Any, Mapping


def _entry(releases: list[Mapping[str, Any]], artifact: str) -> Mapping[str, Any]:
    return next((r for r in releases if r.get("artifact") == artifact), {})


def _changed_by(history: list[Mapping[str, Any]], release_id: str, current: str) -> bool:
    """Whether ``release_id`` activated the artifact the host runs now."""
    return any(h.get("release_id") == release_id and h.get("action") == "activate" and h.get("artifact") == current
               for h in history)


def rollback_target(state: Mapping[str, Any] | None, rollback_to: str | None = None, release_id: str = "",
                    reach: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The rollback decision for one host: ``{"to", "reason", "left_alone"}``.

    ``state`` is the host's ``app_release state=query`` result, ``reach`` its ``ping`` result,
    ``rollback_to`` the artifact the operator asked for (None: the recorded previous one) and
    ``release_id`` the release being rolled back (empty: any). ``reason`` is empty when the host
    is rolled back to ``to``; otherwise it says why not. ``left_alone`` is a host that answers
    but has nothing to roll back: it keeps serving and counts as ready in the plan.
    """
    state = state if isinstance(state, Mapping) else {}
    reach = reach if isinstance(reach, Mapping) else {}
    current = state.get("current") or ""
    releases = [r for r in state.get("releases") or [] if isinstance(r, Mapping)]
    target = (rollback_to if rollback_to is not None else state.get("previous")) or ""
    staged = [str(r.get("artifact")) for r in releases if r.get("complete")]
    unreachable = bool(reach.get("unreachable") or state.get("unreachable"))
    unreadable = not unreachable and bool(state.get("failed"))
    if unreachable:
        reason = f"unreachable: {str(reach.get('msg') or state.get('msg') or '').strip()}"
    elif unreadable:
        reason = f"release state unreadable: {state.get('msg') or ''}"
    elif release_id and not _changed_by(list(state.get("history") or []), release_id, current):
        reason = f"not changed by release {release_id} (runs {current or 'nothing'})"
    elif not target:
        reason = "nothing to roll back to: no previous artifact is recorded"
    elif target not in staged:
        reason = f"{target} is not staged on the host (staged: {', '.join(staged)})"
    elif target == current:
        reason = f"already on {target}"
    elif rollback_to is None and (_entry(releases, current).get("failed") or _entry(releases, target).get("failed")):
        # the recorded previous is a release this host was already rolled back from: going "back" would undo it
        reason = f"already rolled back from {current}"
    else:
        reason = ""
    return {"to": target, "reason": reason, "left_alone": bool(reason) and not (unreachable or unreadable)}
