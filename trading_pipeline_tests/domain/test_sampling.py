"""Shuffle-then-sample: unbiased, reproducible, and tested statistically."""

from __future__ import annotations

import itertools
import string
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from trading_pipeline.domain.sampling import first_letter_histogram, seed_for_date, shuffled_sample


def sorted_universe(n: int = 8000) -> list[str]:
    """n distinct tickers, alphabetically sorted like a broker's asset list, with uneven letter counts."""
    letters = string.ascii_uppercase
    symbols = ["".join(p) for k in (2, 3, 4) for p in itertools.product(letters, repeat=k)]
    # Thin out some letters so the population's letter distribution is not uniform.
    weighted = [s for i, s in enumerate(symbols) if (ord(s[0]) % 3 != 0) or i % 4 == 0]
    return sorted(weighted[:: max(1, len(weighted) // n)][:n])


def letter_bias_pvalue(sample: list[str], population: list[str]) -> float:
    """Chi-square goodness of fit of the sample's first letters against the population's."""
    pop = first_letter_histogram(population)
    got = first_letter_histogram(sample)
    letters = sorted(pop)
    observed = [got.get(letter, 0) for letter in letters]
    total = len(sample)
    expected = [pop[letter] / len(population) * total for letter in letters]
    return float(stats.chisquare(observed, expected).pvalue)


def test_universe_fixture_is_sorted_and_large() -> None:
    universe = sorted_universe()
    assert len(universe) == 8000
    assert universe == sorted(universe)


def test_sample_matches_population_letter_distribution() -> None:
    universe = sorted_universe()
    pvalues = [letter_bias_pvalue(shuffled_sample(universe, 500, seed), universe) for seed in range(20)]
    # Under no bias p-values are uniform: none should be tiny, and their median sits near 0.5.
    assert min(pvalues) > 1e-4, pvalues
    assert 0.2 < sorted(pvalues)[len(pvalues) // 2] < 0.8, pvalues


def test_the_test_detects_alphabetical_bias() -> None:
    """The same statistic flags the seed's bug (first N of a sorted list), so the test above can fail."""
    universe = sorted_universe()
    assert letter_bias_pvalue(universe[:500], universe) < 1e-12


def test_positions_in_sorted_list_are_uniform() -> None:
    universe = sorted_universe()
    index = {s: i for i, s in enumerate(universe)}
    ranks = [index[s] / len(universe) for seed in range(10) for s in shuffled_sample(universe, 500, seed)]
    assert stats.kstest(ranks, "uniform").pvalue > 1e-4


def test_same_seed_same_sample_different_seed_different_sample() -> None:
    universe = sorted_universe()
    assert shuffled_sample(universe, 100, 42) == shuffled_sample(universe, 100, 42)
    assert shuffled_sample(universe, 100, 42) != shuffled_sample(universe, 100, 43)


def test_input_order_does_not_change_the_sample() -> None:
    universe = sorted_universe(500)
    assert shuffled_sample(universe, 50, 1) == shuffled_sample(list(reversed(universe)), 50, 1)


def test_seed_for_date_is_stable_and_distinct() -> None:
    assert seed_for_date(date(2026, 11, 24)) == seed_for_date(date(2026, 11, 24))
    assert seed_for_date(date(2026, 11, 24)) != seed_for_date(date(2026, 11, 25))
    # Pinned value: a change here silently changes every stored universe's reproducibility.
    assert seed_for_date(date(2026, 1, 2)) == 4008829186029701491
    assert 0 <= seed_for_date(date(2026, 1, 2)) < 2**63


@given(st.lists(st.text(alphabet=string.ascii_uppercase, min_size=1, max_size=5)), st.integers(0, 50), st.integers())
def test_sample_is_distinct_subset_of_requested_size(symbols: list[str], n: int, seed: int) -> None:
    sample = shuffled_sample(symbols, n, seed)
    assert len(sample) == min(n, len(set(symbols)))
    assert len(set(sample)) == len(sample)
    assert set(sample) <= set(symbols)


def test_negative_sample_size_is_refused() -> None:
    with pytest.raises(ValueError, match="0 or more"):
        shuffled_sample(["A"], -1, 0)
