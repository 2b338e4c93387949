"""The rooms say what they hold: the pipeline (streaming/) imports nothing of the local
platform (devstack/: local services, generators, the demo, the CLI) nor the benchmark."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
FORBIDDEN = ("devstack", "bench")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_streaming_imports_neither_the_local_platform_nor_the_benchmark() -> None:
    modules = sorted((REPO / "streaming").rglob("*.py"))
    assert len(modules) > 20
    offending = {
        str(path.relative_to(REPO)): sorted(
            m for m in imported_modules(path) if m.split(".")[0] in FORBIDDEN
        )
        for path in modules
    }
    assert {k: v for k, v in offending.items() if v} == {}


def test_the_command_line_does_not_import_the_benchmark() -> None:
    imported = imported_modules(REPO / "devstack" / "cli.py")
    assert not any(m.split(".")[0] == "bench" for m in imported), imported
