# Copyright: sre.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The vocabulary of a host's swap: its steps, in order, and the outcomes a host can end with.

Private to the sre.rollout collection. The role records what happened (registered step
results, ``_swap_outcome``, ``_swap_failure``); this module turns those records into the
outcome and the last completed step that the ledger and the report show, so the rule is
written once. Pure functions over a ``get(name)`` callable, unit-tested without Ansible.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

from ansible_collections.sre.rollout.plugins.module_utils import _vocab

# The states a host goes through in its swap, in order, and the variable the step that reaches
# each one registers. Steps run by an included role (stop, start) register nothing of their own:
# such a step completed when the next registered step ran at all. The quiet period is a wait on
# the controller in the "drained" state, not a state of its own.
SWAP_STEPS: tuple[tuple[str, str | None], ...] = (
    ("silenced", "_step_silenced"),
    ("drained", "_step_drained"),
    ("stopped", None),
    ("activated", "_step_activated"),
    ("started", None),
    ("health", "_step_health"),
    ("enabled", "_step_enabled"),
)
STEP_NAMES = tuple(step[0] for step in SWAP_STEPS)
NO_STEP = "none"  # nothing of the swap completed: the host stopped before its silence

# The outcome names (released, skipped, rolled_back, failed, timed_out, unreachable, not touched,
# excluded) and the release results are the vocabulary's; re-exported here for the swap's rules.
OK_OUTCOMES = _vocab.OK_OUTCOMES
FAILED_OUTCOMES = _vocab.FAILED_OUTCOMES
OUTCOMES = _vocab.OUTCOMES
RESULTS = _vocab.RESULTS

# Registered results whose "unreachable" flag tells that a host was lost mid-swap, including
# those of the steps run by the app_service role.
_REACH_VARS = ("_swap_state", "_restore_state", "_app_service_probe", "_app_service_stop",
               "_app_service_gone") + tuple(step[1] for step in SWAP_STEPS if step[1])

Getter = Callable[[str], Any]


def _result(get: Getter, name: str) -> Mapping[str, Any] | None:
    value = get(name)
    return value if isinstance(value, Mapping) else None


def _broken(result: Mapping[str, Any]) -> bool:
    return bool(result.get("unreachable")) or (bool(result.get("failed")) and not result.get("skipped"))


def last_step(get: Getter) -> str:
    """The last swap step the host completed, from its registered step results."""
    done = NO_STEP
    pending: list[str] = []
    for step, var in SWAP_STEPS:
        if var is None:
            pending.append(step)
            continue
        result = _result(get, var)
        if result is None:
            break
        if pending:  # the unregistered steps before a step that ran had completed
            done = pending[-1]
            pending = []
        if _broken(result):
            break
        done = step
    return done


def lost_contact(get: Getter) -> bool:
    """Whether any registered result of the swap says the host could not be reached."""
    return any((_result(get, var) or {}).get("unreachable") for var in _REACH_VARS)


def began_swap(get: Getter) -> bool:
    return _result(get, "_swap_state") is not None


def dropped(get: Getter) -> bool:
    """A host that began its swap and never recorded an outcome: Ansible dropped it from the play
    (unreachable, or a failure no rescue caught). The release must halt."""
    return began_swap(get) and not get("_swap_outcome")


def outcome_from_history(history: list[Mapping[str, Any]]) -> str:
    """Outcome of a host from its state file's history entries of one release (a phase run alone)."""
    switches = [h for h in history if h.get("action") in ("activate", "rollback")]
    if not switches:
        return _vocab.NOT_TOUCHED
    last = switches[-1]
    if last.get("action") == "rollback":
        return _vocab.ROLLED_BACK
    return _vocab.RELEASED if last.get("outcome", "ok") == "ok" else str(last.get("outcome") or _vocab.UNKNOWN)


def failed_swap_outcome(failure: Mapping[str, Any] | None, rollback: bool, restore_failed: bool) -> str:
    """The outcome of a host whose swap failed and was rescued.

    A step that timed out is ``timed_out`` (restored or not, ``restored`` says); otherwise a host
    put back on its previous artifact is ``rolled_back``, and one that could not be (its restore
    failed, or the swap was itself a rollback, so there is nothing further back) is ``failed``.
    """
    if isinstance(failure, Mapping) and failure.get("kind") == _vocab.TIMED_OUT:
        return _vocab.TIMED_OUT
    return _vocab.FAILED if rollback or restore_failed else _vocab.ROLLED_BACK


def host_outcome(get: Getter) -> dict[str, Any]:
    """Outcome, last completed step and failure of one host, from what the role recorded."""
    failure = get("_swap_failure") or None
    explicit = get("_swap_outcome")
    restoring = bool(get("_swap_restoring"))
    if explicit:
        outcome = str(explicit)
        step = (failure or {}).get("step") if isinstance(failure, Mapping) else None
        if step is None:
            step = STEP_NAMES[-1] if outcome in OK_OUTCOMES + (_vocab.ROLLED_BACK,) else last_step(get)
        if outcome == _vocab.SKIPPED:
            step = NO_STEP
        return {"outcome": outcome, "last_step": step, "failure": failure,
                "restored": outcome == _vocab.ROLLED_BACK or bool(get("_swap_restored"))}
    if dropped(get):
        kind = _vocab.UNREACHABLE if lost_contact(get) else _vocab.FAILED
        step = (failure or {}).get("step") if isinstance(failure, Mapping) and restoring else last_step(get)
        where = "during its restore" if restoring else "during its swap"
        return {"outcome": kind, "last_step": step, "restored": False,
                "failure": failure or {"task": f"lost {where}", "kind": kind,
                                       "msg": f"the host dropped out of the play {where} after step '{step}'"}}
    return {"outcome": "", "last_step": NO_STEP, "failure": failure, "restored": False}


def release_verdict(records: Iterable[Mapping[str, Any]], halted: bool = False, paused: bool = False,
                    lost: Iterable[Any] = (), mode: str = "release") -> str:
    """The one judge of a release: failed | paused | success (``_vocab.RESULTS``), from the host
    records (their ``outcome`` and ``lock``) and the run's halt flags. Finalize writes this word to
    the ledger and ``rollout_out_result``; the report shows it as it is."""
    records = list(records)
    outcomes = [r.get("outcome") for r in records]
    bad = set(FAILED_OUTCOMES) - ({_vocab.ROLLED_BACK} if mode == "rollback" else set())
    left_locked = any(r.get("lock") == "held" for r in records)  # finalize could not reach it
    if halted or list(lost) or left_locked or any(o in bad for o in outcomes):
        return _vocab.FAILED
    return _vocab.PAUSED if paused else _vocab.SUCCESS
