"""Chance-corrected agreement between two raters: Cohen's kappa (Cohen 1960, "A coefficient of agreement for
nominal scales", Educational and Psychological Measurement 20(1)).

For two raters labelling the same n items with categories k:

    kappa = (p_o - p_e) / (1 - p_e),   p_o = (1/n) sum_i [a_i == b_i],   p_e = sum_k p_a(k) p_b(k)

where p_a(k), p_b(k) are each rater's share of label k. kappa = 1 is perfect agreement, 0 what two raters
with those label frequencies reach by chance. It is undefined (None here; sklearn returns nan) when p_e = 1,
i.e. both raters give one and the same label to every item.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence

SWAP = {"x": "y", "y": "x"}


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float | None:
    """Cohen's kappa of two raters' labels on the same items (same order); None when undefined."""
    if len(a) != len(b):
        raise ValueError(f"kappa needs the two raters' labels of the same items ({len(a)} vs {len(b)} labels)")
    if not a:
        return None
    n = len(a)
    p_o = sum(x == y for x, y in zip(a, b)) / n
    count_a, count_b = Counter(a), Counter(b)
    p_e = sum(count_a[k] * count_b[k] for k in count_a) / (n * n)
    return None if p_e == 1 else (p_o - p_e) / (1 - p_e)


def pair_kappa(judge: Sequence[str], human: Sequence[str]) -> float | None:
    """Kappa between judge verdicts ('x' | 'y' | 'tie') and human votes ('x' | 'y') on answer pairs (x, y).

    Which answer of a pair is called x is arbitrary (the builtin HH-RLHF pairs always put the human's choice in
    x, which would make the human a constant rater and kappa 0 by construction), so every pair is counted in
    both labellings, (judge, human) and with x and y swapped: kappa then does not depend on the labelling."""
    swapped = [SWAP.get(v, v) for v in judge], [SWAP.get(v, v) for v in human]
    return cohen_kappa([*judge, *swapped[0]], [*human, *swapped[1]])
