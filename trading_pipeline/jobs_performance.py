"""The end-of-day performance job: materializes `performance` for one trading day (or a backfill range).

In-process executor like the other jobs: one asset, one step — a subprocess would only add start-up time.
Partitioned like the asset (NYSE trading days only; Dagster infers it from the selection), so a schedule
can target "today" with `partition_key=<New York date>`, and a non-session is not a partition at all.
"""

import dagster as dg

PERFORMANCE_JOB = "performance_job"

performance_job = dg.define_asset_job(
    PERFORMANCE_JOB,
    selection=["performance"],
    executor_def=dg.in_process_executor,
    description="After the close: the day's P&L, win rate, activity and return vs SPY, with the equity chart.",
    tags={"dagster/max_runtime": 900},
)
