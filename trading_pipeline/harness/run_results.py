"""What an in-process Dagster run result says, read the way the harness reports it: an asset's metadata,
the stop-loss run's numbers, the checks that failed, and the root error of a failed step."""

from __future__ import annotations

from typing import Any

import dagster as dg

from trading_pipeline.monitoring.runs import root_cause


def asset_metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, Any]:
    for materialization in result.asset_materializations_for_node(asset):
        return {k: getattr(v, "value", v) for k, v in materialization.metadata.items()}
    return {}


def stop_loss_run_metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    """A stop-loss run's numbers: the sweep's, plus the closes the broker's own orders made (recorded by
    `positions`), so "closed" counts every close the run recorded."""
    positions, closes = asset_metadata(result, "positions"), asset_metadata(result, "closes")
    merged = {**positions, **closes}
    merged["closed"] = int(closes.get("closed", 0)) + int(positions.get("closed_by_broker_orders", 0))
    return merged


def failed_checks(result: dg.ExecuteInProcessResult) -> list[str]:
    failed = []
    for event in result.all_events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            evaluation = event.event_specific_data
            if evaluation is not None and not evaluation.passed:
                failed.append(evaluation.check_name)
    return failed


def run_error(result: dg.ExecuteInProcessResult) -> str:
    if result.success:
        return ""
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data is not None:
            error = event.step_failure_data.error
            return f"{event.step_key}: {root_cause(error)}" if error else "step failed"
    for event in result.all_events:  # failed before any step ran, e.g. a resource (the strategy) at run start
        error = getattr(event.event_specific_data, "error", None)
        if event.event_type_value in ("RESOURCE_INIT_FAILURE", "PIPELINE_FAILURE") and error is not None:
            return root_cause(error)
    return "run failed"
