"""Building check results: one constructor so every check carries a verdict line and its numbers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg

from trading_pipeline.checks.metadata import md, reasons_table
from trading_pipeline.domain.jsonsafe import to_jsonable


def result(
    name: str,
    passed: bool,
    description: str,
    *,
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
    numbers: Mapping[str, float | int | str] | None = None,
    problems: Mapping[str, str] | None = None,
    details: Any = None,
) -> dg.AssetCheckResult:
    metadata: dict[str, Any] = {k: v for k, v in (numbers or {}).items()}
    if problems is not None:
        metadata["problems"] = md(reasons_table(problems))
        metadata["problem_count"] = len(problems)
    if details is not None:
        metadata["details"] = dg.MetadataValue.json(to_jsonable(details))  # type: ignore[arg-type]
    return dg.AssetCheckResult(
        check_name=name, passed=passed, severity=severity, description=description, metadata=metadata
    )
