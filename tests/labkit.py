"""Test helpers for the lab: read lab.json, drive load, run Ansible.

Used by tests/conftest.py; importable by any test as ``import labkit``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
LOAD_PY = REPO / "tests" / "lab" / "load.py"
# The venv running the tests: .venv, or the .venv-core-<version> of `make test-matrix`; its
# ansible-playbook and ansible-core are the ones under test.
VENV_BIN = Path(sys.executable).parent


def lab_dir() -> Path:
    return Path(os.environ.get("LAB_DIR", str(REPO / ".lab"))).resolve()


def load_lab() -> dict:
    path = lab_dir() / "lab.json"
    if not path.exists():
        raise AssertionError(f"the lab is not up ({path} missing): run `make lab-up` first")
    return json.loads(path.read_text())


def is_production(lab: dict) -> bool:
    """The lab runs LAB_PROFILE=production (HTTPS, basic auth, LB names unlike the inventory)."""
    return lab.get("profile", "default") == "production"


def monitoring_password(lab: dict, service: str) -> str:
    """The lab's password for ``alertmanager`` / ``prometheus`` (empty on the default profile)."""
    f = lab[service].get("password_file")
    return Path(f).read_text().strip() if f else ""


def monitoring_args(lab: dict, service: str) -> dict:
    """The module options that reach the lab's Alertmanager / Prometheus: url, and on the production
    profile its CA and credentials."""
    args = {"url": lab[service]["url"]}
    if is_production(lab):
        args.update({"ca_path": lab[service]["ca_path"], "username": lab[service]["username"],
                     "password": monitoring_password(lab, service)})
    return args


def monitoring_open(lab: dict, service: str, path: str, method: str = "GET", data: bytes | None = None,
                    headers: dict | None = None, auth: bool = True, timeout: float = 10):
    """urlopen a path of the lab's Alertmanager / Prometheus with the profile's CA and credentials."""
    import base64
    import ssl
    import urllib.request

    req = urllib.request.Request(lab[service]["url"] + path, data=data, method=method, headers=headers or {})
    ctx = None
    if is_production(lab):
        ctx = ssl.create_default_context(cafile=lab[service]["ca_path"])
        if auth:
            raw = f"{lab[service]['username']}:{monitoring_password(lab, service)}".encode()
            req.add_header("Authorization", "Basic " + base64.b64encode(raw).decode())
    return urllib.request.urlopen(req, timeout=timeout, context=ctx)


