"""Every route the simulator serves, in matching order: Alpaca's trading API, its market-data API (and its
corporate actions), the simulator's admin API, then Alpaca's 404 for anything else.

Each route is named as faults and counters know it: "<METHOD> <template>", e.g. "GET /v2/stocks/bars".
"""

from __future__ import annotations

from starlette.routing import Route

from trading_pipeline.sim.admin_routes import ADMIN_ROUTES
from trading_pipeline.sim.corporate_action_routes import CORPORATE_ACTION_ROUTES
from trading_pipeline.sim.data_routes import DATA_ROUTES, SYMBOL_PATTERN
from trading_pipeline.sim.endpoint import unmatched_route
from trading_pipeline.sim.trading_routes import TRADING_ROUTES

# SYMBOL_PATTERN lives in data_routes; it is also importable from here, where the broker tests check that the
# adapter and the sim agree on what a symbol is.
__all__ = ["ROUTES", "SYMBOL_PATTERN"]

ROUTES: tuple[Route, ...] = (
    *TRADING_ROUTES,
    *DATA_ROUTES,
    *CORPORATE_ACTION_ROUTES,
    *ADMIN_ROUTES,
    unmatched_route(),
)
