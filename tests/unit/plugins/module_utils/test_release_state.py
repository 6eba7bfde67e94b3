"""Unit tests of the release root and state file logic (plugins/module_utils/_release_state.py)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from ansible_collections.sre.rollout.plugins.module_utils import _release_state as rs
from ansible_collections.sre.rollout.plugins.module_utils._common import RolloutError

# ------------------------------------------------------------------ helpers


def make_tarball(path: Path, files: dict[str, bytes] | None = None, extra=None) -> str:
    """A gzip tarball with ``files`` at top level; ``extra(tar)`` may add odd members. Returns its sha256."""
    files = files if files is not None else {"VERSION": b"1.1.0\n", "bin/start": b"#!/bin/sh\n", "app.py": b"x"}
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755 if name.startswith("bin/") else 0o644
            tar.addfile(info, io.BytesIO(data))
        if extra:
            extra(tar)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def file_opener(path: Path, size_override: int | None = None):
    def _open():
        return open(path, "rb"), (path.stat().st_size if size_override is None else size_override)
    return _open


def tree(root: Path) -> dict[str, str]:
    """Every path under root → its kind and content (links by target), to compare before/after."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = "file:" + hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture()
def root(tmp_path: Path) -> rs.ReleaseRoot:
    """An app root like the lab's: app-1.0.0 staged and current, state file in the lab's format."""
    path = tmp_path / "app"
    rel = path / "releases" / "app-1.0.0"
    (rel / "bin").mkdir(parents=True)
    (rel / "VERSION").write_text("1.0.0\n")
    (rel / ".rollout-complete").write_text(json.dumps({"sha256": "a" * 64}) + "\n")
    (path / "shared" / "logs").mkdir(parents=True)
    (path / "current").symlink_to("releases/app-1.0.0")
    (path / ".rollout").mkdir()
    (path / ".rollout" / "state.json").write_text(json.dumps({
        "version": 1, "current": "app-1.0.0", "previous": None,
        "releases": {"app-1.0.0": {"sha256": "a" * 64, "staged_at": "2024-01-01T00:00:00Z", "complete": True}},
        "history": [{"artifact": "app-1.0.0", "action": "activate", "release_id": "lab-init",
                     "time": "2024-01-01T00:00:00Z", "outcome": "ok"}]}))
    return rs.ReleaseRoot(str(path))


def fresh(root: rs.ReleaseRoot) -> rs.ReleaseRoot:
    """The root with its state read again from disk (what the next task on the host would see)."""
    root.load()
    return root


def stage_file(root: rs.ReleaseRoot, tmp_path: Path, artifact: str, files=None, expected: str | None = "auto",
               **kwargs) -> dict:
    tarball = tmp_path / f"{artifact}.tar.gz"
    sha = make_tarball(tarball, files)
    root.load()
    req = rs.StageRequest(artifact=artifact, opener=file_opener(tarball),
                          expected_sha256=sha if expected == "auto" else expected, source=str(tarball), **kwargs)
    info = root.stage(req)
    root.save()
    return info


# -------------------------------------------------------------------- names


@pytest.mark.parametrize("name", ["app-1.1.0", "app_2", "App+build.7", "1.0"])
def test_valid_artifact_names(name):
    assert rs.validate_artifact(name) == name


@pytest.mark.parametrize("name", ["", "..", "../etc", "a/b", ".hidden", "app..1", "a b", "x" * 201, None, 7])
def test_invalid_artifact_names_are_refused(name):
    with pytest.raises(rs.ReleaseStateError, match="invalid artifact name"):
        rs.validate_artifact(name)


def test_release_state_error_is_a_rollout_error():
    with pytest.raises(RolloutError) as err:
        rs.validate_artifact("../x")
    assert err.value.details == {"artifact": "../x"}


@pytest.mark.parametrize("rid", ["r-42", "2024-05-01T10:00:00Z", "ops@ctl"])
def test_valid_release_ids(rid):
    assert rs.validate_release_id(rid) == rid


