"""Every asset check the product defines, by key (for `status` and the health asset)."""

from __future__ import annotations

import dagster as dg

from trading_pipeline.checks import closes, positions, preflight, quotes, universe

ALL_SPECS: dict[dg.AssetCheckKey, dg.AssetCheckSpec] = {
    spec.key: spec for module in (universe, quotes, positions, closes, preflight) for spec in module.SPECS
}
