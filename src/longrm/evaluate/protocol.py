"""Evaluation protocols: longrm's own (every order, by default) and the authors' (`paper`).

`paper` reproduces the rules of the LongRM authors' evaluator in our own code (REFERENCE.md
section 7): the task is the file an item came from, each item is judged once in one display
order drawn exactly as their evaluator draws it, verdicts are parsed by their rules (see
`longrm.rm.verdicts.parse_paper_verdict`) and over-long prompts are cut by their rule. The
judge's part (`check_protocol`, `paper_cut`) lives in `longrm.rm.protocols` and is re-exported
here for the evaluation's callers.
"""

from __future__ import annotations

import dataclasses
import random
from collections import defaultdict
from collections.abc import Sequence

from longrm.items import Item
from longrm.rm.protocols import PROTOCOLS, check_protocol, paper_cut

__all__ = [
    "PAPER_SEED",
    "PROTOCOLS",
    "check_protocol",
    "paper_cut",
    "paper_display_orders",
    "paper_items",
]

PAPER_SEED = 42


def paper_items(items: Sequence[Item]) -> list[Item]:
    """Return the items with the task taken from the file they came from, as the authors do."""
    return [dataclasses.replace(i, task=i.origin) if i.origin else i for i in items]


def paper_display_orders(items: Sequence[Item]) -> dict[str, list[int]]:
    """Return {item key: display order} drawn as the authors' evaluator draws them.

    Per task file, a generator seeded with 42 first shuffles the file's rows, then draws one
    permutation of range(n) per row in that shuffled order; `order[s]` is the candidate shown in
    slot s. `items` must hold every row of each file in file order (filter afterwards), or the
    draws shift.
    """
    by_file: dict[str, list[Item]] = defaultdict(list)
    for item in items:
        by_file[item.origin or item.task].append(item)
    orders: dict[str, list[int]] = {}
    for rows in by_file.values():
        rng = random.Random(PAPER_SEED)
        shuffled = list(rows)
        rng.shuffle(shuffled)
        for item in shuffled:
            order = list(range(item.n))
            rng.shuffle(order)
            orders[item.key] = order
    return orders
