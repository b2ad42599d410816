"""The by-construction benchmark: long-context items whose gold order holds without a judge.

Each item plants invented facts (made-up names and codes, so no haystack text can agree or
conflict with them) into filler text, asks a question only those facts answer, and offers
candidates of known quality, strictly ordered:

1. grounded: the right answer, every claim supported by the context;
2. partial: the right answer plus a false or unsupported extra claim (or, when counting, a count
   off by one);
3. wrong, one of two kinds per item: *contradicted* (a value the context states for something
   else: a near-miss distractor that was planted on purpose) or *absent* (relies on something
   the context never mentions);
4. off-topic: does not address the question.

Four task families test grounding: `single_fact` (a needle at a controlled depth), `multi_hop`
(a chain of 2-4 facts), `citation` (numbered documents; cite the one that holds the claim) and
`counting` (how many times an invented event is mentioned). Prompts are sized with the tokenizer
of the model under evaluation to 80-95% of their length bucket.
"""

from __future__ import annotations

import itertools
import math
import random
import re
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from longrm.bench.haystack import Haystack, load_haystack
from longrm.items import BEST_OF_N, PAIRWISE, Item

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

FAMILIES = ("single_fact", "multi_hop", "citation", "counting")
FORMATS = ("pairwise", "bon2", "bon3", "bon4")
TIERS = ("grounded", "partial", "wrong", "off-topic")
TIER_SCORES = {"grounded": 1.0, "partial": 0.6, "wrong": 0.3, "off-topic": 0.0}
WRONG_KINDS = ("contradicted", "absent")
# The prompt lands in [LOW, HIGH] of its bucket; the target is drawn a little inside that band so
# that the final fix-up rarely needs more than one pass.
LOW, HIGH = 0.80, 0.95
_TARGET_LOW, _TARGET_HIGH = 0.82, 0.93
_DEPTH_BINS = 5
_FIT_PASSES = 8
_MAX_REDRAWS = 20
_COUNT_BATCH = 128
# Filler that contains these would confuse the prompt's own structure.
_RESERVED = ("<context>", "</context>", "[Doc ")

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
# Wording: our own phrases, several per slot, chosen by the item's seeded RNG


# (prefix, whether the claim after it starts with a capital)
_LEADS: tuple[tuple[str, bool], ...] = (
    ("", True),
    ("Based on the context, ", False),
    ("According to the context, ", False),
    ("The context indicates that ", False),
    ("Answer: ", True),
    ("In short, ", False),
)

_OFF_TOPIC = (
    "tomatoes ripen faster when they are stored next to bananas, because bananas give off "
    "ethylene gas that speeds the process up.",
    "a bicycle chain lasts much longer if it is cleaned and lightly oiled every few hundred "
    "kilometres of riding.",
    "many songbirds migrate at night and find their way using the stars and the magnetic field "
    "of the Earth.",
    "green tea tastes best when brewed with water well below boiling, while black tea can take "
    "it much hotter.",
    "short daily practice sessions usually help more than one long weekly session when "
    "learning a new language.",
    "backing up files to a second drive protects against accidental deletion as well as "
    "hardware failure.",
    "sourdough starter stays lively when it is fed at the same hour each day and kept at room "
    "temperature.",
    "a houseplant that gets too much water often shows yellow leaves long before its roots "
    "visibly rot.",
)

