"""A seeded universe of US-equity-like assets: unique 1-5 letter symbols plus SPY, alphabetical like Alpaca.

Some assets are inactive or not tradable so that the pipeline's filters have something to filter.
Generation is vectorised (well under 0.5 s for 5,000 symbols) and a pure function of (seed, n).
"""

from __future__ import annotations

import string
import uuid
from dataclasses import dataclass

import numpy as np

BENCHMARK_SYMBOL = "SPY"
EXCHANGES = ("NASDAQ", "NYSE", "ARCA", "AMEX", "BATS")
_EXCHANGE_WEIGHTS = (0.45, 0.35, 0.08, 0.07, 0.05)
# How often each symbol length occurs; five letters are rarer than three or four, as on US exchanges.
_LENGTHS = (1, 2, 3, 4, 5)
_LENGTH_WEIGHTS = (0.005, 0.045, 0.35, 0.5, 0.1)
_LETTERS = np.array(list(string.ascii_uppercase))
_NAME_SUFFIXES = ("Inc.", "Corp.", "Holdings Inc.", "Group Ltd.", "Technologies Inc.", "Co.", "Trust")


@dataclass(frozen=True, slots=True)
class SimAsset:
    id: str
    symbol: str
    name: str
    exchange: str
    status: str  # "active" | "inactive"
    tradable: bool
    marginable: bool
    shortable: bool
    easy_to_borrow: bool
    fractionable: bool


def uuid_from(rng: np.random.Generator) -> str:
    """A random (version 4) UUID drawn from a seeded generator, so ids repeat for the same seed."""
    return str(uuid.UUID(bytes=rng.bytes(16), version=4))


def generate_symbols(seed: int, n_symbols: int) -> list[str]:
    """`n_symbols` unique symbols (SPY included), sorted alphabetically."""
    if n_symbols < 1:
        raise ValueError(f"n_symbols must be at least 1, got {n_symbols}")
    # 26**1 + … + 26**5 ≈ 12.4 million possible symbols; refuse sizes where collisions would dominate.
    if n_symbols > 1_000_000:
        raise ValueError(f"n_symbols must be at most 1,000,000, got {n_symbols}")
    rng = np.random.default_rng([seed, 10])
    chosen: set[str] = {BENCHMARK_SYMBOL}
    ordered: list[str] = [BENCHMARK_SYMBOL]
    while len(ordered) < n_symbols:
        want = (n_symbols - len(ordered)) * 2 + 16
        lengths = rng.choice(_LENGTHS, size=want, p=_LENGTH_WEIGHTS)
        letters = _LETTERS[rng.integers(0, 26, size=(want, 5))]
        for length, row in zip(lengths.tolist(), letters, strict=True):
            symbol = "".join(row[:length])
            if symbol not in chosen:
                chosen.add(symbol)
                ordered.append(symbol)
                if len(ordered) == n_symbols:
                    break
    return sorted(ordered)


def generate_universe(seed: int, n_symbols: int) -> list[SimAsset]:
    """Alphabetical assets; about 3% inactive and another 4% active but not tradable. SPY is always tradable."""
    symbols = generate_symbols(seed, n_symbols)
    rng = np.random.default_rng([seed, 11])
    n = len(symbols)
    exchange_idx = rng.choice(len(EXCHANGES), size=n, p=_EXCHANGE_WEIGHTS)
    inactive = rng.random(n) < 0.03
    untradable = inactive | (rng.random(n) < 0.04)
    shortable = rng.random(n) < 0.85
    easy = shortable & (rng.random(n) < 0.9)
    fractionable = rng.random(n) < 0.7
    suffix_idx = rng.integers(0, len(_NAME_SUFFIXES), size=n)
    assets: list[SimAsset] = []
    for i, symbol in enumerate(symbols):
        is_benchmark = symbol == BENCHMARK_SYMBOL
        assets.append(
            SimAsset(
                id=uuid_from(rng),
                symbol=symbol,
                name="SPDR S&P 500 ETF Trust" if is_benchmark else f"{symbol.title()} {_NAME_SUFFIXES[suffix_idx[i]]}",
                exchange="ARCA" if is_benchmark else EXCHANGES[exchange_idx[i]],
                status="active" if is_benchmark or not inactive[i] else "inactive",
                tradable=is_benchmark or not bool(untradable[i]),
                marginable=is_benchmark or not bool(untradable[i]),
                shortable=is_benchmark or bool(shortable[i]),
                easy_to_borrow=is_benchmark or bool(easy[i]),
                fractionable=is_benchmark or bool(fractionable[i]),
            )
        )
    return assets
