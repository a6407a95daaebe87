"""Reading the Dagster instance's run records: what is in flight, when the last success was."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import dagster as dg
from dagster import DagsterRunStatus, RunsFilter

IN_FLIGHT = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]


def in_flight_runs(instance: dg.DagsterInstance, job_name: str) -> list[dg.RunRecord]:
    return list(instance.get_run_records(RunsFilter(job_name=job_name, statuses=IN_FLIGHT), limit=10))


def recent_runs(instance: dg.DagsterInstance, job_name: str, limit: int = 20) -> Sequence[dg.RunRecord]:
    return instance.get_run_records(RunsFilter(job_name=job_name), limit=limit)


def last_success(instance: dg.DagsterInstance, job_name: str) -> dg.RunRecord | None:
    records = instance.get_run_records(RunsFilter(job_name=job_name, statuses=[DagsterRunStatus.SUCCESS]), limit=1)
    return records[0] if records else None


def finished_at(record: dg.RunRecord) -> datetime | None:
    return datetime.fromtimestamp(record.end_time, UTC) if record.end_time else None


def created_at(record: dg.RunRecord) -> datetime:
    return record.create_timestamp.astimezone(UTC)


def root_cause(error: object) -> str:
    """The innermost error's first line ("RuntimeError: broker said no"), not Dagster's wrapper around it."""
    while getattr(error, "cause", None) is not None:
        error = error.cause  # type: ignore[attr-defined]
    message = str(getattr(error, "message", error)).strip()
    return message.splitlines()[0] if message else "unknown error"