@pytest.mark.parametrize("rid", ["", "a/b", "../x", None, "x" * 129])
def test_invalid_release_ids_are_refused(rid):
    with pytest.raises(rs.ReleaseStateError, match="invalid release id"):
        rs.validate_release_id(rid)


@pytest.mark.parametrize("path", ["", "/etc", "..", "../x", "a/../../x", "."])
def test_invalid_shared_paths_are_refused(path):
    with pytest.raises(rs.ReleaseStateError, match="invalid shared path"):
        rs.validate_relative_path(path, "shared path")


def test_parse_checksum():
    assert rs.parse_checksum("sha256:" + "AB" * 32) == "ab" * 32
    for bad in ("md5:" + "a" * 32, "sha256:xyz", "a" * 64, "", None):
        with pytest.raises(rs.ReleaseStateError, match="invalid checksum"):
            rs.parse_checksum(bad)


def test_find_in_sha256sums_text_binary_and_dot_slash():
    text = f"{'1' * 64}  app-1.0.0.tar.gz\n{'2' * 64} *app-1.1.0.tar.gz\n{'3' * 64}  ./app-1.2.0.tar.gz\ngarbage\n"
    assert rs.find_in_sha256sums(text, "app-1.0.0.tar.gz") == "1" * 64
    assert rs.find_in_sha256sums(text, "app-1.1.0.tar.gz") == "2" * 64
    assert rs.find_in_sha256sums(text, "app-1.2.0.tar.gz") == "3" * 64


def test_find_in_sha256sums_missing_line_says_what_to_do():
    with pytest.raises(rs.ReleaseStateError, match="has no line for 'app-9.tar.gz'.*checksum="):
        rs.find_in_sha256sums(f"{'1' * 64}  app-1.0.0.tar.gz\n", "app-9.tar.gz", "http://x/SHA256SUMS")


# --------------------------------------------------------------- state file


def test_load_state_reads_the_lab_format(root):
    state = fresh(root).state
    assert state["current"] == "app-1.0.0" and state["previous"] is None
    assert state["releases"]["app-1.0.0"]["complete"] is True
    assert state["history"][0]["release_id"] == "lab-init"


def test_load_state_missing_file_is_empty(tmp_path):
    assert rs.ReleaseRoot(str(tmp_path / "nowhere")).state == rs.empty_state()


def test_load_state_bad_json_and_version(root):
    Path(root.state_file).write_text("{not json")
    with pytest.raises(rs.ReleaseStateError, match="not valid JSON.*move it away"):
        root.load()
    Path(root.state_file).write_text(json.dumps({"version": 2}))
    with pytest.raises(rs.ReleaseStateError, match="version 2"):
        root.load()


def test_save_state_is_atomic_and_caps_history(root):
    state = fresh(root).state
    for i in range(rs.HISTORY_LIMIT + 10):
        root.add_history("app-1.0.0", "activate", f"r{i}")
    root.save()
    saved = json.loads(Path(root.state_file).read_text())
    assert len(saved["history"]) == rs.HISTORY_LIMIT
    assert saved["history"][-1]["release_id"] == f"r{rs.HISTORY_LIMIT + 9}"
    assert os.listdir(root.rollout_dir) == ["state.json"]


def test_reconcile_current_trusts_the_symlink(root):
    state = fresh(root).state
    state["current"] = "app-0.9"
    warnings = root.reconcile_current()
    assert state["current"] == "app-1.0.0"
    assert "symlink points at 'app-1.0.0'" in warnings[0]


def test_current_artifact_outside_releases_is_refused(root, tmp_path):
    os.unlink(root.current_link)
    os.symlink(str(tmp_path), root.current_link)
    with pytest.raises(rs.ReleaseStateError, match="outside"):
        root.current_artifact()


def test_current_that_is_a_directory_is_refused(root):
    os.unlink(root.current_link)
    os.mkdir(root.current_link)
    with pytest.raises(rs.ReleaseStateError, match="not a symlink"):
        root.current_artifact()
    with pytest.raises(rs.ReleaseStateError, match="real directory"):
        root.swap_current("app-1.0.0")


