"""Does the code location load? Loaded the way `dagster definitions validate -w <workspace>` loads it: from the
workspace file the webserver and daemon use (a `python_module` entry starts a code server for it; a
`grpc_server` entry is asked over gRPC). When it does not load, no schedule or sensor runs at all, so nothing
inside Dagster can say so — only a process outside it, like the watchdog."""

from __future__ import annotations

import warnings
from pathlib import Path

import dagster as dg

from trading_pipeline.monitoring.health import HealthItem
from trading_pipeline.monitoring.runs import root_cause

LOCATION_ALERT_KEY = "code_location"


def _first_line(error: object) -> str:
    """The user's exception (not Dagster's "error loading the code location" wrapper), first line."""
    from dagster._utils.error import SerializableErrorInfo, unwrap_user_code_error

    if isinstance(error, SerializableErrorInfo):
        error = unwrap_user_code_error(error)
    return root_cause(error)


def location_health(instance: dg.DagsterInstance, workspace_file: Path) -> list[HealthItem]:
    """One item per code location in the workspace file: loads, or the error's last line and what to do."""
    from dagster import __version__
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget

    if not workspace_file.is_file():
        return [
            HealthItem(
                "code location",
                False,
                f"workspace file {workspace_file} does not exist",
                LOCATION_ALERT_KEY,
                "pass the workspace file the webserver and daemon use: `trading-pipeline watchdog --workspace PATH`",
            )
        ]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Dagster warns with the whole traceback; the item has its cause
            with WorkspaceProcessContext(
                instance,
                WorkspaceFileTarget(paths=[str(workspace_file)]),
                version=__version__,
                read_only=True,
                code_server_log_level="CRITICAL",
            ) as process_context:
                entries = process_context.create_request_context().get_code_location_entries()
    except Exception as exc:  # an unreadable workspace file must be a finding, not a traceback
        return [
            HealthItem(
                "code location",
                False,
                f"workspace {workspace_file} could not be read: {_first_line(exc)}",
                LOCATION_ALERT_KEY,
                "fix the workspace file (`dagster definitions validate -w FILE` shows the same error)",
            )
        ]
    items = []
    for name, entry in sorted(entries.items()):
        if entry.load_error is None:
            items.append(HealthItem(f"code location {name}", True, "loads", LOCATION_ALERT_KEY))
            continue
        items.append(
            HealthItem(
                f"code location {name}",
                False,
                f"code location {name} fails to load, so no schedule or sensor runs; error: "
                f"{_first_line(entry.load_error)}",
                LOCATION_ALERT_KEY,
                f"`dagster definitions validate -w {workspace_file}` shows the full error; fix it (a bad variable, "
                "an import error, the code server down) and reload the location in the UI (Deployment → Reload)",
            )
        )
    return items
