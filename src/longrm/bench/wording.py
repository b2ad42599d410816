"""Wording of built items: invented names and codes, and pools of equivalent phrasings.

Everything a candidate says is drawn here from pools that do not depend on its quality tier:
names and codes come from one generator each (so a right value and a wrong one look alike), and a
candidate's lead and the joiner between its two claims come from fixed pools (see `Style`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

# Slots in claim templates: the main claim's value and the side claim's value.
MAIN_SLOT = "{x}"
SIDE_SLOT = "{y}"

# (prefix, whether the claim after it starts with a capital)
LEADS: tuple[tuple[str, bool], ...] = (
    ("", True),
    ("Based on the context, ", False),
    ("According to the context, ", False),
    ("The context indicates that ", False),
    ("Answer: ", True),
    ("In short, ", False),
)
# (text between the main and the side claim, whether the side claim then starts with a capital)
JOINERS: tuple[tuple[str, bool], ...] = (
    (", and ", False),
    ("; ", False),
    (". Also, ", False),
    (". ", True),
    (". In addition, ", False),
)

_ONSETS = (
    "b", "br", "d", "dr", "f", "g", "gr", "k", "kl", "l", "m", "n", "p", "qu", "r", "s", "st",
    "t", "tr", "v", "z", "th", "sh", "w",
)  # fmt: skip
_VOWELS = ("a", "e", "i", "o", "u", "ae", "ia", "ou", "y")
_CODAS = ("", "", "", "n", "r", "l", "s", "th", "nd", "rk", "x", "m")
_CODE_LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"


def cap(text: str) -> str:
    """Return text with its first character upper-cased."""
    return text[:1].upper() + text[1:]


class Words:
    """Invented names and codes for one item, never repeated within it.

    No name is a substring of another (case ignored), so that counting or finding one name in a
    text never counts another.
    """

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: list[str] = []

    def _clashes(self, word: str) -> bool:
        """Return True when `word` is in, or holds, a string this item already uses."""
        low = word.lower()
        return any(low in u.lower() or u.lower() in low for u in self.used)

    def name(self) -> str:
        """Return a fresh invented proper noun of 2-3 syllables (5-12 letters)."""
        while True:
            syllables = self.rng.randint(2, 3)
            word = "".join(
                self.rng.choice(_ONSETS) + self.rng.choice(_VOWELS) for _ in range(syllables)
            )
            word = cap(word + self.rng.choice(_CODAS))
            if 5 <= len(word) <= 12 and not self._clashes(word):
                self.used.append(word)
                return word

    def code(self) -> str:
        """Return a fresh invented code of the fixed shape "QX-4821"."""
        while True:
            letters = "".join(self.rng.choice(_CODE_LETTERS) for _ in range(2))
            code = f"{letters}-{self.rng.randint(1000, 9999)}"
            if not self._clashes(code):
                self.used.append(code)
                return code


@dataclass(frozen=True)
class Style:
    """How one candidate is worded: indices into the leads, joiners and claim phrasings."""

    lead: int
    joiner: int
    main: int
    side: int


def draw_style(rng: random.Random, n_main: int, n_side: int) -> Style:
    """Return a style drawn uniformly from every pool."""
    return Style(
        lead=rng.randrange(len(LEADS)),
        joiner=rng.randrange(len(JOINERS)),
        main=rng.randrange(n_main),
        side=rng.randrange(n_side),
    )


def render(
    style: Style, mains: Sequence[str], sides: Sequence[str], main_value: str, side_value: str
) -> str:
    """Return a candidate: lead, main claim with its value, joiner, side claim with its value."""
    prefix, capital = LEADS[style.lead]
    joiner, side_capital = JOINERS[style.joiner]
    main = mains[style.main].replace(MAIN_SLOT, main_value)
    side = sides[style.side].replace(SIDE_SLOT, side_value)
    return f"{prefix}{cap(main) if capital else main}{joiner}{cap(side) if side_capital else side}."
