"""Unit tests for the vocabulary: one rule per word, good and bad inputs."""

from __future__ import annotations

import pytest

from ansible_collections.sre.rollout.plugins.module_utils import _lb, _outcome, _plan, _vocab
from ansible_collections.sre.rollout.plugins.module_utils._common import RolloutError


class OwnError(RolloutError):
    pass


# --------------------------------------------------------------------------- app, version, artifact


@pytest.mark.parametrize("name", ["app", "my-app", "app_2", "App.web", "9lives"])
def test_app_names(name):
    assert _vocab.is_app_name(name) and _vocab.validate_app_name(name) == name
    assert _vocab.app_name_refusal(name) == ""


@pytest.mark.parametrize("name", ["", "-app", ".app", "a/b", "a..b", "app+x", "a b", "app~1", None, 3])
def test_bad_app_names(name):
    assert not _vocab.is_app_name(name)
    with pytest.raises(RolloutError, match="invalid app name") as err:
        _vocab.validate_app_name(name)
    assert err.value.details == {"app": name}


@pytest.mark.parametrize("version", ["1.2.0", "1.2.0-rc1", "1.2.0+build.7", "v2", "2024.05.01_1", "1"])
def test_versions(version):
    assert _vocab.is_version(version) and _vocab.validate_version(version) == version
    assert _vocab.version_refusal(version) == ""


@pytest.mark.parametrize("version", ["", "1.2.0~rc1", "~1", "-1", ".1", "1..2", "1/2", "1 2", "1:2", "x" * 200,
                                     None, 1.2])
def test_bad_versions(version):
    assert not _vocab.is_version(version)
    with pytest.raises(RolloutError, match="invalid version"):
        _vocab.validate_version(version)


def test_a_tilde_is_refused_naming_the_allowed_characters_and_the_fix():
    problem = _vocab.version_refusal("1.2.0~rc1", "rollout_version")
    assert problem.startswith("invalid rollout_version '1.2.0~rc1'")
    assert "'~' cannot be staged: write '1.2.0-rc1'" in problem
    assert "letters, digits and '._+-'" in problem


@pytest.mark.parametrize("name", ["app-1.1.0", "app_2", "App+build.7", "1.0", "x" * 200])
def test_artifact_names(name):
    assert _vocab.is_artifact_name(name) and _vocab.validate_artifact(name) == name


@pytest.mark.parametrize("name", ["", "..", "../etc", "a/b", ".hidden", "app..1", "a b", "app-1.2.0~rc1",
                                  "x" * 201, None, 7])
def test_bad_artifact_names(name):
    assert not _vocab.is_artifact_name(name)
    with pytest.raises(OwnError, match="invalid artifact name") as err:
        _vocab.validate_artifact(name, error=OwnError)
    assert err.value.details == {"artifact": name}


def test_artifact_name_is_app_dash_version_under_all_three_rules():
    assert _vocab.artifact_name("app", "1.2.0-rc1") == "app-1.2.0-rc1"
    with pytest.raises(RolloutError, match="invalid version '1.2.0~rc1'"):
        _vocab.artifact_name("app", "1.2.0~rc1")
    with pytest.raises(RolloutError, match="invalid app name"):
        _vocab.artifact_name("a/b", "1.0")
    with pytest.raises(RolloutError, match="invalid artifact name"):
        _vocab.artifact_name("a" * 150, "1" * 60)


def test_every_version_of_a_good_app_makes_a_good_artifact():
    for version in ("1.2.0", "1.2.0-rc1", "1+b", "v_2.x"):
        assert _vocab.is_artifact_name(f"app-{version}")


# --------------------------------------------------------------------------- release ids


@pytest.mark.parametrize("rid", ["r-42", "2024-05-01T10:00:00Z", "ops@ctl", "app-1.1.0-20240501T100000Z",
                                 "app-rollback-20240501T100000Z", "x" * 128])
def test_release_ids(rid):
    assert _vocab.is_release_id(rid) and _vocab.validate_release_id(rid) == rid


@pytest.mark.parametrize("rid", ["", "a/b", "../x", "a..b", ".r", "has space", "br]acket", "[x", "app-1.2.0~rc1-x",
                                 "x" * 129, None, 42])
def test_bad_release_ids(rid):
    assert not _vocab.is_release_id(rid)
    with pytest.raises(RolloutError, match="invalid release id") as err:
        _vocab.validate_release_id(rid)
    assert err.value.details == {"release_id": rid}