# ------------------------------------------------------------------ staging


def test_stage_unpacks_marks_and_records(root, tmp_path):
    info = stage_file(root, tmp_path, "app-1.1.0", release_id="r1")
    rel = Path(root.release_dir("app-1.1.0"))
    assert (rel / "VERSION").read_text() == "1.1.0\n"
    assert os.access(rel / "bin" / "start", os.X_OK)
    marker = json.loads((rel / rs.MARKER).read_text())
    assert marker["sha256"] == info["sha256"] and marker["artifact"] == "app-1.1.0"
    state = fresh(root).state
    assert state["releases"]["app-1.1.0"]["complete"] is True
    assert state["releases"]["app-1.1.0"]["sha256"] == info["sha256"]
    assert state["history"][-1] == {**state["history"][-1], "artifact": "app-1.1.0", "action": "stage",
                                    "release_id": "r1", "outcome": "ok"}
    assert state["current"] == "app-1.0.0"  # staging never switches
    assert root.work_leftovers() == []


def test_stage_plan_is_idempotent_and_guards_the_name(root, tmp_path):
    info = stage_file(root, tmp_path, "app-1.1.0")
    state = fresh(root).state
    assert root.stage_plan("app-1.1.0", info["sha256"])["sha256"] == info["sha256"]
    assert root.stage_plan("app-1.1.0", None) is not None
    assert root.stage_plan("app-1.2.0", "b" * 64) is None
    with pytest.raises(rs.ReleaseStateError, match="same artifact name must always mean the same bits"):
        root.stage_plan("app-1.1.0", "b" * 64)


def test_checksum_mismatch_changes_nothing(root, tmp_path):
    before = tree(Path(root.root))
    with pytest.raises(rs.ReleaseStateError, match="checksum mismatch.*nothing was changed") as err:
        stage_file(root, tmp_path, "app-1.1.0", expected="0" * 64)
    assert err.value.details["expected_sha256"] == "0" * 64
    assert tree(Path(root.root)) == before


def test_interrupted_download_leaves_nothing_activatable(root, tmp_path):
    class Broken:
        """A response that delivers 11 bytes, then the peer resets (plain read(), no read1())."""

        def __init__(self):
            self.sent = 0

        def read(self, n=-1):
            if self.sent:
                raise ConnectionResetError("peer reset")
            self.sent = 11
            return b"x" * 11

        def close(self):
            pass

    state = fresh(root).state
    req = rs.StageRequest("app-1.1.0", lambda: (Broken(), 100), None, "http://x/a.tar.gz")
    with pytest.raises(rs.ReleaseStateError, match="download interrupted after 11 bytes"):
        root.stage(req)
    assert not os.path.exists(root.release_dir("app-1.1.0"))
    assert root.work_leftovers() == []
    with pytest.raises(rs.ReleaseStateError, match="not staged"):
        fresh(root).ensure_activatable("app-1.1.0")


def test_truncated_download_is_refused(root, tmp_path):
    tarball = tmp_path / "a.tar.gz"
    make_tarball(tarball)
    req = rs.StageRequest("app-1.1.0", file_opener(tarball, size_override=tarball.stat().st_size + 5), None, "x")
    with pytest.raises(rs.ReleaseStateError, match="download truncated"):
        fresh(root).stage(req)
    assert not os.path.exists(root.release_dir("app-1.1.0"))


def test_download_deadline(root, tmp_path):
    tarball = tmp_path / "a.tar.gz"
    make_tarball(tarball)
    req = rs.StageRequest("app-1.1.0", file_opener(tarball), None, "x", download_timeout=-1)
    with pytest.raises(rs.ReleaseStateError, match="download_timeout"):
        fresh(root).stage(req)
    assert root.work_leftovers() == []


