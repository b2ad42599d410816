"""Training examples: what each trainer learns from, whatever file format it came in.

Stage I learns a judgment (`SftExample`); Stage II and the discriminative RM learn a preference
of one response over V others (`PreferenceExample`). `protected` lists text that truncation
must keep (the key context, the question, the responses being judged). `group` names the item
an example judges: its display orders share it, and training keeps them in one optimiser step.
"""

from __future__ import annotations

from dataclasses import dataclass

from longrm.items import Messages


@dataclass(frozen=True)
class SftExample:
    """A judging conversation and the judgment the model learns to write after it."""

    messages: Messages
    target: str
    #: where the row came from ("file:line"), for errors and the run record
    source: str = ""
    protected: tuple[str, ...] = ()
    #: the judged item, shared by its display orders ("" when the row stands alone)
    group: str = ""


@dataclass(frozen=True)
class PreferenceExample:
    """A conversation, the response to prefer, and the V responses to prefer it over."""

    messages: Messages
    chosen: str
    rejects: tuple[str, ...]
    source: str = ""
    protected: tuple[str, ...] = ()
    group: str = ""
