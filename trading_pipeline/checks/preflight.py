"""The check on `preflight`: the go/no-go itself, so a NO-GO shows red in the UI and reaches the alert sensor."""

from __future__ import annotations

import dagster as dg

SPECS = [
    dg.AssetCheckSpec(
        "go",
        asset="preflight",
        description=(
            "Every pre-flight item is GO: automation running, daemon alive, keys set, DB current, broker reachable, "
            "account tradable, buying power above the floor, kill switch as intended, a session today."
        ),
    )
]
