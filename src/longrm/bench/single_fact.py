"""single_fact: one needle at a controlled depth, a same-shaped distractor, and a side entry.

Three entries of one attribute are planted: the target (s -> v) at the chosen depth, a distractor
(ds -> vd) and a side entry (ts -> vt) elsewhere. The main claim gives the value of s (v, or W:
vd when contradicted, a fresh code when invented); the side claim gives the value of ts (vt, or
a fresh code F).
"""

from __future__ import annotations

import random

from longrm.bench.plan import Choice, Claims, Fact, Plan, spread
from longrm.bench.wording import MAIN_SLOT, SIDE_SLOT, Words

INSTRUCTION = "Answer the question using only the context above."

# (fact, question, claim); {s} = invented subject, {v} = invented code
ATTRIBUTES: tuple[tuple[str, str, str], ...] = (
    (
        "The access code for the {s} archive is {v}.",
        "What is the access code for the {s} archive?",
        "the access code for the {s} archive is {v}",
    ),
    (
        "{s} registered the survey vessel under the call sign {v}.",
        "Under which call sign did {s} register the survey vessel?",
        "{s} registered the survey vessel under the call sign {v}",
    ),
    (
        "The {s} shipment was logged with tracking number {v}.",
        "Which tracking number was the {s} shipment logged with?",
        "the {s} shipment was logged with tracking number {v}",
    ),
    (
        "Visitors to the {s} observatory must show pass {v} at the gate.",
        "Which pass must visitors to the {s} observatory show at the gate?",
        "visitors to the {s} observatory must show pass {v} at the gate",
    ),
    (
        "{s} filed the water-rights claim as case {v}.",
        "Under which case number did {s} file the water-rights claim?",
        "{s} filed the water-rights claim as case {v}",
    ),
    (
        "The {s} greenhouse keeps its seed bank in vault {v}.",
        "In which vault does the {s} greenhouse keep its seed bank?",
        "the {s} greenhouse keeps its seed bank in vault {v}",
    ),
    (
        "The ferry to {s} island leaves from berth {v}.",
        "From which berth does the ferry to {s} island leave?",
        "the ferry to {s} island leaves from berth {v}",
    ),
    (
        "{s} signed the workshop lease under contract {v}.",
        "Under which contract did {s} sign the workshop lease?",
        "{s} signed the workshop lease under contract {v}",
    ),
)
# A second phrasing of any entry's claim.
_ENTRY = "the entry for {s} gives {v}"


def plan(rng: random.Random, choice: Choice) -> Plan:
    """Return the plan of a single_fact item."""
    words = Words(rng)
    fact, question, claim = rng.choice(ATTRIBUTES)
    s, ds, ts = words.name(), words.name(), words.name()
    v, vd, vt, f = words.code(), words.code(), words.code(), words.code()
    w = vd if choice.wrong_kind == "contradicted" else words.code()
    distractor_at, side_at = spread(rng, 2)
    facts = [
        Fact(fact.format(s=s, v=v), 0, choice.depth),
        Fact(fact.format(s=ds, v=vd), 0, distractor_at),
        Fact(fact.format(s=ts, v=vt), 0, side_at),
    ]
    claims = Claims(
        main=tuple(t.format(s=s, v=MAIN_SLOT) for t in (claim, _ENTRY)),
        side=tuple(t.format(s=ts, v=SIDE_SLOT) for t in (claim, _ENTRY)),
        right=(v, vt),
        wrong=(w, f),
    )
    absent = [f] if w == vd else [w, f]
    return Plan(
        facts=facts,
        question=question.format(s=s),
        instruction=INSTRUCTION,
        claims=claims,
        invented=list(words.used),
        extra={
            "depth": round(choice.depth, 4),
            "depths": [round(choice.depth, 4)],
            "subject": s,
            "needle": facts[0].text,
            "distractor": facts[1].text,
            "side_subject": ts,
            "side_fact": facts[2].text,
            "absent_terms": absent,
        },
    )
