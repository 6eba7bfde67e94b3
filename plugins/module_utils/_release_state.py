# Copyright: sre.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An application root on the host (:class:`ReleaseRoot`): its releases, state file and lock.

This module is private to the sre.rollout collection: its interface may change
without notice and it must not be used from outside the collection.

Layout under the app root::

    releases/<artifact>/                   one unpacked artifact per directory
    releases/<artifact>/.rollout-complete  marker, written last: the release is whole
    releases/.tmp-* .staging-* .trash-*    work in progress; never activated, removed later
    current -> releases/<artifact>         relative symlink, swapped atomically
    shared/                                kept across releases (config, logs, run)
    .rollout/state.json                    current, previous, releases, history
    .rollout/lock.json                     who is releasing onto this root right now

Rollback is keyed on artifact names recorded in the state file, never on
directory mtimes. Only the standard library is used: this runs on the target.
"""

from __future__ import annotations

import datetime
import errno
import hashlib
import http.client
import json
import os
import re
import secrets
import shutil
import socket
import stat
import tarfile
import time
from dataclasses import dataclass
from typing import IO, Any, Callable, Optional

from ansible_collections.sre.rollout.plugins.module_utils import _vocab
from ansible_collections.sre.rollout.plugins.module_utils._common import (
    RolloutError,
    atomic_symlink,
    atomic_write,
    fsync_dir,
)

STATE_VERSION = 1
MARKER = ".rollout-complete"
HISTORY_LIMIT = 200
CHUNK = 1024 * 1024
WORK_PREFIXES = (".tmp-", ".staging-", ".trash-")

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")

# An opener returns (readable binary stream, size in bytes or None when unknown).
Opener = Callable[[], "tuple[IO[bytes], Optional[int]]"]


class ReleaseStateError(RolloutError):
    """A release operation refused or failed; nothing half-done is left activatable."""


# --------------------------------------------------------------------- names


def validate_artifact(name: Any) -> str:
    """An artifact name is one path component: the rule of ``_vocab``."""
    return _vocab.validate_artifact(name, error=ReleaseStateError)


def validate_release_id(release_id: Any) -> str:
    """The one check of a release id here (app_release and the lock use it): the rule of ``_vocab``."""
    return _vocab.validate_release_id(release_id, error=ReleaseStateError)


def validate_relative_path(path: str, what: str) -> str:
    norm = os.path.normpath(path)
    if not path or os.path.isabs(path) or norm == "." or norm.split(os.sep)[0] == "..":
        raise ReleaseStateError(f"invalid {what} {path!r}: give a path relative to the release, "
                                "without '..', e.g. 'logs' or 'config/app.env'")
    return norm


def parse_checksum(spec: str) -> str:
    """``sha256:<64 hex>`` -> the lowercase hex digest."""
    algo, _unused, digest = (spec or "").strip().partition(":")
    digest = digest.strip().lower()
    if algo.lower() != "sha256" or not _SHA256_RE.match(digest):
        raise ReleaseStateError(f"invalid checksum {spec!r}: give 'sha256:' followed by 64 hex digits, "
                                "e.g. the first field of the artifact's line in SHA256SUMS")
    return digest


def find_in_sha256sums(text: str, filename: str, source: str = "SHA256SUMS") -> str:
    """The digest for ``filename`` in ``sha256sum`` output (text or ``*binary`` mode)."""
    for line in text.splitlines():
        parts = line.strip().split(None, 1)
        if len(parts) != 2 or not _SHA256_RE.match(parts[0].lower()):
            continue
        name = parts[1].strip().lstrip("*")
        if name.startswith("./"):
            name = name[2:]
        if name == filename:
            return parts[0].lower()
    raise ReleaseStateError(f"{source} has no line for {filename!r}: publish the artifact's checksum "
                            "there, or pass checksum='sha256:<hex>'", checksum_source=source)


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: Any) -> float:
    if not isinstance(value, str):
        return 0.0
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return parsed.timestamp()


# ------------------------------------------------------------- staging steps


def free_bytes(path: str) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def ensure_free_space(path: str, needed: int, reserve: int, what: str) -> None:
    free = free_bytes(path)
    if needed + reserve > free:
        raise ReleaseStateError(
            f"not enough disk space on {path} for {what}: {needed} bytes needed plus {reserve} kept free, "
            f"only {free} available. Free space (e.g. state=pruned with a smaller keep) and retry",
            free_bytes=free, needed_bytes=needed, reserve_bytes=reserve)


def _no_space(exc: OSError, path: str, what: str) -> ReleaseStateError:
    return ReleaseStateError(f"no space left on {path} while {what} ({exc}); the partial files were removed. "
                             "Free space (e.g. state=pruned with a smaller keep) and retry", path=path)


def download(opener: Opener, dest: str, reserve: int, deadline: float) -> tuple[str, int]:
    """Stream the opener's data into ``dest`` -> (sha256, bytes); checks space and the deadline."""
    stream, size = opener()
    try:
        # Without a Content-Length only the reserve can be checked now; unpacking checks the real size.
        ensure_free_space(os.path.dirname(dest), size or 0, reserve, "the download")
        digest, written = hashlib.sha256(), 0
        with open(dest, "wb") as out:
            while True:
                if time.monotonic() > deadline:
                    raise ReleaseStateError(f"download did not finish within the time allowed ({written} bytes "
                                            "so far): raise download_timeout or check the artifact server")
                block = _read_block(stream, written)
                if not block:
                    break
                digest.update(block)
                out.write(block)
                written += len(block)
            out.flush()
            os.fsync(out.fileno())
    finally:
        stream.close()
    if size is not None and written != size:
        raise ReleaseStateError(f"download truncated: got {written} of {size} bytes; retry the stage",
                                received_bytes=written, expected_bytes=size)
    return digest.hexdigest(), written


