"""The names runs, checks and alerts are keyed by: the product's jobs and the tag that limits them.

They live here, below every layer, because the jobs are defined in `automation/` while resources (the
strategy check at run start), steps, checks, assets and monitoring (run-record queries) all need to say
"the stop-loss job" without importing the automation that launches it. They are stable: the UI, the run
history, dagster.yaml's concurrency limit and deploy/ refer to them.
"""

CONCURRENCY_TAG = "trading_pipeline/concurrency_group"  # dagster.yaml limits "stop_loss" to one run
STOP_LOSS_JOB = "stop_loss_job"
TRADING_DAY_JOB = "trading_day_job"
PREFLIGHT_JOB = "preflight_job"
HEALTH_JOB = "health_job"
PERFORMANCE_JOB = "performance_job"
FLATTEN_JOB = "flatten_job"
