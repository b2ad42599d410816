"""Verdicts in the authors' formats ([[A]], [[A>B>C]], [Score: n]): parsing and enumeration."""

from __future__ import annotations

import itertools
import re

from longrm.rm.prompts import letters

_BRACKETED = re.compile(r"\[\[\s*([A-Z](?:\s*>\s*[A-Z])*)\s*\]\]")
_SCORE = re.compile(r"\[\s*Score\s*:\s*(-?\d+(?:\.\d+)?)\s*\]", re.IGNORECASE)


def parse_ranking(text: str, n: int) -> list[int] | None:
    """Return display slots best first from the last well-formed verdict in `text`, else None.

    For n == 2 a single letter ([[A]]) is a full verdict; for n > 2 the ranking must name every
    letter exactly once ([[B>A>C]]).
    """
    tags = letters(n)
    for match in reversed(list(_BRACKETED.finditer(text))):
        order = [part.strip() for part in match.group(1).split(">")]
        if n == 2 and len(order) == 1 and order[0] in tags:
            first = tags.index(order[0])
            return [first, 1 - first]
        if sorted(order) == tags:
            return [tags.index(t) for t in order]
    return None


def parse_score(text: str) -> float | None:
    """Return the number of the last [Score: n] in `text`, or None."""
    found = _SCORE.findall(text)
    return float(found[-1]) if found else None


def verdict_strings(n: int) -> list[tuple[str, list[int]]]:
    """Return every well-formed verdict for n responses with the ranking it stands for.

    Pairs use the single-letter form [[A]] / [[B]]; larger sets use full rankings ([[A>B>C]]).
    """
    tags = letters(n)
    if n == 2:
        return [("[[A]]", [0, 1]), ("[[B]]", [1, 0])]
    return [
        ("[[" + ">".join(tags[i] for i in perm) + "]]", list(perm))
        for perm in itertools.permutations(range(n))
    ]


def format_ranking(ranking: list[int]) -> str:
    """Return the verdict string of a ranking of display slots."""
    tags = letters(len(ranking))
    if len(ranking) == 2:
        return f"[[{tags[ranking[0]]}]]"
    return "[[" + ">".join(tags[i] for i in ranking) + "]]"
