"""Unit tests for the release_plan module: arguments in, exit_json / fail_json out."""

from __future__ import annotations


import pytest
from module_args import module_result, patch_module_args

from ansible_collections.sre.rollout.plugins.modules import release_plan


def run_module(capsys, args: dict, check_mode: bool = False) -> dict:
    """Run release_plan.main() as Ansible would; return the JSON result it printed."""
    payload = dict(args)
    if check_mode:
        payload["_ansible_check_mode"] = True
    with patch_module_args(payload), pytest.raises(SystemExit):
        release_plan.main()
    return module_result(capsys.readouterr().out)


HOSTS = [{"name": f"web{i:02d}", "zone": f"zone-{'abc'[(i - 1) % 3]}"} for i in range(1, 7)]


def test_plan_and_table_returned_and_nothing_changed(capsys):
    result = run_module(capsys, {"hosts": HOSTS, "excluded": {"web06": "unhealthy"}})

    assert result["changed"] is False
    assert "failed" not in result
    assert result["plan"]["canary"] == ["web01"]
    assert result["plan"]["batches"] == [["web02", "web03"], ["web04", "web05"]]
    assert result["plan"]["serial"] == [2, 2]
    assert result["plan"]["excluded"] == [{"host": "web06", "reason": "unhealthy"}]
    assert set(result["plan"]) == {"canary", "batches", "serial", "order", "excluded", "pool_size",
                                   "batch_size", "min_ready", "zones"}
    assert result["table"][3].split() == ["canary", "1", "zone-a", "web01"]


def test_check_mode_gives_the_same_plan(capsys):
    normal = run_module(capsys, {"hosts": HOSTS})
    checked = run_module(capsys, {"hosts": HOSTS}, check_mode=True)
    assert checked["plan"] == normal["plan"]
    assert checked["changed"] is False


def test_plain_names_with_zones_and_string_numbers_from_extra_vars(capsys):
    result = run_module(capsys, {
        "hosts": [h["name"] for h in HOSTS],
        "zones": {h["name"]: h["zone"] for h in HOSTS},
        "canary": "1", "batch_size": "2", "min_ready": "1", "order": "reverse_sorted",
    })
    assert result["plan"]["canary"] == ["web06"]
    assert result["plan"]["zones"]["zone-c"] == ["web06", "web03"]
    assert result["plan"]["serial"] == [2, 2, 1]


def test_batch_of_half_the_pool_fails_with_the_largest_allowed(capsys):
    result = run_module(capsys, {"hosts": HOSTS, "batch_size": "50%"})

    assert result["failed"] is True
    assert "largest allowed is 2" in result["msg"]
    assert result["largest_allowed"] == 2
    assert result["pool_size"] == 6
    assert "plan" not in result


def test_min_ready_failure_names_the_numbers(capsys):
    result = run_module(capsys, {"hosts": HOSTS, "batch_size": 2, "min_ready": 5})
    assert result["failed"] is True
    assert "pool 6 - excluded 0 - 2 = 4" in result["msg"]
    assert result["ready"] == 4 and result["min_ready"] == 5


def test_single_host_allowed_warns(capsys):
    result = run_module(capsys, {"hosts": ["web01"], "allow_single_host": True})
    assert result["plan"]["canary"] == ["web01"] and result["plan"]["batches"] == []
    assert any("single host" in w for w in result["warnings"])


def test_single_host_refused_by_default(capsys):
    result = run_module(capsys, {"hosts": ["web01"]})
    assert result["failed"] is True and "allow_single_host" in result["msg"]


def test_missing_hosts_is_an_argument_error(capsys):
    result = run_module(capsys, {"canary": 1})
    assert result["failed"] is True
    assert "hosts" in result["msg"]


def test_bad_order_choice_is_an_argument_error(capsys):
    result = run_module(capsys, {"hosts": HOSTS, "order": "shuffle"})
    assert result["failed"] is True and "order" in result["msg"]


def test_documentation_lists_every_option_of_the_argument_spec():
    import yaml

    doc = yaml.safe_load(release_plan.DOCUMENTATION)
    assert set(doc["options"]) == set(release_plan.ARGUMENT_SPEC)
    for name, spec in release_plan.ARGUMENT_SPEC.items():
        assert doc["options"][name]["type"] == spec["type"], name
        assert doc["options"][name].get("default") == spec.get("default"), name
    returned = yaml.safe_load(release_plan.RETURN)
    assert set(returned["plan"]["contains"]) == {"canary", "batches", "serial", "order", "excluded",
                                                 "pool_size", "batch_size", "min_ready", "zones"}
    yaml.safe_load(release_plan.EXAMPLES)
