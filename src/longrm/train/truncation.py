"""Key-preserving truncation: cut a row's distractor text, never its key context, question or
responses, so that an over-long training row still teaches the judgment it was built for.

What is kept whole:
  * system and assistant messages;
  * in user messages, every tagged span `<T>...</T>` (tags included) for T in `KEY_TAGS` or a
    tag that a system message names with both `<T>` and `</T>` (the release marks each row's key
    context with its own tag, `<YJ6>`, `<Q9>`..., and its rubric names it), and the bare
    `<context>` / `</context>` markers (their contents are the distractors);
  * each string of `protected`: where no occurrence already lies in kept text, every occurrence
    in the user messages (an answer such as "ABC" that recurs 30 times in the distractors but is
    inside `<response>` is not pinned 30 times);
  * gaps between those parts of at most `SHORT_GAP` tokens: instructions and separators
    ("The following is the given response to evaluate.", the trailing newlines).

The rest (the distractor gaps) is cut, in token units, nearest-the-key first: a token's distance
is how far it lies from the nearest key span (tagged span or protected string) in its message,
and one radius `k`, as large as the budget allows, is kept on every side of every key. A gap
between two keys keeps its `k` first and `k` last tokens, a gap with a key on one side only keeps
the `k` tokens next to it, and a gap with no key on either side keeps its head and tail like the
evaluation's middle cut. `TRUNCATION_MARKER` stands where text was removed; a gap is cut only
where that saves tokens.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from longrm.items import Messages
from longrm.rm.hf_common import TRUNCATION_MARKER, PromptTooLongError, chat_ids, encode

#: tags whose whole span is key text in every row
KEY_TAGS = ("LD", "question", "prompt", "response")
#: tags that wrap the distractors: their markers are kept, their contents cut
WRAPPER_TAGS = ("context",)
#: gaps of at most this many tokens are instructions or separators, never cut
SHORT_GAP = 64
#: extra tokens removed per attempt, as decoding and re-encoding shift a few tokens
MARGIN = 16
_ATTEMPTS = 4
_DECLARED = re.compile(r"<([A-Za-z0-9_-]{1,32})>")


class TruncationError(PromptTooLongError):
    """The kept parts of a row (template included) exceed the budget even with every distractor
    cut; the caller skips the row and counts it.
    """

    def __init__(self, need: int, budget: int) -> None:
        self.need = need
        self.budget = budget
        super().__init__(
            f"the protected parts need {need} tokens with every distractor cut (template and "
            f"truncation markers included) but the budget is {budget}"
        )


@dataclass(frozen=True)
class _Gap:
    """A cuttable stretch of one user message, with whether a key lies next to each end."""

    message: int
    start: int
    end: int
    ids: list[int]
    key_before: bool
    key_after: bool

    def keep(self, radius: int, marker: int) -> tuple[int, int]:
        """Return the (head, tail) tokens kept at `radius`; (len, 0) when cutting saves nothing."""
        n = len(self.ids)
        head = radius if self.key_before or not self.key_after else 0
        tail = radius if self.key_after or not self.key_before else 0
        if head + tail + marker >= n:
            return n, 0
        return head, tail


def key_tags(messages: Messages) -> tuple[str, ...]:
    """Return `KEY_TAGS` and the tags a system message names with both `<T>` and `</T>`."""
    tags = list(KEY_TAGS)
    for message in messages:
        if message["role"] != "system":
            continue
        text = message["content"]
        for name in _DECLARED.findall(text):
            if f"</{name}>" in text and name not in tags and name not in WRAPPER_TAGS:
                tags.append(name)
    return tuple(tags)


def _tagged(text: str, tags: Sequence[str]) -> list[tuple[int, int, bool]]:
    """Return (start, end, is_key) spans: tagged spans (keys), bare tag and wrapper markers."""
    spans: list[tuple[int, int, bool]] = []
    for tag in tags:
        name = re.escape(tag)
        spans += [
            (m.start(), m.end(), True) for m in re.finditer(f"<{name}>.*?</{name}>", text, re.S)
        ]
        spans += [(m.start(), m.end(), False) for m in re.finditer(f"</?{name}>", text)]
    for tag in WRAPPER_TAGS:
        spans += [(m.start(), m.end(), False) for m in re.finditer(f"</?{re.escape(tag)}>", text)]
    return spans


def _occurrences(text: str, needle: str) -> list[tuple[int, int, bool]]:
    """Return every (start, end, True) occurrence of `needle` in `text`."""
    found, at = [], text.find(needle)
    while at >= 0:
        found.append((at, at + len(needle), True))
        at = text.find(needle, at + 1)
    return found


def _pinned(messages: Messages, spans: dict[int, list[tuple[int, int, bool]]], text: str) -> bool:
    """Return whether `text` must be pinned where it stands: no occurrence of it lies in a
    system or assistant message or inside a key span already.
    """
    if any(text in m["content"] for m in messages if m["role"] != "user"):
        return False
    for i, kept in spans.items():
        for start, end, _ in _occurrences(messages[i]["content"], text):
            if any(s <= start and end <= e for s, e, key in kept if key):
                return False
    return True


def _gaps(
    tokenizer: PreTrainedTokenizerBase, messages: Messages, protected: Sequence[str]
) -> list[_Gap]:
    """Return the cuttable gaps of the user messages, in order (protected strings found nowhere
    are ignored).
    """
    tags = key_tags(messages)
    users = [i for i, m in enumerate(messages) if m["role"] == "user"]
    spans = {i: _tagged(messages[i]["content"], tags) for i in users}
    for text in [t for t in protected if t and _pinned(messages, spans, t)]:
        for i in users:
            spans[i] += _occurrences(messages[i]["content"], text)
    gaps: list[_Gap] = []
    for i in users:
        gaps += _message_gaps(tokenizer, i, messages[i]["content"], spans[i])
    return gaps


def _merge(spans: list[tuple[int, int, bool]]) -> list[tuple[int, int, bool]]:
    """Return the spans sorted with overlapping ones merged (key if any part is)."""
    merged: list[tuple[int, int, bool]] = []
    for start, end, key in sorted(spans):
        if merged and start < merged[-1][1]:
            s, e, k = merged[-1]
            merged[-1] = (s, max(e, end), k or key)
        else:
            merged.append((start, end, key))
    return merged


def _message_gaps(
    tokenizer: PreTrainedTokenizerBase, index: int, text: str, spans: list[tuple[int, int, bool]]
) -> list[_Gap]:
    """Return one message's cuttable gaps: the long stretches outside its kept spans."""
    # pieces in order: a kept span (key or not) or the text between two of them (ids)
    pieces: list[tuple[int, int, bool, list[int] | None]] = []
    at = 0
    for start, end, key in [*_merge(spans), (len(text), len(text), False)]:
        if start > at:
            pieces.append((at, start, False, encode(tokenizer, text[at:start])))
        if end > start:
            pieces.append((start, end, key, None))
        at = end
    cuttable = [n for n, p in enumerate(pieces) if p[3] is not None and len(p[3]) > SHORT_GAP]

    def key_next(n: int, step: int) -> bool:
        """Return whether a key piece comes, stepping from `n`, before a cuttable gap."""
        n += step
        while 0 <= n < len(pieces) and n not in cuttable:
            if pieces[n][2]:
                return True
            n += step
        return False

    return [
        _Gap(index, pieces[n][0], pieces[n][1], pieces[n][3] or [], key_next(n, -1), key_next(n, 1))
        for n in cuttable
    ]


