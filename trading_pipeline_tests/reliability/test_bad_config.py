"""Bad configuration: negative stop or take-profit, a stop above entry for a long, qty 0, an unknown strategy,
a plug-in strategy that is not installed, lacks its attribute, has the wrong signature or gets bad params.

Each one is a typed error that names the problem, raised before anything is written or sent.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from trading_pipeline.domain.exits import InvalidLevels
from trading_pipeline.domain.names import TRADING_DAY_JOB
from trading_pipeline.domain.risk import RiskLimits
from trading_pipeline.domain.strategy import StrategyProblem, UnknownStrategy
from trading_pipeline.domain.types import PositionSide, TradeStatus
from trading_pipeline.resources.strategy import StrategyConfig
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.database import Database
from trading_pipeline.store.models import Base
from trading_pipeline_tests.pipeline_fixtures import TEST_DAY, pipeline_definitions, run_job
from trading_pipeline_tests.sim_fixtures import running_sim
from trading_pipeline_tests.strategy_plugins import PATH

pytestmark = pytest.mark.reliability

NOW = datetime(2026, 11, 24, 15, tzinfo=UTC)


def row_counts(db: Database) -> dict[str, int]:
    with db.engine.connect() as conn:
        return {
            t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for t in Base.metadata.sorted_tables
        }


BAD_STRATEGIES: dict[str, tuple[dict[str, Any], type[Exception], str]] = {
    "negative stop": ({"stop_loss_pct": -3.0}, ValueError, "stop_loss_pct"),
    "zero stop": ({"stop_loss_pct": 0.0}, ValueError, "stop_loss_pct"),
    "stop of 150% (above entry for a long)": ({"stop_loss_pct": 150.0}, ValueError, "stop_loss_pct"),
    "negative take-profit": ({"take_profit_pct": -6.0}, ValueError, "take_profit_pct"),
    "unknown strategy": ({"name": "moonshot"}, UnknownStrategy, "entry strategy 'moonshot': unknown strategy"),
    "negative max positions": ({"max_open_positions": -1}, ValueError, "max_open_positions"),
    "NaN notional": ({"max_notional_per_position": float("nan")}, ValueError, "max_notional_per_position"),
    "negative daily notional": ({"max_daily_notional": -1.0}, ValueError, "max_daily_notional"),
    "plug-in not installed": (
        {"name": "no_such_package.signals:Strategy"},
        StrategyProblem,
        "No module named 'no_such_package'",
    ),
    "plug-in attribute missing": ({"name": f"{PATH}:Missing"}, StrategyProblem, "has no attribute 'Missing'"),
    "plug-in with the wrong signature": (
        {"name": f"{PATH}:TwoArgumentStrategy"},
        StrategyProblem,
        "does not take exactly one argument",
    ),
    "plug-in with bad params": (
        {"name": f"{PATH}:GreedyStrategy", "params": '{"qty": -1}'},
        StrategyProblem,
        "qty: Input should be greater than 0",
    ),
    "params that are not JSON": ({"params": "{oops"}, StrategyProblem, "are not valid JSON"),
    "momentum's levels on another strategy": (
        {"name": f"{PATH}:RaisingStrategy", "take_profit_pct": 9.0},
        StrategyProblem,
        "take_profit_pct set on the strategy resource",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_STRATEGIES))
def test_a_bad_strategy_config_fails_the_run_before_anything_is_written(
    database_url: str, db: Database, case: str
) -> None:
    settings, error, words = BAD_STRATEGIES[case]
    with pytest.raises(error, match=words):
        config = StrategyConfig(**settings)
        config.load()
        config.limits()
    with running_sim(realtime=False, n_symbols=150) as sim:
        defs = pipeline_definitions(database_url, sim, **settings)
        result = run_job(
            defs,
            TRADING_DAY_JOB,
            partition_key=TEST_DAY,
            run_config={"ops": {"universe": {"config": {"sample_size": 40}}}},
        )
        assert not result.success
        failure = next(e for e in result.all_events if e.event_type_value in ("PIPELINE_FAILURE", "STEP_FAILURE"))
        text = str(failure.event_specific_data)
        assert words in text, text
        assert sim.market.book.orders == {}  # nothing sent
        assert sim.requests("GET /v2/assets") == 0  # the run stopped at its start, before the universe step
    assert row_counts(db) == dict.fromkeys(row_counts(db), 0)  # nothing written, not even the universe


GOOD = {
    "symbol": "AAA",
    "side": PositionSide.LONG,
    "qty": Decimal(10),
    "entry_price": Decimal(100),
    "entry_at": NOW,
    "stop_loss": Decimal(97),
    "take_profit": Decimal(106),
}
BAD_TRADES: dict[str, dict[str, Any]] = {
    "qty 0": {"qty": Decimal(0)},
    "negative qty": {"qty": Decimal(-5)},
    "NaN qty": {"qty": Decimal("NaN")},
    "entry price 0": {"entry_price": Decimal(0)},
    "negative stop": {"stop_loss": Decimal(-97)},
    "stop above entry for a long": {"stop_loss": Decimal(103)},
    "negative take-profit": {"take_profit": Decimal(-106)},
    "stop below entry for a short": {"side": PositionSide.SHORT, "stop_loss": Decimal(97), "take_profit": Decimal(94)},
    "trailing 0%": {"trailing_pct": Decimal(0)},
}


@pytest.mark.parametrize("case", sorted(BAD_TRADES))
def test_a_trade_with_contradicting_levels_is_refused_and_not_stored(db: Database, case: str) -> None:
    with pytest.raises(InvalidLevels):
        trades_repo.insert_trade(db, trades_repo.NewTrade(**{**GOOD, **BAD_TRADES[case]}))
    assert trades_repo.count_trades_by_status(db) == dict.fromkeys(TradeStatus, 0)


def test_a_well_formed_trade_is_stored(db: Database) -> None:
    stored = trades_repo.insert_trade(db, trades_repo.NewTrade(**GOOD))
    assert trades_repo.get_trade(db, stored.id) == stored


def test_risk_limits_refuse_negative_amounts() -> None:
    with pytest.raises(ValueError, match="max_total_notional"):
        RiskLimits(max_total_notional=Decimal(-1))


@pytest.mark.parametrize(
    "broken",
    [
        {"stop_loss_pct": -3.0, "name": "moonshot"},
        {"name": "no_such_package.signals:Strategy", "params": "{oops"},
        {"name": f"{PATH}:RaisingStrategy"},
    ],
    ids=["unknown name and negative stop", "plug-in not installed, params not JSON", "plug-in that raises"],
)
def test_a_bad_strategy_config_never_blocks_the_stop_loss_job(
    database_url: str, db: Database, broken: dict[str, Any]
) -> None:
    """Protection does not depend on the entry strategy: the stop-loss job never loads it."""
    from trading_pipeline.domain.names import STOP_LOSS_JOB
    from trading_pipeline_tests.pipeline_fixtures import seed_positions
    from trading_pipeline_tests.sim_fixtures import tradable_symbols

    with running_sim(realtime=False, n_symbols=150) as sim:
        [trade] = seed_positions(db, sim, tradable_symbols(sim.market, 1), qty=2)
        sim.market.gap(trade.symbol, -12)
        result = run_job(pipeline_definitions(database_url, sim, **broken), STOP_LOSS_JOB)
        assert result.success
        assert trades_repo.get_trade(db, trade.id).status is TradeStatus.CLOSED
