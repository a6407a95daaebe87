"""Partitions: daily in America/New_York (the exchange's day, not UTC's)."""

from __future__ import annotations

import dagster as dg

NEW_YORK = "America/New_York"

# end_offset=1: today's partition exists during the trading day (Dagster's default ends at yesterday).
daily_partitions = dg.DailyPartitionsDefinition(start_date="2025-01-01", timezone=NEW_YORK, end_offset=1)