def test_killed_stage_leftovers_are_never_activated_and_are_cleaned(root, tmp_path):
    # What a SIGKILL mid-stage leaves: a partial download and a half-unpacked staging directory,
    # plus an incomplete directory under the final name (e.g. from an older tool).
    releases = Path(root.releases_dir)
    (releases / ".tmp-app-1.1.0-dead").write_bytes(b"partial")
    (releases / ".staging-app-1.1.0-dead" / "bin").mkdir(parents=True)
    (releases / "app-1.1.0").mkdir()
    (releases / "app-1.1.0" / "VERSION").write_text("half")
    state = fresh(root).state
    assert root.release_dirs() == {"app-1.0.0": True, "app-1.1.0": False}
    with pytest.raises(rs.ReleaseStateError, match="not completely staged"):
        root.ensure_activatable("app-1.1.0")
    assert root.stage_plan("app-1.1.0", None) is None  # must be staged again
    info = stage_file(root, tmp_path, "app-1.1.0")
    assert sorted(Path(p).name for p in info["cleaned"]) == [".staging-app-1.1.0-dead", ".tmp-app-1.1.0-dead"]
    assert root.release_dirs() == {"app-1.0.0": True, "app-1.1.0": True}
    assert (releases / "app-1.1.0" / "VERSION").read_text() == "1.1.0\n"
    assert sorted(os.listdir(releases)) == ["app-1.0.0", "app-1.1.0"]


def test_state_record_marked_incomplete_is_not_activatable(root):
    state = fresh(root).state
    state["releases"]["app-1.0.0"]["complete"] = False
    with pytest.raises(rs.ReleaseStateError, match="not completely staged"):
        root.ensure_activatable("app-1.0.0")


def test_restaging_the_incomplete_current_release_is_refused(root):
    os.unlink(root.marker("app-1.0.0"))
    with pytest.raises(rs.ReleaseStateError, match="is current but not completely staged"):
        fresh(root).stage_plan("app-1.0.0", None)


def test_not_enough_space_fails_before_writing(root, tmp_path, monkeypatch):
    monkeypatch.setattr(rs, "free_bytes", lambda path: 1000)
    before = tree(Path(root.root))
    with pytest.raises(rs.ReleaseStateError, match="not enough disk space.*for the download") as err:
        stage_file(root, tmp_path, "app-1.1.0", reserve_bytes=990)
    assert err.value.details["free_bytes"] == 1000 and err.value.details["reserve_bytes"] == 990
    assert tree(Path(root.root)) == before


def test_not_enough_space_to_unpack(root, tmp_path, monkeypatch):
    tarball = tmp_path / "big.tar.gz"
    sha = make_tarball(tarball, {"blob": b"\0" * 2_000_000})  # compresses to almost nothing
    monkeypatch.setattr(rs, "free_bytes", lambda path: 1_000_000)
    req = rs.StageRequest("app-1.1.0", file_opener(tarball), sha, "x")
    with pytest.raises(rs.ReleaseStateError, match="for unpacking"):
        fresh(root).stage(req)
    assert sorted(os.listdir(root.releases_dir)) == ["app-1.0.0"]


