"""Token statistics of `adaptlab data show`, computed in the library: checked against the lengths tokenized directly."""

from __future__ import annotations

import statistics

from adaptlab.data.records import Classification, Instruction
from adaptlab.data.stats import token_stats
from adaptlab.data.templates import tokenize_record


def test_token_stats_match_the_tokenized_lengths(tiny):
    _, tok = tiny
    records = [Instruction(instruction="Say hi " * (i + 1), output="hi " * (3 * i + 1)) for i in range(21)]
    lengths = sorted(len(tokenize_record(r, tok)) for r in records)
    s = token_stats(records, tok)
    assert (s.records, s.measured, s.min, s.max) == (21, 21, lengths[0], lengths[-1])
    assert s.median == lengths[10] and s.mean == statistics.mean(lengths) and s.p95 == lengths[19]
    assert token_stats(records, tok, measured=5).measured == 5


def test_records_training_does_not_tokenize_have_no_stats(tiny):
    assert token_stats([Classification("x", "y")], tiny[1]) is None
