"""Short-to-Long throughput: rows per minute at 8K and 32K targets on the built-in text.

Rows are made from the documentation that ships with Python (the default haystack): a short
row's key context is three paragraphs, a long row's is ~20K tokens of paragraphs with a needle
sentence, reduced to its key chunks (BM25) before padding. Each row is padded with the default
model's tokenizer; the baseline, in the same process, is one chat-template-and-tokenize pass over
each finished prompt (the least any exact sizing costs), so `x_baseline` says how many such
passes padding a row costs.

    python benchmarks/short2long.py                       # 8K and 32K, 20 rows each
    python benchmarks/short2long.py --lengths 8k --rows 5   # a quick look
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

NEEDLE = "The access code of the Vormund vault is QX-4821."


def make_rows(haystack: Any, n: int, long: bool) -> list[Any]:
    """Return n short (or long) rows cut from the haystack, far from where padding starts."""
    from longrm.synth.short_rows import ShortRow

    rows = []
    paragraphs = haystack.paragraphs
    for i in range(n):
        start = (len(paragraphs) // 2 + 211 * i) % len(paragraphs)
        size = 160 if long else 3
        picked = [paragraphs[(start + j) % len(paragraphs)] for j in range(size)]
        if long:
            picked.insert(size // 3, NEEDLE)
        rows.append(
            ShortRow(
                id=f"{'long' if long else 'short'}{i}",
                where="benchmark",
                line=i + 1,
                input_format="pointwise",
                context="\n\n".join(picked),
                question="What is the access code of the Vormund vault?" if long else "Summarize.",
                responses=["QX-4821." if long else picked[0][:200]],
                long_context=long,
            )
        )
    return rows


def measure(padder: Any, rows: list[Any], label: str, size: int) -> dict[str, Any]:
    """Return padding and baseline timings of rows at one target length."""
    pad_s: list[float] = []
    base_s: list[float] = []
    errors: list[float] = []
    for i, row in enumerate(rows):
        start = time.perf_counter()
        out = padder.pad(row, i, label, size)
        pad_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        padder.prompt_tokens(out["prompt_messages"])
        base_s.append(time.perf_counter() - start)
        errors.append(abs(out["length_error"]))
    total = sum(pad_s)
    return {
        "length": label,
        "rows": len(rows),
        "rows_per_min": round(60 * len(rows) / total, 1),
        "median_row_s": round(statistics.median(pad_s), 4),
        "baseline_median_s": round(statistics.median(base_s), 4),
        "x_baseline": round(statistics.median(pad_s) / statistics.median(base_s), 1),
        "mean_abs_length_error": round(statistics.mean(errors), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="8k,32k")
    parser.add_argument("--rows", type=int, default=20)
    parser.add_argument("--model", default="default")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/short2long.json"))
    args = parser.parse_args()

    from transformers import AutoTokenizer

    from longrm.bench.construct import parse_lengths
    from longrm.bench.haystack import load_haystack
    from longrm.models import resolve_model_path
    from longrm.synth.short2long import Padder, Short2LongConfig
    from longrm.synth.templates import Templates

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(args.model))
    haystack = load_haystack(None)
    lengths = parse_lengths(args.lengths)
    padder = Padder(
        tokenizer, haystack, Templates.load("qa"), Short2LongConfig(lengths=tuple(lengths))
    )
    padder.pad(make_rows(haystack, 1, long=False)[0], 0, *lengths[0])  # warm the caches
    results = []
    for long in (False, True):
        rows = make_rows(haystack, args.rows, long)
        for label, size in lengths:
            result = {
                "rows_kind": "long (key chunks)" if long else "short",
                **measure(padder, rows, label, size),
            }
            print(json.dumps(result), flush=True)
            results.append(result)
    report = {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "python": platform.python_version(),
        "model": args.model,
        "haystack": haystack.description,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
