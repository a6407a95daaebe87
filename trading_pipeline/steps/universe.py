"""The day's universe: all active tradable assets → shuffle with the date's seed → sample N → store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from trading_pipeline.broker.base import Broker
from trading_pipeline.domain.sampling import first_letter_histogram, seed_for_date, shuffled_sample
from trading_pipeline.store import runs_repository as runs_repo
from trading_pipeline.store.database import Database


@dataclass(frozen=True, slots=True)
class UniverseResult:
    trading_date: date
    seed: int
    universe_size: int
    sample: list[str]
    letters_sample: dict[str, int]
    letters_universe: dict[str, int]


def build_universe(db: Database, broker: Broker, *, trading_date: date, sample_size: int) -> UniverseResult:
    if sample_size < 1:
        raise ValueError(f"sample_size must be at least 1, got {sample_size}")
    assets = broker.active_assets()
    symbols = [a.symbol for a in assets if a.tradable]
    seed = seed_for_date(trading_date)
    sample = shuffled_sample(symbols, sample_size, seed)
    runs_repo.save_universe_snapshot(
        db, trading_date=trading_date, seed=seed, universe_size=len(symbols), symbols=sample
    )
    return UniverseResult(
        trading_date=trading_date,
        seed=seed,
        universe_size=len(symbols),
        sample=sample,
        letters_sample=first_letter_histogram(sample),
        letters_universe=first_letter_histogram(symbols),
    )
