"""The full-size trained blind probe on the builder: trained on one seed's suite, tested on another.

The probe (longrm.bench.probe) is the default model with a LoRA scalar head fine-tuned on pairs
whose context was emptied. On a builder whose labels need the context it stays at chance for every
family, length bucket, tier pair and wording subtype; this prints each with its 95% Wilson
interval and writes them to benchmarks/results/blind_probe.json. The defaults (512 training pairs,
768 test pairs: 48 per family and bucket) take about 15 minutes on two idle cores.

    python benchmarks/blind_probe.py
    python benchmarks/blind_probe.py --train-per-cell 8 --test-per-cell 4 --epochs 1  # quick
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from transformers import AutoTokenizer

from longrm.bench.audit import run_audit
from longrm.bench.construct import build_suite
from longrm.bench.pairs import item_pairs
from longrm.bench.probe import PROBE_NAME, ProbeSettings, TrainedProbeControl
from longrm.items import Item
from longrm.models import resolve_model_path

BREAKDOWNS = ("task", "length_bucket", "subtask", "subtype")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="512,1k,2k,4k")
    parser.add_argument("--train-seed", type=int, default=11)
    parser.add_argument("--test-seed", type=int, default=22)
    parser.add_argument("--train-per-cell", type=int, default=32, help="pairs per family/bucket")
    parser.add_argument("--test-per-cell", type=int, default=48, help="pairs per family/bucket")
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--work", default="benchmarks/results/blind_probe_work")
    parser.add_argument("--out", default="benchmarks/results/blind_probe.json")
    args = parser.parse_args()

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("default"))

    def suite(seed: int, per_cell: int) -> list[Item]:
        return build_suite(
            tokenizer,
            lengths=args.lengths,
            items_per_cell=per_cell,
            formats=("pairwise",),
            seed=seed,
        )

    train, test = (
        suite(args.train_seed, args.train_per_cell),
        suite(args.test_seed, args.test_per_cell),
    )
    settings = ProbeSettings(epochs=args.epochs)
    probe = TrainedProbeControl(
        Path(args.work), settings, train_pairs=item_pairs(train).pairs, log=print
    )
    start = time.perf_counter()
    result = run_audit(test, [probe])
    seconds = time.perf_counter() - start
    overall = result.accuracy(PROBE_NAME)
    print(f"trained blind probe: {overall.text()} on {overall.n} pairs ({seconds:.0f} s)")
    table = {}
    for field in BREAKDOWNS:
        cells = result.breakdown(PROBE_NAME, field)
        table[field] = {value: acc.to_dict() for value, acc in cells.items()}
        print(f"by {field}: " + "; ".join(f"{v} {a.text()} (n={a.n})" for v, a in cells.items()))
    record = {
        "args": vars(args),
        "train_pairs": len(train),
        "test_pairs": len(test),
        "seconds": round(seconds, 1),
        "overall": overall.to_dict(),
        "by": table,
        "notes": result.control(PROBE_NAME).notes,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
