"""Short-to-Long: pad a short-context judging row to a target length without changing its label.

A row's key context is wrapped in a fresh random tag (`<K7Q>...</K7Q>`: 2-4 capitals or digits
found nowhere else in the row) and placed among whole distractor documents inside
`<context>...</context>`, so that a judgment made on the short context still holds for the long
one. Per (row, length):

- the prompt (chat template included, response excluded) lands within `tolerance` (5%) below
  the target, measured with the target model's tokenizer;
- the tag block goes at the document boundary nearest the asked relative depth (`depth_target`:
  a list cycled over input rows, every length of a row at the same depth, or `uniform`: drawn
  per row and length); `depth` records the share of distractor tokens before the tag;
- distractors are whole haystack documents (for the code variant, whole top-level definitions
  from the standard library's source). A document is cut, at sentence ends, only when none of
  the next ones fits what remains of the budget and the prompt would otherwise fall short;
- a context too long to leave room for distractors (over `key_share` of the target, or a long
  untagged one) is reduced to its key chunks (`key_chunks.py`); its other chunks come first
  among the distractors.

Every random choice comes from an RNG seeded by (seed, row id, length), so reruns, resumed runs
and runs over a subset give the same rows.

An output row (one per input row and length; `synth vote` reads them as they are):
`id` ("<input id>@<length>"), `source_id`, `source` ("file:line"), `input_format`, `kind`
("pointwise" or "pairwise"), `variant`, `length_bucket` ("8k"), `target_tokens`,
`prompt_messages` (system + user, no response; `templates.with_response` appends one the way
the release's `chat_template` holds it), `context` (the short key context, exactly as tagged),
`question`, `response` (pointwise) or `chosen` and `rejected` (pairwise, as texts), `labels`
(the input's labels, unchanged), `extra` (its other fields), `tag`, `depth`, `depth_target`,
`insert_index` (documents before the tag), `n_docs`, `own_docs`, `cut_docs`, `short_tokens`,
`context_tokens`, `prompt_ctx_length` (the measured prompt), `length_error`
(prompt_ctx_length / target_tokens - 1), `key_chunks` (None, or kept indices, methods and
per-chunk scores and reasons), `haystack`.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import re
import string
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from longrm.bench.fit import TokenCounter
from longrm.bench.haystack import Haystack
from longrm.items import Messages
from longrm.synth.key_chunks import (
    CHUNK_TOKENS,
    MIN_SCORE,
    TOP_K,
    KeyChunks,
    keep_chunks,
    scored_chunks,
)
from longrm.synth.resume import RowSink
from longrm.synth.short_rows import ShortRow
from longrm.synth.templates import Templates

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

KEY_CHUNK_MODES = ("auto", "always", "off")
TOLERANCE = 0.05
KEY_SHARE = 0.5
_TAG_CHARS = string.ascii_uppercase + string.digits
_FIT_PASSES = 8
_LOOKAHEAD = 64
# Distractors holding these would confuse the prompt's structure or look like a key tag.
_RESERVED = re.compile(r"</?(context|question|prompt|response)>|<[A-Z0-9]{2,4}>")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])")


class FitError(ValueError):
    """A row that cannot be padded to a length (its key context alone is too long, say)."""


def parse_depths(spec: str) -> list[float] | None:
    """Return the depths of "0.1,0.5,0.9" (each in [0, 1]), or None for "uniform"."""
    if spec.strip() == "uniform":
        return None
    out = []
    for part in spec.split(","):
        try:
            value = float(part)
        except ValueError:
            raise ValueError(
                f"bad depth {part.strip()!r} in {spec!r}: expected 'uniform' or numbers in [0, 1] "
                "like 0.1,0.5,0.9"
            ) from None
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"depth {value} in {spec!r} is outside [0, 1]")
        out.append(value)
    return out


@dataclass(frozen=True)
class Short2LongConfig:
    """Settings of a Short-to-Long run.

    lengths: (label, tokens) targets, as `parse_lengths` returns them.
    seed: seeds every random choice (with the row id and the length).
    depth: "uniform" or a comma list of relative depths cycled over input rows.
    variant: qa, summary, safety or code (the system prompt; code also takes code distractors).
    key_chunks: "auto" reduces a row to key chunks when its context exceeds `key_share` of the
        target or is a long untagged context; "always" for every row; "off" never (such rows
        are skipped and counted).
    chunk_tokens, top_chunks, min_chunk_score: key-chunk scoring (see `key_chunks.py`).
    key_share: the share of a target the key context may take.
    tolerance: the prompt lands in [(1 - tolerance) * target, target] tokens.
    """

    lengths: tuple[tuple[str, int], ...]
    seed: int = 0
    depth: str = "uniform"
    variant: str = "qa"
    key_chunks: str = "auto"
    chunk_tokens: int = CHUNK_TOKENS
    key_share: float = KEY_SHARE
    top_chunks: int = TOP_K
    min_chunk_score: float = MIN_SCORE
    tolerance: float = TOLERANCE

    def __post_init__(self) -> None:
        if not self.lengths:
            raise ValueError("no target lengths given")
        if self.key_chunks not in KEY_CHUNK_MODES:
            raise ValueError(f"key-chunk mode {self.key_chunks!r}: choose from {KEY_CHUNK_MODES}")
        if not 0.0 < self.key_share <= 1.0:
            raise ValueError(f"key share must be in (0, 1], got {self.key_share}")
        if not 0.0 < self.tolerance < 1.0:
            raise ValueError(f"tolerance must be in (0, 1), got {self.tolerance}")
        if self.top_chunks < 1 or self.chunk_tokens < 1:
            raise ValueError("top chunks and chunk tokens must be at least 1")
        parse_depths(self.depth)


@dataclass
class _Doc:
    text: str
    tokens: int
    own: bool  # a chunk of the row's own long context
    cut: bool = False


def _boundary(counts: Sequence[int], depth: float) -> int:
    """Return the document boundary (0..n) whose share of tokens before it is nearest `depth`."""
    total = sum(counts)
    if total == 0:
        return 0
    bounds = [0.0, *(c / total for c in itertools.accumulate(counts))]
    j = bisect_left(bounds, depth)
    if j == len(bounds) or (j > 0 and depth - bounds[j - 1] <= bounds[j] - depth):
        j -= 1
    return j


class Padder:
    """Pads rows to target lengths with one tokenizer, one haystack and one set of templates."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        haystack: Haystack,
        templates: Templates,
        config: Short2LongConfig,
    ) -> None:
        self.tokenizer = tokenizer
        self.haystack = haystack
        self.templates = templates
        self.config = config
        self.counter = TokenCounter(tokenizer, haystack)
        self.depths = parse_depths(config.depth)
        self.cuttable = config.variant != "code"  # cut code would not parse
        self._scored: tuple[str, KeyChunks] | None = None  # the last row's chunks

    # -- measuring ---------------------------------------------------------------------------

    def count(self, texts: Sequence[str]) -> list[int]:
        """Return token counts (no special tokens) of texts."""
        return self.counter.counts(texts)

    def prompt_tokens(self, messages: Messages) -> int:
        """Return the prompt's length as the model reads it: chat template applied when the
        tokenizer has one, no generation prompt, no response.
        """
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(messages, tokenize=False)
            return len(
                self.tokenizer(str(text), add_special_tokens=False, verbose=False)["input_ids"]
            )
        return self.count(["\n\n".join(m["content"] for m in messages)])[0]

    # -- choices -----------------------------------------------------------------------------

    def depth_for(self, index: int, rng: random.Random) -> float:
        """Return the asked depth of input row `index`: the list cycled, or uniform in [0, 1]."""
        return self.depths[index % len(self.depths)] if self.depths else rng.random()

    @staticmethod
    def draw_tag(rng: random.Random, taken: str) -> str:
        """Return a 2-4 character tag of capitals and digits that occurs nowhere in `taken`."""
        for _ in range(10_000):
            tag = "".join(rng.choice(_TAG_CHARS) for _ in range(rng.randint(2, 4)))
            if tag not in taken:
                return tag
        raise FitError("no free tag: every candidate occurs in the row's text")

    def key_context(self, row: ShortRow, size: int) -> tuple[str, KeyChunks | None]:
        """Return the row's key context for a target of `size` tokens, and the key chunks when
        the context had to be reduced to them.
        """
        cfg = self.config
        budget = math.floor(cfg.key_share * size)
        if cfg.key_chunks == "off":
            if row.long_context:
                raise FitError("a long context without a tagged key span needs --key-chunks auto")
            return row.context, None
        fits = not row.long_context and self.count([row.context])[0] <= budget
        if cfg.key_chunks == "auto" and fits:
            return row.context, None
        if self._scored is None or self._scored[0] != row.id:
            answer = "\n".join(row.responses)
            scored = scored_chunks(
                row.context, row.question, answer, self.tokenizer, self.count, cfg.chunk_tokens
            )
            self._scored = (row.id, scored)
        kept = keep_chunks(
            self._scored[1], budget=budget, top_k=cfg.top_chunks, min_score=cfg.min_chunk_score
        )
        return kept.short_context(), kept

    # -- distractors -------------------------------------------------------------------------

    def _pool(self, rng: random.Random, own: list[_Doc], tag: str) -> Iterator[_Doc]:
        """Yield distractor candidates: the row's own non-key chunks, then haystack documents
        from a random start (wrapping), leaving out any holding a reserved marker or the tag.
        """
        for doc in own:
            if tag not in doc.text and not _RESERVED.search(doc.text):
                yield doc
        misses = 0
        for i in self.haystack.stream(rng.randrange(len(self.haystack))):
            text = self.haystack.paragraphs[i]
            if tag in text or _RESERVED.search(text):
                misses += 1
                if misses > len(self.haystack):
                    raise FitError(f"haystack {self.haystack.description!r} has no usable document")
                continue
            misses = 0
            yield _Doc(text, self.counter.paragraph(i), own=False)

    def _cut(self, doc: _Doc, room: int) -> _Doc | None:
        """Return the longest run of whole sentences from the start of `doc` within `room`
        tokens (None when not even the first sentence fits or the variant forbids cuts).
        """
        if not self.cuttable or room <= 0:
            return None
        sentences = [s for s in _SENTENCE.split(doc.text) if s.strip()]
        if len(sentences) < 2:
            return None
        kept: list[str] = []
        used = 0
        for sent, n in zip(sentences, self.count(sentences), strict=True):
            if used + n + 1 > room:
                break
            kept.append(sent)
            used += n + 1
        if not kept:
            return None
        text = ("" if "。" in doc.text else " ").join(kept)
        return _Doc(text, self.count([text])[0], own=doc.own, cut=True)

    def _fill(self, docs: list[_Doc], need: int, pool: Iterator[_Doc], slack: int) -> None:
        """Append whole documents while they fit in `need` tokens (a separator each)."""
        used = sum(d.tokens + 1 for d in docs)
        while used < need:
            room = need - used
            doc = next(pool)
            if doc.tokens + 1 <= room:
                docs.append(doc)
                used += doc.tokens + 1
                continue
            if room <= slack:
                return
            fits = next(
                (d for d in itertools.islice(pool, _LOOKAHEAD) if d.tokens + 1 <= room), None
            )
            if fits is not None:
                docs.append(fits)
                used += fits.tokens + 1
                continue
            piece = self._cut(doc, room)
            if piece is not None:
                docs.append(piece)
            return

    # -- one row -----------------------------------------------------------------------------

    def pad(self, row: ShortRow, index: int, label: str, size: int) -> dict[str, Any]:
        """Return the output row of input row `row` (the `index`-th) padded to `size` tokens."""
        cfg = self.config
        rng = random.Random(f"longrm-short2long:{cfg.seed}:{row.id}:{label}")
        depth_target = self.depth_for(index, rng)
        low, high = math.ceil((1 - cfg.tolerance) * size), size
        aim = round((1 - cfg.tolerance / 2) * size)
        short, chunks = self.key_context(row, size)
        taken = "\n".join(
            [short, row.question, *row.responses, json.dumps(row.labels, ensure_ascii=False)]
            + [self.templates.system, self.templates.user, self.templates.question]
        )
        tag = self.draw_tag(rng, taken)
        block = f"<{tag}>{short}</{tag}>"

        def render(docs: list[_Doc]) -> tuple[Messages, int, str]:
            k = _boundary([d.tokens for d in docs], depth_target)
            parts = [d.text for d in docs[:k]] + [block] + [d.text for d in docs[k:]]
            context = "\n\n".join(parts)
            return self.templates.messages(tag, context, row.question), k, context

        overhead = self.prompt_tokens(render([])[0])
        if overhead > high:
            raise FitError(
                f"the key context and question alone take {overhead} tokens, over the {label} "
                f"target of {size}"
            )
        own = [
            _Doc(c.text, c.tokens, own=True)
            for c in (chunks.chunks if chunks else [])
            if not c.kept
        ]
        pool = self._pool(rng, own, tag)
        docs: list[_Doc] = []
        need = aim - overhead
        slack = max(1, (aim - low) // 2)
        n = overhead
        messages, k, context = render(docs)
        for _ in range(_FIT_PASSES):
            self._fill(docs, need, pool, slack)
            messages, k, context = render(docs)
            n = self.prompt_tokens(messages)
            if low <= n <= high:
                break
            need -= n - aim  # the separators and merges the estimate missed
            while docs and sum(d.tokens + 1 for d in docs) > need:
                docs.pop()
        else:
            raise FitError(f"could not fit the row into [{low}, {high}] tokens (last: {n})")
        counts = [d.tokens for d in docs]
        total = sum(counts)
        answers = (
            {"chosen": row.responses[0], "rejected": row.responses[1]}
            if row.kind == "pairwise"
            else {"response": row.responses[0]}
        )
        return {
            "id": f"{row.id}@{label}",
            "source_id": row.id,
            "source": f"{row.where}:{row.line}",
            "input_format": row.input_format,
            "kind": row.kind,
            "variant": cfg.variant,
            "length_bucket": label,
            "target_tokens": size,
            "prompt_messages": messages,
            "context": short,
            "question": self.templates.question_for(tag, row.question),
            **answers,
            "labels": row.labels,
            "extra": row.extra,
            "tag": tag,
            "depth": round(sum(counts[:k]) / total, 4) if total else 0.0,
            "depth_target": round(depth_target, 4),
            "insert_index": k,
            "n_docs": len(docs),
            "own_docs": sum(d.own for d in docs),
            "cut_docs": sum(d.cut for d in docs),
            "short_tokens": self.count([short])[0],
            "context_tokens": self.count([context])[0],
            "prompt_ctx_length": n,
            "length_error": round(n / size - 1, 4),
            "key_chunks": chunks.record() if chunks is not None else None,
            "haystack": self.haystack.description,
        }


# ---------------------------------------------------------------------------------------------
# A run


@dataclass
class LengthStats:
    """What happened at one target length."""

    written: int = 0
    resumed: int = 0
    skipped: int = 0
    length_errors: list[float] = field(default_factory=list)
    key_chunk_rows: int = 0
    kept_chunks: int = 0
    chunks: int = 0


@dataclass
class Short2LongSummary:
    """Counts of a run: rows read, rows per length, why rows were skipped."""

    rows_in: int
    lengths: dict[str, LengthStats]
    skip_reasons: Counter[str] = field(default_factory=Counter)
    first_skip: dict[str, str] = field(default_factory=dict)  # reason -> "row id: message"

    def as_dict(self) -> dict[str, Any]:
        """Return the summary as plain JSON-ready data."""
        return {
            "rows_in": self.rows_in,
            "lengths": {k: asdict(v) for k, v in self.lengths.items()},
            "skip_reasons": dict(self.skip_reasons),
        }


def run_settings(
    config: Short2LongConfig,
    *,
    input_fingerprint: str,
    model: str,
    haystack: str,
    templates: Templates,
) -> dict[str, Any]:
    """Return what identifies a run: a rerun with equal settings resumes, others are refused."""
    return {
        "command": "short2long",
        "input": input_fingerprint,
        "model": model,
        "haystack": haystack,
        "prompts": templates.fingerprint(),
        **{k: v for k, v in asdict(config).items() if k != "lengths"},
        "lengths": [list(x) for x in config.lengths],
    }


def short2long(
    rows: Sequence[ShortRow],
    padder: Padder,
    sink: RowSink,
    on_start: Callable[[int, int], None] | None = None,
    on_row: Callable[[dict[str, Any] | None], None] | None = None,
) -> Short2LongSummary:
    """Pad every row to every length, appending each output row to `sink` as it is made.

    Rows already in the sink (same id: input id @ length) are skipped, so a rerun resumes.
    `on_start(total, done)` is called once, `on_row(row or None)` after each (row, length).
    """
    done = sink.done()
    summary = Short2LongSummary(
        rows_in=len(rows), lengths={label: LengthStats() for label, _ in padder.config.lengths}
    )
    total = len(rows) * len(padder.config.lengths)
    already = sum(f"{row.id}@{label}" in done for row in rows for label, _ in padder.config.lengths)
    if on_start is not None:
        on_start(total, already)
    for index, row in enumerate(rows):
        for label, size in padder.config.lengths:
            stats = summary.lengths[label]
            if f"{row.id}@{label}" in done:
                stats.resumed += 1
                continue
            try:
                out = padder.pad(row, index, label, size)
            except FitError as err:
                reason = re.sub(r"\d+", "N", str(err))  # one count per kind of failure
                stats.skipped += 1
                summary.skip_reasons[reason] += 1
                summary.first_skip.setdefault(reason, f"{row.where}:{row.line} ({label}): {err}")
                if on_row is not None:
                    on_row(None)
                continue
            sink.append(out)
            stats.written += 1
            stats.length_errors.append(out["length_error"])
            if out["key_chunks"] is not None:
                stats.key_chunk_rows += 1
                stats.kept_chunks += len(out["key_chunks"]["kept"])
                stats.chunks += len(out["key_chunks"]["chunks"])
            if on_row is not None:
                on_row(out)
    return summary
