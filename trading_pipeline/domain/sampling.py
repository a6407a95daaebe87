"""Shuffle-then-sample with a recorded seed.

Brokers return their asset lists sorted alphabetically; taking the first N (or sampling an unshuffled
list with a biased method) trades only A-names. Shuffling with an explicit seed fixes the bias and keeps
a run reproducible: the seed is stored next to the sample.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Sequence
from datetime import date


def seed_for_date(day: date, salt: str = "universe") -> int:
    """A stable 63-bit seed for a calendar day (same day → same seed, on every machine and Python)."""
    digest = hashlib.sha256(f"{salt}:{day.isoformat()}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def shuffled_sample(symbols: Sequence[str], n: int, seed: int) -> list[str]:
    """Return min(n, len(symbols)) distinct symbols, chosen uniformly at random by `seed`.

    The input order does not matter for the distribution; duplicates in the input are dropped first.
    """
    if n < 0:
        raise ValueError(f"sample size must be 0 or more, got {n}")
    unique = sorted(set(symbols))
    rng = random.Random(seed)
    rng.shuffle(unique)
    return unique[:n]


def first_letter_histogram(symbols: Sequence[str]) -> dict[str, int]:
    """Count symbols by first letter, letters in order; the UI shows it to make a biased sample obvious."""
    counts = Counter(s[0].upper() for s in symbols if s)
    return dict(sorted(counts.items()))
