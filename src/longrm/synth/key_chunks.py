"""Key-chunk scoring: which parts of an already-long context a judgment depends on.

The context is split into chunks of about `chunk_tokens` tokens (whole paragraphs where they
fit, else whole sentences, a token window only for a single sentence longer than a chunk). Each
chunk is scored against the question and against the answer (all responses joined) with BM25
(`bm25s`); a query BM25 cannot score (no content words, a single chunk, or no chunk sharing a
term) falls back to content-word overlap: the share of the query's content words in the chunk.
Each of the two scores is divided by its maximum over the chunks, and a chunk's score is their
mean (the question's alone when there is no answer).

Selection, in descending score: the best chunk is always kept; then chunks scoring at least
`min_score` are kept, up to `top_k` chunks and `budget` tokens in all. Kept chunks, in document
order and joined by blank lines, become the short (key) context; the others become distractors.
Every chunk records its scores and why it was kept or not.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

CHUNK_TOKENS = 512
TOP_K = 4
MIN_SCORE = 0.3

_PARAGRAPH = re.compile(r"\n\s*\n")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])")
# Runs of CJK characters (scored as character bigrams, as they have no spaces) or of word chars.
_WORDS = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]+|[^\W_]+")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")

CountTokens = Callable[[Sequence[str]], list[int]]


@dataclass
class Chunk:
    """One chunk of a long context, its scores, and the reason it was kept or not."""

    index: int
    text: str
    tokens: int
    bm25_question: float = 0.0
    bm25_answer: float = 0.0
    overlap_question: float = 0.0
    overlap_answer: float = 0.0
    score: float = 0.0
    kept: bool = False
    why: str = ""


@dataclass
class KeyChunks:
    """The chunks of a context and which of them form the key context."""

    chunks: list[Chunk]
    methods: dict[str, str] = field(default_factory=dict)  # query -> "bm25" or "overlap"

    @property
    def kept(self) -> list[int]:
        """Return the indices of the kept chunks, in document order."""
        return [c.index for c in self.chunks if c.kept]

    def short_context(self) -> str:
        """Return the kept chunks in document order, joined by blank lines."""
        return "\n\n".join(c.text for c in self.chunks if c.kept)

    def distractors(self) -> list[str]:
        """Return the chunks that were not kept, in document order."""
        return [c.text for c in self.chunks if not c.kept]

    def record(self) -> dict[str, Any]:
        """Return what a output row records: kept indices, methods, per-chunk scores and reasons
        (texts left out: the kept ones are the short context, the rest are in the prompt).
        """
        per_chunk = []
        for c in self.chunks:
            entry = asdict(c)
            entry.pop("text")
            per_chunk.append(
                {k: round(v, 4) if isinstance(v, float) else v for k, v in entry.items()}
            )
        return {"kept": self.kept, "methods": dict(self.methods), "chunks": per_chunk}


def content_words(text: str) -> list[str]:
    """Return the content words of a text: lower-cased words of 2+ characters that are not
    English stop words, and character bigrams of CJK runs.
    """
    from bm25s.stopwords import STOPWORDS_EN

    stop = set(STOPWORDS_EN)
    out: list[str] = []
    for run in _WORDS.findall(text.lower()):
        if _CJK.match(run):
            out.extend(run[i : i + 2] for i in range(max(1, len(run) - 1)))
        elif len(run) >= 2 and run not in stop:
            out.append(run)
    return out


def _cut_tokens(text: str, limit: int, tokenizer: Any) -> list[str]:
    """Return a text cut into windows of `limit` tokens at token boundaries (one long sentence)."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    offsets = enc["offset_mapping"]
    pieces = []
    for i in range(0, len(offsets), limit):
        window = offsets[i : i + limit]
        pieces.append(text[window[0][0] : window[-1][1]].strip())
    return [p for p in pieces if p]


def _pack(
    parts: Sequence[str], counts: Sequence[int], limit: int, joiner: str, joiner_tokens: int
) -> list[str]:
    """Return `parts` joined greedily into runs of at most `limit` tokens (counts summed, each
    join costing `joiner_tokens`).
    """
    runs: list[str] = []
    current: list[str] = []
    size = 0
    for part, n in zip(parts, counts, strict=True):
        cost = n + (joiner_tokens if current else 0)
        if current and size + cost > limit:
            runs.append(joiner.join(current))
            current, size, cost = [], 0, n
        current.append(part)
        size += cost
    if current:
        runs.append(joiner.join(current))
    return runs


