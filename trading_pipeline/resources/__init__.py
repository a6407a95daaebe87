"""Dagster resources: the trading DB (engine per run), the broker, the strategy and risk limits."""
