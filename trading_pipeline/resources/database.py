"""The trading database as a Dagster resource: an engine per run, disposed when the run ends.

No module-level engine exists anywhere. The seed app's global async engine was bound to the event loop
of its first task and failed every later one ("Future attached to a different loop"); here each run gets
a fresh engine in `setup_for_execution` and disposes it in `teardown_after_execution`.
"""

from __future__ import annotations

import dagster as dg
from pydantic import PrivateAttr

from trading_pipeline.store.database import Database, freeze_loaded_objects
from trading_pipeline.store.migrate import ensure_schema_current


class TradingDatabase(dg.ConfigurableResource):
    """Trading DB URL (DATABASE_URL, an EnvVar so a password never shows in the UI) and pool size."""

    url: str
    pool_size: int = 5

    _db: Database | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        freeze_loaded_objects()  # a run's pauses for garbage collection scan the run's objects, not Dagster's
        db = Database(self.url, pool_size=self.pool_size)
        try:
            ensure_schema_current(db)  # an old schema fails the run at once, with the fix in the message
        except Exception:
            db.dispose()
            raise
        self._db = db

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._db is not None:
            self._db.dispose()
            self._db = None

    @property
    def db(self) -> Database:
        if self._db is None:
            raise RuntimeError("TradingDatabase used outside a run (setup_for_execution has not run)")
        return self._db
