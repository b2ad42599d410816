"""How long a reproduction takes, estimated before it starts from figures measured here.

A track that runs for hours on two cores is not one anybody reruns, so every size is a flag and
the estimate is printed first: a reader can shrink a run before paying for it. The figures are
the 135M default model's on this 2-core machine, idle; a busy machine takes longer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from longrm.bench.construct import parse_lengths

#: the builder sizes a prompt to 80-95% of its bucket (`bench.construct.build_suite`)
PROMPT_SHARE = 0.875
#: tokens a scalar or likelihood sequence adds to the item's prompt: chat template and answer
SEQUENCE_EXTRA = 65
#: tokens the second answer of a DisRM pair adds once the two are packed after one prompt (the
#: answer and its turn's closing tokens; measured: 26 on the track's training pairs)
SECOND_ANSWER = 26
#: tokens the judge's prompt adds: the judging instructions and both answers
JUDGE_EXTRA = 260
#: a prompt whose context was emptied: the question, the template and the answer(s)
EMPTY_PROMPT = 120


@dataclass(frozen=True)
class Costs:
    """Seconds per unit of work, measured with the default model on 2 idle CPU cores.

    - training a DisRM (LoRA r 16, no activation checkpointing, chosen and rejected answers
      packed after one copy of the prompt): 140 tokens/s computed, measured in `longrm
      reproduce --track disrm` (146 at 448-512 tokens on idle cores, 110 over a run that
      shared them for a few minutes); the estimate counts the tokens a packed pair computes;
    - the judge stages (LoRA on the causal LM, sequences of 448-2K tokens, the LM head's
      logits over the 49K-token vocabulary at every position): measured in `longrm reproduce
      --track judge`: 95 (Stage I) and 108 (Stage II) tokens/s on the two cores shared with
      other jobs; the estimate takes 110;
    - an evaluated pair (both display orders, the prefix cache reading the prompt once):
      2.1 / 3.8 / 9.2 / 21.2 s at the 512 / 1K / 2K / 4K buckets, measured in `longrm reproduce
      --track disrm` (the short-only DisRM with the context, idle cores; the likelihood reward
      took the same), fitted by b t + c t^2 (t in 2K-token units): 10 s at 2K tokens, 68 s at
      8K (extrapolated). A bare transformers forward pass took 5.6 s at 1,840 tokens and
      13.4 s at 3,610 here, so a pair costs about 1.5 of them; a swapped context costs another
      pair, an emptied one a short prompt;
    - generating: 55 tokens/s.
    """

    disrm_train_tokens_per_s: float = 140.0
    eval_pair_2k_s: float = 10.0
    eval_pair_8k_s: float = 68.0
    generate_tokens_per_s: float = 55.0
    judge_train_tokens_per_s: float = 110.0

    def eval_pair_s(self, tokens: float) -> float:
        """Return the seconds of judging a pair whose prompt has `tokens` tokens in both orders
        (b t + c t^2, t in 2K units, through 2K -> eval_pair_2k_s and 8K -> eval_pair_8k_s)."""
        t = tokens / 2048
        c = (self.eval_pair_8k_s - 4 * self.eval_pair_2k_s) / 12
        b = self.eval_pair_2k_s - c
        return b * t + c * t * t

    def train_s(self, tokens: float, judge: bool = False) -> float:
        """Return the seconds of training on `tokens` tokens (forward and backward) of a DisRM,
        or with `judge` of a judge stage."""
        rate = self.judge_train_tokens_per_s if judge else self.disrm_train_tokens_per_s
        return tokens / rate


def prompt_tokens(bucket: str) -> float:
    """Return the typical prompt length of a built item of a length bucket ("1k" -> 896)."""
    return PROMPT_SHARE * parse_lengths(bucket)[0][1]


def eval_s(
    costs: Costs,
    buckets: Iterable[str],
    pairs_per_bucket: int,
    extra: int,
    controls: Iterable[str] = (),
    generate_tokens: int = 0,
) -> float:
    """Return the seconds of judging `pairs_per_bucket` pairs in each bucket in both orders: a
    pair's prompt (`extra` tokens on top of the item's), once more per ablation control (an
    emptied context costs a short prompt), and `generate_tokens` per record written by a
    generating judge (its cap: an upper bound)."""
    wanted = list(controls)
    total = 0.0
    for bucket in buckets:
        per_pair = costs.eval_pair_s(prompt_tokens(bucket) + extra)
        for control in wanted:
            tokens = EMPTY_PROMPT + extra if control == "empty" else prompt_tokens(bucket) + extra
            per_pair += costs.eval_pair_s(tokens)
        per_pair += 2 * generate_tokens / costs.generate_tokens_per_s * (1 + len(wanted))
        total += pairs_per_bucket * per_pair
    return total


def train_s(
    costs: Costs,
    pairs_by_bucket: dict[str, int],
    extra: int,
    rows_per_pair: int,
    judge: bool = False,
) -> float:
    """Return the seconds of one training stage: `rows_per_pair` sequences of (prompt + `extra`)
    tokens per pair (1 for a packed DisRM pair; 2 for a judge, both orders)."""
    return sum(
        n * rows_per_pair * costs.train_s(prompt_tokens(b) + extra, judge)
        for b, n in pairs_by_bucket.items()
    )


def minutes(seconds: dict[str, float]) -> dict[str, float]:
    """Return each step's estimate in minutes (one decimal) and their `total`."""
    out = {k: round(v / 60, 1) for k, v in seconds.items()}
    out["total"] = round(sum(seconds.values()) / 60, 1)
    return out


def estimate_line(estimate: dict[str, float]) -> str:
    """Return "estimated 96 min for the default model on 2 idle cores (minutes: data 0.2,
    ...)"."""
    steps = ", ".join(f"{k} {v:g}" for k, v in estimate.items() if k != "total")
    return (
        f"estimated {estimate['total']:.0f} min for the default model on 2 idle cores "
        f"(minutes: {steps})"
    )
