"""INSERT … ON CONFLICT DO UPDATE for both backends: the one SQL helper the repositories share."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite


def upsert(
    session: sa.orm.Session,
    model: type,
    rows: list[dict[str, Any]],
    *,
    key: str,
    keep_on_conflict: Sequence[str] = (),
) -> None:
    """INSERT … ON CONFLICT (key) DO UPDATE, on SQLite and PostgreSQL alike."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(model).values(rows)
    # Literal processing of custom types happens through bind params; the excluded row carries them.
    updates = {name: statement.excluded[name] for name in rows[0] if name != key and name not in keep_on_conflict}
    for name in keep_on_conflict:
        column = getattr(model, name)
        updates[name] = sa.func.coalesce(column, statement.excluded[name])
    session.execute(statement.on_conflict_do_update(index_elements=[key], set_=updates))
