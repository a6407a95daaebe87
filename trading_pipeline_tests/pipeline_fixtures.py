"""Helpers for pipeline tests: Definitions pointed at an in-process sim broker, job runs, seeded positions."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import dagster as dg

from trading_pipeline.definitions import build_definitions, sim_or_live_resources
from trading_pipeline.domain.strategy import price_level
from trading_pipeline.domain.types import PositionSide, TradeStatus
from trading_pipeline.resources.broker import BrokerResource
from trading_pipeline.resources.strategy import StrategyConfig
from trading_pipeline.sim.server import SimBroker
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.database import Database

QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
TEST_DAY = "2026-11-24"


def pipeline_definitions(database_url: str, sim: SimBroker, **strategy: Any) -> dg.Definitions:
    """The product's definitions against `sim`. Plain market entries unless a test asks for protective orders
    (the product's default): most tests here exercise the sweep, the first line of defence, on its own."""
    broker = BrokerResource(kind="sim", trading_url=sim.url, data_url=sim.url, request_timeout_seconds=5)
    config = StrategyConfig(**{"protective_orders": False, **strategy})
    return build_definitions(sim_or_live_resources(database_url, broker, strategy=config))


def run_job(
    defs: dg.Definitions,
    name: str,
    *,
    instance: dg.DagsterInstance | None = None,
    partition_key: str | None = None,
    run_config: dict[str, Any] | None = None,
) -> dg.ExecuteInProcessResult:
    config = {**QUIET, **(run_config or {})}
    return defs.resolve_job_def(name).execute_in_process(
        instance=instance or dg.DagsterInstance.ephemeral(),
        partition_key=partition_key,
        run_config=config,
        raise_on_error=False,
    )


def metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, Any]:
    for materialization in result.asset_materializations_for_node(asset):
        return {k: getattr(v, "value", v) for k, v in materialization.metadata.items()}
    raise AssertionError(f"{asset} was not materialized")


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {
        event.event_specific_data.check_name: event.event_specific_data.passed
        for event in result.all_events
        if event.event_type_value == "ASSET_CHECK_EVALUATION"
    }


def seed_positions(
    db: Database, sim: SimBroker, symbols: Iterable[str], *, qty: int = 10, stop_pct: str = "3", tp_pct: str = "6"
) -> list[trades_repo.TradeRecord]:
    """Buy each symbol at the sim broker and record the matching open trade, as entries would."""
    trades = []
    for symbol in symbols:
        order = sim.market.submit_order(
            {"symbol": symbol, "qty": str(qty), "side": "buy", "type": "market", "time_in_force": "day"}
        )
        assert order.status == "filled", (symbol, order.status)
        price = order.filled_avg_price
        trades.append(
            trades_repo.insert_trade(
                db,
                trades_repo.NewTrade(
                    symbol=symbol,
                    side=PositionSide.LONG,
                    qty=Decimal(qty),
                    entry_price=price,
                    entry_at=sim.market.now,
                    stop_loss=price_level(price, Decimal(stop_pct), up=False),
                    take_profit=price_level(price, Decimal(tp_pct), up=True),
                    status=TradeStatus.OPEN,
                ),
            )
        )
    return trades


def broker_orders(sim: SimBroker) -> list[Any]:
    return list(sim.market.book.orders.values())
