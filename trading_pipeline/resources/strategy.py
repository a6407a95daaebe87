"""Strategy choice and risk limits as a resource, validated when a run starts."""

from __future__ import annotations

from decimal import Decimal

import dagster as dg

from trading_pipeline.domain.risk import RiskLimits
from trading_pipeline.domain.strategy import EntryStrategy, strategy_by_name


class StrategyConfig(dg.ConfigurableResource):
    """The entry strategy (by name) with its levels, and the risk limits every entry must fit."""

    name: str = "momentum"
    stop_loss_pct: float = 3.0
    take_profit_pct: float = 6.0
    max_open_positions: int = 10
    max_notional_per_position: float = 5000.0
    max_total_notional: float = 50000.0
    max_daily_loss: float | None = None  # today's loss that halts trading (kill switch) and alerts
    trailing_stop_pct: float | None = None
    max_age_trading_days: int | None = None  # close positions held this many sessions
    # Bracket entries: the broker itself holds each stop and take-profit — the defence that survives the
    # pipeline's own outage. On by default; off leaves protection to the sweep alone.
    protective_orders: bool = True

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # A bad config (negative stop, unknown strategy name) fails the run at its start, with the reason,
        # instead of after the universe and quotes steps have written and queried the broker. The entry
        # strategy is not checked for the stop-loss job, which never uses it: a bad entry config must stop
        # entries, never the protection of what is already open.
        from trading_pipeline.domain.names import STOP_LOSS_JOB

        run = context.run
        if run is not None and run.job_name == STOP_LOSS_JOB:
            return  # the sweep reads only what it needs, defensively (see `sweep_settings`)
        self.strategy()
        self.limits()
        _, _, problem = self.sweep_settings()
        if problem:
            raise ValueError(problem)

    def sweep_settings(self) -> tuple[int | None, RiskLimits | None, str | None]:
        """(max age, risk limits, problem) for the stop-loss run: an invalid value is reported and left out —
        it must never stop the sweep from protecting what is open."""
        problems = []
        max_age = self.max_age_trading_days
        if max_age is not None and max_age < 1:
            problems.append(f"max_age_trading_days must be at least 1, got {max_age}")
            max_age = None
        try:
            limits: RiskLimits | None = self.limits()
        except ValueError as exc:
            problems.append(str(exc))
            limits = None
        return max_age, limits, "; ".join(problems) or None

    def strategy(self) -> EntryStrategy:
        return strategy_by_name(
            self.name,
            stop_loss_pct=Decimal(str(self.stop_loss_pct)),
            take_profit_pct=Decimal(str(self.take_profit_pct)),
            trailing_stop_pct=_decimal(self.trailing_stop_pct),
        )

    def limits(self) -> RiskLimits:
        return RiskLimits(
            max_open_positions=self.max_open_positions,
            max_notional_per_position=Decimal(str(self.max_notional_per_position)),
            max_total_notional=Decimal(str(self.max_total_notional)),
            max_daily_loss=_decimal(self.max_daily_loss),
        )


def _decimal(value: float | None) -> Decimal | None:
    return None if value is None else Decimal(str(value))
