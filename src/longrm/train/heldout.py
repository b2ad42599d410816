"""Training items disjoint from a held-out evaluation suite: no shared context paragraph, no
shared invented name, so a trained judge's held-out accuracy is not memorisation.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from longrm.bench.construct import FORMATS, build_suite
from longrm.bench.haystack import MIN_PARAGRAPH_CHARS, Haystack, load_haystack
from longrm.items import Item

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


_CONTEXT = re.compile(r"<context>\n(.*)\n</context>", re.S)
_DOC_HEADER = re.compile(r"^\[Doc \d+\]\s*")


def context_chunks(item: Item) -> list[str]:
    """Return the blank-line separated pieces of an item's context, document headers dropped
    (the whole prompt's pieces when it has no <context> block)."""
    text = "\n\n".join(m["content"] for m in item.prompt)
    found = _CONTEXT.search(text)
    body = found.group(1) if found else text
    pieces = (_DOC_HEADER.sub("", p.strip()).strip() for p in body.split("\n\n"))
    return [p for p in pieces if p]


def _norm(text: str) -> str:
    """Return the text with runs of whitespace made one space (the builder re-joins the words of
    a paragraph it cuts, so a cut piece is a prefix of its paragraph only once both are
    normalised)."""
    return " ".join(text.split())


class _Pieces:
    """Context pieces (whitespace normalised), found by equality, or for long ones as a prefix
    either way (a paragraph cut to fit a prompt is a prefix of its haystack paragraph)."""

    def __init__(self, pieces: Iterable[str]) -> None:
        self.exact = {_norm(p) for p in pieces}
        self.by_head: dict[str, list[str]] = {}
        self.short_by_word: dict[str, list[str]] = {}
        for p in self.exact:
            if len(p) >= MIN_PARAGRAPH_CHARS:
                self.by_head.setdefault(p[:MIN_PARAGRAPH_CHARS], []).append(p)
            elif p:
                self.short_by_word.setdefault(p.split(" ", 1)[0], []).append(p)

    def holds(self, text: str) -> bool:
        text = _norm(text)
        if text in self.exact:
            return True
        if len(text) < MIN_PARAGRAPH_CHARS:
            return False
        near = self.by_head.get(text[:MIN_PARAGRAPH_CHARS], [])
        return any(p.startswith(text) or text.startswith(p) for p in near)

    def cut_from(self, paragraph: str) -> bool:
        """Return whether a piece is this paragraph or a cut of it, or could share text with a
        cut of it. A piece too short to tell which paragraph it was cut from counts for every
        paragraph it opens, and a long piece for every paragraph that opens with its first
        MIN_PARAGRAPH_CHARS characters: two paragraphs with the same opening ("This type has a
        single value. There is a single object with this value. ...") cannot then give a
        training item a cut that is a prefix of a held-out one."""
        if self.holds(paragraph):
            return True
        text = _norm(paragraph)
        if len(text) >= MIN_PARAGRAPH_CHARS and text[:MIN_PARAGRAPH_CHARS] in self.by_head:
            return True
        return any(text.startswith(s) for s in self.short_by_word.get(text.split(" ", 1)[0], []))


def held_out_haystack(haystack: Haystack, items: Iterable[Item]) -> Haystack:
    """Return `haystack` without the paragraphs the items' contexts use (whole or cut)."""
    used = _Pieces(c for item in items for c in context_chunks(item))
    kept = tuple(p for p in haystack.paragraphs if not used.cut_from(p))
    dropped = len(haystack) - len(kept)
    return Haystack(kept, f"{haystack.description}, {dropped} held-out paragraphs dropped")


def _invented(items: Iterable[Item]) -> list[str]:
    return [str(w) for item in items for w in item.extra.get("invented", [])]


def training_suite(
    tokenizer: PreTrainedTokenizerBase,
    *,
    lengths: Sequence[tuple[str, int]] | str,
    seed: int,
    held_out: Sequence[Item],
    families: Sequence[str] | None = None,
    items_per_cell: int = 1,
    formats: Sequence[str] = FORMATS,
    haystack: Haystack | None = None,
) -> list[Item]:
    """Return by-construction items to train on that share nothing with `held_out` (the
    evaluation suite): no context paragraph, no invented name or code.

    The filler comes from `haystack` (default: the one `build_suite` uses) less every paragraph
    the held-out contexts use, so an evaluation suite built with the defaults needs no option.
    Use another `seed` than the evaluation suite's. Ids get a "train-" prefix, so item keys
    never clash with the evaluation's.
    """
    stack = held_out_haystack(haystack or load_haystack(None), held_out)
    items = build_suite(
        tokenizer,
        lengths=lengths,
        families=families,
        items_per_cell=items_per_cell,
        formats=formats,
        seed=seed,
        haystack=stack,
        avoid_invented=_invented(held_out),
    )
    return [dataclasses.replace(item, id=f"train-{item.id}") for item in items]


def overlap(train_items: Sequence[Item], eval_items: Sequence[Item]) -> dict[str, list[str]]:
    """Return what two suites share: invented strings (case ignored) and context pieces
    (equal, or for long pieces one a prefix of the other). Both lists empty means disjoint."""
    eval_words = {w.lower() for w in _invented(eval_items)}
    names = sorted({w for w in _invented(train_items) if w.lower() in eval_words})
    eval_pieces = _Pieces(c for item in eval_items for c in context_chunks(item))
    pieces = sorted(
        {c for item in train_items for c in context_chunks(item) if eval_pieces.cut_from(c)}
    )
    return {"invented": names, "paragraphs": pieces}
