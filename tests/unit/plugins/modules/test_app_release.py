"""Unit tests of the app_release module's own paths (arguments, HTTP errors, results) on a local root.

The layout and state logic is tested in tests/unit/plugins/module_utils/test_release_state.py and the
module end to end on the lab hosts in tests/integration/test_app_release.py.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from module_args import module_result, patch_module_args

from ansible_collections.sre.rollout.plugins.modules import app_release


def run_module(capsys, args: dict, check_mode: bool = False, diff: bool = False) -> dict:
    payload = dict(args)
    if check_mode:
        payload["_ansible_check_mode"] = True
    if diff:
        payload["_ansible_diff"] = True
    with patch_module_args(payload), pytest.raises(SystemExit):
        app_release.main()
    return module_result(capsys.readouterr().out)


@pytest.fixture()
def repo(tmp_path):
    """A local artifact repository (app-1.1.0.tar.gz + SHA256SUMS) over HTTP on loopback."""
    files = tmp_path / "repo"
    files.mkdir()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        data = b"1.1.0\n"
        info = tarfile.TarInfo("VERSION")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    (files / "app-1.1.0.tar.gz").write_bytes(raw.getvalue())
    sha = hashlib.sha256(raw.getvalue()).hexdigest()
    (files / "SHA256SUMS").write_text(f"{sha}  app-1.1.0.tar.gz\n")

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(files)))
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield {"url": f"http://127.0.0.1:{httpd.server_address[1]}", "sha": sha, "dir": files}
    httpd.shutdown()
    httpd.server_close()


def test_stage_then_activate_on_a_new_root(capsys, tmp_path, repo):
    root = tmp_path / "app"
    staged = run_module(capsys, {"root": str(root), "state": "staged", "artifact": "app-1.1.0",
                                 "url": repo["url"] + "/app-1.1.0.tar.gz", "checksum_url": repo["url"] + "/SHA256SUMS",
                                 "release_id": "r1"}, diff=True)
    assert staged["changed"] and staged["staged"] and staged["sha256"] == repo["sha"]
    assert staged["release_dir"] == str(root / "releases" / "app-1.1.0")
    assert staged["diff"] == {"before": {"current": None, "previous": None, "releases": []},
                              "after": {"current": None, "previous": None, "releases": ["app-1.1.0"]}}
    active = run_module(capsys, {"root": str(root), "state": "active", "artifact": "app-1.1.0"})
    assert active["changed"] and active["current"] == "app-1.1.0" and active["previous"] is None
    assert (root / "current").resolve() == (root / "releases" / "app-1.1.0").resolve()


def test_query_on_a_root_that_does_not_exist(capsys, tmp_path):
    result = run_module(capsys, {"root": str(tmp_path / "nowhere")})
    assert result["changed"] is False and result["exists"] is False
    assert result["current"] is None and result["releases"] == [] and result["history"] == []
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("state", ["active", "pruned"])
def test_states_that_need_an_existing_root(capsys, tmp_path, state):
    result = run_module(capsys, {"root": str(tmp_path / "nowhere"), "state": state, "artifact": "app-1.0.0"})
    assert result["failed"] and "does not exist on this host" in result["msg"]


def test_artifact_and_rollback_to_together(capsys, tmp_path):
    result = run_module(capsys, {"root": str(tmp_path), "state": "active", "artifact": "a", "rollback_to": "b"})
    assert result["failed"] and "either artifact" in result["msg"]


def test_bad_release_id(capsys, tmp_path):
    result = run_module(capsys, {"root": str(tmp_path), "release_id": "../x"})
    assert result["failed"] and "invalid release id" in result["msg"]


def test_locked_needs_a_release_id(capsys, tmp_path):
    result = run_module(capsys, {"root": str(tmp_path), "state": "locked"})
    assert result["failed"] and "needs release_id" in result["msg"]


def test_staged_needs_a_source(capsys, tmp_path):
    result = run_module(capsys, {"root": str(tmp_path), "state": "staged", "artifact": "app-1.1.0"})
    assert result["failed"] and "url, src" in result["msg"]


def test_artifact_url_404(capsys, tmp_path, repo):
    result = run_module(capsys, {"root": str(tmp_path / "app"), "state": "staged", "artifact": "app-1.1.0",
                                 "url": repo["url"] + "/missing.tar.gz", "checksum": "sha256:" + repo["sha"]})
    assert result["failed"] and result["msg"].startswith("HTTP 404 ")
    assert f"from {repo['url']}/missing.tar.gz: check" in result["msg"]
    assert result["status"] == 404
    assert list((tmp_path / "app" / "releases").iterdir()) == []


def test_checksum_url_unreachable(capsys, tmp_path):
    result = run_module(capsys, {"root": str(tmp_path / "app"), "state": "staged", "artifact": "app-1.1.0",
                                 "url": "http://127.0.0.1:9/a.tar.gz", "checksum_url": "http://127.0.0.1:9/SHA256SUMS",
                                 "timeout": 2})
    assert result["failed"] and result["msg"].startswith("cannot fetch http://127.0.0.1:9/SHA256SUMS")
    assert not (tmp_path / "app").exists()


def test_check_mode_stage_from_a_missing_src(capsys, tmp_path, repo):
    result = run_module(capsys, {"root": str(tmp_path / "app"), "state": "staged", "artifact": "app-1.1.0",
                                 "src": str(tmp_path / "nope.tar.gz"), "checksum": "sha256:" + repo["sha"]},
                        check_mode=True)
    assert result["failed"] and "is not a file on the host" in result["msg"]


def test_real_stage_from_a_missing_src(capsys, tmp_path, repo):
    result = run_module(capsys, {"root": str(tmp_path / "app"), "state": "staged", "artifact": "app-1.1.0",
                                 "src": str(tmp_path / "nope.tar.gz"), "checksum": "sha256:" + repo["sha"]})
    assert result["failed"] and "cannot read src" in result["msg"]
    assert list((tmp_path / "app" / "releases").iterdir()) == []


def test_skipping_verification_warns(capsys, tmp_path, repo):
    result = run_module(capsys, {"root": str(tmp_path / "app"), "state": "staged", "artifact": "app-1.1.0",
                                 "url": repo["url"] + "/app-1.1.0.tar.gz", "verify_checksum": False})
    assert result["changed"] and result["sha256"] == repo["sha"]
    assert any("without verifying its checksum" in w for w in result["warnings"])


def test_os_errors_become_clear_failures(capsys, tmp_path, repo):
    root = tmp_path / "app"
    root.mkdir()
    (root / "releases").write_text("a file where the releases directory belongs")
    result = run_module(capsys, {"root": str(root), "state": "staged", "artifact": "app-1.1.0",
                                 "url": repo["url"] + "/app-1.1.0.tar.gz", "checksum": "sha256:" + repo["sha"]})
    assert result["failed"] and "check the permissions and free space under root" in result["msg"]
    assert str(root / "releases") in result["msg"]


def test_lock_states_work_on_a_root_whose_current_is_broken(capsys, tmp_path):
    root = tmp_path / "app"
    (root / "current").mkdir(parents=True)  # not a symlink: staging and activating refuse this root
    locked = run_module(capsys, {"root": str(root), "state": "locked", "release_id": "r1", "holder": "ops"})
    assert locked["changed"] and locked["lock"]["release_id"] == "r1"
    refused = run_module(capsys, {"root": str(root), "state": "active", "artifact": "app-1.1.0", "release_id": "r1"})
    assert refused["failed"] and "is not a symlink" in refused["msg"]
    unlocked = run_module(capsys, {"root": str(root), "state": "unlocked", "release_id": "r1"})
    assert unlocked["changed"] and unlocked["lock"] is None


def test_another_release_lock_stops_every_state_that_changes_the_root(capsys, tmp_path):
    root = tmp_path / "app"
    run_module(capsys, {"root": str(root), "state": "locked", "release_id": "r1"})
    for state in ("staged", "active", "pruned"):
        result = run_module(capsys, {"root": str(root), "state": state, "artifact": "app-1.1.0", "release_id": "r2",
                                     "src": str(tmp_path / "a.tar.gz"), "verify_checksum": False})
        assert result["failed"] and "locked by release 'r1'" in result["msg"], state
    assert run_module(capsys, {"root": str(root), "release_id": "r2"})["lock"]["release_id"] == "r1"