def split_chunks(
    text: str, tokenizer: Any, count: CountTokens, chunk_tokens: int = CHUNK_TOKENS
) -> list[str]:
    """Return the chunks of `text`: paragraphs packed up to `chunk_tokens` tokens, a longer
    paragraph split at sentence ends, a longer sentence at token windows.
    """
    if chunk_tokens < 1:
        raise ValueError(f"chunk size must be positive, got {chunk_tokens}")
    paragraphs = [p.strip() for p in _PARAGRAPH.split(text) if p.strip()]
    units: list[str] = []
    unit_counts: list[int] = []
    for para, n in zip(paragraphs, count(paragraphs), strict=True):
        if n <= chunk_tokens:
            units.append(para)
            unit_counts.append(n)
            continue
        sentences = [s.strip() for s in _SENTENCE.split(para) if s.strip()]
        pieces: list[str] = []
        for sent, m in zip(sentences, count(sentences), strict=True):
            pieces.extend(
                _cut_tokens(sent, chunk_tokens, tokenizer) if m > chunk_tokens else [sent]
            )
        joiner = "" if _CJK.search(para[:200]) else " "
        for run in _pack(pieces, count(pieces), chunk_tokens, joiner, 1 if joiner else 0):
            units.append(run)
            unit_counts.append(count([run])[0])
    return _pack(units, unit_counts, chunk_tokens, "\n\n", count(["\n\n"])[0])


def _bm25(corpus: list[list[str]], query: list[str]) -> list[float] | None:
    """Return BM25 scores of each tokenized chunk for the query, or None when BM25 cannot rank
    (fewer than two chunks, an empty query, or no chunk sharing a term with it).
    """
    if len(corpus) < 2 or not query:
        return None
    import bm25s

    retriever = bm25s.BM25()
    retriever.index(corpus, show_progress=False)
    scores = [float(s) for s in retriever.get_scores(query)]
    return scores if max(scores) > 0 else None


def _overlap(corpus: list[list[str]], query: list[str]) -> list[float]:
    """Return, per chunk, the share of the query's distinct content words it contains."""
    wanted = set(query)
    if not wanted:
        return [0.0] * len(corpus)
    return [len(wanted & set(words)) / len(wanted) for words in corpus]


def _normalised(values: Sequence[float]) -> list[float]:
    top = max(values, default=0.0)
    return [v / top if top > 0 else 0.0 for v in values]


def score_chunks(chunks: list[Chunk], question: str, answer: str) -> dict[str, str]:
    """Fill in each chunk's BM25, overlap and combined scores; return the method per query."""
    corpus = [content_words(c.text) for c in chunks]
    methods: dict[str, str] = {}
    parts: list[list[float]] = []
    for name, text in (("question", question), ("answer", answer)):
        query = content_words(text)
        if not query:
            continue
        overlap = _overlap(corpus, query)
        bm25 = _bm25(corpus, query)
        for c, o, b in zip(chunks, overlap, bm25 or [0.0] * len(chunks), strict=True):
            setattr(c, f"overlap_{name}", o)
            setattr(c, f"bm25_{name}", b)
        methods[name] = "bm25" if bm25 is not None else "overlap"
        parts.append(_normalised(bm25 if bm25 is not None else overlap))
    for i, c in enumerate(chunks):
        c.score = sum(p[i] for p in parts) / len(parts) if parts else 0.0
    return methods


def scored_chunks(
    text: str,
    question: str,
    answer: str,
    tokenizer: Any,
    count: CountTokens,
    chunk_tokens: int = CHUNK_TOKENS,
) -> KeyChunks:
    """Return the chunks of a long context with their scores, none kept yet."""
    texts = split_chunks(text, tokenizer, count, chunk_tokens)
    chunks = [Chunk(i, t, n) for i, (t, n) in enumerate(zip(texts, count(texts), strict=True))]
    return KeyChunks(chunks, score_chunks(chunks, question, answer))


def keep_chunks(
    scored: KeyChunks, *, budget: int, top_k: int = TOP_K, min_score: float = MIN_SCORE
) -> KeyChunks:
    """Return a copy of `scored` with the key chunks kept and every chunk's reason filled in."""
    chunks = [replace(c, kept=False, why="") for c in scored.chunks]
    used = 0
    kept = 0
    for rank, c in enumerate(sorted(chunks, key=lambda c: (-c.score, c.index)), start=1):
        where = f"rank {rank}, score {c.score:.2f}"
        if rank == 1:
            c.kept, c.why = True, f"{where}: the best chunk is always kept"
        elif kept >= top_k:
            c.why = f"{where}: {top_k} chunks already kept (top-k)"
        elif c.score < min_score:
            c.why = f"{where}: below the threshold {min_score}"
        elif used + c.tokens > budget:
            c.why = f"{where}: over the key-context budget of {budget} tokens"
        else:
            c.kept, c.why = True, f"{where} >= {min_score}"
        if c.kept:
            kept += 1
            used += c.tokens
    return KeyChunks(chunks, dict(scored.methods))


def select_key_chunks(
    text: str,
    question: str,
    answer: str,
    tokenizer: Any,
    count: CountTokens,
    *,
    budget: int,
    chunk_tokens: int = CHUNK_TOKENS,
    top_k: int = TOP_K,
    min_score: float = MIN_SCORE,
) -> KeyChunks:
    """Return the chunks of a long context, scored, with the key ones kept (see module doc)."""
    scored = scored_chunks(text, question, answer, tokenizer, count, chunk_tokens)
    return keep_chunks(scored, budget=budget, top_k=top_k, min_score=min_score)