def test_the_option_is_named_in_the_message():
    with pytest.raises(OwnError, match=r"^invalid release_id 'a b': use letters, digits and '\._:@\+-'"):
        _vocab.validate_release_id("a b", "release_id", OwnError)


@pytest.mark.parametrize("raw, safe", [("rel-1", "rel-1"), ("a/b", "a_b"), (".hidden", "hidden"), ("ops@ctl", "ops@ctl"),
                                       ("  r 1 ", "r_1"), ("x" * 300, "x" * 128), (None, ""), ("...", "")])
def test_release_id_dirname(raw, safe):
    assert _vocab.release_id_dirname(raw) == safe


def test_refusal_by_kind():
    assert _vocab.refusal("1.0", "version") == ""
    assert _vocab.refusal("1.0~b", "version", "rollout_version").startswith("invalid rollout_version")
    assert _vocab.refusal("a b", "release_id").startswith("invalid release id")
    assert _vocab.refusal("a/b", "artifact").startswith("invalid artifact name")
    assert _vocab.refusal("a+b", "app").startswith("invalid app name")
    with pytest.raises(RolloutError, match="unknown kind of name 'colour'"):
        _vocab.refusal("x", "colour")


# --------------------------------------------------------------------------- quantities


@pytest.mark.parametrize("value, expected", [(0, (0, False)), (3, (3, False)), ("3", (3, False)), (" 3 ", (3, False)),
                                             ("50%", (50.0, True)), ("16.5 %", (16.5, True)), ("0%", (0.0, True)),
                                             ("100%", (100.0, True))])
def test_quantity_spec(value, expected):
    assert _vocab.parse_quantity_spec(value) == expected


@pytest.mark.parametrize("value", [-1, "-1", "half", "150%", "100.1%", "1.5", 1.5, True, None, "", "%", "+2", "1_0",
                                   "nan%", "1e1%", [2]])
def test_quantity_refused(value):
    with pytest.raises(OwnError, match="count such as 2 or a percentage such as '50%'") as err:
        _vocab.parse_quantity(value, 4, "batch_size", error=OwnError)
    assert err.value.details == {"batch_size": value}
    assert err.value.msg.startswith(f"batch_size {value!r} must be")


@pytest.mark.parametrize("value, total, round_up, expected", [
    (2, 6, True, 2), ("50%", 5, True, 3), ("34%", 6, True, 3), ("100%", 4, True, 4), ("0%", 4, True, 0),
    ("33%", 6, False, 1), ("34%", 6, False, 2), ("1%", 6, False, 1), ("0%", 6, False, 0), ("50%", 6, False, 3),
])
def test_quantity_rounding(value, total, round_up, expected):
    assert _vocab.parse_quantity(value, total, round_up=round_up) == expected
    percent = isinstance(value, str) and value.endswith("%")
    assert _vocab.parse_quantity_counted(value, total, round_up=round_up) == (expected, percent)


def test_lb_and_plan_use_the_one_parser():
    assert _lb.parse_quantity is _vocab.parse_quantity
    with pytest.raises(_plan.PlanError, match="min_ready '150%' must be a count"):
        _plan.parse_count("150%", 6, "min_ready", round_up=True)


# --------------------------------------------------------------------------- outcomes and results


def test_outcome_names_have_one_owner():
    assert _outcome.OUTCOMES is _vocab.OUTCOMES
    assert _outcome.OK_OUTCOMES == ("released", "skipped")
    assert _outcome.FAILED_OUTCOMES == ("rolled_back", "failed", "timed_out", "unreachable")
    assert set(_vocab.OUTCOMES) >= {"not touched", "excluded", "unknown"}
    assert _vocab.RESULTS == ("success", "paused", "failed")


@pytest.mark.parametrize("records, kwargs, expected", [
    ([{"outcome": "released"}, {"outcome": "skipped"}], {}, "success"),
    ([{"outcome": "released"}], {"paused": True}, "paused"),
    ([{"outcome": "released"}], {"halted": True}, "failed"),
    ([{"outcome": "released"}], {"lost": [{"member": "web01"}]}, "failed"),
    ([{"outcome": "released", "lock": "held"}], {}, "failed"),
    ([{"outcome": "rolled_back"}], {}, "failed"),
    ([{"outcome": "rolled_back"}], {"mode": "rollback"}, "success"),
    ([{"outcome": "timed_out"}], {"mode": "rollback"}, "failed"),
    ([{"outcome": "not touched"}], {}, "success"),
])
def test_release_verdict_is_one_of_the_results(records, kwargs, expected):
    assert _outcome.release_verdict(records, **kwargs) == expected
    assert expected in _vocab.RESULTS
