"""Judge training data written from by-construction items, whose gold order is known.

A built item records why its order holds (which candidate states the value the context gives,
which one a contradicted or unsupported value), so a right judgment, and wrong ones, can be
written without a teacher model. Every example's prompt is exactly what `longrm eval --kind
judge` sends for the item in that display order, so a judge is trained on what it is tested on.

Layout. Evaluation reads a verdict in two ways: `generate` parses the last verdict of the text,
`logprob` compares log P(verdict string) directly after the prompt. A judgment that explains
first (`explain_first`, what the prompt asks for) trains only the first: the tokens right after
the prompt are taught to open an explanation, so the logprob mode compares verdict strings the
model never learned to put there. `verdict_first` (the default) writes the verdict, then the
explanation, then the verdict again on the last line, which serves both modes (the first tokens
are the verdict string as `verdict_strings` spells it, and the last line is what
`parse_ranking` reads); the price is that the explanation no longer comes before the decision.
`mixed` picks one of the two per example (seeded). `verdict_only` writes the verdict string
alone: every target token is the decision, which a loss averaged over a long explanation
dilutes (Stage II can also sum over verdict tokens only: `--score_tokens verdict`).

Pairs. A pair is judged in both display orders, so its gold verdicts are one [[A]] and one
[[B]]; every example carries its item's key as `group`, and the trainers keep an item's orders
in one optimiser step. `pairwise_only` leaves Best-of-N items out (a ranking target teaches a
pairwise judge little about the pair verdict it is tested on).

Items that do not record their planted values (official rows, short preference rows) get an
explanation that states their gold order only, and no `misread` rejects.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel

from longrm.items import (
    Item,
    ItemError,
    Messages,
    PreferenceRow,
    SftRow,
    iter_rows,
    validate_row,
)
from longrm.rm.prompts import PromptSet, letters
from longrm.rm.verdicts import format_ranking
from longrm.train.examples import PreferenceExample, SftExample
from longrm.train.heldout import context_chunks

__all__ = [
    "LAYOUTS",
    "row_group",
    "judged_orders",
    "preference_examples",
    "read_preference_jsonl",
    "read_sft_jsonl",
    "sft_examples",
    "write_preference_jsonl",
    "write_sft_jsonl",
]

Layout = Literal["verdict_first", "explain_first", "mixed", "verdict_only"]
LAYOUTS: tuple[str, ...] = ("verdict_first", "explain_first", "mixed", "verdict_only")
REJECT_KINDS = ("flipped", "misread", "surface")
_NEEDED = ("candidate_values", "answer", "side_answer", "wrong_value", "side_wrong_value")
RowT = TypeVar("RowT", bound=BaseModel)


# ---------------------------------------------------------------------------------------------
# Display orders


def judged_orders(item: Item, *, seed: int, orders: int | None = None) -> list[list[int]]:
    """Return the display orders an item is judged in (order[s] = candidate shown in slot s).

    First the n rotations of one seeded shuffle, so that over n orders every candidate sits in
    every slot once (a pair in both orders: no position can be learned as a shortcut); then
    further distinct seeded shuffles. `orders` None means n.
    """
    n = item.n
    count = n if orders is None else orders
    if not 1 <= count <= math.factorial(n):
        raise ValueError(f"orders must be between 1 and {math.factorial(n)} for {n} candidates")
    rng = random.Random(f"longrm-judgments-orders:{seed}:{item.key}")
    base = list(range(n))
    rng.shuffle(base)
    out = [base[k:] + base[:k] for k in range(min(count, n))]
    while len(out) < count:
        perm = list(range(n))
        rng.shuffle(perm)
        if perm not in out:
            out.append(perm)
    return out


def _gold(order: Sequence[int]) -> list[int]:
    """Return the gold ranking of display slots (candidates are stored best first)."""
    return sorted(range(len(order)), key=lambda s: order[s])


def _verdict(ranking: Sequence[int], as_ranking: bool) -> str:
    """Return the verdict string evaluation scores for a ranking ([[A]], or [[A>B]] if asked)."""
    if len(ranking) == 2 and as_ranking:
        tags = letters(2)
        return f"[[{tags[ranking[0]]}>{tags[ranking[1]]}]]"
    return format_ranking(list(ranking))


# ---------------------------------------------------------------------------------------------
# Explanations: our own words, a few phrasings per sentence, every fact from the item's labels

_RIGHT_MAIN = (
    "{who} give{s} {v}, which is what the context states",
    "{who} state{s} {v}, the value the context gives",
    "{who} answer{s} with {v}, as the context does",
)
_WRONG_MAIN = ("{who} give{s} {v}, but {why}", "{who} state{s} {v}, yet {why}")
_RIGHT_SIDE = (
    "{who} get{s} the second claim right ({v})",
    "{who} state{s} the second claim as the context does ({v})",
)
_WRONG_SIDE = (
    "{who} get{s} the second claim wrong ({v}): {why}",
    "{who} state{s} {v} in the second claim, but {why}",
)
_PRIORITY = (
    "Answering the question correctly matters more than the second claim.",
    "A wrong answer to the question is a worse error than a wrong second claim.",
)
_PLAIN_PAIR = (
    "Checked against the task and its context, Answer {best} is the better answer and Answer "
    "{worse} the weaker one.",
    "Answer {best} holds up better against the task and its context than Answer {worse}.",
)
_PLAIN_RANK = (
    "Checked against the task and its context, the answers rank {order}.",
    "From best to worst against the task and its context: {order}.",
)
_SURFACE = (
    "Answer {x} is the most fluent and confident of the answers, so it is the best.",
    "Answer {x} reads best and sounds the most certain; the others are less convincing.",
    "Answer {x} is clearer and more detailed, which makes it the better answer.",
)


@dataclasses.dataclass(frozen=True)
class _Truth:
    """The values a judgment takes as right: the real ones, or a misreading."""

    main: str
    side: str


def _quote(sentence: str) -> str:
    return '"' + sentence.rstrip(".") + '"'


def _show(item: Item, value: str, side: bool) -> str:
    """Return a value as an explanation names it ("Doc 2", "a count of 5", a code)."""
    if item.task == "citation" and side:
        return f"Doc {value}"
    if item.task == "counting":
        return f"a count of {value}"
    return value


def _evidence(item: Item, truth: _Truth, rng: random.Random) -> str | None:
    """Return the sentence that points at where the context answers, under `truth`."""
    e = item.extra
    answer = str(e["answer"])
    if item.task == "counting" and "marker" in e:
        return rng.choice(
            (
                f"The context mentions the {e['marker']} {truth.main} times.",
                f"Counting every mention, the {e['marker']} appears {truth.main} times.",
            )
        )
    if item.task == "multi_hop" and e.get("chain_facts") and e.get("chain"):
        fact = _quote(str(e["chain_facts"][-1]).replace(answer, truth.main))
        return rng.choice(
            (
                f"Following the chain from {e['chain'][0]}, the context says {fact}.",
                f"The chain from {e['chain'][0]} ends at {e['chain'][-1]}, and the context "
                f"says {fact}.",
            )
        )
    if "needle" in e:
        fact = _quote(str(e["needle"]).replace(answer, truth.main))
        if item.task == "citation":
            return rng.choice(
                (f"Doc {truth.side} says {fact}.", f"The record is in Doc {truth.side}: {fact}.")
            )
        return rng.choice((f"The context says {fact}.", f"The relevant sentence is {fact}."))
    return None


def _main_why(item: Item) -> str:
    """Return why the wrong main value is wrong, in terms of what the context says."""
    e = item.extra
    contradicted = e.get("wrong_kind") == "contradicted"
    if item.task == "counting" and "marker" in e:
        if contradicted and "distractor_marker" in e:
            return f"that is how often the {e['distractor_marker']} is mentioned"
        return f"the {e['marker']} is mentioned {e['answer']} times"
    if contradicted:
        if item.task == "multi_hop" and len(e.get("chain", [])) >= 2:
            return f"that value belongs to {e['chain'][-2]}, one step short of the chain's end"
        if "distractor" in e:
            return f"that value belongs to another entry ({_quote(str(e['distractor']))})"
        return "the context gives that value for something else"
    return f"the context never mentions {e['wrong_value']}"


def _side_why(item: Item) -> str:
    """Return why the wrong side value is wrong, in terms of what the context says."""
    e = item.extra
    right = e["side_answer"]
    if item.task == "single_fact" and "side_subject" in e:
        return f"the context gives {right} for {e['side_subject']}"
    if item.task == "multi_hop" and "look_alike" in e:
        return f"the context names {right}, and {e['look_alike']} belongs to an unrelated link"
    if item.task == "citation":
        return f"the record is in Doc {right}, and Doc {e['side_wrong_value']} holds another one"
    if item.task == "counting" and "side_marker" in e:
        return f"the {e['side_marker']} is mentioned {right} times"
    return f"the context gives {right}"


def _who(slots: Sequence[int], n: int) -> tuple[str, str]:
    """Return how a group of slots is named and the verb ending it takes ("s" or "")."""
    tags = [letters(n)[s] for s in sorted(slots)]
    if len(tags) == 1:
        return f"Answer {tags[0]}", "s"
    if len(tags) == n:
        return ("Both answers" if n == 2 else "All answers"), ""
    return "Answers " + ", ".join(tags[:-1]) + " and " + tags[-1], ""


class _Writer:
    """Writes judgments of one item in one display order."""

    def __init__(self, item: Item, order: Sequence[int], rng: random.Random) -> None:
        self.item, self.rng, self.n = item, rng, item.n
        self.gold = _gold(order)
        e = item.extra
        #: whether the item records its planted values (else only its gold order is known)
        self.built = all(k in e for k in _NEEDED)
        pairs = [e["candidate_values"][c] for c in order] if self.built else []
        self.values = [(str(main), str(side)) for main, side in pairs]
        self.truth = _Truth(str(e.get("answer", "")), str(e.get("side_answer", "")))
        if self.built and self.ranking(self.truth) != self.gold:
            raise ValueError(f"{item.key}: the recorded values disagree with the stored order")

    def ranking(self, truth: _Truth) -> list[int]:
        """Return the slots best first when `truth` holds: main claim first, then the side."""
        return sorted(
            range(self.n),
            key=lambda s: (self.values[s][0] != truth.main, self.values[s][1] != truth.side),
        )

    def misreadings(self) -> list[_Truth]:
        """Return the misreadings (one claim's values or both swapped) that change the order."""
        if not self.built:
            return []
        e = self.item.extra
        wrong = _Truth(str(e["wrong_value"]), str(e["side_wrong_value"]))
        options = [
            _Truth(wrong.main, wrong.side),
            _Truth(wrong.main, self.truth.side),
            _Truth(self.truth.main, wrong.side),
        ]
        return [t for t in options if self.ranking(t) != self.gold]

    def _sentence(self, side: bool, truth: _Truth) -> str:
        """Return the sentence on one claim: which answers state the value taken as right."""
        k = 1 if side else 0
        right = truth.side if side else truth.main
        real = self.truth.side if side else self.truth.main
        groups: dict[str, list[int]] = {}
        for s in range(self.n):
            groups.setdefault(self.values[s][k], []).append(s)
        clauses = []
        for value, slots in sorted(groups.items(), key=lambda g: g[0] != right):
            who, ending = _who(slots, self.n)
            shown = _show(self.item, value, side)
            if value == right:
                template = self.rng.choice(_RIGHT_SIDE if side else _RIGHT_MAIN)
                why = ""
            else:
                template = self.rng.choice(_WRONG_SIDE if side else _WRONG_MAIN)
                if right != real:  # a misreading: the real value is called unsupported
                    why = (
                        f"the context gives {_show(self.item, right, side)}"
                        if side
                        else "the context does not support it"
                    )
                else:
                    why = _side_why(self.item) if side else _main_why(self.item)
            clauses.append(template.format(who=who, s=ending, v=shown, why=why))
        return "; ".join(clauses) + "."

    def explain(self, truth: _Truth | None = None) -> str:
        """Return the explanation of the order that `truth` (default: the real one) gives."""
        if not self.built:
            return self._plain()
        t = truth or self.truth
        sentences = [_evidence(self.item, t, self.rng), self._sentence(False, t)]
        sentences.append(self._sentence(True, t))
        flags = {(v[0] == t.main, v[1] == t.side) for v in self.values}
        if {(True, False), (False, True)} <= flags:
            sentences.append(self.rng.choice(_PRIORITY))
        return " ".join(s for s in sentences if s)

    def _plain(self) -> str:
        """Return the explanation of an item that records only its gold order: the order."""
        tags = [letters(self.n)[s] for s in self.gold]
        if self.n == 2:
            return self.rng.choice(_PLAIN_PAIR).format(best=tags[0], worse=tags[1])
        return self.rng.choice(_PLAIN_RANK).format(order=", then ".join(tags))

    def wrong_ranking(self, avoid_best: bool) -> list[int]:
        """Return a seeded wrong ranking; with `avoid_best` one that does not put gold's best
        first (so that praising its first answer praises a worse one)."""
        while True:
            perm = list(range(self.n))
            self.rng.shuffle(perm)
            if perm != self.gold and not (avoid_best and perm[0] == self.gold[0]):
                return perm

    def surface(self, ranking: Sequence[int]) -> str:
        """Return an explanation that judges by style, not by the context."""
        return self.rng.choice(_SURFACE).format(x=letters(self.n)[ranking[0]])


def _judgment(explanation: str, verdict: str, form: str) -> str:
    """Return a judgment in one layout: the verdict alone, or on the last line (and also first
    for verdict_first)."""
    if form == "verdict_only":
        return verdict
    if form == "verdict_first":
        return f"{verdict}\n{explanation}\n{verdict}"
    return f"{explanation}\n{verdict}"


# ---------------------------------------------------------------------------------------------
# Examples


def _as_ranking(item: Item, protocol: str) -> bool | None:
    """Return `judge_messages`' as_ranking as evaluation sets it under `protocol`."""
    if protocol not in ("longrm", "paper"):
        raise ValueError(f"unknown protocol {protocol!r}: use longrm or paper")
    return (not item.is_pairwise) if protocol == "paper" else None


def _planted(item: Item) -> list[str]:
    """Return the sentences an item planted in its context.

    Items built before `planted` was recorded: the context's paragraphs holding an invented
    string (filler never holds one, so these are exactly the planted sentences).
    """
    if "planted" in item.extra:
        return [str(p) for p in item.extra["planted"]]
    invented = [str(w) for w in item.extra.get("invented", [])]
    return [c for c in context_chunks(item) if any(w in c for w in invented)]


def _protected(item: Item, messages: Messages, displayed: Sequence[str]) -> tuple[str, ...]:
    """Return what truncation must keep: the question, the answers, the planted sentences
    (only strings the prompt holds: truncation cannot keep anything else)."""
    text = "\n".join(m["content"] for m in messages)
    wanted = [item.question, *displayed, *_planted(item)]
    return tuple(dict.fromkeys(s for s in wanted if s and s in text))


@dataclasses.dataclass(frozen=True)
class _Case:
    """One item in one display order: the judge's prompt and what is needed to judge it."""

    item: Item
    messages: Messages
    writer: _Writer
    as_ranking: bool
    #: the layout of this example's judgment (mixed resolved to one of its two)
    form: str
    protected: tuple[str, ...]
    source: str

    def judgment(self, explanation: str, ranking: Sequence[int]) -> str:
        return _judgment(explanation, _verdict(ranking, self.as_ranking), self.form)


def _cases(
    items: Iterable[Item],
    prompts: PromptSet,
    seed: int,
    orders: int | None,
    layout: Layout,
    protocol: str,
    pairwise_only: bool = False,
) -> Iterator[_Case]:
    """Yield every (item, display order) to judge, each with its own seeded RNG."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}: choose from {LAYOUTS}")
    for item in items:
        if pairwise_only and not item.is_pairwise:
            continue
        as_ranking = _as_ranking(item, protocol)
        for order in judged_orders(item, seed=seed, orders=orders):
            rng = random.Random(f"longrm-judgments:{seed}:{item.key}:{order}")
            form = layout
            if layout == "mixed":
                form = "verdict_first" if rng.random() < 0.5 else "explain_first"
            displayed = [item.candidates[c] for c in order]
            messages = prompts.judge_messages(item.prompt, displayed, as_ranking)
            yield _Case(
                item=item,
                messages=messages,
                writer=_Writer(item, order, rng),
                as_ranking=bool(as_ranking),
                form=form,
                protected=_protected(item, messages, displayed),
                source=f"{item.key} order {order}",
            )


def sft_examples(
    items: Iterable[Item],
    prompts: PromptSet,
    *,
    seed: int,
    orders: int | None = None,
    layout: Layout = "verdict_first",
    protocol: str = "longrm",
    pairwise_only: bool = False,
) -> list[SftExample]:
    """Return Stage I examples: per item and display order, the judge's prompt and the right
    judgment (an explanation from the item's labels, the gold verdict on the last line).

    `orders` display orders per item (see `judged_orders`; None: n, so a pair in both orders);
    `layout` where the verdict goes (see the module's docstring); `protocol` as in evaluation
    ("paper" asks Best-of-2 items for a ranking); `pairwise_only` leaves Best-of-N items out.
    """
    return [
        SftExample(
            c.messages,
            c.judgment(c.writer.explain(), c.writer.gold),
            c.source,
            c.protected,
            c.item.key,
        )
        for c in _cases(items, prompts, seed, orders, layout, protocol, pairwise_only)
    ]


def preference_examples(
    items: Iterable[Item],
    prompts: PromptSet,
    *,
    negatives: int = 2,
    seed: int,
    orders: int | None = None,
    layout: Layout = "verdict_first",
    protocol: str = "longrm",
    pairwise_only: bool = False,
) -> list[PreferenceExample]:
    """Return Stage II examples: the right judgment (as `sft_examples` writes it with the same
    seed) over `negatives` distinct wrong ones, their kinds mixed, each with a wrong verdict:

    - `flipped`: the right explanation under a wrong verdict (an inconsistent judgment);
    - `misread`: an explanation that takes a wrong value for the right one (one claim or both)
      and the verdict that follows from it (a consistent but wrong judgment);
    - `surface`: praise of a worse answer's style, and a verdict putting it first.

    Under `verdict_only` the three kinds are just wrong verdicts, so a pair has one (use
    negatives=1).
    """
    if negatives < 1:
        raise ValueError(f"negatives must be at least 1, got {negatives}")
    out = []
    for case in _cases(items, prompts, seed, orders, layout, protocol, pairwise_only):
        if case.form == "verdict_only" and negatives >= math.factorial(case.item.n):
            raise ValueError(
                f"{case.source}: {case.item.n} answers have {math.factorial(case.item.n) - 1} "
                f"wrong verdict(s), {negatives} asked: lower --negatives for --judgment_layout "
                "verdict_only"
            )
        writer = case.writer
        explanation = writer.explain()
        chosen = case.judgment(explanation, writer.gold)
        kinds = [k for k in REJECT_KINDS if k != "misread" or writer.misreadings()]
        writer.rng.shuffle(kinds)
        rejects: list[str] = []
        for attempt in range(20 * negatives):
            text = _reject(case, kinds[attempt % len(kinds)], explanation)
            if text != chosen and text not in rejects:
                rejects.append(text)
            if len(rejects) == negatives:
                break
        else:
            raise ValueError(f"{case.source}: could not write {negatives} distinct wrong judgments")
        out.append(
            PreferenceExample(
                case.messages, chosen, tuple(rejects), case.source, case.protected, case.item.key
            )
        )
    return out


def _reject(case: _Case, kind: str, explanation: str) -> str:
    """Return one wrong judgment of `kind` (see `preference_examples`)."""
    writer = case.writer
    if kind == "flipped":
        return case.judgment(explanation, writer.wrong_ranking(avoid_best=False))
    if kind == "misread":
        truth = writer.rng.choice(writer.misreadings())
        return case.judgment(writer.explain(truth), writer.ranking(truth))
    ranking = writer.wrong_ranking(avoid_best=True)
    return case.judgment(writer.surface(ranking), ranking)


# ---------------------------------------------------------------------------------------------
# JSONL in the authors' columns, plus `protected` (ours)


def _write(rows: Iterable[dict[str, Any]], path: str | Path) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return target


def write_sft_jsonl(examples: Iterable[SftExample], path: str | Path) -> Path:
    """Write Stage I rows: `chat_template`, `golden`, and our `protected`, `origin`, `group`."""
    return _write(
        (
            {
                "chat_template": ex.messages,
                "golden": ex.target,
                "protected": list(ex.protected),
                "origin": ex.source,
                "group": ex.group,
            }
            for ex in examples
        ),
        path,
    )


def write_preference_jsonl(examples: Iterable[PreferenceExample], path: str | Path) -> Path:
    """Write Stage II rows: `chat_template`, `chosen`, `rejects`, our `protected`, `origin` and
    `group`."""
    return _write(
        (
            {
                "chat_template": ex.messages,
                "chosen": ex.chosen,
                "rejects": list(ex.rejects),
                "protected": list(ex.protected),
                "origin": ex.source,
                "group": ex.group,
            }
            for ex in examples
        ),
        path,
    )


def row_group(row: dict[str, Any], where: str, line: int) -> str:
    """Return a row's `group` column (the item its display orders share), "" when absent."""
    group = row.get("group") or ""
    if not isinstance(group, str):
        raise ItemError(where, line, "group", "expected a string (the judged item's key)")
    return group


def _rows(path: str | Path, model: type[RowT]) -> Iterator[tuple[str, RowT, tuple[str, ...], str]]:
    """Yield ("file:line", validated row, protected strings, group); a bad row raises
    ItemError."""
    for where, line, row in iter_rows(path):
        if isinstance(row, ItemError):
            raise row
        parsed = validate_row(model, row, where, line)
        protected = row.get("protected") or []
        if not isinstance(protected, list) or not all(isinstance(p, str) for p in protected):
            raise ItemError(where, line, "protected", "expected a list of strings")
        yield f"{where}:{line}", parsed, tuple(protected), row_group(row, where, line)


def read_sft_jsonl(path: str | Path) -> list[SftExample]:
    """Return Stage I examples from the authors' rows or ours (source = "file:line")."""
    return [
        SftExample(row.messages(), row.golden, source, protected, group)
        for source, row, protected, group in _rows(path, SftRow)
    ]


def read_preference_jsonl(path: str | Path) -> list[PreferenceExample]:
    """Return Stage II examples from the authors' rows or ours (source = "file:line")."""
    return [
        PreferenceExample(row.messages(), row.chosen, tuple(row.rejects), source, protected, group)
        for source, row, protected, group in _rows(path, PreferenceRow)
    ]
