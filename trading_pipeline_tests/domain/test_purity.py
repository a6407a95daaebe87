"""domain/ is pure: it imports neither dagster nor sqlalchemy (nor the product's outer layers)."""

from __future__ import annotations

import ast
from pathlib import Path

import trading_pipeline.domain

FORBIDDEN = (
    "dagster",
    "sqlalchemy",
    "alembic",
    "alpaca",
    "trading_pipeline.store",
    "trading_pipeline.broker",
    "trading_pipeline.resources",
    "trading_pipeline.assets",
    "trading_pipeline.sim",
)


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_domain_modules_import_nothing_forbidden() -> None:
    folder = Path(trading_pipeline.domain.__file__).parent
    files = sorted(folder.glob("*.py"))
    assert len(files) >= 5
    offenders = {
        f"{path.name}: {name}"
        for path in files
        for name in imported_modules(path)
        if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN)
    }
    assert not offenders, offenders
