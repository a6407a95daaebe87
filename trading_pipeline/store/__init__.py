"""The trading store: SQLAlchemy 2 typed models, short-transaction repository, Alembic migrations."""
