"""The role's checks of release names: the sre.rollout test plugins and the vocab_refusal filter, and
the release role's context refusing what the modules would refuse on the hosts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.sre.rollout.plugins.filter.vocab import FilterModule, vocab_refusal
from ansible_collections.sre.rollout.plugins.module_utils import _release_state, _vocab
from ansible_collections.sre.rollout.plugins.test import vocab as vocab_tests

REPO = Path(__file__).resolve().parents[4]
TESTS = vocab_tests.TestModule().tests()


def test_the_plugins_are_registered_under_their_documented_names():
    assert set(TESTS) == {"release_id", "version", "artifact_name", "app_name"}
    assert set(FilterModule().filters()) == {"vocab_refusal"}
    docs = [REPO / "plugins" / "test" / f"{name}.yml" for name in TESTS] + [REPO / "plugins" / "filter" / "vocab_refusal.yml"]
    for path in docs:
        doc = yaml.safe_load(path.read_text())["DOCUMENTATION"]
        assert doc["name"] == path.stem
        assert all(isinstance(line, str) for line in doc["description"]), path  # no "key: value" slipped in


@pytest.mark.parametrize("test, good, bad", [
    ("version", ["1.2.0", "1.2.0-rc1", "2+b.7"], ["1.2.0~rc1", "", "1..2", "-1", None, 12]),
    ("artifact_name", ["app-1.2.0", "app-1.2.0-rc1"], ["app-1.2.0~rc1", "a/b", ".x", "x" * 201]),
    ("release_id", ["r-1", "ops@ctl", "2024-05-01T10:00:00Z"], ["a b", "a~b", "../x", "x" * 129]),
    ("app_name", ["app", "my-app"], ["my+app", "a/b", ""]),
])
def test_tests_follow_the_vocabulary(test, good, bad):
    assert all(TESTS[test](value) for value in good)
    assert not any(TESTS[test](value) for value in bad)


@pytest.mark.parametrize("name", ["app-1.2.0~rc1", "app-1.2.0-rc1", "app..1", "app-1.1.0"])
def test_the_artifact_test_is_the_rule_the_module_applies(name):
    try:
        _release_state.validate_artifact(name)
        accepted = True
    except _release_state.ReleaseStateError:
        accepted = False
    assert TESTS["artifact_name"](name) is accepted


def test_refusal_filter_says_what_is_wrong_or_nothing():
    assert vocab_refusal("1.2.0", "version") == ""
    message = vocab_refusal("1.2.0~rc1", "version", "rollout_version")
    assert message == _vocab.version_refusal("1.2.0~rc1", "rollout_version")
    assert "write '1.2.0-rc1'" in message and "letters, digits and '._+-'" in message
    assert vocab_refusal("a b", "release_id", "rollout_release_id").startswith("invalid rollout_release_id 'a b'")
    assert vocab_refusal("x/y", "artifact").startswith("invalid artifact name")
    with pytest.raises(AnsibleFilterError, match="unknown kind of name"):
        vocab_refusal("x", "colour")


def _context(tmp_path: Path, **extra_vars: str) -> subprocess.CompletedProcess:
    playbook = tmp_path / "context.yml"
    playbook.write_text("- hosts: localhost\n  gather_facts: false\n  tasks:\n"
                        "    - ansible.builtin.include_role:\n        name: sre.rollout.release\n"
                        "        tasks_from: context\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "SRE_ROLLOUT_"))}
    env.update({"ANSIBLE_COLLECTIONS_PATH": str(REPO / ".collections"), "ANSIBLE_NOCOLOR": "1",
                "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"), "ANSIBLE_HOME": str(tmp_path / "home")})
    args = [str(REPO / ".venv" / "bin" / "ansible-playbook"), "-i", "localhost,", "-c", "local",
            "-e", f"ansible_python_interpreter={sys.executable}", str(playbook)]
    for key, value in extra_vars.items():
        args += ["-e", f"{key}={value}"]
    return subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env, check=False)


@pytest.mark.slow
def test_the_role_refuses_a_version_the_hosts_cannot_stage(tmp_path):
    proc = _context(tmp_path, rollout_version="1.2.0~rc1")
    assert proc.returncode != 0
    assert "Context | Check the requested version" in proc.stdout
    assert "invalid rollout_version '1.2.0~rc1' ('~' cannot be staged: write '1.2.0-rc1')" in proc.stdout
    assert "nothing was changed on any host" in proc.stdout


@pytest.mark.slow
def test_the_role_accepts_the_same_version_written_the_way_hosts_stage_it(tmp_path):
    proc = _context(tmp_path, rollout_version="1.2.0-rc1")
    assert proc.returncode == 0, proc.stdout[-3000:]


@pytest.mark.slow
def test_the_role_refuses_a_release_id_by_the_modules_rule(tmp_path):
    proc = _context(tmp_path, rollout_version="1.2.0", rollout_release_id="r~1")
    assert proc.returncode != 0
    assert "invalid rollout_release_id 'r~1'" in proc.stdout