def ansible_env(extra: dict | None = None) -> dict:
    """Environment for ansible-* commands run from the checkout against the lab."""
    env = dict(os.environ)
    env["PATH"] = str(VENV_BIN) + os.pathsep + env.get("PATH", "")
    env["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
    env["LAB_DIR"] = str(lab_dir())
    env.setdefault("ANSIBLE_FORCE_COLOR", "0")
    env.setdefault("ANSIBLE_NOCOLOR", "1")
    # one message, one line: tests search the output for whole error messages
    env.setdefault("ANSIBLE_CALLBACK_RESULT_FORMAT", "json")
    if extra:
        env.update(extra)
    return env


class LoadRun:
    """Constant load through a URL while the ``with`` block runs.

    Half the rate (``keepalive_share``) comes from clients that keep their connection alive and reuse
    it without probing or retrying, half from clients that open a fresh connection per request.
    ``summary`` holds load.py's JSON once the block exits; ``errors`` is the total of non-2xx
    answers and connection errors of both kinds, ``by_kind`` the same per client kind with its
    ``failures`` per kind of failure (refused, reset, closed, timeout, non_2xx, other).
    """

    def __init__(self, url: str, rate: float = 40, path: str = "/", max_seconds: int = 900,
                 timeout: float = 10.0, concurrency: int = 16, events: bool = False,
                 keepalive_share: float = 0.5, keepalive_clients: int = 8) -> None:
        self.url = url.rstrip("/") + path
        self.rate = rate
        self.keepalive_share = keepalive_share
        self.keepalive_clients = keepalive_clients
        self.max_seconds = max_seconds
        self.timeout = timeout
        self.concurrency = concurrency
        self.events_file = Path(tempfile.mkstemp(prefix="load-events-", suffix=".jsonl")[1]) if events else None
        self.summary: dict[str, Any] = {}
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> "LoadRun":
        cmd = [sys.executable, str(LOAD_PY), "--url", self.url, "--rate", str(self.rate),
               "--duration", str(self.max_seconds), "--timeout", str(self.timeout),
               "--concurrency", str(self.concurrency), "--keepalive-share", str(self.keepalive_share),
               "--keepalive-clients", str(self.keepalive_clients)]
        if self.events_file:
            cmd += ["--events", str(self.events_file)]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)  # let the first requests flow before the caller acts
        return self

    def stop(self) -> dict:
        if self._proc is None:
            return self.summary
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
        out, err = self._proc.communicate(timeout=60)
        self._proc = None
        try:
            self.summary = json.loads(out)
        except json.JSONDecodeError as exc:
            raise AssertionError(f"load.py printed no JSON: {out!r} {err!r}") from exc
        return self.summary

    def __exit__(self, *exc) -> None:
        self.stop()

    def failures(self) -> dict[str, dict[str, int]]:
        """Failures per client kind and per kind of failure: ``{"keepalive": {"closed": 2, ...}, ...}``."""
        return {kind: dict(counts["failures"]) for kind, counts in self.summary.get("by_kind", {}).items()}

    def describe(self) -> str:
        """One line per client kind: requests, failures per kind (for messages and summaries)."""
        return describe_load(self.summary)

    def events(self) -> list[dict]:
        if not self.events_file:
            return []
        return [json.loads(line) for line in self.events_file.read_text().splitlines() if line.strip()]


def describe_load(summary: dict) -> str:
    """load.py's JSON as one line per client kind: requests, errors and the failures that are not 0."""
    lines = []
    for kind, counts in summary.get("by_kind", {}).items():
        failed = {k: v for k, v in counts["failures"].items() if v}
        lines.append(f"{kind:9s} requests={counts['requests']} ok={counts['ok']} errors={counts['errors']} "
                     f"failures={failed or 0} p99={counts['p99_ms']}ms")
    return "\n".join(lines)


@dataclass
class RunResult:
    rc: int
    status: str
    stdout: str
    events: list[dict] = field(default_factory=list)

    def results(self, task: str | None = None, host: str | None = None) -> list[dict]:
        """Task results (``res`` of runner_on_ok/failed/skipped), filtered by task name/host."""
        out = []
        for ev in self.events:
            if ev.get("event") not in ("runner_on_ok", "runner_on_failed", "runner_on_skipped",
                                       "runner_on_unreachable", "runner_item_on_ok", "runner_item_on_failed"):
                continue
            data = ev.get("event_data", {})
            if task is not None and data.get("task") != task:
                continue
            if host is not None and data.get("host") != host:
                continue
            res = dict(data.get("res") or {})
            res["_event"] = ev["event"]
            # with ignore_errors the runner event's result has no "failed" key: derive it
            res.setdefault("failed", ev["event"] in ("runner_on_failed", "runner_item_on_failed"))
            res["_host"] = data.get("host")
            res["_task"] = data.get("task")
            out.append(res)
        return out

    def stats(self) -> dict:
        for ev in reversed(self.events):
            if ev.get("event") == "playbook_on_stats":
                return ev.get("event_data", {})
        return {}


