"""How the tests share code: fixtures in conftest.py, helpers in plain modules (tests/commands.py,
tests/servers.py, ...), never one test module imported into another. A test module imported elsewhere runs its
fixtures and module-level code twice, and ties the suite's parts together so one cannot run alone."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.files import REPO

TESTS = REPO / "tests"


def forbidden_imports(path: Path, source: str) -> list[str]:
    """`file:line: module` for each import, in `source` of the file at `path`, of a test module or a conftest."""
    package = ".".join(path.relative_to(REPO).parent.parts)
    found = []
    for node in ast.walk(ast.parse(source, str(path))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            # `from tests import test_cli` imports a module by the name it gives
            modules = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        for module in modules:
            last = module.rsplit(".", 1)[-1]
            if last.startswith("test_") or last == "conftest":
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: {module}")
                break
    return found


def test_no_module_of_the_suite_imports_a_test_module_or_a_conftest() -> None:
    found = [
        line
        for path in sorted(TESTS.rglob("*.py"))
        for line in forbidden_imports(path, path.read_text(encoding="utf-8"))
    ]
    assert found == [], "move shared helpers to a helper module or conftest.py fixtures:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "line",
    [
        "from tests.test_cli import run",
        "from tests.test_apply_e2e import environment, repo  # noqa: F401",
        "from .test_cli import SECRETS",
        "from . import test_cli",
        "from tests import test_cli",
        "import tests.test_webhook",
        "import tests.test_webhook as hooks",
        "from tests.conftest import EXAMPLES",
        "from tests.perf.test_x import y",
        "def helper():\n    from tests.test_cli_plan import converge\n",
    ],
)
def test_the_check_finds_every_way_of_importing_a_test_module(line: str) -> None:
    assert len(forbidden_imports(TESTS / "test_example.py", line)) == 1


@pytest.mark.parametrize(
    "line",
    [
        "from tests.commands import SECRETS, run",
        "from tests.servers import sandbox",
        "from . import servers",
        "import tests.planning",
        "from tests.perf.fleetgen import write_fleet",
        "from reconciler.cli import main",
        "import pytest",
    ],
)
def test_helper_modules_may_be_imported(line: str) -> None:
    assert forbidden_imports(TESTS / "test_example.py", line) == []
