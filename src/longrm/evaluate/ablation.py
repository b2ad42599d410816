"""Context ablation: the same items with their context taken away, to measure context reliance.

A long-context reward model should need the context to pick the better answer. Judging every item
twice, once as is and once with its context swapped for another item's context of about the same
length (or emptied), shows how much of its accuracy comes from reading the context; a benchmark
on which a context-blind judge stays far above chance measures style, not grounding.
"""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict
from collections.abc import Sequence

from longrm.items import Item

METHODS = ("swap", "empty")
_CONTEXT_BLOCK = re.compile(r"(<context>\n?)(.*?)(\n?</context>)", re.S)


class AblationError(ValueError):
    """An item set on which the context cannot be ablated (e.g. one item, nothing to swap)."""


@dataclasses.dataclass(frozen=True)
class _Span:
    """Where an item's context lies: message index and character range."""

    message: int
    start: int
    end: int


def context_span(item: Item) -> _Span:
    """Return where the item's context is.

    The inside of the first `<context>...</context>` block when there is one (built suites and
    many official rows); otherwise the longest message up to the last place it states the
    question, or the whole longest message when the question is not in it.
    """
    for i, message in enumerate(item.prompt):
        match = _CONTEXT_BLOCK.search(message["content"])
        if match:
            return _Span(i, match.start(2), match.end(2))
    longest = max(range(len(item.prompt)), key=lambda i: len(item.prompt[i]["content"]))
    content = item.prompt[longest]["content"]
    cut = content.rfind(item.question) if item.question.strip() else -1
    return _Span(longest, 0, cut if cut > 0 else len(content))


def context_text(item: Item) -> str:
    """Return the item's context (see `context_span`)."""
    span = context_span(item)
    return item.prompt[span.message]["content"][span.start : span.end]


def _with_context(item: Item, text: str, donors: list[str]) -> Item:
    span = context_span(item)
    prompt = [dict(m) for m in item.prompt]
    content = prompt[span.message]["content"]
    prompt[span.message]["content"] = content[: span.start] + text + content[span.end :]
    extra = {**item.extra, "ablation_donors": donors}
    return dataclasses.replace(item, prompt=prompt, extra=extra)


def _planted(item: Item) -> list[str]:
    """Return the strings a built item planted in its context (none for other suites)."""
    values = item.extra.get("invented") or item.extra.get("absent_terms") or []
    return [str(v) for v in values if str(v).strip()]


def _fill_to(length: int, texts: Sequence[str]) -> str:
    """Return the texts joined by blank lines and cut to about `length` characters at a space."""
    out = "\n\n".join(texts)
    if len(out) > length:
        cut = out.rfind(" ", 0, length)
        out = out[: cut if cut > 0 else length]
    return out


def ablate_context(items: Sequence[Item], method: str = "swap") -> list[Item]:
    """Return the items with their context ablated, keys unchanged.

    `empty` removes the context. `swap` gives each item the context of other items of its
    length bucket (the next ones in key order, so the choice is reproducible), joined and cut to
    the original's character length; a donor whose context holds one of the item's planted
    strings, or equals its own context, is passed over.
    """
    if method not in METHODS:
        raise AblationError(f"unknown ablation {method!r}: choose one of {', '.join(METHODS)}")
    if method == "empty":
        return [_with_context(item, "", []) for item in items]
    texts = {item.key: context_text(item) for item in items}
    by_bucket: dict[str, list[str]] = defaultdict(list)
    for item in sorted(items, key=lambda i: i.key):
        by_bucket[item.length_bucket].append(item.key)
    everyone = sorted(texts)
    out = []
    for item in items:
        own, planted = texts[item.key], _planted(item)
        pool = by_bucket[item.length_bucket] if len(by_bucket[item.length_bucket]) > 1 else everyone
        at = pool.index(item.key)
        donors = (
            key
            for key in pool[at + 1 :] + pool[:at]
            if texts[key] != own and not any(p in texts[key] for p in planted)
        )
        used: list[str] = []
        for key in donors:
            used.append(key)
            if sum(len(texts[k]) + 2 for k in used) >= len(own):
                break
        if not used:
            raise AblationError(
                f"item {item.key}: no other item has a context to swap in; "
                "use --ablate-context empty, or a benchmark with more items"
            )
        text = _fill_to(len(own), [texts[k] for k in used])
        out.append(_with_context(item, text, used))
    return out
