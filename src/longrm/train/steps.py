"""Which rows share an optimiser step: the display orders of one pair together, and short rows
first when a length curriculum is asked for.

A base model prefers one verdict letter whatever it reads (SmolLM2-135M prefers "A" by 1-2
nats). When a pair's two orders, one gold [[A]] and one gold [[B]], land in different steps,
each update can move that constant bias; in one step their bias gradients cancel and what is
left is the part that depends on the content. transformers' Trainer cuts each epoch's
sampler order into steps of `per_device_train_batch_size x gradient_accumulation_steps x
processes` consecutive rows (accelerate deals batches to processes in turn), so keeping a group
in one step means keeping it inside one such chunk: `StepSampler` packs groups into chunks.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from torch.utils.data import Sampler

CURRICULA = ("none", "length")


@dataclass(frozen=True)
class StepPlan:
    """What the sampler did, for the run record."""

    rows_per_step: int
    #: groups of more than one row (an item's display orders)
    groups: int
    #: groups whose rows landed in more than one step in the first epoch (0 when pairs fit)
    split_groups: int
    curriculum: str

    def as_dict(self) -> dict[str, object]:
        """Return the plan as the record stores it."""
        return {
            "rows_per_step": self.rows_per_step,
            "groups": self.groups,
            "split_groups": self.split_groups,
            "curriculum": self.curriculum,
        }


def length_bucket(tokens: int) -> int:
    """Return a row's length bucket: tokens in [2^(k-1), 2^k) are bucket k."""
    return max(int(tokens), 1).bit_length()


class StepSampler(Sampler[int]):
    """Row order for one epoch: each group (rows sharing a non-empty name) inside one optimiser
    step when it fits in one, in a seeded shuffle, or by length bucket for `curriculum="length"`.

    Groups are packed first-fit into chunks of `rows_per_step` rows; a group larger than a step
    fills whole steps and then joins the packing with what is left. Chunks that cannot be
    filled go last, where they may share steps. Deterministic in (seed, epoch); the Trainer
    calls `set_epoch` before each epoch.
    """

    def __init__(
        self,
        groups: Sequence[str],
        tokens: Sequence[int],
        rows_per_step: int,
        *,
        seed: int,
        curriculum: str = "none",
        keep_groups: bool = True,
    ) -> None:
        if len(groups) != len(tokens):
            raise ValueError(f"{len(groups)} group names for {len(tokens)} token counts")
        if rows_per_step < 1:
            raise ValueError(f"rows_per_step must be at least 1, got {rows_per_step}")
        if curriculum not in CURRICULA:
            raise ValueError(f"unknown curriculum {curriculum!r}: choose from {CURRICULA}")
        self.rows_per_step = rows_per_step
        self.seed, self.curriculum, self.epoch = seed, curriculum, 0
        self.tokens = list(tokens)
        by_name: dict[str, list[int]] = {}
        self.units: list[list[int]] = []
        for i, name in enumerate(groups):
            if not (keep_groups and name):
                self.units.append([i])
            elif name in by_name:
                by_name[name].append(i)
            else:
                by_name[name] = [i]
                self.units.append(by_name[name])

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order `__iter__` yields."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.tokens)

    def __iter__(self) -> Iterator[int]:
        return iter(self.order(self.epoch))

    def order(self, epoch: int) -> list[int]:
        """Return the row indices of one epoch, step by step."""
        units = [list(u) for u in self.units]
        random.Random(f"longrm-steps:{self.seed}:{epoch}").shuffle(units)
        if self.curriculum == "length":  # a stable sort: shuffled within a bucket
            units.sort(key=lambda u: length_bucket(max(self.tokens[i] for i in u)))
        return [i for chunk in self._pack(units) for i in chunk]

    def _pack(self, units: list[list[int]]) -> list[list[int]]:
        """Return chunks of rows_per_step rows: full ones in order, then the rest."""
        size = self.rows_per_step
        chunks: list[list[int]] = []
        open_chunks: list[list[int]] = []
        for unit in units:
            whole = len(unit) - len(unit) % size if len(unit) > size else 0
            chunks += [unit[k : k + size] for k in range(0, whole, size)]
            part = unit[whole:]
            if not part:
                continue
            target = next((c for c in open_chunks if size - len(c) >= len(part)), None)
            if target is None:
                target = []
                chunks.append(target)
                open_chunks.append(target)
            target += part
            if len(target) == size:
                open_chunks.remove(target)
        full = [c for c in chunks if len(c) == size]
        return full + [c for c in chunks if len(c) < size]

    def plan(self) -> StepPlan:
        """Return how the first epoch's order keeps groups together."""
        step_of = {row: k // self.rows_per_step for k, row in enumerate(self.order(0))}
        multi = [u for u in self.units if len(u) > 1]
        split = sum(len({step_of[i] for i in u}) > 1 for u in multi)
        return StepPlan(self.rows_per_step, len(multi), split, self.curriculum)
