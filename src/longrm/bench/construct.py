"""The by-construction benchmark: long-context items whose gold order holds without a judge.

Each item plants invented facts (made-up names and codes, so no haystack text can agree or
conflict with them) into filler text and asks a question only those facts answer.

Candidates. Every candidate of an item has the same structure: a main claim (the answer to the
question) and one side claim (a second statement the context settles), in the same wording
pools. Quality is a 2x2 factorial over the two claims, ordered lexicographically (the main claim
first), so the gold order holds by construction:

1. `grounded`: main right, side right;
2. `partial`: main right, side wrong (the context contradicts it);
3. `wrong`: main wrong, side right;
4. `both-wrong`: main wrong, side wrong.

The wrong main value W and the wrong side value F are each shared by the two candidates that use
them, so in a Best-of-4 item every value appears in exactly two candidates (no majority-value
shortcut), and the two candidates of a pair share at most one value. Right and wrong values are
drawn from one generator (codes all shaped like "QX-4821", names from one syllable generator,
counts from one range), so neither a value's look nor a candidate's length depends on its tier.
W is of one of two kinds per item (`wrong_kind`, cycled): *contradicted* (a value the context
gives something else, planted on purpose as a near miss) or *invented* (a value the context
never mentions). Off-topic answers are not a tier: they can be spotted from the question alone,
without reading the context, and whether "confidently wrong" beats "irrelevant" is a matter of
taste, not of construction.

Wording. Pairwise items have subtype `same` (every candidate uses one lead, joiner and phrasing:
they differ only in their values) or `cross` (each candidate draws its wording independently of
its tier); Best-of-N items keep the schema's subtype ("2"/"3"/"4") and record theirs in
`extra["wording"]`. Pairwise items cycle through all six pairs of tiers, Best-of-N items through
all tier combinations of their size.

Four task families test grounding, one module each (`single_fact`: a needle at a controlled
depth; `multi_hop`: a chain of 2-4 facts; `citation`: numbered documents, cite the one that holds
the claim; `counting`: how many times an invented event is mentioned). Adding a family means
adding a module with a planner and registering it in `_PLANNERS`. Prompts are sized with the
tokenizer of the model under evaluation to 80-95% of their length bucket.
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from longrm.bench import citation, counting, multi_hop, single_fact
from longrm.bench.fit import HIGH, LOW, TokenCounter, build_prompt
from longrm.bench.haystack import Haystack, load_haystack
from longrm.bench.plan import Choice, Plan, Planner
from longrm.bench.wording import draw_style, render
from longrm.items import BEST_OF_N, PAIRWISE, Item

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "FAMILIES",
    "FORMATS",
    "HIGH",
    "LOW",
    "TIERS",
    "TIER_SCORES",
    "TIER_VALUES",
    "WORDINGS",
    "WRONG_KINDS",
    "build_suite",
    "parse_lengths",
]

_PLANNERS: dict[str, Planner] = {
    "single_fact": single_fact.plan,
    "multi_hop": multi_hop.plan,
    "citation": citation.plan,
    "counting": counting.plan,
}
FAMILIES = tuple(_PLANNERS)
# Families whose items come in twins, the second stating the first's wrong values as right and
# its right values as wrong (see `counting`): their values are numbers a model has priors over.
MIRRORED = frozenset({"counting"})
FORMATS = ("pairwise", "bon2", "bon3", "bon4")
TIERS = ("grounded", "partial", "wrong", "both-wrong")
# Per tier: (main claim right, side claim right); the order above is lexicographic in these.
TIER_VALUES = {
    "grounded": (True, True),
    "partial": (True, False),
    "wrong": (False, True),
    "both-wrong": (False, False),
}
TIER_SCORES = {"grounded": 1.0, "partial": 0.6, "wrong": 0.3, "both-wrong": 0.0}
WRONG_KINDS = ("contradicted", "invented")
WORDINGS = ("same", "cross")
_DEPTH_BINS = 5

_LENGTH_TOKEN = re.compile(r"^(\d+)([kK]?)$")


# ---------------------------------------------------------------------------------------------
# Length buckets


def parse_lengths(spec: str) -> list[tuple[str, int]]:
    """Return (label, tokens) buckets of a spec like "512,1k,2k" ("1k" = 1024 tokens).

    Raises ValueError naming the bad part: empty parts, non-numbers, zero, duplicates.
    """
    out: list[tuple[str, int]] = []
    seen: dict[int, str] = {}
    for raw in spec.split(","):
        part = raw.strip()
        m = _LENGTH_TOKEN.match(part)
        if not m:
            raise ValueError(
                f"bad length {part!r} in {spec!r}: expected a token count like 512 or 8k "
                "(k = 1024), comma-separated"
            )
        number, k = int(m.group(1)), bool(m.group(2))
        size = number * 1024 if k else number
        label = f"{number}k" if k else str(number)
        if size <= 0:
            raise ValueError(f"bad length {part!r} in {spec!r}: must be positive")
        if size in seen:
            raise ValueError(f"length {part!r} repeats {seen[size]!r} in {spec!r}")
        seen[size] = part
        out.append((label, size))
    return out


# ---------------------------------------------------------------------------------------------
# The suite


def tier_sets(fmt: str) -> list[tuple[str, ...]]:
    """Return the tier combinations a format cycles through, each best first."""
    n = 2 if fmt == "pairwise" else int(fmt.removeprefix("bon"))
    return list(itertools.combinations(TIERS, n))


def build_suite(
    tokenizer: PreTrainedTokenizerBase,
    *,
    lengths: Sequence[tuple[str, int]] | str,
    families: Sequence[str] | None = None,
    items_per_cell: int = 1,
    formats: Sequence[str] = FORMATS,
    seed: int = 0,
    haystack: Haystack | None = None,
    avoid_invented: Iterable[str] = (),
) -> list[Item]:
    """Return a by-construction suite: items_per_cell items per (length, family, format).

    `tokenizer` is the evaluated model's: it sizes each prompt to 80-95% of its bucket, and an
    item's `length` is the token count of its prompt text (no chat template, no special tokens).
    Depths, hop counts, tier sets, wordings and wrong kinds cycle per family (and format) so that
    they spread evenly; the rest is drawn from RNGs seeded per item, so the same arguments give
    the same items. `haystack` defaults to the documentation that ships with Python.
    `avoid_invented` lists names and codes no item may invent (those of a suite to hold out
    from); empty, it changes nothing.
    """
    buckets = parse_lengths(lengths) if isinstance(lengths, str) else list(lengths)
    if not buckets:
        raise ValueError("no length buckets given")
    chosen = list(FAMILIES if families is None else families)
    for name, values, known in (("family", chosen, FAMILIES), ("format", formats, FORMATS)):
        bad = [v for v in values if v not in known]
        if bad or not values:
            raise ValueError(f"unknown {name} {bad or 'list (empty)'}: choose from {known}")
    if items_per_cell < 1:
        raise ValueError(f"items_per_cell must be at least 1, got {items_per_cell}")
    stack = haystack if haystack is not None else load_haystack(None)
    counter = TokenCounter(tokenizer, stack)
    avoid = frozenset(w.lower() for w in avoid_invented)
    turns: dict[tuple[str, ...], int] = {}
    items: list[Item] = []
    for bucket, size in buckets:
        for offset, family in enumerate(chosen):
            for fmt in formats:
                twin: tuple[tuple[str, ...], str, Choice, Plan] | None = None
                for j in range(items_per_cell):
                    rng = random.Random(f"longrm-construct:{seed}:{family}:{bucket}:{fmt}:{j}")
                    if twin is not None and family in MIRRORED:
                        tiers, wording, choice = _mirror(*twin)
                        twin = None
                    else:
                        tiers, wording, choice = _choose(rng, turns, family, offset, fmt, size)
                    plan, content, n_tokens = build_prompt(
                        rng, choice, _PLANNERS[family], counter, bucket, avoid
                    )
                    if choice.mirror is None:
                        twin = (tiers, wording, choice, plan)
                    candidates = _candidates(rng, plan, tiers, wording)
                    item_id = _turn(turns, family, "id")
                    items.append(
                        _item(
                            plan,
                            choice,
                            tiers,
                            wording,
                            candidates,
                            fmt,
                            bucket,
                            content,
                            n_tokens,
                            stack,
                            item_id,
                        )
                    )
    return items


def _turn(turns: dict[tuple[str, ...], int], *key: str) -> int:
    """Return how often `key` was used before, and count this use."""
    value = turns.get(key, 0)
    turns[key] = value + 1
    return value


def _choose(
    rng: random.Random,
    turns: dict[tuple[str, ...], int],
    family: str,
    offset: int,
    fmt: str,
    size: int,
) -> tuple[tuple[str, ...], str, Choice]:
    """Return the tiers, wording and per-item choices of the next item of (family, format).

    Tier sets cycle per (family, format), started at a family-specific offset. Wording and
    wrong kind cycle together through their four combinations, shifted by one at each new round
    of tier sets when the number of sets is even, so that every tier set meets every
    combination and neither half of the wording split holds a different mix of tiers.
    """
    sets = tier_sets(fmt)
    turn = _turn(turns, family, fmt) + offset
    tiers = sets[turn % len(sets)]
    shift = turn // len(sets) if len(sets) % 2 == 0 else 0
    combo = (turn + shift) % (len(WORDINGS) * len(WRONG_KINDS))
    depth_bin = (_turn(turns, family, "depth") + offset) % _DEPTH_BINS
    choice = Choice(
        family=family,
        size=size,
        depth=(depth_bin + rng.uniform(0.1, 0.9)) / _DEPTH_BINS,
        wrong_kind=WRONG_KINDS[combo // len(WORDINGS)],
        hops=2 + _turn(turns, family, "hops") % 3,
        right_larger=(turn + turn // len(sets)) % 2 == 0,
    )
    return tiers, WORDINGS[combo % len(WORDINGS)], choice


def _mirror(
    tiers: tuple[str, ...], wording: str, choice: Choice, plan: Plan
) -> tuple[tuple[str, ...], str, Choice]:
    """Return the choices of the twin of an item: its tiers, wording and wrong kind, values
    mirrored (and so the other side of `right_larger`)."""
    claims = plan.claims
    mirror = (claims.right, claims.wrong)
    return tiers, wording, replace(choice, right_larger=not choice.right_larger, mirror=mirror)


def _values(plan: Plan, tier: str) -> tuple[str, str]:
    """Return the (main, side) values a candidate of `tier` states."""
    main_ok, side_ok = TIER_VALUES[tier]
    claims = plan.claims
    return (
        claims.right[0] if main_ok else claims.wrong[0],
        claims.right[1] if side_ok else claims.wrong[1],
    )


def _candidates(rng: random.Random, plan: Plan, tiers: Sequence[str], wording: str) -> list[str]:
    """Return the candidates of `tiers`, worded alike (`same`) or each on its own (`cross`)."""
    claims = plan.claims
    shared = draw_style(rng, len(claims.main), len(claims.side))
    out = []
    for tier in tiers:
        own = draw_style(rng, len(claims.main), len(claims.side)) if wording == "cross" else None
        style = own or shared
        out.append(render(style, claims.main, claims.side, *_values(plan, tier)))
    return out


def _item(
    plan: Plan,
    choice: Choice,
    tiers: Sequence[str],
    wording: str,
    candidates: list[str],
    fmt: str,
    bucket: str,
    content: str,
    n_tokens: int,
    haystack: Haystack,
    item_id: int,
) -> Item:
    """Return the Item of a fitted plan, candidates best first."""
    pairwise = fmt == "pairwise"
    claims = plan.claims
    extra = {
        "answer": claims.right[0],
        "side_answer": claims.right[1],
        "wrong_value": claims.wrong[0],
        "side_wrong_value": claims.wrong[1],
        "wrong_kind": choice.wrong_kind,
        "wording": wording,
        "candidate_values": [list(_values(plan, t)) for t in tiers],
        **plan.extra,
        "invented": list(plan.invented),
        # every sentence planted in the context (the ones that settle the claims among them)
        "planted": [f.text for f in plan.facts],
    }
    return Item(
        id=item_id,
        task=choice.family,
        subtask=">".join(tiers),
        tasktype=PAIRWISE if pairwise else BEST_OF_N,
        subtype=wording if pairwise else str(len(tiers)),
        length_bucket=bucket,
        length=n_tokens,
        prompt=[{"role": "user", "content": content}],
        question=plan.question,
        candidates=candidates,
        candidate_models=list(tiers),
        candidate_scores=None if pairwise else [TIER_SCORES[t] for t in tiers],
        source=haystack.description,
        words_count=len(content.split()),
        extra=extra,
    )
