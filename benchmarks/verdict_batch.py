"""Logprob verdicts scored in one pass over a prefix tree against one pass per verdict string.

On the default model, a Best-of-N item (2K context by default) is judged with `--verdict
logprob`: every well-formed verdict string ([[A>B>C>D]]: 24 for N=4) is scored right after the
cached prompt, either all at once (their tokens form a prefix tree, one forward pass with a tree
mask) or one forward pass each, as before. Both run in the same process on the same cached
prompt, alternating, and are reported as ratios; the log-probabilities must agree.

    python benchmarks/verdict_batch.py               # Best-of-2, 3 and 4 at 2K (minutes)
    python benchmarks/verdict_batch.py --ns 4 --reps 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any


def _item(length: str, tokenizer: Any):  # type: ignore[no-untyped-def]
    from longrm.bench.construct import build_suite, parse_lengths

    items = build_suite(
        tokenizer, lengths=parse_lengths(length), formats=("bon4",), items_per_cell=1, seed=0
    )
    return items[0]


def measure(rm: Any, prompt: Any, responses: list[str], reps: int) -> dict[str, Any]:
    """Return timings of both verdict paths over one cached prompt, and of whole rankings."""
    from longrm.rm.verdicts import verdict_strings

    n = len(responses)
    ids, _ = rm._fit(prompt, lambda p: rm.prompts.judge_messages(p, responses))
    strings = [s for s, _ in verdict_strings(n)]
    rm.runner.forward(ids, len(ids) - 1)  # the prompt is cached for both paths alike
    times: dict[bool, list[float]] = {True: [], False: []}
    tokens: dict[bool, int] = {}
    logps: dict[bool, list[float]] = {}
    for _ in range(reps):
        for batched in (False, True):
            rm.batch_verdicts = batched
            before = rm.runner.tokens_computed
            start = time.perf_counter()
            logps[batched] = rm._continuation_logprobs(ids, strings)
            times[batched].append(time.perf_counter() - start)
            tokens[batched] = rm.runner.tokens_computed - before
    # whole rankings in two display orders, the prompt encoded afresh (as an eval run does)
    rank_times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(reps):
        for batched in (False, True):
            rm.batch_verdicts = batched
            rm.runner.reset()
            start = time.perf_counter()
            for shown in (responses, responses[::-1]):
                rm.rank(prompt, shown)
            rank_times[batched].append(time.perf_counter() - start)
    seq, tree = statistics.median(times[False]), statistics.median(times[True])
    rank_seq, rank_tree = statistics.median(rank_times[False]), statistics.median(rank_times[True])
    return {
        "n": n,
        "prompt_tokens": len(ids),
        "verdict_strings": len(strings),
        "sequential_s": round(seq, 3),
        "batched_s": round(tree, 3),
        "speedup": round(seq / tree, 2),
        "tokens_sequential": tokens[False],
        "tokens_batched": tokens[True],
        "max_abs_logprob_diff": max(
            abs(a - b) for a, b in zip(logps[False], logps[True], strict=True)
        ),
        "rank_2_orders_sequential_s": round(rank_seq, 2),
        "rank_2_orders_batched_s": round(rank_tree, 2),
        "rank_speedup": round(rank_seq / rank_tree, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--length", default="2k")
    parser.add_argument("--ns", default="2,3,4", help="numbers of candidates (Best-of-N)")
    parser.add_argument("--reps", type=int, default=3, help="timings per path; medians reported")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/verdict_batch.json"))
    args = parser.parse_args()
    from longrm.rm.load import RewardModelOptions, load_reward_model

    rm: Any = load_reward_model("default", RewardModelOptions(kind="judge", verdict="logprob"))
    item = _item(args.length, rm.tokenizer)
    rows = []
    for n in (int(x) for x in args.ns.split(",")):
        responses = list(item.candidates)[:n]
        row = {"length": args.length, **measure(rm, item.prompt, responses, args.reps)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2))
    print("\n" + markdown_table(rows))


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """Return the rows as the README's table."""
    lines = [
        "| Best-of | context | prompt tokens | verdict strings | s one pass each | s one tree pass "
        "| speedup | tokens run (each / tree) | ranking, 2 orders: s before / after |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']} | {r['length']} | {r['prompt_tokens']} | {r['verdict_strings']} | "
            f"{r['sequential_s']} | {r['batched_s']} | **{r['speedup']}x** | "
            f"{r['tokens_sequential']} / {r['tokens_batched']} | "
            f"{r['rank_2_orders_sequential_s']} / {r['rank_2_orders_batched_s']} "
            f"({r['rank_speedup']}x) |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
