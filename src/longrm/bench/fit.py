"""Fitting a plan into a prompt: filler from the haystack, facts planted, sized by the tokenizer."""

from __future__ import annotations

import itertools
import math
import random
from bisect import bisect_left
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from longrm.bench.haystack import Haystack
from longrm.bench.plan import Choice, Plan, Planner

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# The prompt lands in [LOW, HIGH] of its bucket; the target is drawn a little inside that band so
# that the final fix-up rarely needs more than one pass.
LOW, HIGH = 0.80, 0.95
_TARGET_LOW, _TARGET_HIGH = 0.82, 0.93
_FIT_PASSES = 8
_MAX_REDRAWS = 20
_COUNT_BATCH = 128
# Filler that contains these would confuse the prompt's own structure.
_RESERVED = ("<context>", "</context>", "[Doc ")


class TokenCounter:
    """Token counts with the evaluated model's tokenizer; haystack paragraphs cached."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, haystack: Haystack) -> None:
        self.tokenizer = tokenizer
        self.haystack = haystack
        self._cache: dict[int, int] = {}

    def counts(self, texts: Sequence[str]) -> list[int]:
        """Return the token count of each text (no special tokens), in one batched call."""
        if not texts:
            return []
        encoded = self.tokenizer(
            list(texts), add_special_tokens=False, return_attention_mask=False, verbose=False
        )
        return [len(ids) for ids in encoded["input_ids"]]

    def count(self, text: str) -> int:
        """Return the token count of one text."""
        return self.counts([text])[0]

    def paragraph(self, index: int) -> int:
        """Return the token count of haystack paragraph `index`, counting a batch on a miss."""
        if index not in self._cache:
            n = len(self.haystack)
            batch = [i % n for i in range(index, index + _COUNT_BATCH)]
            batch = list(dict.fromkeys(i for i in batch if i not in self._cache))
            texts = [self.haystack.paragraphs[i] for i in batch]
            self._cache.update(zip(batch, self.counts(texts), strict=True))
        return self._cache[index]


@dataclass
class _Filler:
    """The filler of one prompt: paragraphs, their token counts, and where more come from."""

    stream: Iterator[int]
    texts: list[str] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.counts)


def _usable(text: str) -> bool:
    """Return True when a filler paragraph holds none of the prompt's structural markers."""
    return not any(r in text for r in _RESERVED)


def _grow(filler: _Filler, need: int, counter: TokenCounter) -> None:
    """Add or remove filler until its token counts sum to about `need` (cutting the last one)."""
    while filler.total < need:
        for _ in range(len(counter.haystack) + 1):
            i = next(filler.stream)
            if _usable(counter.haystack.paragraphs[i]):
                break
        else:
            raise ValueError(f"haystack {counter.haystack.description!r} has no usable paragraph")
        filler.texts.append(counter.haystack.paragraphs[i])
        filler.counts.append(counter.paragraph(i))
    while filler.counts and filler.total - filler.counts[-1] >= need:
        filler.texts.pop()
        filler.counts.pop()
    excess = filler.total - need
    if excess > 0 and filler.counts:
        keep = filler.counts[-1] - excess
        words = filler.texts[-1].split()
        cut = " ".join(words[: max(1, round(len(words) * keep / filler.counts[-1]))])
        filler.texts[-1] = cut
        filler.counts[-1] = counter.count(cut)


def _positions(counts: Sequence[int], fractions: Sequence[float]) -> list[int]:
    """Return, for each fraction, the paragraph boundary nearest that share of the tokens."""
    total = sum(counts)
    if not counts or total == 0:
        return [0 for _ in fractions]
    bounds = [0.0, *itertools.accumulate(c / total for c in counts)]
    out = []
    for f in fractions:
        j = bisect_left(bounds, f)
        if j == len(bounds) or (j > 0 and f - bounds[j - 1] <= bounds[j] - f):
            j -= 1
        out.append(j)
    return out


def render_prompt(plan: Plan, texts: Sequence[str], counts: Sequence[int]) -> str:
    """Return the prompt: filler with the plan's facts planted, then the question."""
    cuts = _positions(counts, [i / plan.n_docs for i in range(plan.n_docs + 1)])
    cuts[0], cuts[-1] = 0, len(texts)
    docs = []
    for d in range(plan.n_docs):
        lo, hi = cuts[d], max(cuts[d], cuts[d + 1])
        facts = sorted((f for f in plan.facts if f.doc == d), key=lambda f: f.within)
        at = _positions(counts[lo:hi], [f.within for f in facts])
        parts: list[str] = []
        k = 0
        for j in range(hi - lo + 1):
            while k < len(facts) and at[k] == j:
                parts.append(facts[k].text)
                k += 1
            if j < hi - lo:
                parts.append(texts[lo + j])
        body = "\n\n".join(parts)
        docs.append(f"[Doc {d + 1}]\n{body}" if plan.n_docs > 1 else body)
    context = "\n\n".join(docs)
    return f"<context>\n{context}\n</context>\n\nQuestion: {plan.question}\n{plan.instruction}"


def _collides(plan: Plan, texts: Sequence[str], avoid: Collection[str] = ()) -> bool:
    """Return True when an invented string occurs in the filler (it must be new to the model)
    or is one of `avoid` (lower-cased names another suite uses).
    """
    lowered = "\n".join(texts).lower()
    return any(w.lower() in lowered or w.lower() in avoid for w in plan.invented)


def build_prompt(
    rng: random.Random,
    choice: Choice,
    planner: Planner,
    counter: TokenCounter,
    bucket: str,
    avoid: Collection[str] = (),
) -> tuple[Plan, str, int]:
    """Return a plan, its prompt of 80-95% of the bucket, and the prompt's token count.

    A plan inventing a string of `avoid` (lower-cased) is redrawn, as one whose names occur in
    the filler is: held-out training data must not share names with its evaluation suite.
    """
    size = choice.size
    low, high = math.ceil(LOW * size), math.floor(HIGH * size)
    target = rng.randint(math.ceil(_TARGET_LOW * size), math.floor(_TARGET_HIGH * size))
    # Close to the drawn target, not merely inside the band, so lengths spread over the band.
    tolerance = max(4, size // 100)
    filler = _Filler(counter.haystack.stream(rng.randrange(len(counter.haystack))))
    plan = planner(rng, choice)
    for _ in range(_MAX_REDRAWS):
        overhead = counter.count(render_prompt(plan, [], []))
        if overhead >= low:
            raise ValueError(
                f"length bucket {bucket!r} ({size} tokens) is too small for {choice.family}: "
                f"its question and planted facts alone take {overhead} tokens; use a larger bucket"
            )
        bias, content, n = 0, "", 0
        for _ in range(_FIT_PASSES):
            _grow(filler, target - overhead - bias, counter)
            content = render_prompt(plan, filler.texts, filler.counts)
            n = counter.count(content)
            if low <= n <= high and abs(n - target) <= tolerance:
                break
            bias = n - overhead - filler.total
        if not low <= n <= high:
            raise RuntimeError(f"could not fit a {bucket} prompt for {choice.family}")
        if not _collides(plan, filler.texts, avoid):
            return plan, content, n
        plan = planner(rng, choice)
    raise RuntimeError("invented names keep colliding with the haystack; try another seed")