def test_enospc_while_writing_is_reported_and_cleaned(root, tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(rs, "unpack", full)
    with pytest.raises(rs.ReleaseStateError, match="no space left"):
        stage_file(root, tmp_path, "app-1.1.0")
    assert sorted(os.listdir(root.releases_dir)) == ["app-1.0.0"]


def _add_symlink(name, target):
    def add(tar):
        info = tarfile.TarInfo(name)
        info.type = tarfile.SYMTYPE
        info.linkname = target
        tar.addfile(info)
    return add


def _add_fifo(tar):
    info = tarfile.TarInfo("pipe")
    info.type = tarfile.FIFOTYPE
    tar.addfile(info)


@pytest.mark.parametrize("files,extra,message", [
    ({"../evil": b"x"}, None, "outside the release directory"),
    ({"/etc/evil": b"x"}, None, "outside the release directory"),
    ({"ok": b"x"}, _add_symlink("esc", "../../../etc"), "links to '../../../etc'"),
    ({"ok": b"x"}, _add_symlink("abs", "/etc/passwd"), "links to '/etc/passwd'"),
    ({"ok": b"x"}, _add_fifo, "special file"),
])
def test_unsafe_archives_are_refused(root, tmp_path, files, extra, message):
    tarball = tmp_path / "bad.tar.gz"
    sha = make_tarball(tarball, files, extra)
    before = tree(Path(root.root))
    with pytest.raises(rs.ReleaseStateError, match=message):
        fresh(root).stage(rs.StageRequest("app-1.1.0", file_opener(tarball), sha, "x"))
    assert tree(Path(root.root)) == before
    assert not (tmp_path / "evil").exists()


def test_links_inside_the_release_are_kept(root, tmp_path):
    tarball = tmp_path / "ok.tar.gz"
    sha = make_tarball(tarball, {"bin/real": b"x"}, _add_symlink("bin/alias", "real"))
    fresh(root).stage(rs.StageRequest("app-1.1.0", file_opener(tarball), sha, "x"))
    assert os.readlink(Path(root.release_dir("app-1.1.0")) / "bin" / "alias") == "real"


def test_not_a_tarball(root, tmp_path):
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"<html>404</html>")
    with pytest.raises(rs.ReleaseStateError, match="not a readable tar archive"):
        fresh(root).stage(rs.StageRequest("app-1.1.0", file_opener(junk), None, "x"))
    assert sorted(os.listdir(root.releases_dir)) == ["app-1.0.0"]


def test_shared_paths_are_linked_into_shared(root, tmp_path):
    Path(root.shared_dir, "config").mkdir()
    Path(root.shared_dir, "config", "app.env").write_text("A=1\n")
    info = stage_file(root, tmp_path, "app-1.1.0", files={"logs/README": b"from the artifact", "app.py": b"x"},
                      shared_paths=("logs", "config/app.env", "data"))
    rel = Path(root.release_dir("app-1.1.0"))
    assert (rel / "logs").is_symlink() and os.readlink(rel / "logs") == "../../shared/logs"
    assert (rel / "logs").resolve() == Path(root.shared_dir, "logs").resolve()
    assert os.readlink(rel / "config" / "app.env") == "../../../shared/config/app.env"
    assert (rel / "config" / "app.env").read_text() == "A=1\n"
    assert any("shared/data does not exist yet" in w for w in info["warnings"])


# ----------------------------------------------------------------- activate


def test_swap_current_is_a_relative_link_renamed_into_place(root, tmp_path):
    stage_file(root, tmp_path, "app-1.1.0")
    root.swap_current("app-1.1.0")
    assert os.readlink(root.current_link) == "releases/app-1.1.0"
    assert root.current_artifact() == "app-1.1.0"
    assert not [n for n in os.listdir(root.root) if n.startswith("current.tmp-")]


def test_activate_records_previous_and_history(root, tmp_path):
    stage_file(root, tmp_path, "app-1.1.0")
    state = fresh(root).state
    replaced = root.activate("app-1.1.0", False, "r2", check_mode=False)
    assert replaced == "app-1.0.0"
    assert (state["current"], state["previous"]) == ("app-1.1.0", "app-1.0.0")
    assert os.readlink(root.current_link) == "releases/app-1.1.0"
    last = state["history"][-1]
    assert (last["action"], last["artifact"], last["from"], last["release_id"]) == \
        ("activate", "app-1.1.0", "app-1.0.0", "r2")


def test_activate_in_check_mode_touches_nothing_on_disk(root, tmp_path):
    stage_file(root, tmp_path, "app-1.1.0")
    before = tree(Path(root.root))
    state = fresh(root).state
    root.activate("app-1.1.0", False, "r2", check_mode=True)
    assert state["current"] == "app-1.1.0"
    assert tree(Path(root.root)) == before


def test_activate_refuses_unstaged(root):
    with pytest.raises(rs.ReleaseStateError, match="not staged.*stage it first") as err:
        fresh(root).activate("app-9.9.9", False, None, check_mode=False)
    assert err.value.details["staged"] == ["app-1.0.0"]
    assert os.readlink(root.current_link) == "releases/app-1.0.0"


