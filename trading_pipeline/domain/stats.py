"""Small statistics the checks need, without pulling SciPy into the product (tests compare with SciPy)."""

from __future__ import annotations

import math
from collections.abc import Mapping


def chi_square_statistic(observed: Mapping[str, int], expected_shares: Mapping[str, float]) -> tuple[float, int]:
    """Pearson's chi-square of `observed` counts against `expected_shares` (summing to 1); (statistic, dof).

    Categories with an expected share of 0 are left out (they cannot be observed in an unbiased sample)."""
    total = sum(observed.values())
    if total == 0:
        return 0.0, 0
    statistic = 0.0
    categories = 0
    for key, share in expected_shares.items():
        if share <= 0:
            continue
        expected = share * total
        statistic += (observed.get(key, 0) - expected) ** 2 / expected
        categories += 1
    return statistic, max(0, categories - 1)


def chi_square_pvalue(statistic: float, dof: int) -> float:
    """P(X ≥ statistic) for X ~ chi-square(dof): the regularized upper incomplete gamma Q(dof/2, statistic/2)."""
    if dof <= 0:
        return 1.0
    if statistic <= 0:
        return 1.0
    return _gamma_q(dof / 2.0, statistic / 2.0)


def _gamma_q(a: float, x: float) -> float:
    if x < a + 1.0:  # series for P, then Q = 1 - P
        term = total = 1.0 / a
        n = a
        for _ in range(1000):
            n += 1.0
            term *= x / n
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return max(0.0, 1.0 - total * math.exp(-x + a * math.log(x) - math.lgamma(a)))
    # Continued fraction for Q (Lentz's method).
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 1000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return min(1.0, math.exp(-x + a * math.log(x) - math.lgamma(a)) * h)
