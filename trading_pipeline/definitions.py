"""The one dagster.Definitions of the product (assets, checks, jobs, schedules, sensors, resources)."""

from __future__ import annotations

import dagster as dg

defs = dg.Definitions()