# single_fact and citation: (fact, question, claim); {s} = invented subject, {v} = invented code
_ATTRIBUTES: tuple[tuple[str, str, str], ...] = (
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

# Extra claims the context never supports ({p} is an invented name absent from it).
_UNSUPPORTED = (
    "It was assigned by {p} in {year}.",
    "{p} has been responsible for it since {year}.",
    "It was last changed in {year} on the advice of {p}.",
)
# Extra claims the context contradicts ({ds} is the distractor subject, which has another value).
_FALSE_SAME = (
    "The context gives that same value for {ds} as well.",
    "{ds} uses exactly the same value.",
    "The entry for {ds} shows the same value too.",
)
_TRUE_CONTRAST = (
    "The context lists {vd} for {ds}, which is a different entry.",
    "This should not be confused with {ds}, whose entry is {vd}.",
)
_ASSERT_GROUNDED = (
    "This is stated directly in the context.",
    "The context says so in the sentence about {s}.",
)
_ABSENT_SOURCE = (
    "This comes from the {q} register quoted in the context.",
    "The note by {p} in the context records it.",
    "The context quotes it from the {q} ledger.",
)

# multi_hop: (noun, link fact with {a} -> {b}: "{b} is the <noun> of {a}")
_LINKS: tuple[tuple[str, str], ...] = (
    ("mentor", "{b} is the mentor of {a}."),
    ("manager", "{a} reports directly to {b}, who is the manager of {a}."),
    ("landlord", "{a} rents a flat from {b}, the landlord of {a}."),
    ("sponsor", "{b} acted as the sponsor of {a}."),
)
# multi_hop: (attribute, fact with {e} and {v})
_PERSON_ATTRS: tuple[tuple[str, str], ...] = (
    ("badge number", "The badge number of {e} is {v}."),
    ("desk extension", "{e} can be reached at desk extension {v}."),
    ("locker number", "{e} uses locker number {v}."),
    ("parking permit", "{e} holds parking permit {v}."),
)
_SO_ANSWER = ("So the answer is {v}.", "That makes the answer {v}.", "The answer is therefore {v}.")
_HOP_UNSUPPORTED = (
    "{e} has held it since {year}.",
    "{e} received it from {p} in {year}.",
)
_HOP_FALSE = (
    "{e} has the same {attr}.",
    "The {attr} of {e} is the same.",
)

# counting: (noun phrase, mention sentences, question, claim); {x} = invented name,
# {times} = "3 times" / "once". Every mention sentence holds the noun phrase exactly once.
_EVENTS: tuple[tuple[str, tuple[str, ...], str, str], ...] = (
    (
        "{x} bell",
        (
            "Somewhere across the square, the {x} bell rang.",
            "Just then the {x} bell rang again.",
            "The {x} bell rang out over the rooftops.",
            "Far off, the {x} bell rang.",
        ),
        "How many times does the context say that the {x} bell rang?",
        "the {x} bell rang {times}",
    ),
    (
        "{x} heron",
        (
            "A {x} heron was sighted by the river.",
            "Someone reported a {x} heron near the old mill.",
            "Late that evening a {x} heron was sighted again.",
            "A {x} heron was seen wading in the shallows.",
        ),
        "How many times does the context report a {x} heron being sighted?",
        "a {x} heron is reported {times}",
    ),
    (
        "{x} courier",
        (
            "A {x} courier arrived with a sealed parcel.",
            "Another {x} courier arrived at the gate.",
            "Before noon a {x} courier arrived.",
            "A {x} courier arrived, soaked by the rain.",
        ),
        "How many times does a {x} courier arrive in the context?",
        "a {x} courier arrives {times}",
    ),
    (
        "{x} lighthouse",
        (
            "The {x} lighthouse flashed its green signal.",
            "Out at sea, the {x} lighthouse flashed its signal.",
            "Once more the {x} lighthouse flashed its signal.",
            "The {x} lighthouse flashed its signal through the fog.",
        ),
        "How many times does the {x} lighthouse flash its signal in the context?",
        "the {x} lighthouse flashes its signal {times}",
    ),
)
_COUNT_CONTRAST = ("By contrast, the {y} comes up {dtimes}.", "The {y} comes up {dtimes} instead.")
_COUNT_ASSERT = (
    "I counted each separate mention in the context.",
    "Each mention was counted once.",
)
_COUNT_FALSE = ("The {y} comes up just as often.", "The {y} is mentioned the same number of times.")
_COUNT_UNSUPPORTED = (
    "Each time it was {p} who noticed it first.",
    "Every one of these happened during the {q} fair.",
)
_COUNT_ABSENT = (
    "That includes the mentions during the {q} festival.",
    "This counts the ones {p} describes as well.",
)

_INSTRUCTIONS = {
    "single_fact": "Answer the question using only the context above.",
    "multi_hop": (
        "Answer the question using only the context above; the answer may need several facts "
        "combined."
    ),
    "citation": (
        "Answer the question using only the documents above, and cite the document that "
        "supports your answer as [Doc n]."
    ),
    "counting": "Answer the question using only the context above, counting every mention.",
}

_ONSETS = (
    "b", "br", "d", "dr", "f", "g", "gr", "k", "kl", "l", "m", "n", "p", "qu", "r", "s", "st",
    "t", "tr", "v", "z", "th", "sh", "w",
)  # fmt: skip
_VOWELS = ("a", "e", "i", "o", "u", "ae", "ia", "ou", "y")
_CODAS = ("", "", "", "n", "r", "l", "s", "th", "nd", "rk", "x", "m")
_CODE_LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"


def _times(n: int) -> str:
    """Return "once" or "<n> times"."""
    return "once" if n == 1 else f"{n} times"


def _cap(text: str) -> str:
    """Return text with its first character upper-cased."""
    return text[:1].upper() + text[1:]


# ---------------------------------------------------------------------------------------------
# Plans: what an item plants and what its candidates say, before any filler is chosen


@dataclass(frozen=True)
class _Fact:
    """A sentence to plant: in document `doc` (0-based), at relative position `within`."""

    text: str
    doc: int
    within: float


@dataclass
class _Plan:
    """Everything an item says except its filler."""

    facts: list[_Fact]
    question: str
    instruction: str
    candidates: dict[str, str]
    invented: list[str]
    extra: dict[str, Any]
    n_docs: int = 1


@dataclass
class _Choice:
    """Per-item choices set by the suite so that they spread evenly."""

    family: str
    size: int
    depth: float
    wrong_kind: str
    partial_turn: int
    hops: int


class _Words:
    """Invented names and codes for one item, never repeated within it."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def name(self) -> str:
        """Return a fresh invented proper noun of 2-3 syllables."""
        while True:
            syllables = self.rng.randint(2, 3)
            word = "".join(
                self.rng.choice(_ONSETS) + self.rng.choice(_VOWELS) for _ in range(syllables)
            )
            word = _cap(word + self.rng.choice(_CODAS))
            if 5 <= len(word) <= 12 and word not in self.used:
                self.used.add(word)
                return word

    def code(self) -> str:
        """Return a fresh invented code such as "QX-4821"."""
        while True:
            letters = "".join(self.rng.choice(_CODE_LETTERS) for _ in range(2))
            code = f"{letters}-{self.rng.randint(1000, 9999)}"
            if code not in self.used:
                self.used.add(code)
                return code


class _Phrase:
    """Candidate assembly: a random lead, a claim, and further sentences."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def pick(self, options: Sequence[str], **slots: object) -> str:
        """Return one of `options`, formatted."""
        return self.rng.choice(options).format(**slots)

    def answer(self, claim: str, *rest: str) -> str:
        """Return `claim` after a random lead, then the following sentences."""
        prefix, capital = self.rng.choice(_LEADS)
        first = prefix + (_cap(claim) if capital else claim)
        if not first.endswith("."):
            first += "."
        return " ".join([first, *[r for r in rest if r]])

    def off_topic(self) -> str:
        """Return an answer that ignores the question."""
        return self.answer(self.rng.choice(_OFF_TOPIC).rstrip("."))


def _spread(rng: random.Random, n: int) -> list[float]:
    """Return n positions in (0, 1), one per equal slice, in random order."""
    positions = [(i + rng.uniform(0.1, 0.9)) / n for i in range(n)]
    rng.shuffle(positions)
    return positions


def _partial_kind(choice: _Choice, kinds: Sequence[str]) -> str:
    return kinds[choice.partial_turn % len(kinds)]


def _plan_single_fact(rng: random.Random, choice: _Choice) -> _Plan:
    """One needle at the chosen depth, one distractor entry of the same shape elsewhere."""
    words, say = _Words(rng), _Phrase(rng)
    fact, question, claim = rng.choice(_ATTRIBUTES)
    s, ds, p, q = words.name(), words.name(), words.name(), words.name()
    v, vd, vf = words.code(), words.code(), words.code()
    year = rng.randint(1961, 2019)
    distractor_at = rng.uniform(0.05, 0.95)
    facts = [
        _Fact(fact.format(s=s, v=v), 0, choice.depth),
        _Fact(fact.format(s=ds, v=vd), 0, distractor_at),
    ]
    partial_kind = _partial_kind(choice, ("unsupported_extra", "false_extra"))
    if partial_kind == "unsupported_extra":
        extra_claim = say.pick(_UNSUPPORTED, p=p, year=year)
    else:
        extra_claim = say.pick(_FALSE_SAME, ds=ds)
    if choice.wrong_kind == "contradicted":
        wrong = say.answer(claim.format(s=s, v=vd), say.pick(_ASSERT_GROUNDED, s=s))
    else:
        wrong = say.answer(claim.format(s=s, v=vf), say.pick(_ABSENT_SOURCE, p=p, q=q))
    candidates = {
        "grounded": say.answer(
            claim.format(s=s, v=v), say.pick(_TRUE_CONTRAST + _ASSERT_GROUNDED, s=s, ds=ds, vd=vd)
        ),
        "partial": say.answer(claim.format(s=s, v=v), extra_claim),
        "wrong": wrong,
        "off-topic": say.off_topic(),
    }
    return _Plan(
        facts=facts,
        question=question.format(s=s),
        instruction=_INSTRUCTIONS["single_fact"],
        candidates=candidates,
        invented=[s, ds, p, q, v, vd, vf],
        extra={
            "depth": round(choice.depth, 4),
            "depths": [round(choice.depth, 4)],
            "answer": v,
            "needle": facts[0].text,
            "distractor": facts[1].text,
            "wrong_value": vd if choice.wrong_kind == "contradicted" else vf,
            "absent_terms": [p, q, vf],
            "partial_kind": partial_kind,
            "wrong_kind": choice.wrong_kind,
        },
    )


def _plan_multi_hop(rng: random.Random, choice: _Choice) -> _Plan:
    """A chain of `hops` facts (links then an attribute); every member has the attribute.

    The attributes of earlier members are the near misses: the contradicted answer stops one hop
    short and reports the attribute of the last-but-one member.
    """
    words, say = _Words(rng), _Phrase(rng)
    noun, link = rng.choice(_LINKS)
    attr, attr_fact = rng.choice(_PERSON_ATTRS)
    n_links = choice.hops - 1
    people = [words.name() for _ in range(n_links + 1)]
    values = [words.code() for _ in people]
    p, vf = words.name(), words.code()
    year = rng.randint(1961, 2019)
    chain_facts = [link.format(a=people[i], b=people[i + 1]) for i in range(n_links)]
    chain_facts.append(attr_fact.format(e=people[-1], v=values[-1]))
    side_facts = [attr_fact.format(e=people[i], v=values[i]) for i in range(n_links)]
    positions = _spread(rng, len(chain_facts) + len(side_facts) - 1)
    depths = [*positions[:n_links], choice.depth]
    facts = [_Fact(t, 0, d) for t, d in zip(chain_facts, depths, strict=True)]
    facts += [_Fact(t, 0, d) for t, d in zip(side_facts, positions[n_links:], strict=True)]

    def links(members: Sequence[str]) -> str:
        return ", ".join(f"the {noun} of {a} is {b}" for a, b in itertools.pairwise(members))

    def conclude(members: Sequence[str], value: str) -> str:
        hops = links(members)
        last = f"the {attr} of {members[-1]} is {value}"
        return f"{hops}, and {last}" if hops else last

    answer, near = values[-1], values[-2] if n_links else values[0]
    partial_kind = _partial_kind(choice, ("unsupported_extra", "false_extra"))
    if partial_kind == "unsupported_extra":
        extra_claim = say.pick(_HOP_UNSUPPORTED, e=people[-1], p=p, year=year)
    else:
        extra_claim = say.pick(_HOP_FALSE, e=people[-2], attr=attr)
    if choice.wrong_kind == "contradicted":
        wrong_value = near
        wrong = say.answer(conclude(people[:-1], near), say.pick(_SO_ANSWER, v=near))
    else:
        wrong_value = vf
        wrong = say.answer(conclude([*people[:-1], p], vf), say.pick(_SO_ANSWER, v=vf))
    candidates = {
        "grounded": say.answer(conclude(people, answer), say.pick(_SO_ANSWER, v=answer)),
        "partial": say.answer(conclude(people, answer), extra_claim),
        "wrong": wrong,
        "off-topic": say.off_topic(),
    }
    target = "".join(f"the {noun} of " for _ in range(n_links)) + people[0]
    return _Plan(
        facts=facts,
        question=f"What is the {attr} of {target}?",
        instruction=_INSTRUCTIONS["multi_hop"],
        candidates=candidates,
        invented=[*people, *values, p, vf],
        extra={
            "depth": round(choice.depth, 4),
            "depths": [round(d, 4) for d in depths],
            "answer": answer,
            "hops": choice.hops,
            "chain": people,
            "chain_facts": chain_facts,
            "wrong_value": wrong_value,
            "absent_terms": [p, vf],
            "partial_kind": partial_kind,
            "wrong_kind": choice.wrong_kind,
        },
    )


def _citation_docs(size: int) -> int:
    """Return the most documents a bucket of `size` tokens splits into."""
    return max(3, min(10, size // 1024 + 2))


def _plan_citation(rng: random.Random, choice: _Choice) -> _Plan:
    """Numbered documents; the claim sits in one, a same-shaped distractor in another."""
    words, say = _Words(rng), _Phrase(rng)
    fact, question, claim = rng.choice(_ATTRIBUTES)
    s, ds, p, q = words.name(), words.name(), words.name(), words.name()
    v, vd, vf = words.code(), words.code(), words.code()
    year = rng.randint(1961, 2019)
    n_docs = rng.randint(3, _citation_docs(choice.size))
    doc = min(n_docs - 1, int(choice.depth * n_docs))
    within = choice.depth * n_docs - doc
    other = rng.choice([d for d in range(n_docs) if d != doc])
    facts = [
        _Fact(fact.format(s=s, v=v), doc, within),
        _Fact(fact.format(s=ds, v=vd), other, rng.uniform(0.05, 0.95)),
    ]
    missing = n_docs + rng.randint(1, 4)
    partial_kind = _partial_kind(choice, ("unsupported_extra", "false_extra"))
    extra_doc = rng.choice([d for d in range(n_docs) if d != doc]) + 1
    if partial_kind == "unsupported_extra":
        extra_claim = say.pick(_UNSUPPORTED, p=p, year=year)
    else:
        extra_claim = say.pick(_FALSE_SAME, ds=ds)
    extra_claim = f"{extra_claim[:-1]} [Doc {extra_doc}]."
    cited_ok = "The cited document states this explicitly."
    if choice.wrong_kind == "contradicted":
        wrong_doc, wrong_value = other + 1, vd
    else:
        wrong_doc, wrong_value = missing, vf
    contrast = f"[Doc {other + 1}] gives {vd}, but that is for {ds}."
    candidates = {
        "grounded": say.answer(
            f"{claim.format(s=s, v=v)} [Doc {doc + 1}]", rng.choice((contrast, cited_ok))
        ),
        "partial": say.answer(f"{claim.format(s=s, v=v)} [Doc {doc + 1}]", extra_claim),
        "wrong": say.answer(f"{claim.format(s=s, v=wrong_value)} [Doc {wrong_doc}]", cited_ok),
        "off-topic": say.off_topic(),
    }
    return _Plan(
        facts=facts,
        question=question.format(s=s),
        instruction=_INSTRUCTIONS["citation"],
        candidates=candidates,
        invented=[s, ds, p, q, v, vd, vf],
        n_docs=n_docs,
        extra={
            "depth": round(choice.depth, 4),
            "depths": [round(choice.depth, 4)],
            "answer": v,
            "needle": facts[0].text,
            "distractor": facts[1].text,
            "n_docs": n_docs,
            "doc": doc + 1,
            "distractor_doc": other + 1,
            "wrong_doc": wrong_doc,
            "wrong_value": wrong_value,
            "absent_terms": [p, vf],
            "partial_kind": partial_kind,
            "wrong_kind": choice.wrong_kind,
        },
    )


def _plan_counting(rng: random.Random, choice: _Choice) -> _Plan:
    """k mentions of an invented event spread evenly; d mentions of a look-alike event."""
    words, say = _Words(rng), _Phrase(rng)
    phrase, mentions, question, claim = rng.choice(_EVENTS)
    x, y, p, q = words.name(), words.name(), words.name(), words.name()
    most = 5 if choice.size < 2048 else 9
    k = rng.randint(2, most)
    d = rng.choice([n for n in range(1, most + 3) if abs(n - k) >= 2])
    f = rng.choice([n for n in range(1, most + 5) if abs(n - k) >= 2 and n != d])
    depths = sorted(_spread(rng, k))
    facts = [_Fact(rng.choice(mentions).format(x=x), 0, pos) for pos in depths]
    facts += [_Fact(rng.choice(mentions).format(x=y), 0, pos) for pos in _spread(rng, d)]
    y_phrase = phrase.format(x=y)

    def count_claim(n: int) -> str:
        return claim.format(x=x, times=_times(n))

    truthful = say.pick(_COUNT_CONTRAST + _COUNT_ASSERT, y=y_phrase, dtimes=_times(d))
    partial_kind = _partial_kind(choice, ("off_by_one", "unsupported_extra", "false_extra"))
    off = k + rng.choice((-1, 1))
    if partial_kind == "off_by_one":
        partial = say.answer(count_claim(off), say.pick(_COUNT_ASSERT))
    elif partial_kind == "unsupported_extra":
        partial = say.answer(count_claim(k), say.pick(_COUNT_UNSUPPORTED, p=p, q=q))
    else:
        partial = say.answer(count_claim(k), say.pick(_COUNT_FALSE, y=y_phrase))
    if choice.wrong_kind == "contradicted":
        wrong_count = d
        wrong = say.answer(count_claim(d), say.pick(_COUNT_ASSERT))
    else:
        wrong_count = f
        wrong = say.answer(count_claim(f), say.pick(_COUNT_ABSENT, p=p, q=q))
    candidates = {
        "grounded": say.answer(count_claim(k), truthful),
        "partial": partial,
        "wrong": wrong,
        "off-topic": say.off_topic(),
    }
    return _Plan(
        facts=facts,
        question=question.format(x=x),
        instruction=_INSTRUCTIONS["counting"],
        candidates=candidates,
        invented=[x, y, p, q],
        extra={
            "depths": [round(pos, 4) for pos in depths],
            "answer": str(k),
            "count": k,
            "marker": phrase.format(x=x),
            "distractor_marker": y_phrase,
            "distractor_count": d,
            "partial_count": off if partial_kind == "off_by_one" else k,
            "wrong_count": wrong_count,
            "absent_terms": [p, q],
            "partial_kind": partial_kind,
            "wrong_kind": choice.wrong_kind,
        },
    )


_PLANNERS: dict[str, Callable[[random.Random, _Choice], _Plan]] = {
    "single_fact": _plan_single_fact,
    "multi_hop": _plan_multi_hop,
    "citation": _plan_citation,
    "counting": _plan_counting,
}


# ---------------------------------------------------------------------------------------------
# Fitting filler to a token budget


class _Counter:
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
    return not any(r in text for r in _RESERVED)


def _grow(filler: _Filler, need: int, counter: _Counter) -> None:
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


def _render(plan: _Plan, texts: Sequence[str], counts: Sequence[int]) -> str:
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


def _collides(plan: _Plan, texts: Sequence[str]) -> bool:
    """Return True when an invented string occurs in the filler (it must be new to the model)."""
    lowered = "\n".join(texts).lower()
    return any(w.lower() in lowered for w in plan.invented)


def _build_prompt(
    rng: random.Random, choice: _Choice, counter: _Counter, bucket: str
) -> tuple[_Plan, str, int]:
    """Return a plan, its prompt of 80-95% of the bucket, and the prompt's token count."""
    size = choice.size
    low, high = math.ceil(LOW * size), math.floor(HIGH * size)
    target = rng.randint(math.ceil(_TARGET_LOW * size), math.floor(_TARGET_HIGH * size))
    # Close to the drawn target, not merely inside the band, so lengths spread over the band.
    tolerance = max(4, size // 100)
    filler = _Filler(counter.haystack.stream(rng.randrange(len(counter.haystack))))
    plan = _PLANNERS[choice.family](rng, choice)
    for _ in range(_MAX_REDRAWS):
        overhead = counter.count(_render(plan, [], []))
        if overhead >= low:
            raise ValueError(
                f"length bucket {bucket!r} ({size} tokens) is too small for {choice.family}: "
                f"its question and planted facts alone take {overhead} tokens; use a larger bucket"
            )
        bias, content, n = 0, "", 0
        for _ in range(_FIT_PASSES):
            _grow(filler, target - overhead - bias, counter)
            content = _render(plan, filler.texts, filler.counts)
            n = counter.count(content)
            if low <= n <= high and abs(n - target) <= tolerance:
                break
            bias = n - overhead - filler.total
        if not low <= n <= high:
            raise RuntimeError(f"could not fit a {bucket} prompt for {choice.family}")
        if not _collides(plan, filler.texts):
            return plan, content, n
        plan = _PLANNERS[choice.family](rng, choice)
    raise RuntimeError("invented names keep colliding with the haystack; try another seed")


# ---------------------------------------------------------------------------------------------
# The suite


def _tier_sets(fmt: str) -> list[tuple[str, ...]]:
    """Return the tier combinations a format cycles through, each best first."""
    if fmt == "pairwise":
        return [("grounded", lower) for lower in TIERS[1:]]
    n = int(fmt.removeprefix("bon"))
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
) -> list[Item]:
    """Return a by-construction suite: items_per_cell items per (length, family, format).

    `tokenizer` is the evaluated model's: it sizes each prompt to 80-95% of its bucket, and an
    item's `length` is the token count of its prompt text (no chat template, no special tokens).
    Depths, hop counts, tier pairings and wrong/partial kinds cycle per family so that they
    spread evenly; the rest is drawn from RNGs seeded per item, so the same arguments give the
    same items. `haystack` defaults to the documentation that ships with Python.
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
    counter = _Counter(tokenizer, stack)
    turns: dict[tuple[str, ...], int] = {}
    items: list[Item] = []
    for bucket, size in buckets:
        for offset, family in enumerate(chosen):
            for fmt in formats:
                for j in range(items_per_cell):
                    rng = random.Random(f"longrm-construct:{seed}:{family}:{bucket}:{fmt}:{j}")
                    tiers, choice = _choose(rng, turns, family, offset, fmt, size)
                    plan, content, n_tokens = _build_prompt(rng, choice, counter, bucket)
                    item_id = _turn(turns, family, "id")
                    items.append(
                        _item(plan, choice, tiers, fmt, bucket, content, n_tokens, stack, item_id)
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
) -> tuple[tuple[str, ...], _Choice]:
    """Return the tiers and per-item choices of the next item of (family, format).

    Each choice cycles through its options per family (tiers, kinds) or per family and format,
    started at a family-specific offset, so that every bucket sees a mix and none dominates.
    """
    sets = _tier_sets(fmt)
    tiers = sets[(_turn(turns, family, fmt) + offset) % len(sets)]
    wrong_turn = _turn(turns, family, fmt, "wrong") + offset if "wrong" in tiers else 0
    partial_turn = _turn(turns, family, fmt, "partial") + offset if "partial" in tiers else 0
    depth_bin = (_turn(turns, family, "depth") + offset) % _DEPTH_BINS
    choice = _Choice(
        family=family,
        size=size,
        depth=(depth_bin + rng.uniform(0.1, 0.9)) / _DEPTH_BINS,
        wrong_kind=WRONG_KINDS[wrong_turn % len(WRONG_KINDS)],
        partial_turn=partial_turn,
        hops=2 + _turn(turns, family, "hops") % 3,
    )
    return tiers, choice


def _item(
    plan: _Plan,
    choice: _Choice,
    tiers: Sequence[str],
    fmt: str,
    bucket: str,
    content: str,
    n_tokens: int,
    haystack: Haystack,
    item_id: int,
) -> Item:
    """Return the Item of a fitted plan, candidates best first."""
    wrong_name = f"wrong-{choice.wrong_kind}"
    names = [wrong_name if t == "wrong" else t for t in tiers]
    pairwise = fmt == "pairwise"
    # Keep what describes the candidates on offer: "wrong_*" and "partial_*" only with them.
    dropped = [f"{t}_" for t in ("wrong", "partial") if t not in tiers]
    extra = {k: v for k, v in plan.extra.items() if not any(k.startswith(d) for d in dropped)}
    return Item(
        id=item_id,
        task=choice.family,
        subtask=">".join(names),
        tasktype=PAIRWISE if pairwise else BEST_OF_N,
        subtype="same" if pairwise else str(len(tiers)),
        length_bucket=bucket,
        length=n_tokens,
        prompt=[{"role": "user", "content": content}],
        question=plan.question,
        candidates=[plan.candidates[t] for t in tiers],
        candidate_models=names,
        candidate_scores=None if pairwise else [TIER_SCORES[t] for t in tiers],
        source=haystack.description,
        words_count=len(content.split()),
        extra=extra,
    )
