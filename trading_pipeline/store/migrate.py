"""Schema migrations (Alembic) run from code: `trading-pipeline db upgrade`, and the version check
every run makes before touching the DB (an old schema is a one-line error naming the fix)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from trading_pipeline.store.database import Database, DatabaseError

MIGRATIONS = Path(__file__).with_name("migrations")


class SchemaOutdated(DatabaseError):
    pass


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "no migrations found"
    return head


def current_revision(db: Database) -> str | None:
    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(db: Database, revision: str = "head") -> tuple[str | None, str]:
    """Migrate to `revision`; returns (revision before, revision after). Each migration is its own
    transaction, so a failure leaves the DB at the last completed revision, never half-migrated."""
    db.check_connection()
    before = current_revision(db)
    config = _config()
    with db.engine.connect() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
        conn.commit()
    return before, current_revision(db) or ""


def ensure_schema_current(db: Database) -> None:
    """Raise SchemaOutdated unless the DB is at the head migration."""
    db.check_connection()
    current, head = current_revision(db), head_revision()
    if current == head:
        return
    where = "has no trading tables yet" if current is None else f"is at migration {current}"
    raise SchemaOutdated(f"the trading DB {where}, this version needs {head}: run `trading-pipeline db upgrade`")
