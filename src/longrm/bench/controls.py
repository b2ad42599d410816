"""Controls: scorers that judge a benchmark's pairs with the context hidden (or, as a reference,
with it), each giving per-pair outcomes (1 right, 0.5 tie, 0 wrong).

A benchmark whose labels hold only through the context leaves every context-blind control at
chance; one that a candidate's length, its words or its overlap with the question gives away
does not. A control is anything with a `name`, a `blind` flag (judged against chance, or a
reference such as a model that reads the context) and `outcomes(pairs)`; new ones (a trained
blind probe, say) plug into `longrm.bench.audit.run_audit` as they are.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np
from sklearn.model_selection import GroupKFold

from longrm.bench.bow import LEARNERS, Learner, TextScorer, words
from longrm.bench.pairs import Pair, items_of, pair_outcome

if TYPE_CHECKING:
    from longrm.rm.base import RewardModel

#: a candidate's score from its own text, its rival's text and the question (never the context)
CandidateScorer = Callable[[str, str, str], float]


class ControlUnavailable(RuntimeError):
    """A control that cannot run on these pairs (too few items to cross-fit, nothing to swap)."""


class Control(Protocol):
    """Judges pairs; `blind` controls never see the context and are held against chance.

    `notes` are remarks on the last `outcomes` call for the report (fewer folds than asked,
    prompts cut to a window).
    """

    @property
    def name(self) -> str: ...

    @property
    def blind(self) -> bool: ...

    @property
    def notes(self) -> list[str]: ...

    def outcomes(self, pairs: Sequence[Pair]) -> dict[str, float]:
        """Return pair key -> 1 (better candidate preferred), 0.5 (tie) or 0 (worse preferred)."""
        ...


# ---------------------------------------------------------------------------------------------
# Heuristics


def n_chars(text: str, rival: str, question: str) -> float:
    """Return the candidate's length in characters."""
    return len(text)


def n_words(text: str, rival: str, question: str) -> float:
    """Return the candidate's number of whitespace-separated words."""
    return len(text.split())


def question_overlap(text: str, rival: str, question: str) -> float:
    """Return how many distinct words (and marks) the candidate shares with the question."""
    return len(set(words(text)) & set(words(question)))


def earlier_difference(text: str, rival: str, question: str) -> float:
    """Return minus the offset of the candidate's first word that its rival does not use."""
    theirs = set(words(rival))
    mine = words(text)
    return -next((k for k, w in enumerate(mine) if w not in theirs), len(mine))


def number_mean(text: str, rival: str, question: str) -> float:
    """Return the mean of the numbers the candidate writes (0 when none): counts, codes' digits.

    Language models prefer small numbers whatever the context says, so a benchmark whose better
    answers hold larger (or smaller) numbers gives that prior an edge.
    """
    values = [float(n) for n in re.findall(r"\d+(?:\.\d+)?", text)]
    return sum(values) / len(values) if values else 0.0


def alphabetically_first(text: str, rival: str, question: str) -> float:
    """Return 1 when the candidate sorts before its rival, else 0."""
    return float(text < rival)


def _negated(scorer: CandidateScorer) -> CandidateScorer:
    def negated(text: str, rival: str, question: str) -> float:
        return -scorer(text, rival, question)

    return negated


HEURISTICS: dict[str, CandidateScorer] = {
    "longer wins": n_chars,
    "shorter wins": _negated(n_chars),
    "more words wins": n_words,
    "fewer words wins": _negated(n_words),
    "more words shared with the question wins": question_overlap,
    "fewer words shared with the question wins": _negated(question_overlap),
    "the earlier difference wins": earlier_difference,
    "the later difference wins": _negated(earlier_difference),
    "alphabetically first wins": alphabetically_first,
    "larger numbers win": number_mean,
    "smaller numbers win": _negated(number_mean),
}


def text_scorer(scorer: TextScorer) -> CandidateScorer:
    """Return a learned text scorer as a candidate scorer (it ignores rival and question)."""

    def score(text: str, rival: str, question: str) -> float:
        return scorer(text)

    return score


def scorer_outcomes(pairs: Sequence[Pair], scorer: CandidateScorer) -> dict[str, float]:
    """Return each pair's outcome under a candidate scorer (see `pair_outcome`)."""
    out = {}
    for pair in pairs:
        better, worse = pair.texts
        question = pair.item.question
        out[pair.key] = pair_outcome(
            scorer(better, worse, question), scorer(worse, better, question)
        )
    return out


@dataclass
class ScorerControl:
    """A fixed context-blind scorer of candidates (a heuristic, or a learner fitted elsewhere)."""

    name: str
    scorer: CandidateScorer
    blind: bool = True
    notes: list[str] = field(default_factory=list)

    def outcomes(self, pairs: Sequence[Pair]) -> dict[str, float]:
        """Return each pair's outcome under the scorer."""
        return scorer_outcomes(pairs, self.scorer)


def heuristic_controls() -> list[ScorerControl]:
    """Return one control per heuristic (length, words, question overlap, position of the
    difference, alphabetical order), each with its reverse.
    """
    return [ScorerControl(name, scorer) for name, scorer in HEURISTICS.items()]


