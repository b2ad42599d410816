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


def verdict_strings(n: int, as_ranking: bool = False) -> list[tuple[str, list[int]]]:
    """Return every well-formed verdict for n responses with the ranking it stands for.

    Pairs use the single-letter form [[A]] / [[B]] unless `as_ranking`; larger sets use full
    rankings ([[A>B>C]]).
    """
    tags = letters(n)
    if n == 2 and not as_ranking:
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


# The authors' ranking pattern: a single-bracketed group of word runs joined by ">" (it finds
# "[A>B>C]" inside "[[A>B>C]]"); their rules, reproduced for `--protocol paper`.
_PAPER_RANKING = re.compile(r"\[[\w\s]+(?:\s*>\s*[\w\s]+)+\]")
_PAPER_STRIP = ("assistant", "Assistant", ":", " ")
_PAPER_MAX_SEPARATORS = 9


def parse_paper_verdict(text: str, pairwise: bool) -> list[int] | None:
    """Return display slots best first by the authors' parsing rules, else None.

    Pairs: "[[A]]" anywhere wins over "[[B]]" anywhere (a reply holding both counts as A).
    Rankings: more than nine ">" in the reply fail; otherwise the FIRST bracketed `X > Y > ...`
    group counts; "assistant", ":" and spaces are dropped from its parts, each part must be one
    letter, and the letters must be exactly A.. up to their count (duplicates or gaps fail). A
    ranking of fewer letters than answers is kept (partial credit: unnamed slots earn nothing),
    one naming more is kept too and scored on the slots shown, as the authors' scorer does.
    """
    if pairwise:
        if "[[A]]" in text:
            return [0, 1]
        if "[[B]]" in text:
            return [1, 0]
        return None
    if text.count(">") > _PAPER_MAX_SEPARATORS:
        return None
    match = _PAPER_RANKING.search(text)
    if match is None:
        return None
    parts = match.group(0)[1:-1].split(">")
    for mark in _PAPER_STRIP:
        parts = [p.replace(mark, "") for p in parts]
    if any(len(p) != 1 for p in parts):
        return None
    slots = [ord(p) - ord("A") for p in parts]
    if sorted(slots) != list(range(len(slots))):
        return None
    return slots
