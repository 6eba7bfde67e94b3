# Copyright: sre.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading a ``SHA256SUMS`` file (``sha256sum`` output) published next to the artifacts.

This module is private to the sre.rollout collection: its interface may change
without notice and it must not be used from outside the collection.
"""

from __future__ import annotations

import re

from ansible_collections.sre.rollout.plugins.module_utils._common import RolloutError

_DIGEST = re.compile(r"^[0-9a-fA-F]{64}$")


class ChecksumError(RolloutError):
    """The checksum list does not give the artifact's checksum."""


def _name(raw: str) -> str:
    name = raw.strip()
    name = name[1:] if name.startswith("*") else name  # sha256sum's binary mode
    return name[2:] if name.startswith("./") else name


def sha256sums(text: str) -> dict[str, str]:
    """{file name: digest or None} for every ``<digest> <name>`` / ``<digest> *<name>`` line.

    A line whose first word is not a sha256 digest maps its last word to None, so the caller can
    tell a listed file with a malformed digest from one that is not listed at all.
    """
    entries: dict[str, str] = {}
    for line in (text or "").splitlines():
        parts = line.strip().split(None, 1)
        if len(parts) != 2 or parts[0].startswith("#"):
            continue
        digest, name = parts
        entries[_name(name)] = digest.lower() if _DIGEST.match(digest) else None
    return entries


def checksum_for(text: str, filename: str, source: str = "SHA256SUMS") -> str:
    """``sha256:<digest>`` of ``filename`` in the checksum list ``text``, or a ChecksumError saying why not."""
    entries = sha256sums(text)
    if not any(entries.values()):
        excerpt = (text or "").strip()[:200]
        raise ChecksumError(f"{source} is not a SHA256SUMS file (no '<sha256>  <file>' line): {excerpt!r}. "
                            "Check rollout_artifact_repo / rollout_checksum_url, or pass "
                            "rollout_checksum='sha256:<hex>'", checksum_source=source)
    if filename not in entries:
        artifact = filename[:-len(".tar.gz")] if filename.endswith(".tar.gz") else filename
        known = ", ".join(sorted(name for name, digest in entries.items() if digest))
        raise ChecksumError(f"Unknown artifact {artifact}: {source} does not list {filename}. Known: {known}",
                            checksum_source=source)
    digest = entries[filename]
    if digest is None:
        raise ChecksumError(f"{source} lists {filename} with a malformed digest (not 64 hex digits): "
                            "fix the checksum list, or pass rollout_checksum='sha256:<hex>'",
                            checksum_source=source)
    return f"sha256:{digest}"
