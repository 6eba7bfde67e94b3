"""Reading SHA256SUMS: the checksum of one artifact, and errors that say what is wrong."""

from __future__ import annotations

import pytest

from ansible_collections.sre.rollout.plugins.module_utils._checksums import ChecksumError, checksum_for, sha256sums

A = "a" * 64
B = "B" * 64
SUMS = f"{A}  app-1.0.0.tar.gz\n{B} *app-1.1.0.tar.gz\n"


def test_text_and_binary_mode_lines():
    assert checksum_for(SUMS, "app-1.0.0.tar.gz") == f"sha256:{A}"
    assert checksum_for(SUMS, "app-1.1.0.tar.gz") == f"sha256:{'b' * 64}"  # lower-cased


def test_dot_slash_prefix_comments_and_blank_lines():
    text = f"# published by CI\n\n{A}  ./app-2.0.0.tar.gz\n"
    assert sha256sums(text) == {"app-2.0.0.tar.gz": A}
    assert checksum_for(text, "app-2.0.0.tar.gz") == f"sha256:{A}"


def test_a_name_is_matched_whole_not_as_a_suffix():
    text = f"{A}  old-app-1.0.0.tar.gz\n{B}  app-1.0.0.tar.gz.asc\n"
    with pytest.raises(ChecksumError, match="Unknown artifact app-1.0.0: s does not list app-1.0.0.tar.gz"):
        checksum_for(text, "app-1.0.0.tar.gz", "s")


def test_unknown_artifact_names_the_known_ones():
    with pytest.raises(ChecksumError) as err:
        checksum_for(SUMS, "app-9.9.9.tar.gz", "http://repo/SHA256SUMS")
    assert err.value.msg == ("Unknown artifact app-9.9.9: http://repo/SHA256SUMS does not list app-9.9.9.tar.gz. "
                             "Known: app-1.0.0.tar.gz, app-1.1.0.tar.gz")
    assert err.value.details == {"checksum_source": "http://repo/SHA256SUMS"}


@pytest.mark.parametrize("text", ["", "<html>login</html>\n", "not a list\n"])
def test_something_that_is_not_a_checksum_list(text):
    with pytest.raises(ChecksumError, match="is not a SHA256SUMS file"):
        checksum_for(text, "app-1.0.0.tar.gz")


def test_a_listed_file_with_a_malformed_digest():
    text = f"{A}  app-1.0.0.tar.gz\nd34db33f  app-1.1.0.tar.gz\n"
    with pytest.raises(ChecksumError, match="lists app-1.1.0.tar.gz with a malformed digest"):
        checksum_for(text, "app-1.1.0.tar.gz")
    assert checksum_for(text, "app-1.0.0.tar.gz") == f"sha256:{A}"
