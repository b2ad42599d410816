"""Judge training data from built items: eval's prompts, gold verdicts, held-out suites, JSONL."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from longrm.bench.construct import build_suite
from longrm.bench.haystack import Haystack
from longrm.items import PAIRWISE, Item, ItemError, SftRow, load_release_rows
from longrm.rm.prompts import PromptSet
from longrm.rm.verdicts import parse_ranking, verdict_strings
from longrm.train.heldout import held_out_haystack, overlap, training_suite
from longrm.train.judgments import (
    LAYOUTS,
    judged_orders,
    preference_examples,
    read_preference_jsonl,
    read_sft_jsonl,
    sft_examples,
    write_preference_jsonl,
    write_sft_jsonl,
)
from longrm.train.verdict_spans import best_slot, best_slot_counts

PROMPTS = PromptSet.load()
EVAL_SEED = 3


@pytest.fixture(scope="module")
def suite(tokenizer: Any) -> list[Item]:
    """One item per (family, format) at 1k tokens: 16 items, well under a second."""
    return build_suite(tokenizer, lengths="1k", seed=EVAL_SEED)


def _cases(items: list[Item], seed: int) -> list[tuple[Item, list[int]]]:
    return [(item, order) for item in items for order in judged_orders(item, seed=seed)]


def _gold(order: list[int]) -> list[int]:
    return sorted(range(len(order)), key=lambda s: order[s])


def _last(text: str, n: int) -> list[int] | None:
    return parse_ranking(text.splitlines()[-1], n)


# ---------------------------------------------------------------------------------------------
# Stage I


def test_sft_prompt_is_the_eval_prompt_and_target_ends_in_gold(suite: list[Item]) -> None:
    examples = sft_examples(suite, PROMPTS, seed=1)
    cases = _cases(suite, 1)
    assert len(examples) == len(cases) == sum(item.n for item in suite)
    for ex, (item, order) in zip(examples, cases, strict=True):
        displayed = [item.candidates[c] for c in order]
        assert ex.messages == PromptSet.load().judge_messages(item.prompt, displayed)
        assert _last(ex.target, item.n) == _gold(order)


def test_pair_is_judged_in_both_orders(suite: list[Item]) -> None:
    pair = next(item for item in suite if item.is_pairwise)
    assert sorted(judged_orders(pair, seed=1)) == [[0, 1], [1, 0]]
    by_verdict = {ex.target.splitlines()[-1]: ex for ex in sft_examples([pair], PROMPTS, seed=1)}
    assert set(by_verdict) == {"[[A]]", "[[B]]"}
    best = pair.candidates[0]
    assert f"[Answer A]\n{best}\n" in by_verdict["[[A]]"].messages[1]["content"]
    assert f"[Answer B]\n{best}\n" in by_verdict["[[B]]"].messages[1]["content"]


def test_best_of_n_orders_put_every_candidate_in_every_slot(suite: list[Item]) -> None:
    bon4 = next(item for item in suite if item.n == 4)
    orders = judged_orders(bon4, seed=1)
    assert len(orders) == 4 and len({tuple(o) for o in orders}) == 4
    for slot in range(4):
        assert {o[slot] for o in orders} == {0, 1, 2, 3}
    more = judged_orders(bon4, seed=1, orders=6)
    assert more[:4] == orders and len({tuple(o) for o in more}) == 6
    with pytest.raises(ValueError, match="between 1 and 24"):
        judged_orders(bon4, seed=1, orders=25)


def test_layouts_place_the_verdict(suite: list[Item]) -> None:
    first = sft_examples(suite, PROMPTS, seed=1, layout="verdict_first")
    for ex, (item, _) in zip(first, _cases(suite, 1), strict=True):
        lines = ex.target.splitlines()
        # logprob mode scores these strings right after the prompt: the target starts with one
        assert lines[0] == lines[-1] and lines[0] in [s for s, _ in verdict_strings(item.n)]
    explain = sft_examples(suite, PROMPTS, seed=1, layout="explain_first")
    for ex, (item, order) in zip(explain, _cases(suite, 1), strict=True):
        assert parse_ranking(ex.target.splitlines()[0], item.n) is None
        assert _last(ex.target, item.n) == _gold(order)
    mixed = sft_examples(suite, PROMPTS, seed=1, layout="mixed")
    opens = {parse_ranking(ex.target.splitlines()[0], 4) is None for ex in mixed}
    assert opens == {True, False}
    with pytest.raises(ValueError, match="unknown layout"):
        sft_examples(suite, PROMPTS, seed=1, layout="sideways")  # type: ignore[arg-type]


def test_verdict_only_target_is_the_gold_verdict_string(suite: list[Item]) -> None:
    """The target is exactly the string `--verdict logprob` scores and the prompt asks for."""
    assert "verdict_only" in LAYOUTS
    examples = sft_examples(suite, PROMPTS, seed=1, layout="verdict_only")
    for ex, (item, order) in zip(examples, _cases(suite, 1), strict=True):
        options = dict(verdict_strings(item.n))
        assert ex.target in options and options[ex.target] == _gold(order)
    pair = next(item for item in suite if item.is_pairwise)
    (a, b) = preference_examples([pair], PROMPTS, negatives=1, seed=1, layout="verdict_only")
    assert {(a.chosen, a.rejects), (b.chosen, b.rejects)} == {
        ("[[A]]", ("[[B]]",)),
        ("[[B]]", ("[[A]]",)),
    }
    with pytest.raises(ValueError, match="1 wrong verdict.*lower --negatives"):
        preference_examples([pair], PROMPTS, negatives=2, seed=1, layout="verdict_only")
    bon3 = next(item for item in suite if item.n == 3)
    for ex in preference_examples([bon3], PROMPTS, negatives=5, seed=1, layout="verdict_only"):
        assert len(set(ex.rejects)) == 5 and all(r.startswith("[[") for r in ex.rejects)


def test_pairwise_only_keeps_pairs_in_both_orders_gold_balanced(suite: list[Item]) -> None:
    examples = sft_examples(suite, PROMPTS, seed=1, pairwise_only=True)
    pairs = [item for item in suite if item.is_pairwise]
    assert len(pairs) < len(suite) and len(examples) == 2 * len(pairs)
    assert {ex.group for ex in examples} == {item.key for item in pairs}
    for item in pairs:  # both orders of each pair, one gold A and one gold B
        golds = sorted(best_slot(ex.target) or "" for ex in examples if ex.group == item.key)
        assert golds == ["A", "B"]
    assert best_slot_counts(ex.target for ex in examples) == {"A": len(pairs), "B": len(pairs)}
    prefs = preference_examples(suite, PROMPTS, seed=1, pairwise_only=True)
    assert [p.group for p in prefs] == [ex.group for ex in examples]


def test_best_slot_reads_the_last_verdict() -> None:
    assert best_slot("[[B]]\nAnswer A is wrong.\n[[A]]") == "A"
    assert best_slot("[[C > A > B]]") == "C" and best_slot("[Score: 7]") is None
    assert best_slot_counts(["[[A]]", "[[B]]", "[[A]]", "no verdict"]) == {"A": 2, "B": 1}


def test_explanation_states_the_facts(suite: list[Item]) -> None:
    item = next(i for i in suite if i.task == "single_fact" and i.is_pairwise)
    for ex in sft_examples([item], PROMPTS, seed=1, layout="explain_first"):
        needle = item.extra["needle"].rstrip(".")
        assert needle in ex.target and item.extra["answer"] in ex.target


def test_paper_protocol_asks_best_of_two_for_a_ranking(suite: list[Item]) -> None:
    bon2 = next(i for i in suite if i.n == 2 and not i.is_pairwise)
    for ex, (_, order) in zip(
        sft_examples([bon2], PROMPTS, seed=1, protocol="paper"), _cases([bon2], 1), strict=True
    ):
        displayed = [bon2.candidates[c] for c in order]
        assert ex.messages == PROMPTS.judge_messages(bon2.prompt, displayed, True)
        assert ex.target.splitlines()[-1] in ("[[A>B]]", "[[B>A]]")
        assert _last(ex.target, 2) == _gold(order)


def test_protected_strings_are_in_the_prompt(suite: list[Item]) -> None:
    for ex, (item, _) in zip(sft_examples(suite, PROMPTS, seed=1), _cases(suite, 1), strict=True):
        text = "\n".join(m["content"] for m in ex.messages)
        assert all(p in text for p in ex.protected)
        assert item.question in ex.protected
        assert set(item.candidates) <= set(ex.protected)
        assert set(item.extra["planted"]) <= set(ex.protected)  # the needle, chain, mentions...


def test_protected_without_recorded_planted_sentences(suite: list[Item]) -> None:
    """Items built before `planted` was recorded: the paragraphs holding invented strings."""
    item = next(i for i in suite if i.task == "counting")
    older = dataclasses.replace(item, extra={k: v for k, v in item.extra.items() if k != "planted"})
    (ex, *_) = sft_examples([older], PROMPTS, seed=1)
    assert set(item.extra["planted"]) <= set(ex.protected)


def test_seeded(suite: list[Item]) -> None:
    assert sft_examples(suite, PROMPTS, seed=1) == sft_examples(suite, PROMPTS, seed=1)
    assert preference_examples(suite, PROMPTS, seed=1) == preference_examples(
        suite, PROMPTS, seed=1
    )
    assert sft_examples(suite, PROMPTS, seed=1) != sft_examples(suite, PROMPTS, seed=2)


def test_item_without_planted_values_gets_its_order_stated() -> None:
    """Official rows record no values: the explanation states the gold order, nothing more."""
    item = Item(
        id=1,
        task="LongQA",
        subtask="",
        tasktype=PAIRWISE,
        subtype="",
        length_bucket="8k",
        length=0,
        prompt=[{"role": "user", "content": "Context: the sky is green.\nQ: sky colour?"}],
        question="Q: sky colour?",
        candidates=["Green.", "Blue."],
    )
    examples = sft_examples([item], PROMPTS, seed=1, layout="explain_first")
    for ex, (_, order) in zip(examples, _cases([item], 1), strict=True):
        best = "AB"[order.index(0)]
        assert ex.target.endswith(f"\n[[{best}]]") and f"Answer {best}" in ex.target.split("\n")[0]
        assert ex.protected == ("Q: sky colour?", *[item.candidates[c] for c in order])
    for pref in preference_examples([item], PROMPTS, negatives=3, seed=1):
        assert all(_last(r, 2) not in (None, _last(pref.chosen, 2)) for r in pref.rejects)


# ---------------------------------------------------------------------------------------------
# Stage II


@pytest.mark.parametrize("negatives", [1, 3])
def test_preference_chosen_right_every_reject_wrong(suite: list[Item], negatives: int) -> None:
    examples = preference_examples(suite, PROMPTS, negatives=negatives, seed=2)
    targets = [ex.target for ex in sft_examples(suite, PROMPTS, seed=2)]
    for ex, target, (item, order) in zip(examples, targets, _cases(suite, 2), strict=True):
        assert ex.chosen == target  # Stage II prefers exactly what Stage I taught
        assert _last(ex.chosen, item.n) == _gold(order)
        assert len(ex.rejects) == negatives and len(set(ex.rejects)) == negatives
        for reject in ex.rejects:
            first, last = reject.splitlines()[0], reject.splitlines()[-1]
            assert first == last  # verdict first and last, as in the chosen judgment
            got = parse_ranking(last, item.n)
            assert got is not None and got != _gold(order)


def test_reject_kinds_are_mixed(suite: list[Item]) -> None:
    """With three negatives every kind appears once: one reject keeps the chosen explanation
    under a wrong verdict (flipped), one judges by style, one misreads a value."""
    for ex in preference_examples(suite, PROMPTS, negatives=3, seed=2):
        body = ex.chosen.splitlines()[1:-1]
        assert sum(r.splitlines()[1:-1] == body for r in ex.rejects) == 1
        assert sum("fluent" in r or "reads best" in r or "clearer" in r for r in ex.rejects) == 1


def test_pair_flipped_reject_is_the_other_letter(suite: list[Item]) -> None:
    pair = next(item for item in suite if item.is_pairwise)
    for ex in preference_examples([pair], PROMPTS, negatives=3, seed=2, layout="explain_first"):
        explanation, verdict = ex.chosen.rsplit("\n", 1)
        other = "[[B]]" if verdict == "[[A]]" else "[[A]]"
        assert f"{explanation}\n{other}" in ex.rejects


# ---------------------------------------------------------------------------------------------
# Held-out training items


def test_held_out_haystack_drops_used_paragraphs_whole_or_cut() -> None:
    paragraphs = tuple(f"Paragraph {i} talks about rivers, stones and old gardens." for i in "0123")
    context = "\n\n".join(
        [paragraphs[1], "The code of vault Q is K001.", paragraphs[3][:45]]  # 3 was cut to fit
    )
    item = Item(
        id=0,
        task="single_fact",
        subtask="",
        tasktype=PAIRWISE,
        subtype="",
        length_bucket="1k",
        length=0,
        prompt=[{"role": "user", "content": f"<context>\n{context}\n</context>\n\nQuestion: q"}],
        question="q",
        candidates=["a", "b"],
    )
    kept = held_out_haystack(Haystack(paragraphs, "test"), [item])
    assert kept.paragraphs == (paragraphs[0], paragraphs[2])


def _context_item(*pieces: str) -> Item:
    context = "\n\n".join(pieces)
    return Item(
        id=0,
        task="single_fact",
        subtask="",
        tasktype=PAIRWISE,
        subtype="",
        length_bucket="1k",
        length=0,
        prompt=[{"role": "user", "content": f"<context>\n{context}\n</context>\n\nQuestion: q"}],
        question="q",
        candidates=["a", "b"],
    )


def test_held_out_haystack_drops_what_a_short_or_rejoined_cut_could_come_from() -> None:
    paragraphs = (
        "Return a copy of the string with all the cased characters converted to uppercase.",
        "Return a copy of the string with all the cased characters converted to lowercase.",
        "Execute the executable file (which is searched\nfor along $PATH) with argument list.",
        "Paragraph 3 talks about rivers, stones and old gardens.",
    )
    # the builder cuts a paragraph to its first words, joined by single spaces
    held_out = _context_item(
        "Return a copy of the string with all",  # too short to tell which paragraph it was
        "Execute the executable file (which is searched for along $PATH)",
    )
    kept = held_out_haystack(Haystack(paragraphs, "test"), [held_out])
    assert kept.paragraphs == (paragraphs[3],)
    leaked = overlap([_context_item(paragraphs[1], paragraphs[2])], [held_out])
    assert leaked["paragraphs"] == sorted(paragraphs[1:3])


def test_held_out_haystack_drops_paragraphs_opening_like_a_held_out_piece() -> None:
    opening = "This type has a single value. There is a single object with this value."
    paragraphs = (
        f"{opening} It is accessed through the literal ... or the built-in name Ellipsis.",
        f"{opening} It is accessed through the built-in name None.",
        "Paragraph 2 talks about rivers, stones and old gardens.",
    )
    held_out = _context_item(paragraphs[0])
    kept = held_out_haystack(Haystack(paragraphs, "test"), [held_out])
    assert kept.paragraphs == (paragraphs[2],)
    # a training cut of the second paragraph that ends before the two differ is held-out text
    leaked = overlap([_context_item(opening, paragraphs[2])], [held_out])
    assert leaked["paragraphs"] == [opening]


@pytest.mark.parametrize("seed", [EVAL_SEED + 1, EVAL_SEED])  # the same seed: names redrawn
def test_training_suite_shares_nothing_with_eval(
    tokenizer: Any, suite: list[Item], seed: int
) -> None:
    train = training_suite(tokenizer, lengths="1k", seed=seed, held_out=suite)
    assert overlap(train, suite) == {"invented": [], "paragraphs": []}
    assert len(train) == len(suite)
    assert all(str(item.id).startswith("train-") for item in train)
    assert not {item.key for item in train} & {item.key for item in suite}
    itself = overlap(suite, suite)  # the report does see what is shared
    assert itself["invented"] and itself["paragraphs"]


# ---------------------------------------------------------------------------------------------
# JSONL


def test_jsonl_round_trip(suite: list[Item], tmp_path: Path) -> None:
    sft = sft_examples(suite[:3], PROMPTS, seed=1)
    path = write_sft_jsonl(sft, tmp_path / "out" / "sft.jsonl")
    row = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    assert set(row) == {"chat_template", "golden", "protected", "origin", "group"}
    assert row["group"] == suite[0].key
    back = read_sft_jsonl(path)
    assert back[1].source == f"{path}:2"
    assert [dataclasses.replace(b, source="") for b in back] == [
        dataclasses.replace(e, source="") for e in sft
    ]
    assert len(load_release_rows(path, SftRow)) == len(sft)  # the authors' loader reads ours

    pref = preference_examples(suite[:3], PROMPTS, seed=1)
    path = write_preference_jsonl(pref, tmp_path / "pref.jsonl")
    row = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    assert set(row) == {"chat_template", "chosen", "rejects", "protected", "origin", "group"}
    assert [dataclasses.replace(b, source="") for b in read_preference_jsonl(path)] == [
        dataclasses.replace(e, source="") for e in pref
    ]


def test_reads_the_authors_rows(tmp_path: Path) -> None:
    chat = [{"role": "user", "content": "Rate it."}]
    sft = tmp_path / "sft.jsonl"
    sft.write_text(json.dumps({"chat_template": chat, "golden": "[Score: 7]", "ctx_length": "8k"}))
    (ex,) = read_sft_jsonl(sft)
    assert (ex.messages, ex.target, ex.protected, ex.source) == (chat, "[Score: 7]", (), f"{sft}:1")
    pref = tmp_path / "pref.jsonl"
    row = {"chat_template": chat, "chosen": "good", "rejects": ["bad", "worse"], "conf": [1, 2]}
    pref.write_text(json.dumps(row) + "\n" + json.dumps({**row, "protected": "Rate"}) + "\n")
    with pytest.raises(ItemError, match=r"pref.jsonl:2: field 'protected'"):
        read_preference_jsonl(pref)
    pref.write_text(json.dumps(row))
    (p,) = read_preference_jsonl(pref)
    assert (p.chosen, p.rejects, p.protected) == ("good", ("bad", "worse"), ())