# ---------------------------------------------------------------------------------------------
# Learned from the candidates, cross-fitted


def fold_of_groups(groups: Sequence[str], folds: int, seed: int) -> np.ndarray:
    """Return each position's fold (0..k-1): groups shuffled with `seed`, then balanced into k
    folds by scikit-learn's GroupKFold, so a group lies in exactly one fold.
    """
    names = sorted(set(groups))
    if len(names) < 2:
        raise ControlUnavailable(f"cross-fitting needs at least 2 items, got {len(names)}")
    k = min(folds, len(names))
    # GroupKFold balances fold sizes deterministically from the group labels; labelling the
    # groups by a seeded permutation makes which group lands where a seeded draw.
    relabel = dict(zip(names, np.random.default_rng(seed).permutation(len(names)), strict=True))
    labels = np.array([relabel[g] for g in groups])
    fold = np.empty(len(groups), dtype=int)
    for f, (_, test) in enumerate(GroupKFold(n_splits=k).split(labels, groups=labels)):
        fold[test] = f
    return fold


@dataclass
class CrossFitControl:
    """A learner scored out of fold: fitted on the pairs of k-1 folds of items, it judges the
    pairs of the fold it never saw, so every pair gets an outcome from a model blind to it.
    """

    name: str
    learner: Learner
    folds: int = 5
    seed: int = 0
    blind: bool = True
    notes: list[str] = field(default_factory=list)

    def outcomes(self, pairs: Sequence[Pair]) -> dict[str, float]:
        """Return each pair's outcome from the learner fitted on the other folds."""
        if self.folds < 2:
            raise ValueError(f"cross-fitting needs at least 2 folds, got {self.folds}")
        self.notes.clear()
        fold = fold_of_groups([p.group for p in pairs], self.folds, self.seed)
        k = int(fold.max()) + 1
        if k < self.folds:
            self.notes.append(f"{k} folds: only {k} items")
        out: dict[str, float] = {}
        for f in range(k):
            train = [p for p, g in zip(pairs, fold, strict=True) if g != f]
            test = [p for p, g in zip(pairs, fold, strict=True) if g == f]
            out.update(scorer_outcomes(test, text_scorer(self.learner(train))))
        return out


def learned_controls(folds: int = 5, seed: int = 0) -> list[CrossFitControl]:
    """Return the cross-fitted bag-of-words learners (logistic regression, naive Bayes)."""
    return [
        CrossFitControl(f"{name} ({folds}-fold)", learner, folds, seed)
        for name, learner in LEARNERS.items()
    ]


# ---------------------------------------------------------------------------------------------
# A reward model, with the context and with it ablated


@dataclass
class ModelControl:
    """A reward model that scores each candidate on its own (likelihood, scalar), given the
    item's prompt as is (`ablation=None`: the reference a blind control is measured against),
    with the context emptied (`"empty"`) or swapped for other items' (`"swap"`).

    The model ranks the candidates an item's pairs need in one call (one prompt encoding per
    item) and the pair's outcome compares their scores. Judges, whose verdict depends on the
    display order, do not belong here (the stored order is best first): `longrm eval
    --ablate-context` shows them in both orders. `progress` is called with 1 after each item.
    """

    name: str
    model: RewardModel
    ablation: str | None = None
    progress: Callable[[int], None] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def blind(self) -> bool:
        """Return True when the context is ablated."""
        return self.ablation is not None

    def outcomes(self, pairs: Sequence[Pair]) -> dict[str, float]:
        """Return each pair's outcome from the model's scores of its two candidates."""
        from longrm.evaluate.ablation import AblationError, ablate_context

        self.notes.clear()
        items = items_of(pairs)
        if self.ablation is not None:
            try:
                items = ablate_context(items, self.ablation)
            except AblationError as err:
                raise ControlUnavailable(str(err)) from None
        by_item: dict[str, list[Pair]] = defaultdict(list)
        for pair in pairs:
            by_item[pair.group].append(pair)
        out: dict[str, float] = {}
        truncated = unscored = 0
        for item in items:
            mine = by_item[item.key]
            needed = sorted({k for p in mine for k in (p.better, p.worse)})
            verdict = self.model.rank(item.prompt, [item.candidates[k] for k in needed])
            truncated += verdict.truncated
            score = verdict.scores  # None from a backend that only ranks: no outcome to read
            unscored += score is None
            at = {k: score[s] if score else float("nan") for s, k in enumerate(needed)}
            for pair in mine:
                out[pair.key] = pair_outcome(at[pair.better], at[pair.worse])
            if self.progress is not None:
                self.progress(1)
        if truncated:
            self.notes.append(f"{truncated} of {len(items)} prompts cut to the model's window")
        if unscored:
            self.notes.append(f"{unscored} of {len(items)} items unscored (counted as ties)")
        return out


def model_controls(
    model: RewardModel, label: str, progress: Callable[[int], None] | None = None
) -> list[ModelControl]:
    """Return the model with the context (the reference), emptied and swapped (both blind)."""
    return [
        ModelControl(f"{label} with the context", model, None, progress),
        ModelControl(f"{label}, context emptied", model, "empty", progress),
        ModelControl(f"{label}, context swapped", model, "swap", progress),
    ]
