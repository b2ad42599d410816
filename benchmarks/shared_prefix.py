"""A training step with the prompt shared across responses vs one copy per response.

For each prompt length and number of rejected responses V, one training step runs once with
`[prompt | r0 | ... | rV]` packed under a block mask and once with V+1 separate `[prompt | r_i]`
sequences: with `--head lm` (Stage II) the LOGO loss on the responses' mean log-probs, with
`--head scalar` (DisRM) the Bradley-Terry loss on the score head's reward at each response's last
token; then backward and an AdamW step. Each
configuration runs in its own subprocess so that its peak memory is its own: on CPU, max RSS over
the RSS once the model, its gradients and AdamW's state exist (so the figure is what the step
itself adds: activations and logits); on CUDA, torch.cuda.max_memory_allocated over the same
point. Figures are reported as ratios against the baseline of the same run.

    python benchmarks/shared_prefix.py                                  # 2K and 8K, V = 2 and 4
    python benchmarks/shared_prefix.py --lengths 256 --negatives 2 --steps 1   # a quick look
    python benchmarks/shared_prefix.py --device cuda --dtype bf16              # on a GPU
    python benchmarks/shared_prefix.py --head scalar --lengths 448,2048 --negatives 1 \
        --response-tokens 48 --lora 16 --no-checkpointing \
        --out benchmarks/results/shared_prefix_disrm.json          # DisRM as `train disrm` runs
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(
    args: argparse.Namespace, length: int, negatives: int, shared: bool
) -> dict[str, object]:
    """Run `args.steps` training steps in this configuration; return seconds and peak memory."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from longrm.models import resolve_model_path
    from longrm.train.losses import bradley_terry_loss, logo_loss
    from longrm.train.shared_prefix import response_logps, response_rewards
    from longrm.train.tokens import PromptResponses

    device = torch.device(args.device)
    scalar = args.head == "scalar"
    auto = AutoModelForSequenceClassification if scalar else AutoModelForCausalLM
    model = auto.from_pretrained(
        resolve_model_path(args.model),
        attn_implementation=args.attn,
        dtype=getattr(torch, DTYPES[args.dtype]),
        device_map=args.device,
        **({"num_labels": 1} if scalar else {}),
    )
    if args.lora:
        from peft import LoraConfig, TaskType, get_peft_model

        task = TaskType.SEQ_CLS if scalar else TaskType.CAUSAL_LM
        adapters = LoraConfig(
            r=args.lora, lora_alpha=2 * args.lora, target_modules="all-linear", task_type=task
        )
        model = get_peft_model(model, adapters)
    if args.checkpointing:
        model.activation_checkpointing_enable()
    model.train()
    pad_id = int(model.config.pad_token_id or 0)
    model.config.pad_token_id = pad_id  # a score head pools a batch's rows by the pad id

    generator = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size

    def ids(n: int) -> list[int]:
        return torch.randint(3, vocab, (n,), generator=generator).tolist()

    # Responses of slightly different lengths, as judgments are.
    batch = [
        PromptResponses(
            ids(length), [ids(args.response_tokens - 8 * i) for i in range(negatives + 1)]
        )
        for _ in range(args.batch)
    ]

    # Gradients and AdamW's moments exist before the baseline is read: weight decay 0 and zero
    # gradients make this first step a no-op on the weights. The gradients are written, not just
    # allocated: untouched zeroed pages would not count in RSS until backward fills them.
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=1e-6, weight_decay=0.0)
    for p in trained:
        p.grad = torch.empty_like(p).fill_(0.0)
    optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base_mb = torch.cuda.memory_allocated() / 2**20
    else:
        base_mb = _rss_mb()

    seconds = []
    for _ in range(args.warmup + args.steps):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=False)
        if scalar:
            rewards = response_rewards(model, batch, shared_prefix=shared, pad_id=pad_id)
            bradley_terry_loss(rewards[:, 0], rewards[:, 1:]).loss.backward()
        else:
            means = response_logps(model, batch, shared_prefix=shared, pad_id=pad_id).means
            logo_loss(means[:, 0], means[:, 1:]).loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    peak_mb = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else _rss_mb()
    timed = seconds[args.warmup :]
    computed = sum(
        len(ex.prompt) + sum(map(len, ex.responses))
        if shared
        else sum(len(ex.prompt) + len(r) for r in ex.responses)
        for ex in batch
    )
    return {
        # the fastest step: these machines are shared, and contention only ever adds time
        "step_s": min(timed),
        "steps_s": timed,
        "peak_mb": peak_mb - base_mb,
        "tokens_computed": computed,
    }


