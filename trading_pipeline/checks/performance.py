"""The checks on `performance`: every position priced, and the benchmark known, so a P&L number is never
silently computed from less than the whole book. The asset evaluates them as it computes each day."""

from __future__ import annotations

import dagster as dg

SPECS = [
    dg.AssetCheckSpec(
        "every_position_marked",
        asset="performance",
        description=(
            "Every position open at a day's close was marked at a close price, and every closed trade has an "
            "exit price. Otherwise unrealized or realized P&L leaves those positions out — the numbers would "
            "look better or worse than the account really is."
        ),
    ),
    dg.AssetCheckSpec(
        "benchmark_close_known",
        asset="performance",
        description="SPY's close is known for every day computed, so the return vs SPY is not missing.",
    ),
]
