"""The trading store: SQLAlchemy 2 typed models, one short-transaction repository per table family, Alembic
migrations."""
