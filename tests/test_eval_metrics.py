"""Metrics against their reference definitions (SQuAD eval script, Chen et al. 2021 numerically stable form)."""

import numpy as np
import pytest

from adaptlab.eval.metrics import alias_match, exact_match, extract_number, normalize_answer, pass_at_k, token_f1


def test_normalize_answer_squad():
    assert normalize_answer("The  Cat, sat!") == "cat sat"
    assert normalize_answer("An apple a day") == "apple day"
    assert normalize_answer("theatre") == "theatre"   # articles only as whole words


def test_exact_match_any_reference():
    assert exact_match("the Eiffel Tower.", ["Eiffel tower", "Paris"]) == 1.0
    assert exact_match("Eiffel", ["Eiffel tower"]) == 0.0
    assert exact_match("x", []) == 0.0


def test_token_f1_matches_squad_definition():
    # pred tokens {eiffel, tower, paris}, ref {eiffel, tower}: P = 2/3, R = 1, F1 = 0.8
    assert token_f1("Eiffel tower, Paris", ["the Eiffel Tower"]) == pytest.approx(0.8)
    assert token_f1("abc", ["xyz", "abc def"]) == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert token_f1("", [""]) == 1.0 and token_f1("a b", ["c"]) == 0.0


def test_alias_match():
    assert alias_match("I think it is Barack Obama, sir", ["Obama", "B. Obama"]) == 1.0
    assert alias_match("Obamacare", ["Obama"]) == 0.0


@pytest.mark.parametrize("text,expected", [
    ("so she has 3 + 4 = 7 apples.\n#### 7", "7"),
    ("The answer is 1,234.", "1234"),
    ("It costs $18.50 and then 20 more. The answer is $38.50", "38.5"),
    ("First 12, then 5, finally -3", "-3"),
    ("no digits here", None),
    ("2.0 pounds", "2"),
])
def test_extract_number(text, expected):
    assert extract_number(text) == expected


def _reference_pass_at_k(n, c, k):
    # the numerically stable product form from the Codex paper's figure 3
    if n - c < k:
        return 1.0
    return 1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1))


@pytest.mark.parametrize("n,c,k", [(1, 0, 1), (1, 1, 1), (10, 3, 1), (10, 3, 5), (200, 17, 10), (5, 4, 2)])
def test_pass_at_k_unbiased(n, c, k):
    assert pass_at_k(n, c, k) == pytest.approx(_reference_pass_at_k(n, c, k), abs=1e-12)


def test_pass_at_1_is_fraction_correct():
    assert pass_at_k(20, 7, 1) == pytest.approx(7 / 20)


def test_pass_at_k_rejects_bad_counts():
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)
