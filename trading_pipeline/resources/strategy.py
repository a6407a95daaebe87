"""Strategy choice and risk limits as a resource, validated when a run that trades starts."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

import dagster as dg

from trading_pipeline.domain.risk import RiskLimits
from trading_pipeline.domain.strategy import StrategyProblem
from trading_pipeline.resources.strategy_loading import BUILT_IN, LoadedStrategy, load_strategy, parse_params

# momentum's levels are resource fields (older run configs set them); for any other strategy they must stay
# at these defaults, since its intents carry their own levels and a changed value would silently not apply.
MOMENTUM_LEVEL_DEFAULTS = {"stop_loss_pct": 3.0, "take_profit_pct": 6.0, "trailing_stop_pct": None}


class StrategyConfig(dg.ConfigurableResource):
    """The entry strategy (a name or package.module:attribute, with JSON params) and the risk limits every
    entry of every strategy must fit."""

    name: str = "momentum"
    params: str = ""  # a JSON object, validated by the strategy's own Params model
    stop_loss_pct: float = 3.0  # momentum's levels (other strategies set levels in each intent)
    take_profit_pct: float = 6.0
    max_open_positions: int = 10
    max_notional_per_position: float = 5000.0
    max_total_notional: float = 50000.0
    max_daily_notional: float | None = None  # notional of all entries opened in one session
    max_daily_loss: float | None = None  # today's loss that halts trading (kill switch) and alerts
    trailing_stop_pct: float | None = None
    max_age_trading_days: int | None = None  # close positions held this many sessions
    # Bracket entries: the broker itself holds each stop and take-profit — the defence that survives the
    # pipeline's own outage. On by default; off leaves protection to the sweep alone.
    protective_orders: bool = True
    # Positions at the broker the pipeline did not open: "adopt" (paper's default) or "alert-only" (live's).
    outside_positions: Literal["adopt", "alert-only"] = "adopt"

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # A bad config (negative stop, a strategy that does not load) fails the run at its start, with the
        # reason, instead of after the universe and quotes steps have written and queried the broker. The entry
        # strategy is not checked for the stop-loss job, which never uses it: a bad entry config must stop
        # entries, never the protection of what is already open.
        from trading_pipeline.domain.names import STOP_LOSS_JOB

        run = context.run
        if run is not None and run.job_name == STOP_LOSS_JOB:
            return  # the sweep reads only what it needs, defensively (see `sweep_settings`)
        self.load()
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

    def load(self) -> LoadedStrategy:
        """The configured strategy, imported, checked and made; StrategyProblem (one line) otherwise."""
        params = parse_params(self.params)
        if self.name.strip() in BUILT_IN:
            levels = {"stop_loss_pct": self.stop_loss_pct, "take_profit_pct": self.take_profit_pct}
            if self.trailing_stop_pct is not None:
                levels["trailing_stop_pct"] = self.trailing_stop_pct
            params = {**{k: Decimal(str(v)) for k, v in levels.items()}, **params}
        else:
            changed = [k for k, v in MOMENTUM_LEVEL_DEFAULTS.items() if getattr(self, k) != v]
            if changed:
                raise StrategyProblem(
                    f"entry strategy {self.name!r}: {', '.join(changed)} set on the strategy resource, but those "
                    "are momentum's levels and this strategy sets its own in each intent — put them in its params "
                    "(if it takes them) and leave the resource fields at their defaults"
                )
        return load_strategy(self.name, params)

    def limits(self) -> RiskLimits:
        return RiskLimits(
            max_open_positions=self.max_open_positions,
            max_notional_per_position=Decimal(str(self.max_notional_per_position)),
            max_total_notional=Decimal(str(self.max_total_notional)),
            max_daily_loss=_decimal(self.max_daily_loss),
            max_daily_notional=_decimal(self.max_daily_notional),
        )


def _decimal(value: float | None) -> Decimal | None:
    return None if value is None else Decimal(str(value))
