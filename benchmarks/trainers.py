"""Tokens per second of each trainer on the default model, in one run (CPU or GPU).

Each trainer runs a few steps on by-construction rows of about the same prompt length (Stage I
judgments, Stage II preference rows, DisRM response pairs written from one suite), and the
tokens/s it logs (tokens the model read, padding excluded, the prompt once per row when shared)
are reported beside Stage II's `--no-shared-prefix` baseline.

    python benchmarks/trainers.py --length 1k --steps 4
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer

from longrm.bench.construct import build_suite
from longrm.items import write_items
from longrm.models import resolve_model_path
from longrm.rm.prompts import PromptSet
from longrm.train.config import parse_config
from longrm.train.judgments import (
    preference_examples,
    sft_examples,
    write_preference_jsonl,
    write_sft_jsonl,
)
from longrm.train.stages import STAGES


def _rate(record: dict[str, Any]) -> float:
    """Median tokens/s over the logged steps, the first (warm-up) step left out."""
    rates = [h["tokens_per_s"] for h in record["log"][1:]] or [record["log"][0]["tokens_per_s"]]
    return float(statistics.median(rates))


def _speedup(results: dict[str, dict[str, Any]], trainer: str, negatives: int) -> float:
    """Seconds a step with one sequence per response over seconds with the prompt shared."""
    shared = results[f"{trainer} (shared prefix, V={negatives})"]["seconds_per_step"]
    separate = results[f"{trainer} (--no-shared-prefix, V={negatives})"]["seconds_per_step"]
    return round(separate / shared, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", default="1k", help="length bucket of the rows")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--model", default="default")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU)")
    parser.add_argument("--out", default="benchmarks/results/trainers.json")
    args = parser.parse_args()

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(args.model))
    items = build_suite(tokenizer, lengths=args.length, formats=("pairwise",), seed=7)
    prompts = PromptSet.load()
    work = Path(tempfile.mkdtemp(prefix="longrm-bench-trainers-"))
    sft = write_sft_jsonl(sft_examples(items, prompts, seed=0), work / "sft.jsonl")
    prefs = write_preference_jsonl(
        preference_examples(items, prompts, negatives=2, seed=0), work / "prefs.jsonl"
    )
    bench = work / "bench"
    write_items(items, bench)
    # One row a step and activation checkpointing on for every trainer, so that seconds per
    # step stay comparable across trainers and with earlier runs (sft/align accumulate 2 rows
    # and disrm 4 rows, without checkpointing, by default).
    common = ["--model", args.model, "--max_steps", str(args.steps), "--save_strategy", "no",
              "--learning_rate", "1e-6", "--gradient_accumulation_steps", "1",
              "--activation_checkpointing", *(["--bf16"] if args.bf16 else [])]  # fmt: skip
    runs = {
        "sft": ("sft", ["--data", str(sft)]),
        "align (shared prefix, V=2)": ("align", ["--data", str(prefs)]),
        "align (--no-shared-prefix, V=2)": ("align", ["--data", str(prefs), "--no_shared_prefix"]),
        "disrm (shared prefix, V=1)": ("disrm", ["--data", str(bench)]),
        "disrm (--no-shared-prefix, V=1)": ("disrm", ["--data", str(bench), "--no_shared_prefix"]),
    }
    results = {}
    for label, (stage, extra) in runs.items():
        cls, run = STAGES[stage]
        out = work / label.split()[0] / str(len(results))
        record = run(parse_config(cls, [*common, *extra, "--out", str(out)]))
        results[label] = {
            "tokens_per_s": round(_rate(record), 1),
            "seconds_per_step": round(record["seconds"] / record["steps"], 2),
            "tokens": record["tokens"],
        }
        print(label, results[label], flush=True)
    summary = {
        "length": args.length,
        "steps": args.steps,
        "rows": len(items),
        "model": args.model,
        "results": results,
        "align_step_speedup_shared_prefix": _speedup(results, "align", 2),
        "disrm_step_speedup_shared_prefix": _speedup(results, "disrm", 1),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
