"""Consistency majority voting (REFERENCE.md section 4): several judges score each response on its
short key context; the plurality score is the label and its explanation the training target.

This module is the rule alone: from one unit's judgments to its Vote. Reading units is units.py;
running the judges and writing the outputs is voting_run.py; a whole `synth vote` (read, load
the judges, run, the command line again) is vote_job.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from longrm.synth.units import UNPARSEABLE, Judgment


@dataclass(frozen=True)
class Vote:
    """What the judges agreed on for one unit.

    `consensus` is the agreed score (None when the unit is dropped), `winner` the judgment whose
    explanation becomes the training target, `rejects` every other judgment (dissenters first,
    then the rest of the consensus group), `conf` the sizes of the score groups, largest first
    (unparseable judgments form a group of their own, as in the authors' release), and `dropped`
    why there is no consensus: "no-agreement" (no valid group reaches min_agree) or "tie" (the
    two largest valid groups are the same size).
    """

    consensus: int | None
    winner: Judgment | None
    rejects: tuple[Judgment, ...]
    conf: tuple[int, ...]
    dropped: str | None = None

    @property
    def kept(self) -> bool:
        """Return True when the judges reached a consensus."""
        return self.consensus is not None


NO_AGREEMENT = "no-agreement"
TIE = "tie"


def vote(judgments: Sequence[Judgment], min_agree: int = 2, priority: Sequence[str] = ()) -> Vote:
    """Return the consensus of `judgments` by plurality of equal scores.

    Unparseable judgments (-1) are failures, not opinions: they never form the consensus and
    never tie with it, but they count as dissenters (and come first among them: a broken format
    is the clearest wrong judgment). The winner is the consensus judge ranked first by
    `priority` (judge names), then by position in `judgments`. Other dissenters follow by
    distance from the consensus score, farthest first.
    """
    if min_agree < 2:
        raise ValueError(
            f"min_agree must be at least 2 (a consensus needs two judges), got {min_agree}"
        )
    groups: dict[int, list[Judgment]] = {}
    for j in judgments:
        groups.setdefault(j.score, []).append(j)
    conf = tuple(sorted((len(g) for g in groups.values()), reverse=True))
    sizes = sorted(
        ((len(g), score) for score, g in groups.items() if score != UNPARSEABLE), reverse=True
    )
    if not sizes or sizes[0][0] < min_agree:
        return Vote(None, None, (), conf, NO_AGREEMENT)
    if len(sizes) > 1 and sizes[1][0] == sizes[0][0]:
        return Vote(None, None, (), conf, TIE)
    consensus = sizes[0][1]
    rank = {name: i for i, name in enumerate(priority)}
    position = {id(j): i for i, j in enumerate(judgments)}

    def precedence(j: Judgment) -> tuple[int, int]:
        return rank.get(j.judge, len(rank)), position[id(j)]

    agreeing = sorted(groups[consensus], key=precedence)
    dissenters = sorted(
        (j for j in judgments if j.score != consensus),
        key=lambda j: (
            j.score != UNPARSEABLE,
            -abs(j.score - consensus),
            *precedence(j),
        ),
    )
    return Vote(consensus, agreeing[0], (*dissenters, *agreeing[1:]), conf)