def _read_block(stream: IO[bytes], so_far: int) -> bytes:
    # read1: what has arrived (up to CHUNK), so a stalled server is noticed with the bytes so far counted.
    try:
        return getattr(stream, "read1", stream.read)(CHUNK)
    except (OSError, http.client.HTTPException) as exc:
        raise ReleaseStateError(f"download interrupted after {so_far} bytes ({exc!r}): check the artifact "
                                "server and retry; nothing was changed", received_bytes=so_far)


def safe_members(archive: tarfile.TarFile, dest: str) -> list[tarfile.TarInfo]:
    """The members, refusing anything that would land outside ``dest`` or is not a plain file/dir/link."""
    base = os.path.realpath(dest)
    members = []
    for member in archive.getmembers():
        name = member.name
        target = os.path.realpath(os.path.join(base, name))
        if os.path.isabs(name) or (target != base and not target.startswith(base + os.sep)):
            raise ReleaseStateError(f"archive member {name!r} would be written outside the release directory: "
                                    "rebuild the artifact with relative paths", member=name)
        if member.issym() or member.islnk():
            link_base = os.path.dirname(target) if member.issym() else base
            link_target = os.path.realpath(os.path.join(link_base, member.linkname))
            if os.path.isabs(member.linkname) or (link_target != base
                                                  and not link_target.startswith(base + os.sep)):
                raise ReleaseStateError(f"archive member {name!r} links to {member.linkname!r}, outside the "
                                        "release directory: rebuild the artifact", member=name)
        elif not (member.isfile() or member.isdir()):
            raise ReleaseStateError(f"archive member {name!r} is a device, fifo or other special file: "
                                    "rebuild the artifact with regular files only", member=name)
        members.append(member)
    return members


