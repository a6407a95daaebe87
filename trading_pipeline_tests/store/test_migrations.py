"""Migrations match the models, upgrade is idempotent, and an old schema is a one-line error."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from trading_pipeline.store.database import Database, DatabaseConfigError, DatabaseUnavailable
from trading_pipeline.store.migrate import (
    SchemaOutdated,
    current_revision,
    ensure_schema_current,
    head_revision,
    upgrade,
)
from trading_pipeline.store.models import Base


def test_migrations_produce_exactly_the_models(db: Database) -> None:
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []


def test_upgrade_is_idempotent_and_current(db: Database) -> None:
    assert current_revision(db) == head_revision()
    before, after = upgrade(db)
    assert before == after == head_revision()
    ensure_schema_current(db)


def test_empty_database_is_reported_with_the_fix(tmp_path) -> None:
    with Database(f"sqlite:///{tmp_path / 'empty.db'}") as db, pytest.raises(SchemaOutdated) as info:
        ensure_schema_current(db)
    message = str(info.value)
    assert "trading-pipeline db upgrade" in message and "\n" not in message


def test_older_migration_is_reported_with_the_fix(tmp_path) -> None:
    with Database(f"sqlite:///{tmp_path / 'old.db'}") as db:
        upgrade(db)
        with db.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0000_old'")
        with pytest.raises(SchemaOutdated, match=r"is at migration 0000_old.*trading-pipeline db upgrade"):
            ensure_schema_current(db)


@pytest.mark.parametrize("url", ["nonsense", "mysql://u@h/db", "postgresql+nodriver://u@h/db"])
def test_bad_urls_are_config_errors(url: str) -> None:
    with pytest.raises(DatabaseConfigError, match="DATABASE_URL"):
        Database(url)


def test_unreachable_postgres_is_one_line_without_password() -> None:
    db = Database("postgresql+psycopg://trader:s3cret@127.0.0.1:1/trading")
    with pytest.raises(DatabaseUnavailable) as info:
        db.check_connection()
    message = str(info.value)
    assert "127.0.0.1:1" in message and "s3cret" not in message and "\n" not in message
