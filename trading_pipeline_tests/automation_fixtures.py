"""Crafted Dagster run histories and heartbeats for automation tests."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import sqlalchemy as sa
from dagster import DagsterRunStatus
from dagster._core.remote_origin import InProcessCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.storage.runs.schema import RunsTable
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

from trading_pipeline.domain.names import STOP_LOSS_JOB

ROOT = Path(__file__).resolve().parents[1]


def project_instance(folder: Path) -> dg.DagsterInstance:
    """A real instance configured by the repo's own dagster.yaml."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ROOT / "dagster.yaml", folder / "dagster.yaml")
    return dg.DagsterInstance.from_config(str(folder))


def _origin(job_name: str) -> RemoteJobOrigin:
    location = InProcessCodeLocationOrigin(LoadableTargetOrigin(module_name="trading_pipeline.definitions"))
    return RemoteJobOrigin(RemoteRepositoryOrigin(location, "__repository__"), job_name)


def craft_run(
    instance: dg.DagsterInstance,
    defs: dg.Definitions,
    status: DagsterRunStatus,
    created: datetime,
    ended: datetime | None = None,
    job_name: str = STOP_LOSS_JOB,
) -> str:
    """A run record with the given status and times, as the daemon would have left it."""
    run = instance.create_run_for_job(
        job_def=defs.resolve_job_def(job_name),
        status=DagsterRunStatus.QUEUED if status == DagsterRunStatus.QUEUED else DagsterRunStatus.NOT_STARTED,
        remote_job_origin=_origin(job_name) if status == DagsterRunStatus.QUEUED else None,
    )
    with instance.run_storage.connect() as conn:
        conn.execute(
            RunsTable.update()
            .where(RunsTable.c.run_id == run.run_id)
            .values(
                status=status.value,
                create_timestamp=created.astimezone(UTC).replace(tzinfo=None),
                end_time=ended.timestamp() if ended else None,
            )
        )
    return run.run_id


def count_runs(instance: dg.DagsterInstance) -> int:
    with instance.run_storage.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(RunsTable)).scalar_one())


def beat(instance: dg.DagsterInstance, *, at: datetime) -> None:
    """Daemon heartbeats for every daemon this instance requires, stamped `at`."""
    from dagster._daemon.types import DaemonHeartbeat

    for daemon in instance.get_required_daemon_types():
        instance.add_daemon_heartbeat(
            DaemonHeartbeat(timestamp=at.timestamp(), daemon_type=daemon, daemon_id="test-daemon", errors=[])
        )


def stop_by_hand(instance: dg.DagsterInstance, name: str, kind: str = "SCHEDULE") -> None:
    """What toggling a schedule/sensor off in the UI stores."""
    from dagster._core.remote_origin import RemoteInstigatorOrigin
    from dagster._core.scheduler.instigation import (
        InstigatorState,
        InstigatorStatus,
        InstigatorType,
        ScheduleInstigatorData,
        SensorInstigatorData,
    )

    location = InProcessCodeLocationOrigin(LoadableTargetOrigin(module_name="trading_pipeline.definitions"))
    origin = RemoteInstigatorOrigin(RemoteRepositoryOrigin(location, "__repository__"), name)
    data = ScheduleInstigatorData("* * * * *") if kind == "SCHEDULE" else SensorInstigatorData()
    instance.add_instigator_state(InstigatorState(origin, InstigatorType(kind), InstigatorStatus.STOPPED, data))


def craft_ticks(
    instance: dg.DagsterInstance, name: str, kind: str, ticks: list[tuple[datetime, str, str | None]]
) -> None:
    """Ticks of a schedule/sensor as the daemon records them: (when, SUCCESS|SKIPPED|FAILURE, error text)."""
    from dagster._core.remote_origin import RemoteInstigatorOrigin
    from dagster._core.scheduler.instigation import (
        InstigatorState,
        InstigatorStatus,
        InstigatorType,
        ScheduleInstigatorData,
        SensorInstigatorData,
        TickData,
        TickStatus,
    )
    from dagster._utils.error import SerializableErrorInfo

    location = InProcessCodeLocationOrigin(LoadableTargetOrigin(module_name="trading_pipeline.definitions"))
    origin = RemoteInstigatorOrigin(RemoteRepositoryOrigin(location, "__repository__"), name)
    state = instance.get_instigator_state(origin.get_id(), origin.get_selector().get_id())
    if state is None:
        data = ScheduleInstigatorData("*/2 * * * *") if kind == "SCHEDULE" else SensorInstigatorData()
        state = InstigatorState(origin, InstigatorType(kind), InstigatorStatus.DECLARED_IN_CODE, data)
        instance.add_instigator_state(state)
    for when, status, error in ticks:
        wrapped = None
        if error is not None:
            cause = SerializableErrorInfo(f"{error}\n", [], error.split(":")[0])
            wrapped = SerializableErrorInfo(
                f"dagster._core.errors.SensorExecutionError: Error occurred during the evaluation of {name}\n",
                [],
                "SensorExecutionError",
                cause=cause,
            )
        instance.create_tick(
            TickData(
                instigator_origin_id=state.instigator_origin_id,
                instigator_name=name,
                instigator_type=InstigatorType(kind),
                status=TickStatus(status),
                timestamp=when.timestamp(),
                selector_id=state.selector_id,
                error=wrapped,
                run_ids=[],
                run_keys=[],
                skip_reason="crafted" if status == "SKIPPED" else None,
            )
        )
