"""Every asset check the product defines, by key (for `status` and the health asset)."""

from __future__ import annotations

import dagster as dg

from trading_pipeline.checks import closes, health, performance, positions, preflight, quotes, universe

ALL_SPECS: dict[dg.AssetCheckKey, dg.AssetCheckSpec] = {
    spec.key: spec
    for specs in (
        universe.SPECS,
        quotes.SPECS,
        positions.SPECS,
        closes.SPECS,
        preflight.SPECS,
        performance.SPECS,
        health.SPECS,
    )
    for spec in specs
}
