"""Verdict strings: parsing the authors' formats and enumerating them for logprob verdicts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from longrm.rm.prompts import fill, letters
from longrm.rm.verdicts import format_ranking, parse_ranking, parse_score, verdict_strings


@pytest.mark.parametrize(
    ("text", "n", "want"),
    [
        ("Answer A is grounded. [[A]]", 2, [0, 1]),
        ("[[B]]", 2, [1, 0]),
        ("first [[A]] then on reflection [[B]]", 2, [1, 0]),  # the last verdict counts
        ("[[A>B]]", 2, [0, 1]),
        ("[[C > A > B]]", 3, [2, 0, 1]),
        ("[[A>B]]", 3, None),  # a ranking must name every letter
        ("[[A>A>B]]", 3, None),
        ("[[D>A>B>C]] trailing", 4, [3, 0, 1, 2]),
        ("A is better", 2, None),
        ("[[E]]", 2, None),
        ("[A]", 2, None),
    ],
)
def test_parse_ranking(text: str, n: int, want: list[int] | None) -> None:
    assert parse_ranking(text, n) == want


def test_parse_score() -> None:
    assert parse_score("[Analysis] fine.\n[Score: 7]") == 7.0
    assert parse_score("[score: 3.5] and later [Score: 9]") == 9.0
    assert parse_score("Score 7") is None


@given(st.permutations(list(range(4))))
def test_format_then_parse_round_trip(perm: list[int]) -> None:
    assert parse_ranking(format_ranking(perm), 4) == perm


def test_verdict_strings() -> None:
    assert verdict_strings(2) == [("[[A]]", [0, 1]), ("[[B]]", [1, 0])]
    four = verdict_strings(4)
    assert len(four) == 24 and len({s for s, _ in four}) == 24
    assert all(parse_ranking(s, 4) == r for s, r in four)


def test_fill_leaves_braces_in_text_alone() -> None:
    assert fill("{task}|{responses}", task="a {responses} b", responses="R") == "a {responses} b|R"
    with pytest.raises(ValueError):
        letters(27)
