"""The authors' evaluation protocol (`--protocol paper`): orders, parsing, cut, prompt layout."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from conftest import OFFICIAL

from longrm.evaluate.metrics import rank_match
from longrm.evaluate.predictions import Prediction
from longrm.evaluate.protocol import paper_cut, paper_display_orders, paper_items
from longrm.items import Item, load_items
from longrm.rm.prompts import PromptSet
from longrm.rm.verdicts import parse_paper_verdict


def _file_rows(count: int, task: str = "LongQA") -> list[Item]:
    base = load_items(OFFICIAL).items
    out = []
    for i in range(count):
        src = base[i % len(base)]
        out.append(Item(**{**src.__dict__, "id": i, "task": task, "origin": task}))
    return out


def test_orders_follow_the_authors_draws() -> None:
    """The authors' evaluator: random.seed(42) per task file, shuffle the file's rows, then one
    random.shuffle of range(n) per row in that shuffled order (global `random` here, on purpose:
    a second way of writing the same rule).
    """
    rows = _file_rows(9) + _file_rows(5, task="Cite")
    orders = paper_display_orders(rows)
    expected: dict[str, list[int]] = {}
    state = random.getstate()
    try:
        for task in ("LongQA", "Cite"):
            random.seed(42)
            data = [r for r in rows if r.origin == task]
            random.shuffle(data)
            for row in data:
                order = list(range(row.n))
                random.shuffle(order)
                expected[row.key] = order
    finally:
        random.setstate(state)
    assert orders == expected
    assert len({tuple(o) for k, o in orders.items() if k.startswith("LongQA")}) > 1


def test_task_comes_from_the_file_name(tmp_path: Path) -> None:
    items = load_items(OFFICIAL).items
    renamed = [Item(**{**i.__dict__, "task": "SomethingElse"}) for i in items]
    assert {i.task for i in paper_items(renamed)} == {"Cite", "LongQA"}


@pytest.mark.parametrize(
    ("text", "pairwise", "expected"),
    [
        ("Both are fine. [[B]] ... on reflection [[A]]", True, [0, 1]),  # any [[A]] wins
        ("Verdict: [[B]]", True, [1, 0]),
        ("[B]", True, None),
        ("[[A>B>C]]", False, [0, 1, 2]),
        ("[Ranking]\n[[C > A > B]]", False, [2, 0, 1]),
        ("[[Assistant C > Assistant A > B]]", False, [2, 0, 1]),
        ("[[Assistant: C > A > B]]", False, None),  # their pattern cannot span a ':'
        ("[[C > A > B]", False, [2, 0, 1]),  # one closing bracket is enough
        ("first [[B>A>C]] then [[A>B>C]]", False, [1, 0, 2]),  # the FIRST ranking counts
        ("[[A>B>B]]", False, None),  # duplicate letter
        ("[[A>C>D]]", False, None),  # a gap: B missing
        ("[[AB>C]]", False, None),  # a part of two letters
        ("[[a>b>c]]", False, None),
        ("no ranking at all", False, None),
        ("[[A>B>C]] " + ">" * 8, False, None),  # more than nine '>' in the reply
        ("[[A>B>C]] " + ">" * 7, False, [0, 1, 2]),
    ],
)
def test_paper_parsing_rules(text: str, pairwise: bool, expected: list[int] | None) -> None:
    assert parse_paper_verdict(text, pairwise) == expected


def _pred(n: int, order: list[int], ranking: list[int] | None) -> Prediction:
    return Prediction(
        key="T:1", task="T", tasktype="BestOfN", n=n, order_index=0, order=order, ranking=ranking
    )


def test_partial_rankings_earn_partial_credit() -> None:
    # four answers shown in gold order; "[[A>B>C]]" ranks three of them right: 3/4
    partial = parse_paper_verdict("[[A>B>C]]", pairwise=False)
    assert rank_match(_pred(4, [0, 1, 2, 3], partial)) == pytest.approx(0.75)
    # slot D (gold best) is unranked, slots A-C are ranked 1-3 but hold gold ranks 1-3: 0/4...
    assert rank_match(_pred(4, [1, 2, 3, 0], partial)) == 0.0
    # ... and a ranking naming a fifth letter is scored on the four slots shown
    extra = parse_paper_verdict("[[A>B>C>D>E]]", pairwise=False)
    assert rank_match(_pred(4, [0, 1, 2, 3], extra)) == 1.0


def test_paper_cut_keeps_head_and_tail() -> None:
    short = list(range(1000))
    assert paper_cut(short) == (short, False)
    long = list(range(140_000))
    cut, was_cut = paper_cut(long)
    assert was_cut and len(cut) == 65_536 + 65_531
    assert cut[:3] == [0, 1, 2] and cut[-1] == 139_999 and cut[65_536] == 140_000 - 65_531


def test_prompt_files_can_lay_out_the_authors_judge_input(tmp_path: Path) -> None:
    """Every placeholder the authors' layout needs: roles dropped, lettered answer blocks, the
    number of answers and the ranking pattern (the words stay the user's)."""
    path = tmp_path / "paper.toml"
    path.write_text(
        'pairwise_system = "SYSTEM-PAIR"\n'
        'pairwise_user = "[User Question]\\n{task_plain}\\n\\n{responses}"\n'
        'rank_system = "Rank {n} answers, reply as {pattern}."\n'
        'rank_user = "[User Question]\\n{task_plain}\\n\\n{responses}"\n'
        "answer_block = \"[The Start of Assistant {letter}'s Answer]\\n{answer}\\n"
        "[The End of Assistant {letter}'s Answer]\"\n",
        encoding="utf-8",
    )
    prompts = PromptSet.load(path)
    task = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q?"}]
    pair = prompts.judge_messages(task, ["one", "two"])
    assert pair[0]["content"] == "SYSTEM-PAIR"
    assert pair[1]["content"] == (
        "[User Question]\nBe brief.\n\nQ?\n\n"
        "[The Start of Assistant A's Answer]\none\n[The End of Assistant A's Answer]\n\n"
        "[The Start of Assistant B's Answer]\ntwo\n[The End of Assistant B's Answer]"
    )
    ranked = prompts.judge_messages(task, ["one", "two"], as_ranking=True)
    assert ranked[0]["content"] == "Rank 2 answers, reply as [[A>B]]."
    four = prompts.judge_messages(task, ["a", "b", "c", "d"])
    assert four[0]["content"] == "Rank 4 answers, reply as [[A>B>C>D]]."
