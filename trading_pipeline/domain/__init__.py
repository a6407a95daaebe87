"""Pure trading logic. Imports neither dagster nor sqlalchemy (a test enforces it)."""
