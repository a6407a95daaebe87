"""The README stays true: two set-up commands, and a configuration table that matches the code."""

from __future__ import annotations

import re
from pathlib import Path

import trading_pipeline
from trading_pipeline.settings import ENVIRONMENT

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
PACKAGE = Path(trading_pipeline.__file__).parent


def setup_section() -> str:
    return README.split("## Set-up", 1)[1].split("\n## ", 1)[0]


def test_setup_is_exactly_two_commands() -> None:
    blocks = re.findall(r"```\n(.*?)```", setup_section(), flags=re.S)
    assert len(blocks) == 2, blocks
    assert all(len(block.strip().splitlines()) == 1 for block in blocks)
    main, tests = (block.strip() for block in blocks)
    assert "pip install" in main and "trading-pipeline" in main
    assert "pytest" in tests


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "test-command" in ci and "TRADING_PIPELINE_REQUIRE_POSTGRES=1" in ci
    assert "<!-- test-command -->\n```\n" in README


def variables_read_by_code() -> set[str]:
    pattern = re.compile(
        r"""(?:environ(?:\.get)?\(?\[?|getenv\(|EnvVar\(|env\.get\(|EnvVar\.int\()\s*["']([A-Z][A-Z0-9_]+)["']"""
    )
    found: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        found.update(pattern.findall(path.read_text()))
    for path in (ROOT / "trading_pipeline_tests").rglob("*.py"):
        found.update(pattern.findall(path.read_text()))
    return found


def documented_variables() -> set[str]:
    table = README.split("## Configuration", 1)[1]
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", table, flags=re.M))


def test_configuration_table_lists_every_variable_the_code_reads() -> None:
    read = variables_read_by_code() - {"PATH", "HOME", "USER"}  # the OS's, not the product's
    assert "DATABASE_URL" in read  # the scan works
    assert read - documented_variables() == set()


def test_configuration_table_matches_settings_registry() -> None:
    assert documented_variables() == set(ENVIRONMENT)
    table = README.split("## Configuration", 1)[1]
    for name, (default, _) in ENVIRONMENT.items():
        assert f"| `{name}` | {default} |" in table, name
