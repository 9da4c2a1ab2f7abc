"""The repository is self-contained: the official OpenAPI files are vendored, unchanged, with their origin."""

from __future__ import annotations

import hashlib
import re
import subprocess

from tests.files import REPO, VENDOR


def test_vendored_files_match_the_sums_their_note_gives() -> None:
    note = (VENDOR / "README.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `([^`]+\.yaml)` \|.*\| `([0-9a-f]{64})` \|$", note, flags=re.MULTILINE))
    assert set(rows) == {"api-b2b.yaml", "api-b2b-webhook-template-v3.yaml"}
    for name, digest in rows.items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name


def test_nothing_in_the_repository_reads_outside_it() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "*.py", "*.sh", "*.toml", "*.cfg", ".ci/*"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    pattern = re.compile(r"""\.\./shared|parent ?/ ?["']shared""")
    offenders = [name for name in tracked if pattern.search((REPO / name).read_text(encoding="utf-8"))]
    assert offenders == []
