"""`universe`: the day's shuffled sample of active tradable US equities (daily partitions, New York)."""

from datetime import date

import dagster as dg

from trading_pipeline.assets.context import guarded_broker
from trading_pipeline.assets.trading_days import trading_day_partitions
from trading_pipeline.checks import universe as universe_checks
from trading_pipeline.checks.metadata import histogram_table, md, symbols_text
from trading_pipeline.resources.broker import BrokerResource
from trading_pipeline.resources.database import TradingDatabase
from trading_pipeline.steps.universe import build_universe


class UniverseConfig(dg.Config):
    sample_size: int = 500


@dg.asset(
    partitions_def=trading_day_partitions,  # NYSE sessions only: a weekend has no universe to sample
    group_name="trading",
    check_specs=universe_checks.SPECS,
    kinds={"python", "sql"},
    description=(
        "All active tradable assets from the broker, shuffled with a seed derived from the partition date, "
        "then sampled. Brokers list assets alphabetically: sampling without the shuffle trades only A-names. "
        "The seed and the sample are stored, so a day can be replayed."
    ),
)
def universe(
    context: dg.AssetExecutionContext, config: UniverseConfig, database: TradingDatabase, broker: BrokerResource
) -> dg.MaterializeResult:
    trading_date = date.fromisoformat(context.partition_key)
    result = build_universe(
        database.db, guarded_broker(broker, database), trading_date=trading_date, sample_size=config.sample_size
    )
    context.log.info(
        f"universe {trading_date}: sampled {len(result.sample)} of {result.universe_size} symbols, seed {result.seed}"
    )
    return dg.MaterializeResult(
        metadata={
            "trading_date": trading_date.isoformat(),
            "universe_size": result.universe_size,
            "sample_size": len(result.sample),
            "seed": str(result.seed),
            "first_letter_histogram": md(histogram_table(result.letters_sample)),
            "sample_preview": symbols_text(result.sample),
        },
        check_results=[
            universe_checks.sample_size_as_configured(len(result.sample), config.sample_size, result.universe_size),
            universe_checks.letters_not_biased(result.letters_sample, result.letters_universe),
        ],
    )
