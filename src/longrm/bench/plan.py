"""What a task family hands the suite builder: the facts to plant and the claims to make."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Fact:
    """A sentence to plant: in document `doc` (0-based), at relative position `within`."""

    text: str
    doc: int
    within: float


@dataclass(frozen=True)
class Claims:
    """The two claims every candidate of an item makes, and the values that can fill them.

    `main` and `side` are equivalent phrasings of the main claim (the answer to the question,
    value slot `{x}`) and of the side claim (a second statement the context settles, slot `{y}`).
    `right` holds the values the context supports, `wrong` the ones it does not (W and F).
    """

    main: tuple[str, ...]
    side: tuple[str, ...]
    right: tuple[str, str]
    wrong: tuple[str, str]


@dataclass
class Plan:
    """Everything an item says except its filler.

    `invented` lists every invented string of the item (names and codes, planted or not): none
    may occur in the filler, and a checker can find the planted ones in the context. `extra`
    describes what was planted (it lands in the item's `extra`).
    """

    facts: list[Fact]
    question: str
    instruction: str
    claims: Claims
    invented: list[str]
    extra: dict[str, Any]
    n_docs: int = 1


@dataclass(frozen=True)
class Choice:
    """Per-item choices set by the suite so that they spread evenly."""

    family: str
    size: int
    depth: float
    wrong_kind: str
    hops: int
    #: whether right values are the larger of a right and a wrong one (main and side claim), for
    #: families whose values are numbers; cycled so that in every tier pair the better answer
    #: holds the larger numbers half the time, and a scorer preferring small (or large) numbers,
    #: as a language model's prior does, gains nothing
    right_larger: bool = True
    #: the (right, wrong) values, each (main, side), of this item's twin, for families that
    #: mirror (counting): this item then states the twin's wrong values as right and its right
    #: ones as wrong, so every number is held by the better answer exactly as often as by the
    #: worse one and a scorer with a favourite number gains nothing
    mirror: tuple[tuple[str, str], tuple[str, str]] | None = None


# A family's planner: the item's seeded RNG and choices in, the plan out.
Planner = Callable[[random.Random, Choice], Plan]


def spread(rng: random.Random, n: int) -> list[float]:
    """Return n positions in (0, 1), one per equal slice, in random order."""
    positions = [(i + rng.uniform(0.1, 0.9)) / n for i in range(n)]
    rng.shuffle(positions)
    return positions
