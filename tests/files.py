"""Where the tests' inputs live (the repository, its examples, the fixtures, the vendor's files), and the few
ways tests change files."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).parent.parent
FIXTURES = REPO / "tests" / "fixtures"
EXAMPLES = REPO / "examples"
VENDOR = REPO / "vendor" / "stellantis"  # the official OpenAPI files, with a note of their origin

# the `write` fixture: write({"path": "text", ...}) -> the folder written to
WriteFiles = Callable[..., Path]


def copy_examples(target: Path) -> Path:
    """A copy of examples/ as a user's config repo, without what a demo run may have left in it."""
    shutil.copytree(EXAMPLES, target, ignore=shutil.ignore_patterns(".reconciler", ".sandbox.log"))
    return target


def edit(path: Path, old: str, new: str) -> None:
    """Replace `old` (which must be there, so a test cannot edit nothing) by `new`."""
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