class Ansible:
    """Run modules and playbooks against the lab inventory with ansible-runner."""

    def __init__(self, inventory: str | None = None) -> None:
        self.inventory = inventory or str(REPO / "inventories" / "lab")

    def playbook(self, playbook: str | list, extravars: dict | None = None, limit: str | None = None,
                 check: bool = False, diff: bool = False, envvars: dict | None = None,
                 timeout: int | None = None, inventory: str | None = None) -> RunResult:
        import ansible_runner  # only the integration tests need it

        cmdline = []
        lab_vars = lab_dir() / "lab_vars.json"
        if lab_vars.exists():  # the lab's description as static vars, whichever LAB_DIR runs
            cmdline += ["-e", f"@{lab_vars}"]
        if check:
            cmdline.append("--check")
        if diff:
            cmdline.append("--diff")
        if isinstance(playbook, str) and not os.path.isabs(playbook):
            playbook = str(REPO / playbook)
        with tempfile.TemporaryDirectory(prefix="runner-") as pdd:
            env = {k: v for k, v in ansible_env(envvars).items()
                   if k.startswith(("ANSIBLE_", "LAB_", "SRE_", "PATH"))}
            kwargs: dict[str, Any] = dict(
                private_data_dir=pdd, playbook=playbook, inventory=inventory or self.inventory,
                extravars=extravars or {}, envvars=env, quiet=True, limit=limit,
                cmdline=" ".join(cmdline) or None, timeout=timeout,
                project_dir=str(REPO),
            )
            r = ansible_runner.run(**kwargs)
            events = list(r.events)
            stdout = r.stdout.read()
            return RunResult(rc=r.rc, status=r.status, stdout=stdout, events=events)

    def module(self, module: str, args: dict | None = None, hosts: str = "localhost", check: bool = False,
               diff: bool = False, envvars: dict | None = None, gather_facts: bool = False) -> dict[str, dict]:
        """Run one module on ``hosts``; return ``{host: result}`` (result has ``failed``/``changed``)."""
        if "." not in module:
            module = f"sre.rollout.{module}"
        play = [{
            "name": "run one module",
            "hosts": hosts,
            "gather_facts": gather_facts,
            "tasks": [{"name": "the module", module: args or {}, "ignore_errors": True}],
        }]
        run = self.playbook(play, check=check, diff=diff, envvars=envvars)
        out = {r["_host"]: r for r in run.results(task="the module")}
        if not out:
            raise AssertionError(f"no result from {module}: rc={run.rc}\n{run.stdout[-4000:]}")
        return out


def ansible_playbook_cmd(playbook: str | Path, *args: str) -> list[str]:
    """The ansible-playbook command line against this process's lab (whichever LAB_DIR).

    The lab inventory finds the hosts of any LAB_DIR through the CMDB file; the lab's description
    (ssh key, known_hosts, LB and Alertmanager addresses) comes with ``-e @$LAB_DIR/lab_vars.json``.
    """
    cmd = [str(VENV_BIN / "ansible-playbook"), "-i", str(REPO / "inventories" / "lab"),
           str(REPO / playbook), *args]
    lab_vars = lab_dir() / "lab_vars.json"
    if lab_vars.exists():
        cmd += ["-e", f"@{lab_vars}"]
    return cmd


def ansible_playbook_cli(playbook: str, *args: str, envvars: dict | None = None,
                         timeout: int = 1200) -> subprocess.CompletedProcess:
    """Run the ansible-playbook command line, as a user would."""
    return subprocess.run(ansible_playbook_cmd(playbook, *args), cwd=REPO, env=ansible_env(envvars),
                          capture_output=True, text=True, timeout=timeout, check=False)


def galaxy_version() -> str:
    """The collection's version, from galaxy.yml."""
    import yaml

    return str(yaml.safe_load((REPO / "galaxy.yml").read_text())["version"])


def build_collection(output_dir: Path) -> Path:
    """``ansible-galaxy collection build`` of this checkout; the tarball ansible-galaxy wrote."""
    proc = subprocess.run([str(REPO / ".venv" / "bin" / "ansible-galaxy"), "collection", "build", "--force",
                           "--output-path", str(output_dir), str(REPO)],
                          capture_output=True, text=True, timeout=300, env=ansible_env(), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [tarball] = list(Path(output_dir).glob("sre-rollout-*.tar.gz"))
    assert f"Created collection for sre.rollout at {tarball}" in proc.stdout, proc.stdout
    return tarball
