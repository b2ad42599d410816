"""counting: three invented events of one kind, each mentioned a different number of times.

Event x (the one asked about) is mentioned k times, its look-alike y d times and the side event z
e times, spread through the context. The main claim gives the count of x (k, or W: d when
contradicted, a fresh number when invented); the side claim gives the count of z (e, or a fresh
number F). The five numbers are distinct draws from one range, assigned to their roles at random,
so no number's size or digit count hints at its role; counts are always written as digits. Whether
k and e are the larger of (k, W) and (e, F) follows `choice.right_larger`, which the suite cycles
so that in every tier pair the better answer holds the larger numbers half the time: a language
model prefers small numbers whatever the context says (the default model's likelihood judged 27
of 32 counting pairs alike with the context and without it), so a suite whose better answers
happened to hold the larger counts would score that prior below chance.

A size balance is not enough: the default model also has a favourite count, 3 (its most likely
count in 40 of 48 prompts with the context, 34 of 48 without), and picks the answer holding a 3 in
11-12 of 13 same-wording pairs either way. Drawn at random, which side holds the 3 is a coin toss
per item, and a 24-pair suite where the worse answer held it 8 times to 5 scored the prior at 33%.
So items come in twins (`Choice.mirror`): the second of a twin keeps the first's tiers, wording
and wrong kind and swaps its right and wrong counts, so every count is held by the better answer
exactly as often as by the worse one: a scorer that prefers the answer holding its favourite
number gets exactly one item of a twin right when the two answers differ in that number.
"""

from __future__ import annotations

import random

from longrm.bench.plan import Choice, Claims, Fact, Plan, spread
from longrm.bench.wording import MAIN_SLOT, SIDE_SLOT, Words

INSTRUCTION = "Answer the question using only the context above, counting every mention."

# (noun phrase, mention sentences, question, claims); {name} = invented name, {n} = the count.
# Every mention sentence holds the noun phrase exactly once.
EVENTS: tuple[tuple[str, tuple[str, ...], str, tuple[str, ...]], ...] = (
    (
        "{name} bell",
        (
            "Somewhere across the square, the {name} bell rang.",
            "Just then the {name} bell rang again.",
            "The {name} bell rang out over the rooftops.",
            "Far off, the {name} bell rang.",
        ),
        "How many times does the context say that the {name} bell rang?",
        ("the {name} bell rang {n} times", "the {name} bell is said to ring {n} times"),
    ),
    (
        "{name} heron",
        (
            "A {name} heron was sighted by the river.",
            "Someone reported a {name} heron near the old mill.",
            "Late that evening a {name} heron was sighted again.",
            "A {name} heron was seen wading in the shallows.",
        ),
        "How many times does the context report a {name} heron being sighted?",
        ("a {name} heron is reported {n} times", "a {name} heron is sighted {n} times"),
    ),
    (
        "{name} courier",
        (
            "A {name} courier arrived with a sealed parcel.",
            "Another {name} courier arrived at the gate.",
            "Before noon a {name} courier arrived.",
            "A {name} courier arrived, soaked by the rain.",
        ),
        "How many times does a {name} courier arrive in the context?",
        ("a {name} courier arrives {n} times", "the {name} courier comes {n} times"),
    ),
    (
        "{name} lighthouse",
        (
            "The {name} lighthouse flashed its green signal.",
            "Out at sea, the {name} lighthouse flashed its signal.",
            "Once more the {name} lighthouse flashed its signal.",
            "The {name} lighthouse flashed its signal through the fog.",
        ),
        "How many times does the {name} lighthouse flash its signal in the context?",
        (
            "the {name} lighthouse flashes its signal {n} times",
            "the {name} lighthouse signals {n} times",
        ),
    ),
)


def max_count(size: int) -> int:
    """Return the largest count a bucket of `size` tokens uses (small buckets hold fewer)."""
    return 7 if size < 2048 else 12


def _ordered(right: int, wrong: int, right_larger: bool) -> tuple[int, int]:
    """Return (right, wrong) swapped if needed so that right > wrong exactly when asked."""
    return (right, wrong) if (right > wrong) == right_larger else (wrong, right)


def _mirrored(twin: tuple[tuple[str, str], tuple[str, str]]) -> tuple[int, int, int, int]:
    """Return (k, w, e, f) stating the twin's wrong counts as right and its right ones as wrong.

    The twin's main pair (k, w) and side pair (e, f) are four distinct counts, and neither of
    its wrong counts is mentioned as x's or z's count, so the mirrored roles stay valid: w is the
    look-alike's count when contradicted (the caller plants y w times) and unmentioned when
    invented.
    """
    (right_main, right_side), (wrong_main, wrong_side) = twin
    return int(wrong_main), int(right_main), int(wrong_side), int(right_side)


def plan(rng: random.Random, choice: Choice) -> Plan:
    """Return the plan of a counting item."""
    words = Words(rng)
    phrase, mentions, question, templates = rng.choice(EVENTS)
    x, y, z = words.name(), words.name(), words.name()
    counts = range(2, max_count(choice.size) + 1)
    if choice.mirror is not None:
        k, w, e, f = _mirrored(choice.mirror)
        d = (
            w
            if choice.wrong_kind == "contradicted"
            else rng.choice([n for n in counts if n not in (k, w, e, f)])
        )
    else:
        k, d, e, fresh, f = rng.sample(counts, 5)
        if choice.wrong_kind == "contradicted":
            k, d = _ordered(k, d, choice.right_larger)
            w = d
        else:
            k, fresh = _ordered(k, fresh, choice.right_larger)
            w = fresh
        e, f = _ordered(e, f, choice.right_larger)
    depths = sorted(spread(rng, k))
    facts = [Fact(rng.choice(mentions).format(name=x), 0, pos) for pos in depths]
    facts += [Fact(rng.choice(mentions).format(name=y), 0, pos) for pos in spread(rng, d)]
    facts += [Fact(rng.choice(mentions).format(name=z), 0, pos) for pos in spread(rng, e)]
    claims = Claims(
        main=tuple(t.format(name=x, n=MAIN_SLOT) for t in templates),
        side=tuple(t.format(name=z, n=SIDE_SLOT) for t in templates),
        right=(str(k), str(e)),
        wrong=(str(w), str(f)),
    )
    return Plan(
        facts=facts,
        question=question.format(name=x),
        instruction=INSTRUCTION,
        claims=claims,
        invented=list(words.used),
        extra={
            "depths": [round(pos, 4) for pos in depths],
            "count": k,
            "marker": phrase.format(name=x),
            "distractor_marker": phrase.format(name=y),
            "distractor_count": d,
            "side_marker": phrase.format(name=z),
            "side_count": e,
            "absent_terms": [],
            # the second item of a twin: its counts mirror the item before it (same tiers)
            "mirrored": choice.mirror is not None,
        },
    )
