"""Token-length statistics of a data set's examples under a model's chat template (`adaptlab data show`)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from adaptlab.data.records import Record
from adaptlab.data.templates import tokenize_record

MEASURED = 2000     # records measured at most (the first ones)


@dataclass(frozen=True)
class TokenStats:
    records: int      # records in the data set
    measured: int     # records tokenized (the first MEASURED)
    min: int
    median: int
    mean: float
    p95: int          # nearest-rank below: sorted[int(0.95 * (measured - 1))]
    max: int


def token_stats(records: Sequence[Record], tokenizer, measured: int = MEASURED) -> TokenStats | None:
    """Tokens per example of the first `measured` records, as training tokenizes them; None when the
    records are not a kind training tokenizes (e.g. classification or preference rows)."""
    try:
        lengths = sorted(len(tokenize_record(r, tokenizer)) for r in records[:measured])
    except TypeError:
        return None
    return TokenStats(len(records), len(lengths), lengths[0], int(statistics.median(lengths)),
                      statistics.mean(lengths), lengths[int(0.95 * (len(lengths) - 1))], lengths[-1])
