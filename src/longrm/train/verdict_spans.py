"""Where a judgment states its verdict, in characters and in tokens.

Stage II with `--score_tokens verdict` sums log-probabilities over the verdict's tokens only: in
a judgment of about 128 tokens the deciding letter is one token, and a loss averaged over all of
them weights the decision at about 1/128. The training record counts which display slot the gold
verdict puts first (gold A, gold B), so a position imbalance in the data shows before it trains.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

from transformers import PreTrainedTokenizerBase

# The verdict forms `rm.verdicts.parse_ranking` reads: [[A]] for a pair, [[B>A>C]] for a ranking.
VERDICT = re.compile(r"\[\[\s*([A-Z])(?:\s*>\s*[A-Z])*\s*\]\]")


def verdict_spans(text: str) -> list[tuple[int, int]]:
    """Return the [start, end) character spans of every verdict in `text`."""
    return [m.span() for m in VERDICT.finditer(text)]


def best_slot(text: str) -> str | None:
    """Return the letter the last verdict of `text` puts first (what evaluation parses), or
    None when the text holds no verdict (a pointwise `[Score: n]` judgment, say)."""
    found = VERDICT.findall(text)
    return found[-1] if found else None


def best_slot_counts(texts: Iterable[str]) -> dict[str, int]:
    """Return how many judgments put each display slot first ({"A": 12, "B": 12}), letters in
    order; judgments without a verdict are not counted."""
    counts = Counter(s for s in map(best_slot, texts) if s is not None)
    return dict(sorted(counts.items()))


def _token_spans(
    tokenizer: PreTrainedTokenizerBase, ids: Sequence[int], text: str
) -> list[tuple[int, int]]:
    """Return each token's [start, end) characters in `text` (the decoded ids)."""
    if tokenizer.is_fast:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        if list(enc["input_ids"]) == list(ids):
            return [(int(a), int(b)) for a, b in enc["offset_mapping"]]
    # Slow tokenizers, or text that does not re-tokenize to the same ids: decode prefixes.
    ends = [
        len(tokenizer.decode(list(ids[: i + 1]), clean_up_tokenization_spaces=False))
        for i in range(len(ids))
    ]
    return list(zip([0, *ends[:-1]], ends, strict=True))


def verdict_token_mask(tokenizer: PreTrainedTokenizerBase, ids: Sequence[int]) -> list[bool]:
    """Return, per token of a response, whether it spells part of a verdict (a token that
    straddles a verdict's edge counts: "]]\\n" is one token in some vocabularies)."""
    text = str(tokenizer.decode(list(ids), clean_up_tokenization_spaces=False))
    spans = verdict_spans(text)
    if not spans:
        return [False] * len(ids)
    return [
        any(start < e and s < end for s, e in spans)
        for start, end in _token_spans(tokenizer, ids, text)
    ]
