"""Intervals, overlap and the Pareto front: the numbers the report's claims rest on.

Wilson score interval for a proportion p^ of n items (Wilson 1927), z = 1.96 for 95%:

    centre = (p^ + z^2 / 2n) / (1 + z^2 / n),   half = z / (1 + z^2 / n) * sqrt(p^(1 - p^) / n + z^2 / 4n^2)

Percentile bootstrap (Efron & Tibshirani 1993) for any mean of per-item scores: resample the items with
replacement B times, take the 2.5% and 97.5% quantiles of the resampled means.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

Z95 = 1.959963984540054


def wilson(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson interval of a proportion, as (low, high) in [0, 1]."""
    if n <= 0:
        raise ValueError("an interval needs at least one item")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap(scores: Sequence[float], draws: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `scores`."""
    if not scores:
        raise ValueError("an interval needs at least one item")
    rng = random.Random(seed)
    n = len(scores)
    means = sorted(sum(scores[rng.randrange(n)] for _ in range(n)) / n for _ in range(draws))
    lo = means[int((1 - level) / 2 * draws)]
    hi = means[min(draws - 1, int((1 + level) / 2 * draws))]
    return lo, hi


def interval(scores: Sequence[float]) -> tuple[float, float]:
    """Wilson for 0/1 scores (accuracy), bootstrap for anything else; in the scores' unit."""
    if all(s in (0.0, 1.0) for s in scores):
        return wilson(sum(scores), len(scores))
    return bootstrap(scores)


def overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """True when two intervals share any value: the data cannot tell the two apart."""
    return a[0] <= b[1] and b[0] <= a[1]


def pareto_front(points: dict[str, tuple[float, float]]) -> list[str]:
    """Names whose (cost, quality) no other point beats: lower-or-equal cost and higher-or-equal
    quality, strictly better in one. Sorted by cost."""
    front = [name for name, (c, q) in points.items()
             if not any((c2 <= c and q2 >= q) and (c2 < c or q2 > q) for c2, q2 in points.values())]
    return sorted(front, key=lambda n: points[n][0])