def test_rollback_to_previous_marks_failed_and_is_a_noop_the_second_time(root, tmp_path):
    stage_file(root, tmp_path, "app-1.1.0")
    state = fresh(root).state
    root.activate("app-1.1.0", False, "r2", check_mode=False)
    assert not root.already_rolled_back()
    target, rollback = root.resolve_target(None, "previous")
    assert (target, rollback) == ("app-1.0.0", True)
    replaced = root.activate(target, rollback, "r2", check_mode=False)
    assert replaced == "app-1.1.0"
    assert (state["current"], state["previous"]) == ("app-1.0.0", "app-1.1.0")
    assert state["releases"]["app-1.1.0"]["failed"] is True
    assert state["history"][-1]["action"] == "rollback"
    assert root.already_rolled_back()
    # an explicit forward activation clears the failure and ends the rolled-back condition
    root.activate("app-1.1.0", False, "r3", check_mode=False)
    assert state["releases"]["app-1.1.0"]["failed"] is False
    assert not root.already_rolled_back()


def test_rollback_uses_names_not_mtimes(root, tmp_path):
    stage_file(root, tmp_path, "app-1.1.0")
    stage_file(root, tmp_path, "app-1.2.0")
    state = fresh(root).state
    root.activate("app-1.2.0", False, "r", check_mode=False)
    # app-1.1.0 is the newest directory by mtime, but app-1.0.0 is what was running before
    os.utime(root.release_dir("app-1.1.0"), (4_000_000_000, 4_000_000_000))
    assert root.resolve_target(None, "previous") == ("app-1.0.0", True)
    assert root.resolve_target(None, "app-1.1.0") == ("app-1.1.0", True)


def test_rollback_without_previous(root):
    with pytest.raises(rs.ReleaseStateError, match="no previous release.*rollback_to=<artifact>"):
        fresh(root).resolve_target(None, "previous")


# -------------------------------------------------------------------- prune


def _stage_many(root, tmp_path, names):
    for i, name in enumerate(names):
        stage_file(root, tmp_path, name)
        state = fresh(root).state
        state["releases"][name]["staged_at"] = f"2024-02-0{i + 1}T00:00:00Z"
        root.save()


def test_prune_keeps_newest_good_by_state_time_and_never_current_or_previous(root, tmp_path):
    _stage_many(root, tmp_path, ["app-1.1.0", "app-1.2.0", "app-1.3.0", "app-1.4.0"])
    state = fresh(root).state
    root.activate("app-1.1.0", False, "r", check_mode=False)  # current 1.1.0, previous 1.0.0
    os.utime(root.release_dir("app-1.2.0"), (4_000_000_000, 4_000_000_000))  # mtimes don't matter
    kept, removed = root.prune_plan(keep=3)
    assert kept == ["app-1.0.0", "app-1.1.0", "app-1.4.0"]
    assert removed == ["app-1.2.0", "app-1.3.0"]
    kept, removed = root.prune_plan(keep=1)
    assert kept == ["app-1.0.0", "app-1.1.0"]  # current and previous survive any keep


def test_prune_does_not_count_failed_or_incomplete(root, tmp_path):
    _stage_many(root, tmp_path, ["app-1.1.0", "app-1.2.0", "app-1.3.0"])
    state = fresh(root).state
    state["releases"]["app-1.3.0"]["failed"] = True
    os.unlink(root.marker("app-1.2.0"))
    kept, removed = root.prune_plan(keep=2)
    assert kept == ["app-1.0.0", "app-1.1.0"]
    assert sorted(removed) == ["app-1.2.0", "app-1.3.0"]


def test_prune_removes_dirs_records_and_logs_history(root, tmp_path):
    _stage_many(root, tmp_path, ["app-1.1.0", "app-1.2.0"])
    state = fresh(root).state
    kept, removed = root.prune_plan(keep=2)
    assert removed == ["app-1.1.0"]
    root.prune(removed, "r9")
    assert sorted(os.listdir(root.releases_dir)) == ["app-1.0.0", "app-1.2.0"]
    assert "app-1.1.0" not in state["releases"]
    assert state["history"][-1]["action"] == "prune" and state["history"][-1]["artifact"] == "app-1.1.0"
    assert root.prune_plan(keep=2) == (["app-1.0.0", "app-1.2.0"], [])