def _cost(gaps: list[_Gap], radius: int, marker: int) -> int:
    """Return the tokens the gaps take (markers included) when cut at `radius`."""
    total = 0
    for gap in gaps:
        head, tail = gap.keep(radius, marker)
        total += head + tail + (marker if head + tail < len(gap.ids) else 0)
    return total


def _largest_radius(gaps: list[_Gap], allowed: int, marker: int) -> int:
    """Return the largest radius whose cost fits `allowed` (0 when none does)."""
    low, high = 0, max(len(g.ids) for g in gaps)
    while low < high:
        mid = (low + high + 1) // 2
        if _cost(gaps, mid, marker) <= allowed:
            low = mid
        else:
            high = mid - 1
    return low


def _decode(tokenizer: PreTrainedTokenizerBase, ids: list[int]) -> str:
    # a cut inside a multi-byte character decodes to U+FFFD at the edge: drop it
    return str(tokenizer.decode(ids, clean_up_tokenization_spaces=False)).strip("\ufffd")


def _apply(
    tokenizer: PreTrainedTokenizerBase,
    messages: Messages,
    gaps: list[_Gap],
    radius: int,
    marker: int,
) -> tuple[Messages, int]:
    """Return the messages with every gap cut at `radius`, and the tokens removed."""
    out = [dict(m) for m in messages]
    removed = 0
    for gap in reversed(gaps):  # from the end, so earlier offsets stay valid
        head, tail = gap.keep(radius, marker)
        if head + tail >= len(gap.ids):
            continue
        removed += len(gap.ids) - head - tail
        kept_head = _decode(tokenizer, gap.ids[:head]) if head else ""
        kept_tail = _decode(tokenizer, gap.ids[len(gap.ids) - tail :]) if tail else ""
        text = out[gap.message]["content"]
        out[gap.message]["content"] = (
            text[: gap.start] + kept_head + TRUNCATION_MARKER + kept_tail + text[gap.end :]
        )
    return out, removed


def fit_example(
    tokenizer: PreTrainedTokenizerBase,
    messages: Messages,
    protected: Sequence[str],
    budget: int,
    measure: Callable[[Messages], int] | None = None,
) -> tuple[Messages, int]:
    """Return (messages, tokens cut): the distractors cut so that `measure(messages)` <= budget.

    `measure` returns the tokens a row takes with the given messages; by default the prompt's
    template ids with the generation prompt (`chat_ids`), so `budget` is what the prompt may use.
    Pass e.g. `lambda m: tokenize_judgments(tok, m, [target]).longest` with budget=max_length to
    count the target and the template exactly. Messages that fit come back as the same object
    with 0. Tokens cut counts the distractor tokens removed (markers not subtracted); the row's
    own count drops by that less the markers' tokens, give or take the re-encoding of the cut
    edges. Raises TruncationError when the kept parts alone exceed the budget.
    """
    if measure is None:

        def measure(m: Messages) -> int:
            return len(chat_ids(tokenizer, m, add_generation_prompt=True))

    size = measure(messages)
    if size <= budget:
        return messages, 0
    gaps = _gaps(tokenizer, messages, protected)
    marker = len(encode(tokenizer, TRUNCATION_MARKER))
    floor, floor_cut = _apply(tokenizer, messages, gaps, 0, marker)
    need = measure(floor) if gaps else size
    if need > budget:
        raise TruncationError(need, budget)
    total = sum(len(g.ids) for g in gaps)
    remove = size - budget
    for _ in range(_ATTEMPTS):
        remove += MARGIN
        radius = _largest_radius(gaps, total - remove, marker)
        if radius == 0:
            break
        fitted, cut = _apply(tokenizer, messages, gaps, radius, marker)
        size = measure(fitted)
        if size <= budget:
            return fitted, cut
        remove += size - budget
    return floor, floor_cut
