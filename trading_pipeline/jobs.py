"""Jobs. Both run in-process: a subprocess per step costs ≈1.3 s on a 2-core machine, which a
2-minute protection loop cannot spend."""

from __future__ import annotations

import dagster as dg

CONCURRENCY_TAG = "trading_pipeline/concurrency_group"  # dagster.yaml limits "stop_loss" to one run
STOP_LOSS_JOB = "stop_loss_job"
TRADING_DAY_JOB = "trading_day_job"
PREFLIGHT_JOB = "preflight_job"
HEALTH_JOB = "health_job"

stop_loss_job = dg.define_asset_job(
    STOP_LOSS_JOB,
    selection=["quotes", "positions", "closes"],
    executor_def=dg.in_process_executor,
    description="Protects open positions: quotes → reconcile → close what crossed its stop or take-profit.",
    config={"ops": {"quotes": {"config": {"include_candidates": False}}}},
    tags={CONCURRENCY_TAG: "stop_loss", "dagster/max_runtime": 600},
)

trading_day_job = dg.define_asset_job(
    TRADING_DAY_JOB,
    selection=["universe", "quotes", "entries"],
    executor_def=dg.in_process_executor,
    description="At the open: sample the day's universe, quote it, open the strategy's entries.",
    tags={CONCURRENCY_TAG: "trading_day", "dagster/max_runtime": 1800},
)

preflight_job = dg.define_asset_job(
    PREFLIGHT_JOB,
    selection=["preflight"],
    executor_def=dg.in_process_executor,
    description="Pre-market go/no-go at 09:00 ET; records the table and alerts on NO-GO.",
)

health_job = dg.define_asset_job(
    HEALTH_JOB,
    selection=["health"],
    executor_def=dg.in_process_executor,
    description="The status report (health → outcomes → P&L) every 15 minutes, kept with history in the UI.",
)