def _device_name(device: str) -> str:
    import torch

    return torch.cuda.get_device_name() if device == "cuda" else platform.machine()


def _one_cmd(args: argparse.Namespace, length: int, negatives: int, mode: str) -> list[str]:
    flags = ["--model", args.model, "--head", args.head, "--device", args.device,
             "--dtype", args.dtype,
             "--attn", args.attn, "--response-tokens", str(args.response_tokens),
             "--batch", str(args.batch), "--steps", str(args.steps), "--warmup", str(args.warmup),
             "--lora", str(args.lora),
             "--checkpointing" if args.checkpointing else "--no-checkpointing"]  # fmt: skip
    return [sys.executable, __file__, *flags, "--one", str(length), str(negatives), mode]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", default="2048,8192", help="prompt tokens, comma-separated")
    parser.add_argument("--negatives", default="2,4", help="values of V, comma-separated")
    parser.add_argument("--response-tokens", type=int, default=256, help="tokens per judgment")
    parser.add_argument("--batch", type=int, default=1, help="prompts per step")
    parser.add_argument("--steps", type=int, default=2, help="timed steps")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--model", default="default")
    parser.add_argument(
        "--head", choices=["lm", "scalar"], default="lm", help="lm: Stage II; scalar: DisRM"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--attn", choices=["sdpa", "eager", "flex_attention"], default="sdpa")
    parser.add_argument("--checkpointing", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--lora", type=int, default=0, help="LoRA rank (alpha 2r); 0: full")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/shared_prefix.json"))
    parser.add_argument("--one", nargs=3, metavar=("LENGTH", "V", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        length, negatives, mode = args.one
        print(json.dumps(run_one(args, int(length), int(negatives), mode == "shared")))
        return

    rows = []
    for length in map(int, args.lengths.split(",")):
        for negatives in map(int, args.negatives.split(",")):
            got = {}
            for mode in ("shared", "separate"):
                done = subprocess.run(
                    _one_cmd(args, length, negatives, mode), capture_output=True, text=True
                )
                if done.returncode != 0:
                    sys.exit(f"{mode} at {length} tokens, V={negatives} failed:\n{done.stderr}")
                got[mode] = json.loads(done.stdout.strip().splitlines()[-1])
            shared, separate = got["shared"], got["separate"]
            row = {
                "prompt_tokens": length,
                "negatives": negatives,
                "shared_step_s": round(shared["step_s"], 3),
                "separate_step_s": round(separate["step_s"], 3),
                "speedup": round(separate["step_s"] / shared["step_s"], 2),
                "shared_peak_mb": round(shared["peak_mb"]),
                "separate_peak_mb": round(separate["peak_mb"]),
                "peak_mem_ratio": round(shared["peak_mb"] / max(separate["peak_mb"], 1e-9), 2),
                "tokens_ratio": round(shared["tokens_computed"] / separate["tokens_computed"], 2),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
            _write(args, rows)  # after every row: a run stopped early keeps what it measured
    print("\n" + markdown_table(rows))
    print(f"\nwrote {args.out}")


def _write(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    import torch

    result = {
        "setup": {
            "model": args.model,
            "head": args.head,
            "device": args.device,
            "device_name": torch.cuda.get_device_name()
            if args.device == "cuda"
            else platform.processor() or platform.machine(),
            "dtype": args.dtype,
            "attn": args.attn,
            "checkpointing": args.checkpointing,
            "lora_rank": args.lora,
            "response_tokens": args.response_tokens,
            "batch": args.batch,
            "steps": args.steps,
            "warmup": args.warmup,
            "peak_memory": "CUDA max_memory_allocated" if args.device == "cuda" else "max RSS",
            "torch": torch.__version__,
        },
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


def markdown_table(rows: list[dict[str, float]]) -> str:
    """Return the rows as a README table."""
    lines = [
        "| prompt tokens | V | s/step shared | s/step separate | speedup "
        "| peak MB shared/separate | tokens computed |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['prompt_tokens']} | {r['negatives']} | {r['shared_step_s']} | "
            f"{r['separate_step_s']} | **{r['speedup']}x** | "
            f"{r['shared_peak_mb']}/{r['separate_peak_mb']} ({r['peak_mem_ratio']}x) | "
            f"{r['tokens_ratio']}x |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
