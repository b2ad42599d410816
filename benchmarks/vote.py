"""Judge calls per minute of `longrm synth vote` with the default model.

Each unit (a short context, a question, a response) is judged by `--samples` seeded samples of
one model. The baseline, run in the same process on the same units, is one greedy
`judge_score` call per unit made directly, without the voting machinery; the ratio says what
voting's bookkeeping (threads, appends, the outputs) and its sampled decoding cost or gain per
call (samples of one unit share the cached prompt). Calls end at `--max-new-tokens` or at the
end of the judgment, so generated tokens per second are reported beside calls per minute.

    python benchmarks/vote.py                          # 4 rows (8 units), 3 samples, 64 tokens
    python benchmarks/vote.py --rows 2 --max-new-tokens 32 --threads 2
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

ROWS = [
    {
        "id": "tower",
        "context": "The Eiffel Tower in Paris was finished in 1889 for the World's Fair. It is "
        "330 metres tall and was the tallest structure in the world until 1930.",
        "question": "When was the Eiffel Tower finished, and how tall is it?",
        "chosen": "It was finished in 1889 and is 330 metres tall.",
        "rejected": "It was finished in 1925 and is about 500 metres tall.",
    },
    {
        "id": "curie",
        "context": "Marie Curie won the Nobel Prize in Physics in 1903, shared with Pierre Curie "
        "and Henri Becquerel, and the Nobel Prize in Chemistry in 1911 on her own.",
        "question": "Which Nobel Prizes did Marie Curie win?",
        "chosen": "Physics in 1903 (shared) and Chemistry in 1911.",
        "rejected": "Only the Nobel Peace Prize, in 1920.",
    },
    {
        "id": "boiling",
        "context": "At sea level water boils at 100 degrees Celsius; on top of Mount Everest, "
        "where the air pressure is lower, it boils at about 70 degrees.",
        "question": "Why does water boil at a lower temperature on Everest?",
        "chosen": "Because the air pressure is lower there, it boils at about 70 degrees.",
        "rejected": "Because it is colder there, water boils at 120 degrees.",
    },
    {
        "id": "oslo",
        "context": "Oslo has been the capital of Norway since 1814; Bergen was the capital "
        "in the thirteenth century.",
        "question": "What is the capital of Norway?",
        "chosen": "Oslo, since 1814.",
        "rejected": "Bergen.",
    },
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--rows", type=int, default=4, help="pairwise rows (2 units each)")
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (see the note)")
    parser.add_argument("--note", default="")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/vote.json"))
    args = parser.parse_args()

    import torch

    from longrm.rm.load import RewardModelOptions, load_reward_model
    from longrm.synth.outputs import short_prompt
    from longrm.synth.units import read_units
    from longrm.synth.voting_run import Judge, VoteSettings, judge_plan, run_vote

    torch.set_num_threads(args.threads)
    rows = ROWS[: args.rows]
    options = RewardModelOptions(kind="judge", max_new_tokens=args.max_new_tokens)
    started = time.perf_counter()
    rm = load_reward_model(args.model, options)
    load_s = time.perf_counter() - started
    tokenizer = rm.tokenizer  # type: ignore[attr-defined]

    def tokens(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "rows.jsonl"
        source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        units = read_units(source).units

        # baseline: one greedy call per unit, straight through the interface
        started = time.perf_counter()
        texts = [
            rm.judge_score(short_prompt(u.context, u.question), u.response).text for u in units
        ]
        base_s = time.perf_counter() - started
        base_tokens = sum(map(tokens, texts))

        plan = judge_plan([args.model], args.samples, args.temperature, seed=0)
        judges = [Judge(name, rm, sampling) for name, _, sampling in plan]
        outcome = run_vote(units, judges, Path(tmp) / "run", VoteSettings())
    vote_s = outcome.seconds
    vote_tokens = sum(tokens(j.explanation) for _, found, _ in outcome.records for j in found)
    base_rate = 60 * len(units) / base_s
    vote_rate = 60 * outcome.calls / vote_s
    result: dict[str, Any] = {
        "setup": {
            "model": args.model,
            "device": str(rm.loaded.model.device),  # type: ignore[attr-defined]
            "device_name": platform.processor() or platform.machine(),
            "torch": torch.__version__,
            "threads": args.threads,
            "rows": len(rows),
            "units": len(units),
            "samples": args.samples,
            "temperature": args.temperature,
            "max_new_tokens": args.max_new_tokens,
            "load_s": round(load_s, 2),
            "note": args.note
            or "one torch thread: on this shared 2-core CPU two threads spin-wait on each other "
            "under load (about 10x slower per call when other jobs run)",
        },
        "baseline_greedy_direct": {
            "calls": len(units),
            "seconds": round(base_s, 2),
            "calls_per_min": round(base_rate, 1),
            "generated_tokens": base_tokens,
            "tokens_per_s": round(base_tokens / base_s, 1),
        },
        "vote_sampled_judges": {
            "calls": outcome.calls,
            "seconds": round(vote_s, 2),
            "calls_per_min": round(vote_rate, 1),
            "generated_tokens": vote_tokens,
            "tokens_per_s": round(vote_tokens / vote_s, 1),
            "consensus": outcome.kept,
            "unparseable": outcome.stats["unparseable"],
        },
        "calls_per_min_ratio": round(vote_rate / base_rate, 2),
        "tokens_per_s_ratio": round((vote_tokens / vote_s) / (base_tokens / base_s), 2),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
