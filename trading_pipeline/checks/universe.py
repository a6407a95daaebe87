"""Checks on `universe`: the configured sample size, and no alphabetical bias (the seed's sampling bug)."""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg

from trading_pipeline.checks.helpers import result
from trading_pipeline.checks.limits import MIN_LETTER_PVALUE
from trading_pipeline.domain.stats import chi_square_pvalue, chi_square_statistic

SPECS = [
    dg.AssetCheckSpec(
        "sample_size_as_configured",
        asset="universe",
        description="The day's sample has the configured number of symbols (or the whole universe if smaller).",
    ),
    dg.AssetCheckSpec(
        "letters_not_biased",
        asset="universe",
        description=(
            "The sample's first letters match the full universe's (chi-square). Brokers list assets alphabetically: "
            "a biased sample trades only A-names, the seed app's exact bug."
        ),
    ),
]


def sample_size_as_configured(sampled: int, configured: int, universe_size: int) -> dg.AssetCheckResult:
    expected = min(configured, universe_size)
    return result(
        "sample_size_as_configured",
        sampled == expected and sampled > 0,
        f"sampled {sampled}, expected {expected}",
        numbers={"sampled": sampled, "configured": configured, "universe_size": universe_size},
    )


def letters_not_biased(
    sample_letters: Mapping[str, int], universe_letters: Mapping[str, int], *, min_pvalue: float = MIN_LETTER_PVALUE
) -> dg.AssetCheckResult:
    total = sum(universe_letters.values()) or 1
    shares = {letter: count / total for letter, count in universe_letters.items()}
    statistic, dof = chi_square_statistic(sample_letters, shares)
    pvalue = chi_square_pvalue(statistic, dof)
    return result(
        "letters_not_biased",
        pvalue >= min_pvalue,
        f"chi-square p = {pvalue:.3g} (limit {min_pvalue:g})",
        numbers={"chi_square": round(statistic, 3), "degrees_of_freedom": dof, "p_value": float(pvalue)},
    )
