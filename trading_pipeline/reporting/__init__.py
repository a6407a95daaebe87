"""Reporting: the daily performance table and chart, and the `report` / `backfill` CLI commands."""
