"""Inputs the hosts could not stage are refused by the release before any change, by the modules' own rule.

``rollout_version=1.2.0~rc1`` used to pass the role's check and then fail staging on every host
(app_release refuses '~' in an artifact name). The role now checks the version, the artifact name
and the release id with the rules of module_utils/_vocab.py, in its context, before preflight
touches anything.
"""

from __future__ import annotations

from pathlib import Path

import labkit
from release_checks import active_silences, assert_all_serving, haproxy_states, locks, release_id, staged, versions


def _fleet(lab: dict) -> dict:
    """Everything a release could change on the hosts and in front of them."""
    hosts = {}
    for h in lab["hosts"]:
        root = Path(h["root"])
        hosts[h["name"]] = {
            "state": (root / ".rollout" / "state.json").read_bytes(),
            "current": (root / "current").readlink(),
            "releases": staged(h),
            "work": sorted(p.name for p in (root / "releases").iterdir() if p.name.startswith(".")),
        }
    return {"hosts": hosts, "versions": versions(lab), "haproxy": haproxy_states(lab), "locks": locks(lab),
            "silences": [s["id"] for s in active_silences(lab)]}


def test_a_version_the_hosts_cannot_stage_is_refused_before_any_change(lab, ansible):
    before = _fleet(lab)
    rid = release_id("tilde")
    with labkit.LoadRun(lab["haproxy"]["url"], rate=20) as load:
        run = ansible.playbook("playbooks/release.yml", extravars={
            "rollout_version": "1.2.0~rc1", "rollout_approval": "none", "rollout_release_id": rid})
    assert run.rc != 0
    assert load.summary["errors"] == 0, load.summary
    out = run.stdout
    assert "Context | Check the requested version" in out, out[-3000:]
    assert "invalid rollout_version '1.2.0~rc1' ('~' cannot be staged: write '1.2.0-rc1')" in out, out[-3000:]
    assert "letters, digits and '._+-'" in out
    assert "nothing was changed on any host" in out
    # refused in the context, on the controller: no host play ran, preflight never staged
    assert "Preflight | Check every target host" not in out or "skipping: no hosts matched" in out
    for h in lab["hosts"]:
        assert f"[{h['name']}]" not in out, f"a task ran on {h['name']}"
    assert _fleet(lab) == before, "the refused release changed something"
    assert not (labkit.REPO / ".rollout" / "ledger" / f"{rid}.json").exists()
    assert all("~" not in name for h in lab["hosts"] for name in staged(h))
    assert_all_serving(lab)
