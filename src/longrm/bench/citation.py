"""citation: numbered documents; the answer must cite the document that holds the claim.

The record about s sits in one document and a same-shaped record about ds in another. The main
claim gives the value of s (v, or W: vd when contradicted, a fresh code when invented); the side
claim cites a document (the one holding the record about s, or F: the distractor's document).
"""

from __future__ import annotations

import random

from longrm.bench.plan import Choice, Claims, Fact, Plan
from longrm.bench.wording import MAIN_SLOT, SIDE_SLOT, Words

INSTRUCTION = (
    "Answer the question using only the documents above, and cite the document that supports "
    "your answer as [Doc n]."
)

# (record, question, claim); {s} = invented subject, {v} = invented code
RECORDS: tuple[tuple[str, str, str], ...] = (
    (
        "The {s} survey was filed under reference {v}.",
        "Under which reference was the {s} survey filed?",
        "the {s} survey was filed under reference {v}",
    ),
    (
        "The minutes of the {s} committee are stored as item {v}.",
        "As which item are the minutes of the {s} committee stored?",
        "the minutes of the {s} committee are stored as item {v}",
    ),
    (
        "{s} booked the lecture hall under permit {v}.",
        "Under which permit did {s} book the lecture hall?",
        "{s} booked the lecture hall under permit {v}",
    ),
    (
        "The {s} bridge inspection was recorded as report {v}.",
        "As which report was the {s} bridge inspection recorded?",
        "the {s} bridge inspection was recorded as report {v}",
    ),
    (
        "The grant for the {s} library was paid under voucher {v}.",
        "Under which voucher was the grant for the {s} library paid?",
        "the grant for the {s} library was paid under voucher {v}",
    ),
    (
        "{s} shipped the replacement valves on manifest {v}.",
        "On which manifest did {s} ship the replacement valves?",
        "{s} shipped the replacement valves on manifest {v}",
    ),
)
_ENTRY = "the record for {s} gives {v}"
_CITES = (
    f"this is stated in [Doc {SIDE_SLOT}]",
    f"the source is [Doc {SIDE_SLOT}]",
    f"[Doc {SIDE_SLOT}] is the document that says so",
)


def n_docs_max(size: int) -> int:
    """Return the most documents a bucket of `size` tokens splits into."""
    return max(3, min(10, size // 1024 + 2))


def plan(rng: random.Random, choice: Choice) -> Plan:
    """Return the plan of a citation item."""
    words = Words(rng)
    record, question, claim = rng.choice(RECORDS)
    s, ds = words.name(), words.name()
    v, vd = words.code(), words.code()
    w = vd if choice.wrong_kind == "contradicted" else words.code()
    n_docs = rng.randint(3, n_docs_max(choice.size))
    doc = min(n_docs - 1, int(choice.depth * n_docs))
    within = choice.depth * n_docs - doc
    other = rng.choice([d for d in range(n_docs) if d != doc])
    facts = [
        Fact(record.format(s=s, v=v), doc, within),
        Fact(record.format(s=ds, v=vd), other, rng.uniform(0.05, 0.95)),
    ]
    claims = Claims(
        main=tuple(t.format(s=s, v=MAIN_SLOT) for t in (claim, _ENTRY)),
        side=_CITES,
        right=(v, str(doc + 1)),
        wrong=(w, str(other + 1)),
    )
    return Plan(
        facts=facts,
        question=question.format(s=s),
        instruction=INSTRUCTION,
        claims=claims,
        invented=list(words.used),
        n_docs=n_docs,
        extra={
            "depth": round(choice.depth, 4),
            "depths": [round(choice.depth, 4)],
            "subject": s,
            "needle": facts[0].text,
            "distractor": facts[1].text,
            "n_docs": n_docs,
            "doc": doc + 1,
            "distractor_doc": other + 1,
            "absent_terms": [] if w == vd else [w],
        },
    )
