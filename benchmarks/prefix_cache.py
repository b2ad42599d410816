"""Shared-prefix scoring against --no-prefix-cache, on the default model, in one run.

For each reward-model mode and context length, a Best-of-4 item is ranked once with the prompt's
cache shared across candidates (and across display orders for the judge) and once encoding every
sequence from scratch. Each configuration runs in its own subprocess so that its peak memory
(max RSS) is its own. Figures are reported as ratios against the baseline of the same run, since
these machines are noisy.

    python benchmarks/prefix_cache.py                 # the full table (about 15 min on 2 cores)
    python benchmarks/prefix_cache.py --lengths 2k    # a quick look
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

MODES = {
    # mode: (kind, verdict, display orders judged per item)
    "likelihood": ("likelihood", "generate", 1),
    "scalar": ("scalar", "generate", 1),
    "judge-logprob": ("judge", "logprob", 2),
    "judge-generate": ("judge", "generate", 2),
}
# The judge in logprob mode scores 24 verdict strings for 4 candidates; without a cache each one
# re-encodes the whole prompt, so at 8K that baseline alone would take over ten minutes here.
SKIP = {("judge-logprob", "8k"), ("judge-generate", "8k")}


def _item(length: str):  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer

    from longrm.bench.construct import build_suite, parse_lengths
    from longrm.models import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("default"))
    items = build_suite(
        tokenizer, lengths=parse_lengths(length), formats=("bon4",), items_per_cell=1, seed=0
    )
    return items[0]


def run_one(mode: str, length: str, cache: bool, max_new_tokens: int) -> dict[str, float]:
    """Rank one Best-of-4 item in this configuration; return time, tokens and peak memory."""
    from longrm.rm.load import RewardModelOptions, load_reward_model

    item = _item(length)
    kind, verdict, orders = MODES[mode]
    rm = load_reward_model(
        "default",
        RewardModelOptions(
            kind=kind, verdict=verdict, prefix_cache=cache, max_new_tokens=max_new_tokens
        ),
    )
    candidates = list(item.candidates)
    start = time.perf_counter()
    for order in range(orders):
        shown = candidates if order == 0 else candidates[::-1]
        verdict_ = rm.rank(item.prompt, shown)
    seconds = time.perf_counter() - start
    runner = rm.runner  # type: ignore[attr-defined]
    return {
        "seconds": seconds,
        "prompt_tokens": verdict_.prompt_tokens,
        "tokens_computed": runner.tokens_computed,
        # tokens the caller had scored per second, whether computed or served from the cache
        "tokens_per_second": (runner.tokens_computed + runner.tokens_reused) / seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", default="2k,8k")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/prefix_cache.json"))
    parser.add_argument(
        "--one", nargs=3, metavar=("MODE", "LENGTH", "CACHE"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.one:
        mode, length, cache = args.one
        print(json.dumps(run_one(mode, length, cache == "on", args.max_new_tokens)))
        return
    rows = []
    for length in args.lengths.split(","):
        for mode in args.modes.split(","):
            if (mode, length) in SKIP:
                continue
            got = {}
            for cache in ("on", "off"):
                cmd = [sys.executable, __file__, "--one", mode, length, cache,
                       "--max-new-tokens", str(args.max_new_tokens)]  # fmt: skip
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                got[cache] = json.loads(out.strip().splitlines()[-1])
            on, off = got["on"], got["off"]
            row = {
                "mode": mode,
                "length": length,
                "prompt_tokens": on["prompt_tokens"],
                "cached_s": round(on["seconds"], 2),
                "baseline_s": round(off["seconds"], 2),
                "speedup": round(off["seconds"] / on["seconds"], 2),
                "peak_mem_ratio": round(on["peak_rss_mb"] / off["peak_rss_mb"], 2),
                "cached_peak_mb": round(on["peak_rss_mb"]),
                "baseline_peak_mb": round(off["peak_rss_mb"]),
                "cached_tok_s": round(on["tokens_per_second"], 1),
                "baseline_tok_s": round(off["tokens_per_second"], 1),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2))
    print("\n" + markdown_table(rows))


def markdown_table(rows: list[dict[str, float | str]]) -> str:
    """Return the rows as the README's table."""
    lines = [
        "| mode | context | prompt tokens | s/item cached | s/item baseline | speedup "
        "| tokens/s cached | tokens/s baseline | peak MB cached/baseline |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['mode']} | {r['length']} | {r['prompt_tokens']} | {r['cached_s']} | "
            f"{r['baseline_s']} | **{r['speedup']}x** | {r['cached_tok_s']} | "
            f"{r['baseline_tok_s']} | {r['cached_peak_mb']}/{r['baseline_peak_mb']} "
            f"({r['peak_mem_ratio']}x) |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
