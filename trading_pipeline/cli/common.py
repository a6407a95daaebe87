"""What every command group shares: exit codes, date arguments, and opening the Dagster instance and the
trading DB so that a missing or broken one is a health finding, not a traceback."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

from trading_pipeline.settings import Settings, SettingsError
from trading_pipeline.store.database import Database, DatabaseError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def optional_day(text: str | None, flag: str = "--date") -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        raise SettingsError(f"{flag} must be YYYY-MM-DD, got {text!r}") from None


def dagster_instance_or_problem():  # type: ignore[no-untyped-def]
    """(instance, None) for DAGSTER_HOME, or (None, why not): unset, or a dagster.yaml that does not load."""
    import dagster as dg

    if not os.environ.get("DAGSTER_HOME"):
        return None, "DAGSTER_HOME is not set: point it at the instance the daemon uses"
    home = os.environ["DAGSTER_HOME"]
    try:
        if not os.path.exists(os.path.join(home, "dagster.yaml")):
            # Dagster would print a warning before our verdict; the defaults it falls back to are usable.
            logger = logging.getLogger("dagster")
            level = logger.level
            logger.setLevel(logging.ERROR)
            try:
                return dg.DagsterInstance.get(), None
            finally:
                logger.setLevel(level)
        return dg.DagsterInstance.get(), None
    except Exception as exc:  # a malformed dagster.yaml must be a NO-GO, not a traceback
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, f"cannot load the Dagster instance at DAGSTER_HOME: {first}"


def open_database(settings: Settings) -> tuple[Database | None, str | None]:
    """(the trading DB, None) if reachable and current; else (None, what is wrong and what to do) — the
    health reports and alerts carry that reason themselves, since their reader never sees this stderr."""
    from trading_pipeline.store.migrate import ensure_schema_current

    db = None
    try:
        db = Database(settings.database_url)
        ensure_schema_current(db)
        return db, None
    except DatabaseError as exc:
        if db is not None:
            db.dispose()
        return None, str(exc)  # said by the report itself, in its health section and any alert


@contextmanager
def instance_and_database(
    settings: Settings,
) -> Iterator[tuple[Any, str | None, Database | None, str | None]]:
    """(instance, why no instance, trading DB or None, why no DB) for the health commands; both disposed."""
    instance, instance_problem = dagster_instance_or_problem()
    db, db_problem = open_database(settings)
    try:
        yield instance, instance_problem, db, db_problem
    finally:
        if db is not None:
            db.dispose()
        if instance is not None:
            instance.dispose()
