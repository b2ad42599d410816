"""How a judge reads and cuts its prompts under each evaluation protocol.

A judge backend needs to know the protocol it follows (`paper` parses verdicts by the authors'
rules, see `longrm.rm.verdicts.parse_paper_verdict`, and cuts over-long prompts by their rule);
the rest of a protocol, which items and display orders are judged, lives with the evaluation
(`longrm.evaluate.protocol`), which imports from here and never the other way round.
"""

from __future__ import annotations

PROTOCOLS = ("longrm", "paper")
#: the authors cut templated prompts of this many tokens or more to their head and tail
PAPER_CUT_AT = 131_072
PAPER_KEEP_HEAD = 65_536
PAPER_KEEP_TAIL = 65_531
PAPER_MAX_NEW_TOKENS = 2048


def check_protocol(name: str) -> str:
    """Return `name` if it is a known protocol, else raise ValueError listing them."""
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}: choose one of {', '.join(PROTOCOLS)}")
    return name


def paper_cut(ids: list[int]) -> tuple[list[int], bool]:
    """Return (ids, cut): the authors keep the first 65,536 and last 65,531 tokens of a templated
    prompt of 131,072 tokens or more, whatever the model's window.
    """
    if len(ids) < PAPER_CUT_AT:
        return ids, False
    return ids[:PAPER_KEEP_HEAD] + ids[len(ids) - PAPER_KEEP_TAIL :], True
