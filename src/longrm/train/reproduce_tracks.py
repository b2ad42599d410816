"""The reproduction's tracks by name, and the one place that turns flags into a track.

A flag that only one track reads is refused for the other, rather than silently ignored: a
reader who asks the judge track for `--short-lengths` learns it has none.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from longrm.train.reproduce import Track
from longrm.train.reproduce_disrm import DisrmTrack
from longrm.train.reproduce_judge import JudgeTrack

TRACKS: dict[str, type[DisrmTrack] | type[JudgeTrack]] = {
    "disrm": DisrmTrack,
    "judge": JudgeTrack,
}


def make_track(name: str, options: dict[str, Any]) -> Track:
    """Return the track `name` with the options given (None: the track's default).

    Raises ValueError for an unknown track, an option the track does not have (named as its
    flag), or a value its checks refuse.
    """
    if name not in TRACKS:
        raise ValueError(f"unknown track {name!r}: choose one of {', '.join(TRACKS)}")
    cls = TRACKS[name]
    known = {f.name for f in fields(cls)}
    given = {k: v for k, v in options.items() if v is not None}
    foreign = sorted(k for k in given if k not in known)
    if foreign:
        flags = ", ".join("--" + k.replace("_", "-") for k in foreign)
        raise ValueError(f"{flags}: not an option of --track {name}")
    return cls(**given)
