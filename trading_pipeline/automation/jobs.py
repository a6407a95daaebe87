"""Every job of the product. All run in-process: a subprocess per step costs ≈1.3 s on a 2-core machine,
which a 2-minute protection loop cannot spend (and a one-step job would only add start-up time)."""

from __future__ import annotations

import dagster as dg

from trading_pipeline.automation.flatten import flatten
from trading_pipeline.domain.names import (
    CONCURRENCY_TAG,
    FLATTEN_JOB,
    HEALTH_JOB,
    PERFORMANCE_JOB,
    PREFLIGHT_JOB,
    STOP_LOSS_JOB,
    TRADING_DAY_JOB,
)

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

# The end-of-day performance job: materializes `performance` for one trading day (or a backfill range).
# Partitioned like the asset (NYSE trading days only; Dagster infers it from the selection), so a schedule
# can target "today" with `partition_key=<New York date>`, and a non-session is not a partition at all.
performance_job = dg.define_asset_job(
    PERFORMANCE_JOB,
    selection=["performance"],
    executor_def=dg.in_process_executor,
    description="After the close: the day's P&L, win rate, activity and return vs SPY, with the equity chart.",
    tags={"dagster/max_runtime": 900},
)


# Close everything now: a person's command (config `reason` is required), never scheduled. Safe beside a running
# stop-loss run: both close through the same conditional claim, so one position is never sold twice.
flatten_job = dg.GraphDefinition(name=FLATTEN_JOB, node_defs=[flatten]).to_job(
    executor_def=dg.in_process_executor,
    description="Close everything now: halt entries, cancel open orders, close every position; needs a reason.",
    tags={"dagster/max_runtime": 600},
)
