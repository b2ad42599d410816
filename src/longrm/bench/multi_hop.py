"""multi_hop: a chain of 2-4 facts (links, then an attribute of the last person).

Every member of the chain has the attribute, so the earlier members' values are near misses, and
a look-alike person is planted as the same kind of link for someone outside the chain. The main
claim gives the attribute asked for (the last member's value, or W: the last-but-one member's
value when contradicted, a fresh code when invented); the side claim restates one link of the
chain (its right person, or F: the look-alike).
"""

from __future__ import annotations

import random

from longrm.bench.plan import Choice, Claims, Fact, Plan, spread
from longrm.bench.wording import MAIN_SLOT, SIDE_SLOT, Words

INSTRUCTION = (
    "Answer the question using only the context above; the answer may need several facts combined."
)

# (noun, link fact with {a} -> {b}: "{b} is the <noun> of {a}")
LINKS: tuple[tuple[str, str], ...] = (
    ("mentor", "{b} is the mentor of {a}."),
    ("manager", "{a} reports directly to {b}, who is the manager of {a}."),
    ("landlord", "{a} rents a flat from {b}, the landlord of {a}."),
    ("sponsor", "{b} acted as the sponsor of {a}."),
)
# (attribute, fact with {e} and {v})
PERSON_ATTRS: tuple[tuple[str, str], ...] = (
    ("badge number", "The badge number of {e} is {v}."),
    ("desk extension", "{e} can be reached at desk extension {v}."),
    ("locker number", "{e} uses locker number {v}."),
    ("parking permit", "{e} holds parking permit {v}."),
)


def plan(rng: random.Random, choice: Choice) -> Plan:
    """Return the plan of a multi_hop item with `choice.hops` facts in its chain."""
    words = Words(rng)
    noun, link = rng.choice(LINKS)
    attr, attr_fact = rng.choice(PERSON_ATTRS)
    n_links = choice.hops - 1
    people = [words.name() for _ in range(n_links + 1)]
    values = [words.code() for _ in people]
    look_alike, protege = words.name(), words.name()
    answer = values[-1]
    w = values[-2] if choice.wrong_kind == "contradicted" else words.code()
    side_link = rng.randrange(n_links)

    chain_facts = [link.format(a=people[i], b=people[i + 1]) for i in range(n_links)]
    chain_facts.append(attr_fact.format(e=people[-1], v=answer))
    side_facts = [attr_fact.format(e=people[i], v=values[i]) for i in range(n_links)]
    look_alike_fact = link.format(a=protege, b=look_alike)
    positions = spread(rng, 2 * n_links + 1)
    depths = [*positions[:n_links], choice.depth]
    facts = [Fact(t, 0, d) for t, d in zip(chain_facts, depths, strict=True)]
    facts += [Fact(t, 0, d) for t, d in zip(side_facts, positions[n_links:-1], strict=True)]
    facts.append(Fact(look_alike_fact, 0, positions[-1]))

    target = "".join(f"the {noun} of " for _ in range(n_links)) + people[0]
    about = people[side_link]
    claims = Claims(
        main=(f"the {attr} of {target} is {MAIN_SLOT}", f"{MAIN_SLOT} is the {attr} of {target}"),
        side=(f"the {noun} of {about} is {SIDE_SLOT}", f"{SIDE_SLOT} is the {noun} of {about}"),
        right=(answer, people[side_link + 1]),
        wrong=(w, look_alike),
    )
    return Plan(
        facts=facts,
        question=f"What is the {attr} of {target}?",
        instruction=INSTRUCTION,
        claims=claims,
        invented=list(words.used),
        extra={
            "depth": round(choice.depth, 4),
            "depths": [round(d, 4) for d in depths],
            "hops": choice.hops,
            "chain": people,
            "chain_facts": chain_facts,
            "chain_values": values,
            "side_link": side_link,
            "look_alike": look_alike,
            "look_alike_fact": look_alike_fact,
            "absent_terms": [] if w in values else [w],
        },
    )