def test_prune_keep_must_be_positive(root):
    with pytest.raises(rs.ReleaseStateError, match="keep must be at least 1"):
        fresh(root).prune_plan(keep=0)


def test_list_releases_merges_disk_and_state(root, tmp_path):
    stage_file(root, tmp_path, "app-1.1.0")
    state = fresh(root).state
    state["releases"]["app-0.9.0"] = {"sha256": "c" * 64, "staged_at": "2023-01-01T00:00:00Z", "complete": True}
    by_name = {r["artifact"]: r for r in root.list_releases()}
    assert by_name["app-1.0.0"]["current"] and by_name["app-1.0.0"]["complete"]
    assert by_name["app-0.9.0"]["on_disk"] is False and by_name["app-0.9.0"]["complete"] is False
    assert [r["artifact"] for r in root.list_releases()][0] == "app-0.9.0"


# --------------------------------------------------------------------- lock


def test_lock_acquire_is_idempotent_and_refuses_other_release(root):
    changed, broken, lock = root.acquire_lock("r1", "alice", False, check_mode=False)
    assert changed and broken is None and lock["release_id"] == "r1" and lock["holder"] == "alice"
    assert root.read_lock()["release_id"] == "r1"
    assert root.acquire_lock("r1", "alice", False, check_mode=False)[0] is False
    with pytest.raises(rs.ReleaseStateError, match="locked by release 'r1' \\(holder 'alice'") as err:
        root.acquire_lock("r2", "bob", False, check_mode=False)
    assert err.value.details["lock"]["release_id"] == "r1"
    with pytest.raises(rs.ReleaseStateError, match="locked by release 'r1'"):
        root.check_lock("r2")
    assert root.check_lock("r1")["holder"] == "alice"


def test_lock_break_and_release(root):
    root.acquire_lock("r1", "alice", False, check_mode=False)
    changed, broken, lock = root.acquire_lock("r2", "bob", True, check_mode=False)
    assert changed and broken["release_id"] == "r1" and root.read_lock()["release_id"] == "r2"
    with pytest.raises(rs.ReleaseStateError, match="locked by release 'r2'"):
        root.release_lock("r1", False, check_mode=False)
    assert root.release_lock("r2", False, check_mode=True) == (True, root.read_lock())
    assert os.path.exists(root.lock_file)
    changed, dropped = root.release_lock("r2", False, check_mode=False)
    assert changed and dropped["release_id"] == "r2" and root.read_lock() is None
    assert root.release_lock("r2", False, check_mode=False) == (False, None)


def test_lock_check_mode_writes_nothing(root):
    changed, _unused, lock = root.acquire_lock("r1", "alice", False, check_mode=True)
    assert changed and lock["release_id"] == "r1"
    assert root.read_lock() is None


def test_unreadable_lock_file_blocks_until_broken(root):
    Path(root.lock_file).write_text("")
    with pytest.raises(rs.ReleaseStateError, match="locked by release None"):
        root.acquire_lock("r1", "alice", False, check_mode=False)
    assert root.acquire_lock("r1", "alice", True, check_mode=False)[1] == {
        "release_id": None, "unreadable": True}
    assert root.read_lock()["release_id"] == "r1"


def test_check_mode_activation_assumes_a_stage_earlier_in_the_run(root, tmp_path):
    state = fresh(root).state
    assert root.activate("app-1.1.0", False, "r", check_mode=True) == "app-1.0.0"
    assert state["current"] == "app-1.1.0"
    assert os.readlink(root.current_link) == "releases/app-1.0.0"
    Path(root.release_dir("app-1.2.0")).mkdir()  # partial: refused in check mode too
    with pytest.raises(rs.ReleaseStateError, match="not completely staged"):
        fresh(root).activate("app-1.2.0", False, "r", check_mode=True)