def unpack(archive_path: str, dest: str, reserve: int) -> int:
    """Unpack a tarball (any compression) into ``dest`` -> number of members."""
    try:
        archive = tarfile.open(archive_path, "r:*")
    except (tarfile.TarError, OSError) as exc:
        raise ReleaseStateError(f"the artifact is not a readable tar archive ({exc}): check the artifact URL "
                                "and that it is a .tar/.tar.gz/.tar.xz/.tar.bz2")
    with archive:
        os.makedirs(dest)
        members = safe_members(archive, dest)
        ensure_free_space(dest, sum(m.size for m in members if m.isfile()), reserve, "unpacking")
        for member in members:
            # Ownership from the build machine means nothing here; modes and times are kept.
            member.uid = member.gid = os.getuid()
            member.uname = member.gname = ""
            member.mode &= 0o777 & ~stat.S_IWOTH
            if hasattr(tarfile, "data_filter"):
                archive.extract(member, dest, numeric_owner=True, filter="fully_trusted")
            else:
                archive.extract(member, dest, numeric_owner=True)
    return len(members)


def write_marker(path: str, data: dict) -> None:
    with open(os.path.join(path, MARKER), "w", encoding="utf-8") as handle:
        json.dump(data, handle, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    fsync_dir(path)


@dataclass
class StageRequest:
    artifact: str
    opener: Opener
    expected_sha256: Optional[str]
    source: str
    release_id: Optional[str] = None
    shared_paths: tuple = ()
    reserve_bytes: int = 0
    download_timeout: float = 600.0


def remove_path(path: str) -> None:
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def empty_state() -> dict:
    return {"version": STATE_VERSION, "current": None, "previous": None, "releases": {}, "history": []}


def _json_text(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


# -------------------------------------------------------------- the root


class ReleaseRoot:
    """One application root on the host: its layout, its state file, its lock and the operations on them.

    The state file is read on first use (or by :meth:`load`) and kept in :attr:`state`; operations
    change that copy and :meth:`save` writes it back atomically.
    """

    def __init__(self, root: str) -> None:
        self.root = root
        self._state: Optional[dict] = None

    # -- paths

    @property
    def releases_dir(self) -> str:
        return os.path.join(self.root, "releases")

    @property
    def current_link(self) -> str:
        return os.path.join(self.root, "current")

    @property
    def shared_dir(self) -> str:
        return os.path.join(self.root, "shared")

    @property
    def rollout_dir(self) -> str:
        return os.path.join(self.root, ".rollout")

    @property
    def state_file(self) -> str:
        return os.path.join(self.rollout_dir, "state.json")

    @property
    def lock_file(self) -> str:
        return os.path.join(self.rollout_dir, "lock.json")

    def release_dir(self, artifact: str) -> str:
        return os.path.join(self.releases_dir, validate_artifact(artifact))

    def marker(self, artifact: str) -> str:
        return os.path.join(self.release_dir(artifact), MARKER)

    def work_path(self, prefix: str, artifact: str) -> str:
        return os.path.join(self.releases_dir, f"{prefix}{artifact}-{secrets.token_hex(4)}")

    @property
    def exists(self) -> bool:
        return os.path.isdir(self.root)

    def require_exists(self) -> None:
        if not self.exists:
            raise ReleaseStateError(f"root {self.root} does not exist on this host: check root, or stage a "
                                    "release first (state=staged creates it)", root=self.root)

    # -- what is on disk

    def read_marker(self, artifact: str) -> Optional[dict]:
        """The marker's JSON (``{}`` when empty or unreadable), or None when absent."""
        try:
            with open(self.marker(artifact), encoding="utf-8") as handle:
                text = handle.read()
        except FileNotFoundError:
            return None
        try:
            data = json.loads(text) if text.strip() else {}
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    def release_dirs(self) -> dict[str, bool]:
        """Release directories by name -> whether they carry the complete marker."""
        try:
            names = os.listdir(self.releases_dir)
        except FileNotFoundError:
            return {}
        out = {}
        for name in sorted(names):
            path = os.path.join(self.releases_dir, name)
            if not _vocab.is_artifact_name(name):
                continue
            if os.path.isdir(path) and not os.path.islink(path):
                out[name] = os.path.isfile(os.path.join(path, MARKER))
        return out

    def work_leftovers(self) -> list[str]:
        """Interrupted work: ``releases/.tmp-*``, ``.staging-*``, ``.trash-*`` and ``current.tmp-*``."""
        found = []
        if os.path.isdir(self.releases_dir):
            found += [os.path.join(self.releases_dir, n) for n in sorted(os.listdir(self.releases_dir))
                      if n.startswith(WORK_PREFIXES)]
        if os.path.isdir(self.root):
            found += [os.path.join(self.root, n) for n in sorted(os.listdir(self.root))
                      if n.startswith("current.tmp-")]
        return found

    def clean_leftovers(self) -> list[str]:
        found = self.work_leftovers()
        for path in found:
            remove_path(path)
        return found

    def current_artifact(self) -> Optional[str]:
        """The artifact ``current`` points at, read from the symlink itself; None when absent."""
        link = self.current_link
        if not os.path.lexists(link):
            return None
        if not os.path.islink(link):
            raise ReleaseStateError(f"{link} is not a symlink: move it away (it must be a link to "
                                    "releases/<artifact>) and activate a release", root=self.root)
        target = os.readlink(link)
        resolved = os.path.normpath(os.path.join(self.root, target))
        if os.path.dirname(resolved) != os.path.normpath(self.releases_dir):
            raise ReleaseStateError(f"{link} points at {target!r}, outside {self.releases_dir}: "
                                    "activate a staged release to repair it", root=self.root, link_target=target)
        return os.path.basename(resolved)

    def swap_current(self, artifact: str) -> None:
        """Point ``current`` at ``releases/<artifact>`` with one rename (no moment without a link)."""
        if os.path.isdir(self.current_link) and not os.path.islink(self.current_link):
            raise ReleaseStateError(f"{self.current_link} is a real directory, not a symlink: move it "
                                    "away before activating a release", root=self.root)
        atomic_symlink(os.path.join("releases", validate_artifact(artifact)), self.current_link)

    # -- state file

    @property
    def state(self) -> dict:
        if self._state is None:
            self._state = self._read_state()
        return self._state

    def _read_state(self) -> dict:
        """The state file, or an empty state when it does not exist yet."""
        try:
            with open(self.state_file, encoding="utf-8") as handle:
                state = json.load(handle)
        except FileNotFoundError:
            return empty_state()
        except ValueError as exc:
            raise ReleaseStateError(f"{self.state_file} is not valid JSON ({exc}): restore it from a backup, "
                                    "or move it away to start a fresh history", state_file=self.state_file)
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            version = state.get("version") if isinstance(state, dict) else None
            raise ReleaseStateError(f"{self.state_file} has version {version!r}; this collection reads version "
                                    f"{STATE_VERSION}: upgrade sre.rollout or move the file away",
                                    state_file=self.state_file)
        for key, default in empty_state().items():
            state.setdefault(key, default)
        return state

    def load(self, reconcile: bool = False) -> list[str]:
        """(Re)read the state file; with ``reconcile``, trust the symlink for ``current`` -> warnings."""
        self._state = self._read_state()
        return self.reconcile_current() if reconcile and self.exists else []

    def save(self) -> None:
        self.state["history"] = self.state["history"][-HISTORY_LIMIT:]
        atomic_write(self.state_file, _json_text(self.state))

    def add_history(self, artifact: Optional[str], action: str, release_id: Optional[str],
                    outcome: str = "ok", **extra: Any) -> dict:
        entry = {"artifact": artifact, "action": action, "release_id": release_id, "time": utc_now(),
                 "outcome": outcome}
        entry.update({k: v for k, v in extra.items() if v is not None})
        self.state["history"].append(entry)
        return entry

    def summary(self) -> dict:
        """What ``diff`` shows: current, previous and the release names."""
        return {"current": self.state.get("current"), "previous": self.state.get("previous"),
                "releases": sorted(self.state.get("releases", {}))}

    def release_record(self, artifact: str) -> Optional[dict]:
        """The state's record of a release merged with its marker; None when nothing is known."""
        record = dict(self.state["releases"].get(artifact) or {})
        on_disk = os.path.isdir(self.release_dir(artifact))
        marker = self.read_marker(artifact) if on_disk else None
        if marker is None and not record and not on_disk:
            return None
        if marker is not None:
            record.setdefault("sha256", marker.get("sha256"))
            record.setdefault("staged_at", marker.get("staged_at"))
        record["complete"] = marker is not None and record.get("complete", True) is not False
        record.setdefault("failed", False)
        return record

    def list_releases(self) -> list[dict]:
        """Every release on disk or in the state, oldest staged first."""
        names = set(self.release_dirs()) | set(self.state["releases"])
        cur, prev = self.state.get("current"), self.state.get("previous")
        out = []
        for name in names:
            record = self.release_record(name) or {}
            on_disk = os.path.isdir(self.release_dir(name))
            out.append({"artifact": name, "path": self.release_dir(name), "on_disk": on_disk,
                        "complete": bool(record.get("complete")) and on_disk,
                        "failed": bool(record.get("failed")), "sha256": record.get("sha256"),
                        "staged_at": record.get("staged_at"), "current": name == cur, "previous": name == prev})
        out.sort(key=lambda r: (_parse_time(r["staged_at"]), r["artifact"]))
        return out

    def reconcile_current(self) -> list[str]:
        """Trust the symlink over the file for ``current``; return warnings about drift."""
        link = self.current_artifact()
        warnings = []
        if link != self.state.get("current"):
            warnings.append(f"state file says current is {self.state.get('current')!r} but the symlink points "
                            f"at {link!r}: using the symlink")
            self.state["current"] = link
        return warnings

    # -- lock

    def read_lock(self) -> Optional[dict]:
        try:
            with open(self.lock_file, encoding="utf-8") as handle:
                text = handle.read()
        except FileNotFoundError:
            return None
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        return data if isinstance(data, dict) else {"release_id": None, "unreadable": True}

    def _lock_error(self, lock: dict, wanted: Optional[str]) -> ReleaseStateError:
        holder = lock.get("release_id")
        return ReleaseStateError(
            f"{self.root} is locked by release {holder!r} (holder {lock.get('holder')!r} since "
            f"{lock.get('time')!r}); this run is release {wanted!r}. Wait for that release to finish, or if it "
            "is dead, unlock with state=unlocked break_lock=true", lock=lock)

    def check_lock(self, release_id: Optional[str], break_lock: bool = False) -> Optional[dict]:
        """Raise when another release holds the lock; return the lock (or None)."""
        lock = self.read_lock()
        if lock is not None and lock.get("release_id") != release_id and not break_lock:
            raise self._lock_error(lock, release_id)
        return lock

    def acquire_lock(self, release_id: str, holder: str, break_lock: bool,
                     check_mode: bool) -> tuple[bool, Optional[dict], dict]:
        """Take the lock for ``release_id`` -> (changed, lock broken or None, lock held)."""
        validate_release_id(release_id)
        lock = self.read_lock()
        if lock is not None and lock.get("release_id") == release_id:
            return False, None, lock
        if lock is not None and not break_lock:
            raise self._lock_error(lock, release_id)
        new = {"release_id": release_id, "holder": holder, "time": utc_now(), "host": socket.gethostname()}
        if check_mode:
            return True, lock, new
        try:
            # Taking a free lock must fail if someone else locked since we looked; breaking one replaces it.
            atomic_write(self.lock_file, _json_text(new), exclusive=lock is None)
        except FileExistsError:
            raise self._lock_error(self.read_lock() or {}, release_id)
        return True, lock, new

    def release_lock(self, release_id: Optional[str], break_lock: bool,
                     check_mode: bool) -> tuple[bool, Optional[dict]]:
        """Drop the lock held by ``release_id`` (any lock with ``break_lock``) -> (changed, lock dropped)."""
        lock = self.read_lock()
        if lock is None:
            return False, None
        if lock.get("release_id") != release_id and not break_lock:
            raise self._lock_error(lock, release_id)
        if not check_mode:
            try:
                os.unlink(self.lock_file)
            except FileNotFoundError:
                pass
        return True, lock

    # -- stage

    def link_shared(self, release_path: str, artifact: str, shared_paths: list[str]) -> list[str]:
        """Replace each shared path inside the release by a relative link into ``shared/``."""
        final_dir = self.release_dir(artifact)
        warnings = []
        for raw in shared_paths:
            rel = validate_relative_path(raw, "shared path")
            link = os.path.join(release_path, rel)
            target = os.path.join(self.shared_dir, rel)
            if os.path.lexists(link):
                remove_path(link)
            os.makedirs(os.path.dirname(link), exist_ok=True)
            final_link_dir = os.path.dirname(os.path.join(final_dir, rel))
            os.symlink(os.path.relpath(target, final_link_dir), link)
            if not os.path.lexists(target):
                warnings.append(f"shared path {target} does not exist yet; the link in the release dangles "
                                "until it is created")
        return warnings

    def stage_plan(self, artifact: str, expected: Optional[str]) -> Optional[dict]:
        """The existing complete release record when no staging is needed; None when it must be staged."""
        record = self.release_record(artifact)
        if not record or not record["complete"]:
            if os.path.lexists(self.release_dir(artifact)) and self.current_artifact() == artifact:
                raise ReleaseStateError(f"{artifact} is current but not completely staged (no {MARKER}): "
                                        "activate another release before staging it again", artifact=artifact)
            return None
        recorded = record.get("sha256")
        if expected and recorded and recorded != expected:
            raise ReleaseStateError(
                f"{artifact} is already staged with sha256 {recorded}, but sha256 {expected} is expected: the "
                "same artifact name must always mean the same bits. Publish the new build under a new name",
                artifact=artifact, staged_sha256=recorded, expected_sha256=expected)
        return record

    def stage(self, req: StageRequest) -> dict:
        """Download, verify, unpack, mark complete, then rename into place; record it in the state."""
        for sub in (self.root, self.releases_dir, self.shared_dir, self.rollout_dir):
            os.makedirs(sub, exist_ok=True)
        cleaned = self.clean_leftovers()
        final = self.release_dir(req.artifact)
        tmp = self.work_path(".tmp-", req.artifact)
        staging = self.work_path(".staging-", req.artifact)
        warnings: list[str] = []
        try:
            try:
                sha, size = download(req.opener, tmp, req.reserve_bytes, time.monotonic() + req.download_timeout)
                if req.expected_sha256 and sha != req.expected_sha256:
                    raise ReleaseStateError(
                        f"checksum mismatch for {req.artifact} from {req.source}: expected sha256 "
                        f"{req.expected_sha256}, got {sha}. The download is corrupt or the checksum is wrong; "
                        "nothing was changed", artifact=req.artifact, expected_sha256=req.expected_sha256,
                        actual_sha256=sha)
                count = unpack(tmp, staging, req.reserve_bytes)
                warnings += self.link_shared(staging, req.artifact, list(req.shared_paths))
                staged_at = utc_now()
                write_marker(staging, {"artifact": req.artifact, "sha256": sha, "staged_at": staged_at,
                                       "release_id": req.release_id})
                if os.path.lexists(final):  # an incomplete leftover under the final name
                    trash = self.work_path(".trash-", req.artifact)
                    os.rename(final, trash)
                    remove_path(trash)
                os.rename(staging, final)
                fsync_dir(self.releases_dir)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise _no_space(exc, self.releases_dir, f"staging {req.artifact}")
                raise
        finally:
            for path in (tmp, staging):
                if os.path.lexists(path):
                    remove_path(path)
        self.state["releases"][req.artifact] = {"sha256": sha, "staged_at": staged_at, "complete": True,
                                                "source": req.source, "size": size, "files": count}
        self.add_history(req.artifact, "stage", req.release_id)
        return {"cleaned": cleaned, "sha256": sha, "warnings": warnings}

    # -- activate

    def resolve_target(self, artifact: Optional[str], rollback_to: Optional[str]) -> tuple[str, bool]:
        """The artifact to activate and whether this is a rollback."""
        if rollback_to is None:
            return validate_artifact(artifact), False
        if rollback_to != "previous":
            return validate_artifact(rollback_to), True
        previous = self.state.get("previous")
        if not previous:
            raise ReleaseStateError("rollback_to=previous but the state file records no previous release: "
                                    "name the artifact to roll back to (rollback_to=<artifact>)",
                                    current=self.state.get("current"))
        return previous, True

    def already_rolled_back(self) -> bool:
        """True when ``current`` was reached by rolling back from ``previous`` (so a re-run is a no-op)."""
        state = self.state
        for entry in reversed(state["history"]):
            if entry.get("action") in ("activate", "rollback") and entry.get("outcome") == "ok":
                return (entry.get("action") == "rollback" and entry.get("artifact") == state.get("current")
                        and entry.get("from") == state.get("previous"))
        return False

    def ensure_activatable(self, artifact: str) -> dict:
        record = self.release_record(artifact)
        if record is None or not os.path.isdir(self.release_dir(artifact)):
            raise ReleaseStateError(f"{artifact} is not staged under {self.releases_dir}: stage it first "
                                    "(state=staged)", artifact=artifact,
                                    staged=[n for n, ok in self.release_dirs().items() if ok])
        if not record["complete"]:
            raise ReleaseStateError(f"{artifact} is not completely staged (no {MARKER}; an interrupted stage?): "
                                    "stage it again (state=staged), which replaces the partial copy",
                                    artifact=artifact)
        return record

    def activate(self, artifact: str, rollback: bool, release_id: Optional[str],
                 check_mode: bool) -> Optional[str]:
        """Swap ``current`` to ``artifact`` and record it -> the artifact replaced (None if there was none).

        In check mode an artifact that is not on disk at all is assumed to be staged by an earlier task
        of the same run (which did not stage it, being in check mode too); a partial one is still refused.
        """
        if check_mode and not os.path.lexists(self.release_dir(artifact)):
            record: dict = {}
        else:
            record = self.ensure_activatable(artifact)
        state = self.state
        replaced = state.get("current")
        if not check_mode:
            self.swap_current(artifact)
        state["releases"].setdefault(artifact, {"sha256": record.get("sha256"),
                                                "staged_at": record.get("staged_at"), "complete": True})
        state["releases"][artifact]["failed"] = False
        state["releases"][artifact]["activated_at"] = utc_now()
        if rollback and replaced and replaced in state["releases"]:
            state["releases"][replaced]["failed"] = True
        state["previous"], state["current"] = replaced, artifact
        self.add_history(artifact, "rollback" if rollback else "activate", release_id, **{"from": replaced})
        return replaced

    # -- prune

    def prune_plan(self, keep: int) -> tuple[list[str], list[str]]:
        """(kept, removed) release names: current and previous always kept, then the newest good ones.

        Failed (rolled back from) and incomplete releases never count towards ``keep``.
        """
        if keep < 1:
            raise ReleaseStateError(f"keep must be at least 1, not {keep}")
        releases = [r for r in self.list_releases() if r["on_disk"]]
        protected = [n for n in (self.state.get("current"), self.state.get("previous")) if n]
        kept = [r["artifact"] for r in releases if r["artifact"] in protected]
        good = [r["artifact"] for r in reversed(releases)
                if r["complete"] and not r["failed"] and r["artifact"] not in protected]
        for name in good:
            if len(kept) >= keep:
                break
            kept.append(name)
        removed = [r["artifact"] for r in releases if r["artifact"] not in kept]
        return kept, removed

    def prune(self, removed: list[str], release_id: Optional[str]) -> None:
        """Remove releases: rename each out of the way first, so a crash never leaves a half-deleted one marked."""
        for name in removed:
            trash = self.work_path(".trash-", name)
            os.rename(self.release_dir(name), trash)
            self.state["releases"].pop(name, None)
            self.add_history(name, "prune", release_id)
            remove_path(trash)
